import MeshCore

/// SWIM probing over the active view, with Lifeguard's local health multiplier: a node whose own
/// probes keep failing (or whose indirect probers do not even answer with a nack) stretches its
/// timeouts instead of accusing healthy peers.
extension GossipCore {
    var healthMultiplier: Int64 { Int64(awareness + 1) }

    mutating func probeRound(now: Instant, into out: inout [GossipOutput]) {
        if let p = probe, !p.acked {
            // Keep listening: a late answer still teaches the peer's round-trip time, so the next
            // probe waits long enough for a slow (starved or distant) peer.
            sidePings[p.seq] = (p.target.nodeID, p.sentAt, false)
            sidePingOrder.append(p.seq)
            trimSidePings()
            probeFailed(p, now: now, into: &out)
        }
        probe = nil
        nextProbe = now + .nanoseconds(paced(config.probeInterval).nanoseconds * healthMultiplier)
        let wideTarget = wideProbeTarget(now: now)
        guard let target = wideTarget ?? nextProbeTarget(now: now) else {
            measureDistance(now: now, into: &out)
            return
        }
        let seq = takeSeq()
        // A wide probe's peer often has no session yet: allow for the handshake's round trip.
        let widening: Int64 = wideTarget == nil ? 1 : 2
        let timeout = probeTimeout(for: target.nodeID) * widening
        // A slow peer (long measured round trip) gets a longer period: its answer is not a failure.
        let end = max(nextProbe!, now + .nanoseconds(2 * timeout))
        let usual = max(nextProbe!, now + .nanoseconds(2 * paced(config.probeTimeout).nanoseconds * healthMultiplier * widening))
        nextProbe = end
        probe = Probe(target: target, seq: seq, sentAt: now, indirectAt: now + .nanoseconds(timeout), endAt: end, pacedEnd: usual,
                      wide: wideTarget != nil)
        counters.probes += 1
        if inActive(target.nodeID) {
            let spare = GossipWire.maxDatagram - GossipWire.headerLength - 4 - 1
            send(.ping(seq: seq, updates: piggyback(spare: spare)), to: .peer(target), into: &out)
        } else {
            // Not our neighbour (a member that probed us, a wide probe): asked to answer for itself,
            // so that it does not take us for a neighbour that probes it (see `notePing`).
            send(.pingRequest(seq: seq, target: target), to: .peer(target), into: &out)
        }
        // In `nearest` mode, also learn the round-trip time of one more peer per round.
        if config.modes.contains(.nearest) { measureDistance(now: now, into: &out) }
    }

    /// The direct probe's timeout: the configured one stretched by local health, and at least three
    /// smoothed round trips to this peer, but never longer than Lifeguard's own longest timeout
    /// (`probeTimeout × maxAwareness`): the period is twice the timeout, and a prober whose
    /// timeout grew without bound stopped probing its whole active view (see `noteRTT`).
    func probeTimeout(for id: NodeID) -> Int64 {
        var timeout = paced(config.probeTimeout).nanoseconds * healthMultiplier
        if let rtt = members[id]?.rtt { timeout = max(timeout, min(3 * rtt.nanoseconds, longestProbeTimeout)) }
        return timeout
    }

    var longestProbeTimeout: Int64 { paced(config.probeTimeout).nanoseconds * Int64(config.maxAwareness) }

    /// The longest answer that is still taken for a round trip: Lifeguard's longest probe period
    /// (`probeInterval × maxAwareness`, 4 s by default). A later answer waited for something else.
    var longestRoundTrip: Int64 { paced(config.probeInterval).nanoseconds * Int64(config.maxAwareness) }

    /// The neighbour (active view, or a member that probed us lately: it holds us as its
    /// neighbour, see `notePing`) we last heard from or probed longest ago; members that others
    /// suspect come first, so confirmations (or refutations) come quickly. A crashed neighbour
    /// stops talking while the others go on pinging us, answering our probes and gossiping, so its
    /// turn comes within a period or two of its crash. A reshuffled round-robin let a neighbour
    /// wait up to two cycles (about 6 s) for its turn: the probe phase that was left of the
    /// crash-detection tail (Docs/gossip.md, "The crash-detection tail, found", mechanism 4).
    /// Still bounded like SWIM's round-robin: a probe sends its target to the back whether or not
    /// it is answered, so two neighbours that crash together are both probed within two periods.
    mutating func nextProbeTarget(now: Instant) -> PeerEntry? {
        while let id = priorityProbes.first {
            priorityProbes.removeFirst()
            guard let m = members[id], m.state == .suspect else { continue }
            noteProbed(id, now: now)
            return activeView.first(where: { $0.nodeID == id }) ?? m.entry
        }
        var best: PeerEntry?
        var oldest = Int64.max
        func consider(_ e: PeerEntry) {
            guard let m = members[e.nodeID], m.state == .alive || m.state == .suspect else { return }
            let known = max(m.lastHeardNanos, probedAt[e.nodeID] ?? .min)
            guard known < oldest else { return }
            best = e
            oldest = known
        }
        for e in activeView { consider(e) }
        for id in reverseNeighbours(now: now) { if let m = members[id] { consider(m.entry) } }
        if let b = best { noteProbed(b.nodeID, now: now) }
        return best
    }

    mutating func noteProbed(_ id: NodeID, now: Instant) {
        if probedAt.count >= 64 {
            let cutoff = now.nanoseconds - Self.reverseNeighbourWindow.nanoseconds
            probedAt = probedAt.filter { $0.value >= cutoff }
        }
        probedAt[id] = now.nanoseconds
    }

    /// A `ping` is a neighbour's probe: the core sends every other ping-like question (a helper's
    /// relayed probe, a probe of a member outside the active view, a distance measurement) as a
    /// `ping-req` naming the receiver itself, which it acks at once; only dead-member retries and
    /// pings to a beacon's address are still pings. So a member that pings us holds us in its
    /// active view. Views
    /// are meant to be symmetric, but datagrams reorder and get lost: a `disconnect` overtaken by
    /// the `neighbor` request its sender sent right after it, or a lost `disconnect`, leaves a link
    /// that only one side holds; and a neighbour that crashed is evicted like any other when a
    /// join needs its place, before anyone noticed the crash. Only the members holding a node in
    /// their active view probe it, so such a node may be probed by few or none: when it crashes,
    /// its one prober is a sole accuser that nobody confirms (a slow verdict), or evicts it before
    /// anyone suspects it (no verdict at all). So a member that pinged us within
    /// `reverseNeighbourWindow` is probed by us like a neighbour (`nextProbeTarget`), and checked
    /// at once when someone else suspects it.
    mutating func notePing(from id: NodeID, now: Instant) {
        // Neighbours too: one we drop (evicted for a newcomer, often a crashed one nobody noticed
        // yet) is probed on for the rest of the window.
        pingedBy.removeAll { $0.peer == id || now - $0.at >= Self.reverseNeighbourWindow }
        pingedBy.append((id, now))
        if pingedBy.count > Self.reverseNeighbourLimit { pingedBy.removeFirst() }
    }

    /// The sender of a `ping` holds us in its active view (see `notePing`); if we do not hold it,
    /// the link is one-sided: it gossips and pushes verdicts to us, we send it nothing but acks,
    /// so it hears news only from the acks' few piggybacked updates (`gossip-churn` at 1,000
    /// nodes, seed 1: node 430's four neighbours all held it one-sided; the `dead` of every crash
    /// from 60 s to 105 s reached it last, up to 8.8 s after the crash). We take it in when we
    /// have room, else tell it `disconnect`, so it drops the link and repairs its view. Not a
    /// member whose state changed lately (typically: our probe failed, we dropped it, it refuted):
    /// taken back in, a CPU-starved one fails the next probe again, round after round (in
    /// `gossip-starved` at 200 nodes the mean traffic fell from 1,296 to 1,251 B/s without that
    /// loop); it is told `disconnect` instead.
    mutating func keepLinkSymmetric(with p: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft, !inActive(p.nodeID), let m = members[p.nodeID], m.state == .alive else { return }
        if activeView.count < activeCapacity, now - m.stateSince >= Self.settledFor {
            pendingNeighbours.removeAll { $0.peer == p.nodeID }
            addToActive(p, now: now, into: &out)
        } else {
            send(.disconnect, to: .peer(p), into: &out)
            // It will drop us, alive: no reason to probe it back.
            pingedBy.removeAll { $0.peer == p.nodeID }
        }
    }

    static let settledFor: Duration = .seconds(30)

    func pingedUsLately(_ id: NodeID, now: Instant) -> Bool {
        pingedBy.contains { $0.peer == id && now - $0.at < Self.reverseNeighbourWindow }
    }

    /// The members that probed us within the window and are not in our active view, oldest first.
    func reverseNeighbours(now: Instant) -> [NodeID] {
        pingedBy.compactMap { p in now - p.at < Self.reverseNeighbourWindow && !inActive(p.peer) ? p.peer : nil }
    }

    /// A node with five neighbours probes each about every 3 s (up to 6 s apart across two
    /// reshuffled cycles); the window leaves us time to probe a member after its last ping.
    static let reverseNeighbourWindow: Duration = .seconds(15)
    static let reverseNeighbourLimit = 32

    /// Once per `wideProbeInterval`, a random member outside the active view instead of a
    /// neighbour: only neighbours probe a member, so one whose neighbours all crashed with it (a
    /// mass crash) would never be suspected and would stay alive in every table. The failure goes down the
    /// same SWIM path (indirect probes, suspicion, buddy message). Rare on purpose: a member we
    /// have no session with costs a handshake.
    mutating func wideProbeTarget(now: Instant) -> PeerEntry? {
        guard let t = nextWideProbe, now >= t, !members.isEmpty else { return nil }
        nextWideProbe = now + config.wideProbeInterval
        if let id = wideRetry {
            if let m = members[id], m.state == .alive, !inActive(id) {
                counters.wideProbes += 1
                return m.entry
            }
            wideRetry = nil
        }
        for _ in 0..<4 {
            let r = Int(rng.next() % UInt64(members.count))
            guard members.rows[r].state == .alive else { continue }
            let e = members.entry(atRow: r)
            guard e.nodeID != me.nodeID, !inActive(e.nodeID) else { continue }
            counters.wideProbes += 1
            return e
        }
        return nil
    }

    /// A distance measurement (a `ping-req` naming its receiver: no probe, no suspicion): an active
    /// neighbour not measured yet first, else a random passive peer. Probes go to the neighbour
    /// heard from longest ago, so one that keeps talking to us may never be probed, and `nearest`
    /// ranks neighbours by round trip.
    mutating func measureDistance(now: Instant, into out: inout [GossipOutput]) {
        let unmeasured = activeView.first { members[$0.nodeID].map { $0.rtt == nil } ?? false }
        guard let p = unmeasured ?? randomSample(passiveView, count: 1).first else { return }
        let seq = takeSeq()
        sidePings[seq] = (p.nodeID, now, false)
        sidePingOrder.append(seq)
        trimSidePings()
        send(.pingRequest(seq: seq, target: p), to: .peer(p), into: &out)
    }

    mutating func sendIndirectProbes(now: Instant, into out: inout [GossipOutput]) {
        guard var p = probe else { return }
        p.indirectSent = true
        // Active neighbours first (sessions exist to them); standby peers only to make up the count.
        var helpers = randomSample(activeView.filter { $0.nodeID != p.target.nodeID }, count: config.indirectChecks)
        if helpers.count < config.indirectChecks {
            helpers += randomSample(passiveView.filter { $0.nodeID != p.target.nodeID }, count: config.indirectChecks - helpers.count)
        }
        for h in helpers {
            send(.pingRequest(seq: p.seq, target: p.target), to: .peer(h), into: &out)
            counters.indirectProbes += 1
        }
        // Ask the target again ourselves as well (memberlist's fallback ping), once, plus once for
        // every helper we lack: two nodes alone on a link losing 10 % each way failed a single
        // ping one time in five, a suspicion every few seconds; with five attempts, one in 4,000.
        let rePings = 1 + config.indirectChecks - helpers.count
        for _ in 0..<rePings {
            if inActive(p.target.nodeID) {
                send(.ping(seq: p.seq, updates: []), to: .peer(p.target), into: &out)
            } else {
                send(.pingRequest(seq: p.seq, target: p.target), to: .peer(p.target), into: &out)
            }
        }
        counters.rePings += UInt64(rePings)
        // Leave the helpers time to answer: the request's round trip, then a handshake and a ping
        // to the target (a helper far from us is likely far from it too). Without this, a lost
        // ack to a near neighbour sent through far helpers became a suspicion, and its refutation
        // a new incarnation gossiped to the whole mesh (most of the steady-state traffic).
        let targetRTT = members[p.target.nodeID]?.rtt?.nanoseconds ?? 0
        let window = helpers.map { h -> Int64 in
            // Unmeasured: the round trip the default timeout assumes (a third of it), so the
            // window stays the configured one.
            let rtt = members[h.nodeID]?.rtt?.nanoseconds ?? paced(config.probeTimeout).nanoseconds / 3
            return rtt + 2 * max(rtt, targetRTT)
        }.max() ?? 0
        if let end = nextProbe, end < now + .nanoseconds(window) { nextProbe = now + .nanoseconds(window) }
        // Only helpers heard from lately are expected to nack: after a mass failure the helpers
        // are dead too, and their silence says nothing about our own health.
        p.expectedNacks = helpers.filter { h in members[h.nodeID]?.lastHeard.map { now - $0 < .seconds(5) } ?? false }.count
        probe = p
    }

    mutating func probeFailed(_ p: Probe, now: Instant, into out: inout [GossipOutput]) {
        if p.wide {
            // A wide probe accuses only when a helper confirmed it (nack: the helper could not
            // reach the target either), and only at the second failure in a row: a first one is
            // often a handshake lost or late, or our own session to that member broken. Without
            // these, wide probes added false deaths (`partition-heal`, seed 4: 59) in the simulator.
            guard p.nacks > 0 else { return }
            if wideRetry != p.target.nodeID { wideRetry = p.target.nodeID; return }
            wideRetry = nil
        }
        if let heard = heardOutside[p.target.nodeID], heard > p.sentAt {
            // Its frames kept coming while our pings went unanswered (a transfer on a lossy link):
            // it is alive and the round trip was lost (`noteTraffic`).
            noteRoundTrip(lost: true)
            counters.probesExcusedByTraffic += 1
            return
        }
        // Counted once the target proves alive: a crashed member's silence is not loss. (Counting
        // a failure with no helper's nack at once made survivors of an 80 % crash, whose helpers
        // died too, wait for evidence that never came, and their overlay never re-formed.)
        noteUnansweredProbe(p.target.nodeID)
        // Lifeguard: missing nacks mean our own links or scheduling are the problem.
        awareness = min(config.maxAwareness - 1, awareness + max(0, p.expectedNacks - p.nacks))
        // HyParView repairs the overlay at once: a neighbour that fails a probe leaves the active
        // view (a passive peer is promoted next round); SWIM's suspicion decides its membership.
        // Only when we trust our own view of it: a helper confirmed (nack) or we are healthy. A
        // starved node would otherwise cut itself off from the gossip that refutes its suspicions.
        if p.nacks > 0 || awareness == 0 { removeFromActive(p.target.nodeID, into: &out, notify: true) }
        // Already suspect (we probed it because others suspect it): our failed probe is an
        // independent confirmation, which shortens everyone's timeout (Lifeguard). Without it the
        // first accuser waits out the longest timeout alone.
        guard let m = members[p.target.nodeID], m.state == .alive || m.state == .suspect else { return }
        // Alive again since the probe left (it refuted, or came back from the dead): the silence
        // was its last life's or its last incarnation's, not news.
        if m.state == .alive, m.stateSince > p.sentAt { return }
        let known = suspicions[p.target.nodeID]?.accusers ?? []
        guard m.state == .alive || !known.contains(myTag) else { return }
        let suspicion = MemberUpdate.suspect(m.entry.peer, incarnation: m.incarnation, accuser: myTag)
        applyUpdate(suspicion, from: nil, now: now, into: &out)
        // Buddy system: tell the suspect itself at once. If it is alive it refutes straight back
        // to us, well before our timeout, even when our own links are slow.
        send(.gossip(updates: [suspicion]), to: .peer(m.entry), into: &out)
        suspicions[p.target.nodeID]?.asked += 1
    }

    /// A helper could not reach our probe's target either. Only nacks for the probe in flight
    /// count, once per helper.
    mutating func gotNack(_ seq: UInt32, from: PeerEntry) {
        guard var p = probe, p.seq == seq else { counters.drop(.unknownSequence); return }
        let tag = Self.accuserTag(from.nodeID)
        guard !p.nackers.contains(tag) else { return }
        p.nacks += 1
        p.nackers.append(tag)
        probe = p
    }

    mutating func gotAck(_ seq: UInt32, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        if var p = probe, p.seq == seq {
            if !p.acked {
                p.acked = true
                probe = p
                awareness = max(0, awareness - 1)
                // One sample per probe, its first ping: answered in time, or lost (the target is
                // alive: it answered a re-ping, or a helper relayed its answer). The re-pings go
                // together, so which of them was answered says nothing more.
                if from.nodeID == p.target.nodeID {
                    noteRTT(from.nodeID, now - p.sentAt)
                    out.append(.event(.probeRoundTrip(from.nodeID, now - p.sentAt)))
                }
                noteRoundTrip(lost: from.nodeID != p.target.nodeID || now >= p.indirectAt)
                if p.wide, wideRetry == p.target.nodeID { wideRetry = nil }
                // The period was stretched to wait for a slow peer's answer; it came, so the round
                // keeps its usual pace and the other neighbours are not left unprobed meanwhile.
                if let t = nextProbe, t > p.pacedEnd { nextProbe = max(p.pacedEnd, now) }
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
                // A dead member's answer is no round trip: it came after the member restarted (or a
                // partition healed) and, usually, after the handshake that waited for it.
                if t == from.nodeID, !s.deadRetry { noteRTT(t, now - s.sentAt) }
                if s.deadRetry, t == from.nodeID, activeView.count < activeCapacity * 2 {
                    // A member we had declared dead answers: a healed partition. Link the two sides
                    // of the overlay through it at once (high priority: it must accept).
                    addToActive(from, now: now, into: &out)
                    send(.neighbor(priority: .high), to: .peer(from), into: &out)
                }
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
        let wait = max(paced(config.probeTimeout).nanoseconds * 8 / 10 * healthMultiplier,
                       min(3 * (members[target.nodeID]?.rtt?.nanoseconds ?? 0), longestProbeTimeout))
        // A helper often has no session to the target yet: its handshake and then the ping cost two
        // round trips, and the requester still listens for a while after our nack.
        relays[mine] = Relay(requester: requester, seq: seq, deadline: now + .nanoseconds(wait), forgetAt: now + .nanoseconds(3 * wait))
        relayOrder.append(mine)
        // Asked to answer for itself (a ping-req naming the receiver is acked at once): a plain ping
        // would make the target take us for a neighbour (`notePing`).
        send(.pingRequest(seq: mine, target: target), to: .peer(target), into: &out)
    }

    mutating func expireRelays(now: Instant, into out: inout [GossipOutput]) {
        guard !relayOrder.isEmpty else { return }
        var kept: [UInt32] = []
        for s in relayOrder {
            guard var r = relays[s] else { continue }
            if !r.nacked, now >= r.deadline {
                r.nacked = true
                relays[s] = r
                send(.nack(seq: r.seq), to: .peer(r.requester), into: &out)
            }
            if now >= r.forgetAt {
                relays[s] = nil
            } else {
                kept.append(s)
            }
        }
        relayOrder = kept
    }
}
