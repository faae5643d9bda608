import Foundation
import MeshCore

/// Applying membership updates: SWIM's precedence rules, Lifeguard's suspicion with independent
/// confirmations, incarnation refutation, and culls that nothing overrides.
extension GossipCore {
    mutating func applyAll(_ updates: [MemberUpdate], from: PeerEntry?, now: Instant, into out: inout [GossipOutput]) {
        for u in updates { _ = applyUpdate(u, from: from, now: now, into: &out) }
    }

    /// Returns true when the update changed what we know (and was queued for further gossip).
    @discardableResult
    mutating func applyUpdate(_ u: MemberUpdate, from: PeerEntry?, now: Instant, into out: inout [GossipOutput]) -> Bool {
        if case let .cull(c) = u { return applyCull(c, now: now, into: &out) }
        let id = u.subject
        if culls[id] != nil { return false }
        if id == me.nodeID { return aboutMe(u, from: from, now: now, into: &out) }
        // Most piggybacked updates are old news: refused from the row, before a member is built
        // (the same tests as the cases below, which change nothing when they refuse).
        if let v = members.versions(id) {
            switch u {
            case let .alive(_, inc, av):
                let newer = inc > v.incarnation
                let sameButNewerAttributes = inc == v.incarnation && av > v.attributeVersion && (v.state == .alive || v.state == .suspect)
                if !newer && !sameButNewerAttributes { return false }
            case let .suspect(_, inc, _) where inc < v.incarnation || !(v.state == .alive || v.state == .suspect):
                return false
            default:
                break
            }
        }
        guard var m = members[id] else {
            // Only an alive update introduces a member: the others carry no address.
            guard case let .alive(entry, inc, av) = u else { return false }
            guard members.count < config.maxMembers else { counters.drop(.tableFull); return false }
            var e = entry
            // The sender's own announcement: the address it was heard from beats the one it claims.
            if let from, from.nodeID == id { e.address = from.address }
            members[e.nodeID] = GossipMember(entry: e, state: .alive, incarnation: inc, attributeVersion: av, stateSince: now)
            out.append(.event(.memberJoined(id, e.address)))
            // A member first heard of in a catch-up delta (see `applyDelta`) is not gossiped on.
            if !catchingUp { queue.enqueue(.alive(e, incarnation: inc, attributeVersion: av)) }
            pushNews(.alive(e, incarnation: inc, attributeVersion: av), except: from, into: &out)
            maybeFetchAttributes(id, into: &out)
            return true
        }
        switch u {
        case let .alive(entry, inc, av):
            let newer = inc > m.incarnation
            let sameButNewerAttributes = inc == m.incarnation && av > m.attributeVersion && (m.state == .alive || m.state == .suspect)
            guard newer || sameButNewerAttributes else { return false }
            var address = entry.address
            if let from, from.nodeID == id { address = from.address }
            if address != m.entry.address {
                m.entry.address = address
                out.append(.event(.memberAddressChanged(id, address)))
            }
            let refutes = newer && m.state != .alive
            m.incarnation = inc
            m.attributeVersion = max(m.attributeVersion, av)
            members[id] = m
            if m.state != .alive { setState(id, .alive, incarnation: inc, now: now, into: &out) }
            queue.enqueue(.alive(m.entry, incarnation: inc, attributeVersion: m.attributeVersion))
            // A refutation of what we held (suspect, dead) races the verdict: push it too.
            if refutes { pushNews(.alive(m.entry, incarnation: inc, attributeVersion: m.attributeVersion), except: from, into: &out) }
            maybeFetchAttributes(id, into: &out)
            return true
        case let .suspect(_, inc, accuser):
            switch m.state {
            case .alive where inc >= m.incarnation:
                m.incarnation = inc
                members[id] = m
                setState(id, .suspect, incarnation: inc, now: now, into: &out)
                suspicions[id] = Suspicion(start: now, accusers: [accuser], deadline: now + suspicionTimeout(confirmations: 0, accused: accuser == myTag))
                suspects.append(id)
                if accuser != myTag, inActive(id) || pingedUsLately(id, now: now), !priorityProbes.contains(id) {
                    // A neighbour of ours (or a member that holds us as its neighbour, see
                    // `notePing`) is suspected elsewhere: check it ourselves next.
                    priorityProbes.append(id)
                    if probe?.acked ?? true, let t = nextProbe, t > now + .milliseconds(100) { nextProbe = now + .milliseconds(100) }
                }
                queue.enqueue(.suspect(m.entry.peer, incarnation: inc, accuser: accuser))
                return true
            case .suspect where inc == m.incarnation:
                guard var s = suspicions[id], !s.accusers.contains(accuser) else { return false }
                s.accusers.append(accuser)
                // Lifeguard: each independent accuser shortens the wait, from max towards min.
                s.deadline = max(now, s.start + suspicionTimeout(confirmations: s.accusers.count - 1, accused: s.accusers.contains(myTag)))
                suspicions[id] = s
                queue.enqueue(.suspect(m.entry.peer, incarnation: inc, accuser: accuser))
                return true
            case .suspect where inc > m.incarnation:
                m.incarnation = inc
                members[id] = m
                suspicions[id] = Suspicion(start: now, accusers: [accuser], deadline: now + suspicionTimeout(confirmations: 0, accused: accuser == myTag))
                queue.enqueue(.suspect(m.entry.peer, incarnation: inc, accuser: accuser))
                return true
            default:
                return false
            }
        case let .dead(p, inc):
            guard m.state == .alive || m.state == .suspect, inc >= m.incarnation else {
                if m.state == .left || m.state == .dead, inc > m.incarnation {
                    members[id]!.incarnation = inc
                }
                return false
            }
            let heardSuspicion = m.state == .suspect
            members[id]!.incarnation = inc
            setState(id, .dead, incarnation: inc, now: now, into: &out)
            queue.enqueue(.dead(m.entry.peer, incarnation: inc))
            // Only the verdict that ends a suspicion we heard is pushed: a `dead` about a member we
            // hold alive is old news from elsewhere (a healed partition's anti-entropy) and must
            // not outrun the member's refutation, which travels at the queue's pace.
            if heardSuspicion { pushVerdict(.dead(p, incarnation: inc), except: from, into: &out) }
            return true
        case let .left(p, inc):
            guard m.state != .left, inc >= m.incarnation else { return false }
            members[id]!.incarnation = inc
            setState(id, .left, incarnation: inc, now: now, into: &out)
            queue.enqueue(.left(m.entry.peer, incarnation: inc))
            pushVerdict(.left(p, incarnation: inc), except: from, into: &out)
            return true
        case .cull:
            return false
        }
    }

    /// Someone talks about us. Suspicion or death at our incarnation or above is refuted with a
    /// higher one; a stale claim gets our current announcement so the holder catches up.
    mutating func aboutMe(_ u: MemberUpdate, from: PeerEntry?, now: Instant, into out: inout [GossipOutput]) -> Bool {
        guard !hasLeft else { return false }
        switch u {
        case let .alive(_, inc, _):
            if inc > incarnation {
                // An announcement from a previous life of this node: jump past it.
                incarnation = inc &+ 1
                queue.enqueue(selfAlive)
                counters.refutations += 1
                out.append(.event(.refuted(incarnation: incarnation)))
                return true
            }
            return false
        case let .suspect(_, inc, _), let .dead(_, inc), let .left(_, inc):
            let refuting = inc >= incarnation
            if refuting {
                incarnation = inc &+ 1
                counters.refutations += 1
                // Lifeguard: being suspected hints that our own processing or links are slow.
                awareness = min(awareness + 1, config.maxAwareness - 1)
                out.append(.event(.refuted(incarnation: incarnation)))
                pushNews(selfAlive, except: from, into: &out)
            }
            queue.enqueue(selfAlive)
            // The peer that told us believes it now: answer it directly, not only by gossip. Twice:
            // the teller is usually an accuser, and the one copy lost (5 % loss) left a starved
            // node's accuser to declare it dead (`gossip-starved`, 200 nodes, seed 1, 288 s).
            if let from {
                send(.gossip(updates: [selfAlive]), to: .peer(from), into: &out)
                if refuting { send(.gossip(updates: [selfAlive]), to: .peer(from), into: &out) }
            }
            return true
        case .cull:
            return false
        }
    }

    /// Tells a culled node why it is refused: its cull, which it obeys by leaving the mesh. The
    /// driver, which refuses the culled node's plaintext, calls this at a bounded rate.
    public mutating func tellCulled(_ peer: PeerEntry) -> [GossipOutput] {
        guard let c = culls[peer.nodeID] else { return [] }
        var out: [GossipOutput] = []
        send(.gossip(updates: [.cull(c)]), to: .peer(peer), into: &out)
        return out
    }

    mutating func applyCull(_ c: CullRecord, now: Instant, into out: inout [GossipOutput]) -> Bool {
        guard culls[c.subject] == nil else { return false }
        if let reason = c.verify(network: config.network, adminKeys: config.adminKeys) {
            counters.drop(reason)
            return false
        }
        guard culls.count < config.maxCulls else { counters.drop(.cullTableFull); return false }
        culls[c.subject] = c
        cullOrder.append(c.subject)
        queue.enqueue(.cull(c))
        if c.subject == me.nodeID {
            // We were culled: stop taking part. The node refuses to run on with this identity.
            hasLeft = true
            out.append(.event(.memberStateChanged(me.nodeID, from: .alive, to: .culled, incarnation: incarnation)))
            return true
        }
        if members[c.subject] != nil {
            setState(c.subject, .culled, incarnation: members[c.subject]!.incarnation, now: now, into: &out)
        }
        passiveView.removeAll { $0.nodeID == c.subject }
        pushVerdict(.cull(c), except: nil, into: &out)
        return true
    }

    /// How an accuser is named in a suspicion: the first 8 bytes of its node id.
    static func accuserTag(_ id: NodeID) -> UInt64 {
        id.leadingWord
    }

    /// Lifeguard's dynamic suspicion timeout: `max − (max − min) · log(c + 1) / log(k + 1)`.
    /// A node that only heard of the suspicion (it did not probe the member itself) waits `max`
    /// longer: the accusers' `dead` normally reaches it first, and a node that hears little (a
    /// starved one) gets time to hear the refutation instead of declaring a healthy peer dead.
    func suspicionTimeout(confirmations c: Int, accused: Bool) -> Duration {
        let k = max(1, config.suspicionConfirmations)
        let frac = c <= 0 ? 0 : min(1, log(Double(c + 1)) / log(Double(k + 1)))
        let maxN = Double(paced(config.suspicionMax).nanoseconds)
        let minN = Double(paced(config.suspicionMin).nanoseconds)
        let grace = accused ? 0 : maxN
        return .nanoseconds(Int64(max(minN, maxN - (maxN - minN) * frac) + grace))
    }

    mutating func setState(_ id: NodeID, _ state: MemberState, incarnation inc: UInt32, now: Instant, into out: inout [GossipOutput]) {
        guard var m = members[id], m.state != state else { return }
        let old = m.state
        m.state = state
        m.stateSince = now
        if state != .suspect {
            suspicions[id] = nil
            suspects.removeAll { $0 == id }
        }
        if old == .dead { deadMembers.removeAll { $0 == id } }
        if state == .dead { deadMembers.append(id) }
        m.lastToldState = nil
        members[id] = m
        out.append(.event(.memberStateChanged(id, from: old, to: state, incarnation: inc)))
        switch state {
        case .dead, .left, .culled:
            _ = removeFromActive(id, into: &out, notify: state != .dead)
            passiveView.removeAll { $0.nodeID == id }
        case .alive:
            if old == .dead || old == .left {
                // Back from the dead (a healed partition or a restart): offer it a place.
                integratePassive([m.entry], replacing: [])
            }
        case .suspect:
            counters.suspicionsRaised += 1
        }
    }

    mutating func expireSuspicions(now: Instant, into out: inout [GossipOutput]) {
        guard !suspects.isEmpty else { return }
        for id in suspects {
            guard let m = members[id], var s = suspicions[id], now >= s.deadline else { continue }
            let accused = s.accusers.contains(myTag)
            if let heard = m.lastHeard, heard > (s.evidenceFrom ?? s.start) {
                // Evidence of life: the suspect itself spoke to us since the suspicion began (a
                // late answer to our probe, its own probe of us). A crashed member cannot; a
                // starved one answers late. Ask it to refute, and wait as long as it keeps talking.
                s.evidenceFrom = now
                s.deadline = now + paced(config.suspicionMin)
                suspicions[id] = s
                counters.deathsAverted += 1
                send(.gossip(updates: [.suspect(m.entry.peer, incarnation: m.incarnation, accuser: myTag)]), to: .peer(m.entry), into: &out)
                continue
            }
            if !s.extended, awareness > 0 || !accused || s.accusers.count == 1 {
                // Our own health is in doubt, and so is our accusation; or we only heard of it and
                // the accusers' verdict never came; or we are the only accuser (nobody confirmed,
                // and a lossy accuser's suspicion may never have reached the suspect): ask the
                // suspect ourselves and give its refutation another full period to reach us.
                s.extended = true
                // Hearsay of an unconfirmed suspicion gets three periods: the suspect is usually
                // not a neighbour, so our question needs a handshake first, and between two
                // starved nodes (input up to 1 s late each way) handshake and answer took 5 s
                // (`gossip-starved`, 200 nodes, seed 1, 498 s: node 169 declared node 22 dead
                // 0.3 s before its answer came). A crash ends sooner: its accuser's verdict is pushed.
                let hearsay = !accused && s.accusers.count == 1
                s.deadline = now + paced(config.suspicionMax) * (hearsay ? 3 : 1)
                s.asked += 1
                suspicions[id] = s
                send(.gossip(updates: [.suspect(m.entry.peer, incarnation: m.incarnation, accuser: myTag)]), to: .peer(m.entry), into: &out)
                continue
            }
            // Chances to refute, not seconds (LinkHealth.swift): every accuser's failed probe and
            // every question of ours the suspect left unanswered is one; we declare only when
            // losing all of them by chance is unlikely on the links we measure. Hearsay also needs
            // two questions of our own: other accusers may sit behind a bad link themselves.
            if s.accusers.count + s.asked < evidenceNeeded || (!accused && s.asked < 2) {
                s.asked += 1
                s.deadline = now + .nanoseconds(paced(accused ? config.suspicionMin : config.suspicionMax).nanoseconds * healthMultiplier)
                suspicions[id] = s
                counters.suspicionsProlonged += 1
                send(.gossip(updates: [.suspect(m.entry.peer, incarnation: m.incarnation, accuser: myTag)]), to: .peer(m.entry), into: &out)
                continue
            }
            setState(id, .dead, incarnation: m.incarnation, now: now, into: &out)
            queue.enqueue(.dead(m.entry.peer, incarnation: m.incarnation))
            pushVerdict(.dead(m.entry.peer, incarnation: m.incarnation), except: nil, into: &out)
        }
    }

    /// A verdict (the `dead` that ends a suspicion, `left`, a cull) goes to every active neighbour
    /// at once, not only with the next gossip rounds: each node forwards it the moment it first
    /// learns it, so it crosses the overlay in its diameter times the link latency instead of the
    /// diameter in gossip rounds. Nodes that heard only the suspicion would otherwise wait for
    /// their own, longer timers (6.3 s to reach all of 1,000 nodes). Verdicts are rare and each
    /// node forwards one once: one datagram per neighbour per verdict; the queue still
    /// retransmits it against loss.
    ///
    /// A `left` or a cull goes twice to each neighbour. They are rare (a graceful leave, an admin's
    /// act), and they leave the push at the worst moment for the queue: after a mass failure the
    /// queue's newest-first order serves the stream of newer suspicions and deaths first, and a
    /// node whose live neighbours' pushes were all lost (loss, some neighbours crashed) would wait
    /// seconds for it. Deaths come by the thousand in a mass failure and go once.
    mutating func pushVerdict(_ u: MemberUpdate, except: PeerEntry?, into out: inout [GossipOutput]) {
        guard pushesVerdicts else { return }
        let copies: Int
        switch u {
        case .left, .cull: copies = 2
        default: copies = 1
        }
        for p in activeView where p.nodeID != except?.nodeID && p.nodeID != u.subject {
            for _ in 0..<copies { send(.gossip(updates: [u]), to: .peer(p), into: &out) }
        }
    }

    /// News of a member (its first `alive`, or a higher incarnation refuting what we held) goes at
    /// once to every active neighbour but the sender: Plumtree's eager push over the HyParView
    /// overlay. Only first-time news is forwarded, so each node sends it once and duplicates die;
    /// under 10 % loss the gossip rounds alone left the last nodes of a mesh tens of rounds behind.
    /// `newsPushBudget` per gossip interval bounds a join wave; the rest rides the queue as before.
    mutating func pushNews(_ u: MemberUpdate, except: PeerEntry?, into out: inout [GossipOutput]) {
        guard pushesVerdicts, newsBudget > 0, !activeView.isEmpty else { return }
        newsBudget -= 1
        counters.newsPushed += 1
        pendingNews.append((u, except?.nodeID))
    }

    /// The news of one input leaves together: one datagram per neighbour, not one per item (a
    /// datagram of joins would otherwise fan out as a datagram per join per neighbour).
    ///
    /// Each update is encoded once and its bytes spliced into every neighbour's datagram (the
    /// datagrams are those `GossipWire.encode(.gossip(updates:))` makes of each batch).
    mutating func flushNews(into out: inout [GossipOutput]) {
        guard !pendingNews.isEmpty else { return }
        var news: [(update: MemberUpdate, except: NodeID?)] = []
        swap(&news, &pendingNews)
        var w = ByteWriter(capacity: news.reduce(0) { $0 + $1.update.encodedLength })
        var ends: [Int] = []
        ends.reserveCapacity(news.count)
        for n in news {
            GossipWire.writeUpdate(n.update, &w)
            ends.append(w.bytes.count)
        }
        let encoded = w.bytes
        let budget = GossipWire.maxDatagram - GossipWire.headerLength - 1
        var batch: [UInt8] = []
        batch.reserveCapacity(min(budget, encoded.count))
        for p in activeView {
            var count = 0
            for k in news.indices where p.nodeID != news[k].except && p.nodeID != news[k].update.subject {
                let start = k == 0 ? 0 : ends[k - 1]
                let length = ends[k] - start
                if count > 0, batch.count + length > budget || count >= GossipWire.maxUpdates {
                    sendEncoded(GossipWire.encodeGossip(count: count, encodedUpdates: batch), to: .peer(p), into: &out)
                    batch.removeAll(keepingCapacity: true)
                    count = 0
                }
                batch.append(contentsOf: encoded[start..<ends[k]])
                count += 1
            }
            if count > 0 {
                sendEncoded(GossipWire.encodeGossip(count: count, encodedUpdates: batch), to: .peer(p), into: &out)
                batch.removeAll(keepingCapacity: true)
            }
        }
        // Give the buffer back for the next input's news.
        news.removeAll(keepingCapacity: true)
        pendingNews = news
    }

    /// Dead members' addresses are retried, one per interval, with the news that we think they are
    /// dead: a node on the far side of a healed partition refutes and the two sides merge again.
    mutating func retryDead(now: Instant, into out: inout [GossipOutput]) {
        let n = deadMembers.count
        guard n > 0 else { return }
        var examined = 0
        while examined < n {
            if deadRetryIndex >= n { deadRetryIndex = 0 }
            let id = deadMembers[deadRetryIndex]
            deadRetryIndex += 1
            examined += 1
            guard let m = members[id], m.state == .dead else { continue }
            let seq = takeSeq()
            sidePings[seq] = (id, now, true)
            sidePingOrder.append(seq)
            trimSidePings()
            send(.ping(seq: seq, updates: [.dead(m.entry.peer, incarnation: m.incarnation)]), to: .peer(m.entry), into: &out)
            return
        }
    }

    mutating func housekeeping(now: Instant, into out: inout [GossipOutput]) {
        var forget = [Bool](repeating: false, count: members.count)
        var forgotten: [NodeID] = []
        for (r, row) in members.rows.enumerated() where row.state == .dead || row.state == .left {
            guard now - Instant(nanoseconds: row.stateSinceNanos) >= config.forgetAfter else { continue }
            forget[r] = true
            forgotten.append(members.nodeID(atRow: r))
        }
        if !forgotten.isEmpty {
            members.removeRows { forget[$0] }
            deadMembers.removeAll { forgotten.contains($0) }
            for id in forgotten { out.append(.event(.memberForgotten(id))) }
        }
        deadRetryIndex = 0
        servedExchanges.removeAll { now - $0.since >= config.exchangeTimeout }
        outgoingExchanges.removeAll { now - $0.since >= config.exchangeTimeout }
    }

    mutating func maybeFetchAttributes(_ id: NodeID, into out: inout [GossipOutput]) {
        guard config.fetchNeighbourAttributes, var m = members[id], m.attributeVersion > m.heldAttributeVersion,
              m.attributeVersion > m.requestedAttributeVersion,
              activeView.contains(where: { $0.nodeID == id }) || passiveView.contains(where: { $0.nodeID == id }) else { return }
        m.requestedAttributeVersion = m.attributeVersion
        members[id] = m
        send(.attributesRequest(version: m.attributeVersion), to: .peer(m.entry), into: &out)
    }

    /// Asks up to `attributeFetchesPerRound` alive members whose announced attribute version is
    /// newer than what we hold for their attributes: neighbours' are fetched as soon as they
    /// change (`maybeFetchAttributes`), everyone else's only here, so a newcomer, which learns
    /// most members from anti-entropy deltas, ends up holding every member's current attributes
    /// rather than only its seed's (issue 25). At most 64 rows are looked at per round, from
    /// where the last round stopped; a fetch unanswered after `attributeFetchRetry` is asked again.
    mutating func fetchLaggingAttributes(now: Instant, into out: inout [GossipOutput]) {
        let quota = config.attributeFetchesPerRound
        guard quota > 0, started, !hasLeft, !members.isEmpty else { return }
        for (id, at) in attributeFetchesSent where now - at >= config.attributeFetchRetry * 4 {
            attributeFetchesSent[id] = nil  // long unanswered, or the member went: forget it
        }
        let rows = members.count
        var sent = 0
        var looked = 0
        var r = attributeCursor < rows ? attributeCursor : 0
        while looked < min(rows, 64), sent < quota {
            defer { r = (r + 1) % rows; looked += 1 }
            let row = members.rows[r]
            guard row.state == .alive || row.state == .suspect, row.attributeVersion > 0 else { continue }
            let id = members.nodeID(atRow: r)
            guard var m = members[id], m.attributeVersion > m.heldAttributeVersion else {
                attributeFetchesSent[id] = nil
                continue
            }
            if m.attributeVersion <= m.requestedAttributeVersion {
                // Asked already (here or as a neighbour): again only once the answer is late.
                guard let at = attributeFetchesSent[id] else { attributeFetchesSent[id] = now; continue }
                guard now - at >= config.attributeFetchRetry else { continue }
            }
            m.requestedAttributeVersion = m.attributeVersion
            members[id] = m
            attributeFetchesSent[id] = now
            send(.attributesRequest(version: m.attributeVersion), to: .peer(m.entry), into: &out)
            sent += 1
        }
        attributeCursor = r
    }

    /// Ensures a view peer has a member row, so probing it has an incarnation to suspect.
    mutating func ensureMember(_ e: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard !members.contains(e.nodeID), e.nodeID != me.nodeID, members.count < config.maxMembers else { return }
        members[e.nodeID] = GossipMember(entry: e, state: .alive, incarnation: 0, attributeVersion: 0, stateSince: now)
        out.append(.event(.memberJoined(e.nodeID, e.address)))
    }

    mutating func takeSeq() -> UInt32 {
        defer { nextSeq &+= 1 }
        return nextSeq
    }

    mutating func trimSidePings() {
        while sidePingOrder.count > 64 {
            sidePings[sidePingOrder.removeFirst()] = nil
        }
    }
}
