import MeshCore

/// HyParView partial views: a small symmetric active view (the peers we probe and gossip to) and a
/// larger passive view of standby peers, kept fresh by joins, forward-join random walks and shuffles.
extension GossipCore {
    var activeCapacity: Int { config.activeViewSize }
    var passiveCapacity: Int { config.isMaster ? config.passiveViewSize * 4 : config.passiveViewSize }
    var prefersNearest: Bool { config.modes.contains(.nearest) }

    func inActive(_ id: NodeID) -> Bool { activeView.contains { $0.nodeID == id } }
    func inPassive(_ id: NodeID) -> Bool { passiveView.contains { $0.nodeID == id } }

    mutating func tryJoin(now: Instant, into out: inout [GossipOutput]) {
        // Retries back off from an eighth of the interval (250 ms, doubling): a lost join (or
        // reply) costs a newcomer about one gossip round, not ten; a contact that stays silent
        // still gets one try per `joinRetryInterval`. A repeated join costs the contact a second
        // reply and forward-join walk, nothing more (the member update is the same).
        let eighth = config.joinRetryInterval.nanoseconds / 8
        nextJoin = now + .nanoseconds(min(config.joinRetryInterval.nanoseconds, eighth << min(joinAttempts, 4)))
        joinAttempts += 1
        guard !hasLeft else { return }
        // Members handed over by `restoreMembers` are join contacts until the first join, like the
        // runtime's remembered peers (and Serf's snapshot rejoin): one of them first, the seeds
        // every other time, so a whole mesh coming back at once does not queue at one master's
        // handshake limit. Only then: joining random known members in general lets a cold start
        // form islands that never meet.
        if !everJoined, joinThroughRestored, contacts.isEmpty || joinAttempts % 2 == 1, let known = knownMemberToJoin() {
            send(.join(incarnation: incarnation), to: .peer(known), into: &out)
            return
        }
        guard !contacts.isEmpty else { return }
        if contactIndex >= contacts.count { contactIndex = 0 }
        let a = contacts[contactIndex]
        contactIndex += 1
        send(.join(incarnation: incarnation), to: .address(a), into: &out)
    }

    /// A random member held alive, not a seed's address: a few draws, none if the table is empty.
    mutating func knownMemberToJoin() -> PeerEntry? {
        guard !members.isEmpty else { return nil }
        for _ in 0..<4 {
            let r = Int(rng.next() % UInt64(members.count))
            guard members.rows[r].state == .alive else { continue }
            let e = members.entry(atRow: r)
            if e.nodeID != me.nodeID, !contacts.contains(e.address) { return e }
        }
        return nil
    }

    mutating func beaconHeard(_ address: UnderlayAddress, now: Instant, into out: inout [GossipOutput]) {
        guard started, !hasLeft, address != me.address else { return }
        if !lanAddresses.contains(address) {
            lanAddresses.append(address)
            if lanAddresses.count > 512 { lanAddresses.removeFirst() }
        }
        if activeView.isEmpty {
            if !contacts.contains(address) { contacts.append(address) }
            send(.join(incarnation: incarnation), to: .address(address), into: &out)
        } else if !passiveView.contains(where: { $0.address == address }), !activeView.contains(where: { $0.address == address }) {
            // A neighbour on the link: learn who it is and how far, through a ping by address.
            let seq = takeSeq()
            sidePings[seq] = (nil, now, false)
            sidePingOrder.append(seq)
            trimSidePings()
            send(.ping(seq: seq, updates: []), to: .address(address), into: &out)
        }
    }

    mutating func handleJoin(from: PeerEntry, incarnation inc: UInt32, now: Instant, into out: inout [GossipOutput]) {
        // Its announcement, as if gossiped by itself; a stale incarnation makes `heardFrom` tell it.
        applyUpdate(.alive(from, incarnation: inc, attributeVersion: 0), from: from, now: now, into: &out)
        let sample = randomSample((activeView + passiveView).filter { $0.nodeID != from.nodeID }, count: 8)
        if !inActive(from.nodeID), activeView.count >= activeCapacity, let previous = newcomerToMakeRoomFor(from.nodeID, now: now) {
            _ = removeFromActive(previous, into: &out, notify: true)
            if let e = members[previous]?.entry { integratePassive([e], replacing: []) }
        }
        admitted.removeAll { $0.peer == from.nodeID || now - $0.at >= Self.joinWaveWindow }
        admitted.append((from.nodeID, now))
        addToActive(from, now: now, into: &out)
        send(.joinReply(sample: sample), to: .peer(from), into: &out)
        for p in activeView where p.nodeID != from.nodeID {
            send(.forwardJoin(ttl: config.activeWalkLength, joiner: from), to: .peer(p), into: &out)
        }
    }

    /// A join contact under a wave of joins (a master, a whole deployment booting) makes room for
    /// each newcomer by dropping the previous newcomer it admitted, not a settled neighbour: under
    /// random eviction (HyParView's rule) a master's neighbours can all be newcomers after a few
    /// joins, so every later join's walk goes to a newcomer whose view holds only the master,
    /// which takes the joiner at once (`activeView.count <= 1`), and the master and the last
    /// joiners become an island that hears the mesh's news through one or two links, seconds
    /// late. A dropped newcomer keeps the links its own walks found.
    func newcomerToMakeRoomFor(_ joiner: NodeID, now: Instant) -> NodeID? {
        admitted.last { now - $0.at < Self.joinWaveWindow && $0.peer != joiner && inActive($0.peer) }?.peer
    }

    static let joinWaveWindow: Duration = .seconds(5)

    mutating func handleForwardJoin(ttl: UInt8, joiner: PeerEntry, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard joiner.nodeID != me.nodeID, culls[joiner.nodeID] == nil else { return }
        if ttl == 0 || activeView.count <= 1 {
            if !inActive(joiner.nodeID) {
                addToActive(joiner, now: now, into: &out)
                send(.neighbor(priority: .high), to: .peer(joiner), into: &out)
            }
            return
        }
        if ttl == config.passiveWalkLength { integratePassive([joiner], replacing: []) }
        let next = randomSample(activeView.filter { $0.nodeID != from.nodeID && $0.nodeID != joiner.nodeID }, count: 1)
        if let n = next.first {
            send(.forwardJoin(ttl: ttl - 1, joiner: joiner), to: .peer(n), into: &out)
        } else if !inActive(joiner.nodeID) {
            addToActive(joiner, now: now, into: &out)
            send(.neighbor(priority: .high), to: .peer(joiner), into: &out)
        }
    }

    mutating func handleNeighbour(from: PeerEntry, priority: NeighbourPriority, now: Instant, into out: inout [GossipOutput]) {
        var accept = priority == .high || activeView.count < activeCapacity || inActive(from.nodeID)
        let kept = longLink
        if !accept, priority == .nearer, prefersNearest,
           let worst = activeView.filter({ $0.nodeID != kept }).map({ rttOrMax($0.nodeID) }).max() {
            // The asker measured us as near; unless we know better, it replaces our farthest.
            let theirs = members[from.nodeID]?.rtt?.nanoseconds
            accept = theirs.map { $0 < worst } ?? true
        }
        if accept { addToActive(from, now: now, into: &out) }
        var sample: [PeerEntry] = []
        if !accept {
            // A referral first: the peer we refused most recently (it too looks for a neighbour),
            // handed to one asker only; then random standby peers, as HyParView does.
            let active = activeView
            neighbourSeekers.removeAll { s in
                now >= s.until || s.entry.nodeID == from.nodeID || active.contains { $0.nodeID == s.entry.nodeID }
            }
            if let seeker = neighbourSeekers.popLast() { sample.append(seeker.entry) }
            sample += randomSample(passiveView.filter { p in p.nodeID != from.nodeID && !sample.contains { $0.nodeID == p.nodeID } },
                                   count: 4 - sample.count)
            neighbourSeekers.append((from, now + Self.referralTime))
            if neighbourSeekers.count > 16 { neighbourSeekers.removeFirst() }
        }
        send(.neighborReply(accepted: accept, sample: sample), to: .peer(from), into: &out)
    }

    mutating func handleNeighbourReply(from: PeerEntry, accepted: Bool, sample: [PeerEntry], now: Instant, into out: inout [GossipOutput]) {
        pendingNeighbours.removeAll { $0.peer == from.nodeID }
        if accepted {
            acceptLink(from, now: now, into: &out)
            refusalStreak = 0
            neighbourBackoffUntil = nil
        } else {
            integratePassive(sample, replacing: [])
            // A full peer: not asked again for a while. Further requests back off while refusals
            // continue (timeouts do not count: dead entries are still worked through at full
            // speed). The referral (the sample's first entry) is tried next, back-off or not.
            neighbourRefusers.removeAll { now >= $0.until || $0.peer == from.nodeID }
            neighbourRefusers.append((from.nodeID, now + Self.refusalMemory))
            if neighbourRefusers.count > 32 { neighbourRefusers.removeFirst() }
            refusalStreak += 1
            neighbourBackoffUntil = now + .nanoseconds(config.gossipInterval.nanoseconds << Int64(min(refusalStreak, 5)))
            if let r = sample.first, r.nodeID != me.nodeID { neighbourReferral = (r, now + Self.referralTime) }
        }
    }

    /// A peer accepted our neighbour request. If it also dropped us lately, the two crossed and we
    /// cannot tell which it sent last: taking the link could leave it one-sided (we hold the peer,
    /// the peer not us) for good, since nothing else re-checks a link. So we ask again (high
    /// priority if we have no neighbour), and that reply settles it on both sides. Not for join
    /// replies: at a busy introducer they cross its evictions all the time, and re-asking there
    /// slowed mesh-1000's cold start by 12 s.
    mutating func acceptLink(_ from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        recentDisconnects.removeAll { now >= $0.until }
        if recentDisconnects.contains(where: { $0.peer == from.nodeID }) {
            recentDisconnects.removeAll { $0.peer == from.nodeID }
            integratePassive([from], replacing: [])
            pendingNeighbours.removeAll { $0.peer == from.nodeID }
            pendingNeighbours.append((from.nodeID, now))
            send(.neighbor(priority: activeView.isEmpty ? .high : .low), to: .peer(from), into: &out)
            return
        }
        addToActive(from, now: now, into: &out)
    }

    static let disconnectMemory: Duration = .seconds(2)
    static let referralTime: Duration = .seconds(2)
    static let refusalMemory: Duration = .seconds(10)

    /// Which standby peers to ask in (at most `count`). During a join wave most requests go to
    /// full peers and are refused, each a handshake when no session exists. Peers that refused
    /// lately are skipped; the peer a refusal referred us to goes first; random others follow,
    /// only when not backing off. Peers heard from lately are not preferred (though a session with
    /// them exists): that re-links each node within its own neighbourhood, and a walk-mode mesh
    /// splits into components.
    mutating func neighbourCandidates(from pool: [PeerEntry], count: Int, now: Instant) -> [PeerEntry] {
        guard !activeView.isEmpty else { return randomSample(pool, count: count) }
        neighbourRefusers.removeAll { now >= $0.until }
        var open = pool.filter { p in !neighbourRefusers.contains { $0.peer == p.nodeID } }
        var picks: [PeerEntry] = []
        if let r = neighbourReferral {
            neighbourReferral = nil
            if now < r.until, refusalStreak <= 3, let i = open.firstIndex(where: { $0.nodeID == r.entry.nodeID }) {
                picks.append(open.remove(at: i))
            }
        }
        if picks.count < count, neighbourBackoffUntil.map({ now >= $0 }) ?? true {
            picks += randomSample(open, count: count - picks.count)
        }
        return picks
    }

    /// Adds a peer to the active view, evicting one (told by `disconnect`) when full.
    mutating func addToActive(_ p: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard p.nodeID != me.nodeID, culls[p.nodeID] == nil else { return }
        if let i = activeView.firstIndex(where: { $0.nodeID == p.nodeID }) {
            activeView[i].address = p.address
            return
        }
        if activeView.count >= activeCapacity, let victim = evictionCandidate(excluding: p.nodeID) {
            _ = removeFromActive(victim.nodeID, into: &out, notify: true)
            integratePassive([victim], replacing: [])
        }
        passiveView.removeAll { $0.nodeID == p.nodeID }
        activeView.append(p)
        ensureMember(p, now: now, into: &out)
        out.append(.event(.neighbourAdded(p.nodeID)))
        if attributeVersion > 0, !attributes.pairs.isEmpty {
            // A new neighbour may hold our row at attribute version 0 (made when it met us as a
            // view peer: nothing told it the version), and later news of the same incarnation is
            // old news nobody gossips, while anti-entropy's digest does not cover attribute
            // versions: it would never fetch our attributes (issue 25). Our own alive update tells
            // it; a node without attributes (its version may still be above 0 after a restart) sends nothing.
            send(.gossip(updates: [selfAlive]), to: .peer(p), into: &out)
        }
        joinAttempts = 0
        if !everJoined {
            everJoined = true
            out.append(.event(.joined))
            // A newcomer learns the existing membership by anti-entropy at once (the updates about
            // older members left the gossip queues long ago): every second until a delta arrives.
            nextExchange = now + .milliseconds(500)
        }
        maybeFetchAttributes(p.nodeID, into: &out)
    }

    /// `nearest` evicts the farthest peer (unknown round-trip times count as farthest); the other
    /// modes evict at random, as HyParView does.
    mutating func evictionCandidate(excluding id: NodeID) -> PeerEntry? {
        let candidates = activeView.filter { $0.nodeID != id }
        if prefersNearest {
            let kept = longLink
            let others = candidates.filter { $0.nodeID != kept }
            return (others.isEmpty ? candidates : others).max { rttOrMax($0.nodeID) < rttOrMax($1.nodeID) }
        }
        return randomSample(candidates, count: 1).first
    }

    func rttOrMax(_ id: NodeID) -> Int64 {
        guard let r = members.rttNanos(of: id), r != .min else { return .max }
        return r
    }

    /// `peers` nearest first (by `rttOrMax`), each looked up once rather than on every comparison
    /// of the sort: view maintenance in mode `nearest` sorts the passive view this way every
    /// gossip round, where a lookup per comparison dominates the cost. The sort sees the same
    /// comparisons, so the order is the one sorting by lookups gives.
    func nearestFirst(_ peers: [PeerEntry]) -> [PeerEntry] {
        var keyed: [(rtt: Int64, entry: PeerEntry)] = []
        keyed.reserveCapacity(peers.count)
        for p in peers { keyed.append((rttOrMax(p.nodeID), p)) }
        keyed.sort { $0.rtt < $1.rtt }
        return keyed.map(\.entry)
    }

    /// Mode `nearest` keeps one active slot for a peer not heard by LAN beacon (the farthest such
    /// one): nearest-first eviction and `nearer` swaps skip it. Without it every cross-LAN link
    /// is replaced by a nearer one and a mesh of LANs splits into LAN islands.
    var longLink: NodeID? {
        guard prefersNearest else { return nil }
        return activeView.filter { !lanAddresses.contains($0.address) }.max { rttOrMax($0.nodeID) < rttOrMax($1.nodeID) }?.nodeID
    }

    /// A peer for the long link when every active peer is a LAN peer: a random passive one not heard
    /// by beacon, else a random alive member of the table.
    mutating func longLinkCandidate() -> PeerEntry? {
        let far = passiveView.filter { !lanAddresses.contains($0.address) }
        if let p = randomSample(far, count: 1).first { return p }
        guard !members.isEmpty else { return nil }
        for _ in 0..<4 {
            let r = Int(rng.next() % UInt64(members.count))
            let e = members.entry(atRow: r)
            if members.rows[r].state == .alive, e.nodeID != me.nodeID, !inActive(e.nodeID), !lanAddresses.contains(e.address) { return e }
        }
        return nil
    }

    @discardableResult
    mutating func removeFromActive(_ id: NodeID, into out: inout [GossipOutput], notify: Bool = false) -> Bool {
        guard let i = activeView.firstIndex(where: { $0.nodeID == id }) else { return false }
        let p = activeView.remove(at: i)
        if notify { send(.disconnect, to: .peer(p), into: &out) }
        out.append(.event(.neighbourRemoved(id)))
        if probe?.target.nodeID == id { probe = nil }
        return true
    }

    /// Adds entries to the passive view; when full, evicts first the entries we just sent away in a
    /// shuffle, then random ones.
    mutating func integratePassive(_ entries: [PeerEntry], replacing sent: [PeerEntry]) {
        var sentLeft = sent.map(\.nodeID)
        for e in entries {
            guard e.nodeID != me.nodeID, culls[e.nodeID] == nil, !inActive(e.nodeID) else { continue }
            if let m = members[e.nodeID], m.state == .dead || m.state == .left || m.state == .culled { continue }
            if let i = passiveView.firstIndex(where: { $0.nodeID == e.nodeID }) {
                passiveView[i].address = e.address
                continue
            }
            if passiveView.count >= passiveCapacity {
                if let j = sentLeft.firstIndex(where: { id in passiveView.contains { $0.nodeID == id } }) {
                    let id = sentLeft.remove(at: j)
                    passiveView.removeAll { $0.nodeID == id }
                } else {
                    passiveView.remove(at: Int(rng.next() % UInt64(passiveView.count)))
                }
            }
            passiveView.append(e)
        }
    }

    /// Refills the active view from the passive one (nearest first in `nearest` mode), and keeps the
    /// passive view stocked from the member table.
    mutating func maintainViews(now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft else { return }
        if passiveView.count < passiveCapacity / 2, !members.isEmpty {
            var picks: [PeerEntry] = []
            for _ in 0..<4 {
                let r = Int(rng.next() % UInt64(members.count))
                if members.rows[r].state == .alive { picks.append(members.entry(atRow: r)) }
            }
            integratePassive(picks, replacing: [])
        }
        let missing = activeCapacity - activeView.count - pendingNeighbours.count
        if missing > 0, !passiveView.isEmpty {
            // As many requests in flight as places are free, so a passive view full of dead
            // entries (after a mass failure) is worked through quickly.
            let pool = passiveView.filter { p in !pendingNeighbours.contains { $0.peer == p.nodeID } }
            let candidates: [PeerEntry]
            if prefersNearest {
                candidates = Array(nearestFirst(pool).prefix(missing))
            } else {
                candidates = neighbourCandidates(from: pool, count: missing, now: now)
            }
            for c in candidates {
                pendingNeighbours.append((c.nodeID, now))
                send(.neighbor(priority: activeView.isEmpty ? .high : .low), to: .peer(c), into: &out)
            }
        } else if prefersNearest, !activeView.isEmpty, pendingNeighbours.isEmpty, longLink == nil,
                  let far = longLinkCandidate() {
            // Every neighbour is on our LAN: ask one peer from elsewhere in (it must accept), so
            // the LANs stay one overlay.
            pendingNeighbours.append((far.nodeID, now))
            send(.neighbor(priority: .high), to: .peer(far), into: &out)
        } else if prefersNearest, activeView.count >= activeCapacity, pendingNeighbours.isEmpty,
                  let best = passiveView.filter({ (members.rttNanos(of: $0.nodeID) ?? .min) != .min }).min(by: { rttOrMax($0.nodeID) < rttOrMax($1.nodeID) }),
                  case let kept = longLink,
                  let worst = activeView.filter({ $0.nodeID != kept }).max(by: { rttOrMax($0.nodeID) < rttOrMax($1.nodeID) }),
                  rttOrMax(best.nodeID) < rttOrMax(worst.nodeID) / 2 {
            // A much nearer standby peer: ask it in; accepting evicts the farthest active peer.
            pendingNeighbours.append((best.nodeID, now))
            send(.neighbor(priority: .nearer), to: .peer(best), into: &out)
        }
    }

    mutating func shuffle(now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft, let target = randomSample(activeView, count: 1).first else { return }
        var sample = [me]
        sample += randomSample(activeView.filter { $0.nodeID != target.nodeID }, count: config.shuffleActive)
        sample += randomSample(passiveView, count: config.shufflePassive)
        let id = UInt32(truncatingIfNeeded: rng.next())
        pendingShuffle = (id, sample)
        send(.shuffle(id: id, ttl: config.activeWalkLength, origin: me, sample: Array(sample.prefix(GossipWire.maxSample))), to: .peer(target), into: &out)
    }

    mutating func handleShuffle(id: UInt32, ttl: UInt8, origin: PeerEntry, sample: [PeerEntry], from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard origin.nodeID != me.nodeID else { return }
        if ttl > 1, activeView.count > 1,
           let next = randomSample(activeView.filter { $0.nodeID != from.nodeID && $0.nodeID != origin.nodeID }, count: 1).first {
            rememberShuffleReturn(id: id, back: from, now: now)
            send(.shuffle(id: id, ttl: ttl - 1, origin: origin, sample: sample), to: .peer(next), into: &out)
            return
        }
        let reply = randomSample(passiveView.filter { $0.nodeID != origin.nodeID }, count: sample.count)
        // Back along the walk (the hop it came from relays it on): every hop has a session with
        // the next, while the origin is usually a stranger here and would cost a handshake.
        send(.shuffleReply(id: id, sample: reply), to: .peer(from), into: &out)
        integratePassive(sample, replacing: reply)
    }
}

extension GossipCore {
    static let shuffleReturnLimit = 64
    static let shuffleReturnTime: Duration = .seconds(5)

    mutating func rememberShuffleReturn(id: UInt32, back: PeerEntry, now: Instant) {
        if shuffleReturns[id] == nil { shuffleReturnOrder.append(id) }
        shuffleReturns[id] = (back, now + Self.shuffleReturnTime)
        while shuffleReturnOrder.count > Self.shuffleReturnLimit {
            shuffleReturns.removeValue(forKey: shuffleReturnOrder.removeFirst())
        }
    }
}
