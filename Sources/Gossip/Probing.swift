import MeshCore

/// SWIM probing over the active view, with Lifeguard's local health multiplier: a node whose own
/// probes keep failing (or whose indirect probers do not even answer with a nack) stretches its
/// timeouts instead of accusing healthy peers.
extension GossipCore {
    var healthMultiplier: Int64 { Int64(awareness + 1) }

    mutating func probeRound(now: Instant, into out: inout [GossipOutput]) {
        if let p = probe, !p.acked { probeFailed(p, now: now, into: &out) }
        probe = nil
        nextProbe = now + .nanoseconds(config.probeInterval.nanoseconds * healthMultiplier)
        guard let target = nextProbeTarget() else {
            measurePassive(now: now, into: &out)
            return
        }
        let seq = takeSeq()
        var timeout = config.probeTimeout.nanoseconds * healthMultiplier
        if let rtt = members[target.nodeID]?.rtt { timeout = max(timeout, 3 * rtt.nanoseconds) }
        probe = Probe(target: target, seq: seq, sentAt: now, indirectAt: now + .nanoseconds(timeout), endAt: nextProbe!)
        counters.probes += 1
        let spare = GossipWire.maxDatagram - GossipWire.headerLength - 4 - 1
        send(.ping(seq: seq, updates: piggyback(spare: spare)), to: .peer(target), into: &out)
        // In `nearest` mode, also learn the round-trip time of one passive peer per round.
        if config.modes.contains(.nearest) { measurePassive(now: now, into: &out) }
    }

    /// Round-robin over a shuffled copy of the active view (SWIM's bounded detection time).
    mutating func nextProbeTarget() -> PeerEntry? {
        guard !activeView.isEmpty else { return nil }
        for _ in 0..<(probeOrder.count + 1) {
            if probeIndex >= probeOrder.count {
                probeOrder = randomSample(activeView.map(\.nodeID), count: activeView.count)
                probeIndex = 0
            }
            let id = probeOrder[probeIndex]
            probeIndex += 1
            if let e = activeView.first(where: { $0.nodeID == id }), let m = members[id], m.state == .alive || m.state == .suspect {
                return e
            }
        }
        return nil
    }

    mutating func measurePassive(now: Instant, into out: inout [GossipOutput]) {
        guard let p = randomSample(passiveView, count: 1).first else { return }
        let seq = takeSeq()
        sidePings[seq] = (p.nodeID, now)
        sidePingOrder.append(seq)
        trimSidePings()
        send(.ping(seq: seq, updates: []), to: .peer(p), into: &out)
    }

    mutating func sendIndirectProbes(now: Instant, into out: inout [GossipOutput]) {
        guard var p = probe else { return }
        p.indirectSent = true
        let helpers = randomSample((activeView + passiveView).filter { $0.nodeID != p.target.nodeID }, count: config.indirectChecks)
        for h in helpers {
            send(.pingRequest(seq: p.seq, target: p.target), to: .peer(h), into: &out)
            counters.indirectProbes += 1
        }
        p.expectedNacks = helpers.count
        probe = p
    }

    mutating func probeFailed(_ p: Probe, now: Instant, into out: inout [GossipOutput]) {
        // Lifeguard: missing nacks mean our own links or scheduling are the problem.
        let delta = p.expectedNacks > 0 ? p.expectedNacks - p.nacks : 1
        awareness = min(config.maxAwareness - 1, awareness + max(0, delta))
        guard let m = members[p.target.nodeID], m.state == .alive else { return }
        applyUpdate(.suspect(m.entry.peer, incarnation: m.incarnation, accuser: myTag), from: nil, now: now, into: &out)
    }

    mutating func gotAck(_ seq: UInt32, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        if var p = probe, p.seq == seq {
            if !p.acked {
                p.acked = true
                probe = p
                awareness = max(0, awareness - 1)
                if from.nodeID == p.target.nodeID { noteRTT(from.nodeID, now - p.sentAt) }
            }
            return
        }
        if let r = relays[seq] {
            relays[seq] = nil
            relayOrder.removeAll { $0 == seq }
            send(.ack(seq: r.seq, updates: []), to: .peer(r.requester), into: &out)
            return
        }
        if let s = sidePings[seq] {
            sidePings[seq] = nil
            sidePingOrder.removeAll { $0 == seq }
            if let t = s.target {
                if t == from.nodeID { noteRTT(t, now - s.sentAt) }
            } else {
                // A beacon's sender, now known by key: a standby peer with a measured distance.
                ensureMember(from, now: now, into: &out)
                noteRTT(from.nodeID, now - s.sentAt)
                integratePassive([from], replacing: [])
            }
            return
        }
        counters.drop(.unknownSequence)
    }

    mutating func relayProbe(seq: UInt32, target: PeerEntry, requester: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard target.nodeID != me.nodeID else {
            send(.ack(seq: seq, updates: []), to: .peer(requester), into: &out)
            return
        }
        guard relayOrder.count < 64 else { counters.drop(.exchangeBusy); return }
        let mine = takeSeq()
        // Answer with a nack a little before the requester gives up, so it learns its own link works.
        let wait = config.probeTimeout.nanoseconds * 8 / 10 * healthMultiplier
        relays[mine] = Relay(requester: requester, seq: seq, deadline: now + .nanoseconds(wait))
        relayOrder.append(mine)
        send(.ping(seq: mine, updates: []), to: .peer(target), into: &out)
    }

    mutating func expireRelays(now: Instant, into out: inout [GossipOutput]) {
        guard !relayOrder.isEmpty else { return }
        var kept: [UInt32] = []
        for s in relayOrder {
            guard let r = relays[s] else { continue }
            if now >= r.deadline {
                relays[s] = nil
                send(.nack(seq: r.seq), to: .peer(r.requester), into: &out)
            } else {
                kept.append(s)
            }
        }
        relayOrder = kept
    }
}
