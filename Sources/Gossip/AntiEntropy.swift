import MeshCore

/// Anti-entropy: peers compare 64 bucket digests of their member tables in one datagram and then
/// exchange only the rows of the buckets that differ, over a reliable channel. At most
/// `maxConcurrentExchanges` are started or served at a time.
extension GossipCore {
    static func bucket(_ id: NodeID) -> Int { MemberTable.bucket(id) }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Alive and suspect hash alike: suspicion is transient and settled by the probe path.
    static func stateClass(_ s: MemberState) -> UInt64 {
        switch s {
        case .alive, .suspect: 0
        case .dead: 1
        case .left: 2
        case .culled: 3
        }
    }

    static func rowHash(_ id: NodeID, incarnation: UInt32, state: MemberState) -> UInt64 {
        mix(id.leadingWord ^ mix(UInt64(incarnation) << 2 | stateClass(state)))
    }

    /// Order-independent (wrapping sums), so equal tables give equal digests whatever their order.
    /// The table keeps its rows' sums up to date; only our own row is added here.
    func digest() -> (buckets: [UInt64], cullCount: UInt32, cullHash: UInt64) {
        var b = members.digestBuckets
        b[Self.bucket(me.nodeID)] &+= Self.rowHash(me.nodeID, incarnation: incarnation, state: hasLeft ? .left : .alive)
        var ch: UInt64 = 0
        for id in cullOrder { ch &+= Self.mix(id.leadingWord ^ (culls[id]?.issuedAt ?? 0)) }
        return (b, UInt32(cullOrder.count), ch)
    }

    mutating func startExchange(now: Instant, into out: inout [GossipOutput]) {
        outgoingExchanges.removeAll { now - $0.since >= config.exchangeTimeout }
        exchangeRounds &+= 1
        // Every `strangerExchangeEvery`-th exchange goes to a random member outside the active
        // view (see `strangerToExchangeWith`), once the node has settled.
        if synced, exchangeRounds % Self.strangerExchangeEvery == 0, let since = startedAt, now - since >= Self.strangerExchangeAfter,
           let stranger = strangerToExchangeWith() {
            counters.strangerExchanges += 1
            startExchange(with: stranger, now: now, into: &out)
            return
        }
        // Introducers are asked last: every newcomer would otherwise sync through them.
        let ordinary = activeView.filter { !contacts.contains($0.address) }
        guard let peer = randomSample(ordinary.isEmpty ? activeView : ordinary, count: 1).first else { return }
        startExchange(with: peer, now: now, into: &out)
    }

    mutating func startExchange(with peer: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft, outgoingExchanges.count < config.maxConcurrentExchanges else { return }
        let id = UInt32(truncatingIfNeeded: rng.next())
        outgoingExchanges.append((id, peer.nodeID, now))
        counters.exchanges += 1
        let d = digest()
        send(.digest(exchange: id, buckets: d.buckets, cullCount: d.cullCount, cullHash: d.cullHash), to: .peer(peer), into: &out)
    }

    mutating func handleDigest(exchange: UInt32, buckets: [UInt64], cullCount: UInt32, cullHash: UInt64, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        servedExchanges.removeAll { now - $0.since >= config.exchangeServeWindow }
        guard servedExchanges.count < config.maxConcurrentExchanges else {
            counters.drop(.exchangeBusy)
            send(.digestReply(exchange: exchange, differing: 0, cullsDiffer: false, busy: true), to: .peer(from), into: &out)
            return
        }
        servedExchanges.append((from.nodeID, now))
        let mine = digest()
        var differing: UInt64 = 0
        for i in 0..<GossipWire.bucketCount where buckets[i] != mine.buckets[i] { differing |= 1 << UInt64(i) }
        let cullsDiffer = cullCount != mine.cullCount || cullHash != mine.cullHash
        send(.digestReply(exchange: exchange, differing: differing, cullsDiffer: cullsDiffer, busy: false), to: .peer(from), into: &out)
        if differing != 0 || cullsDiffer {
            sendDelta(exchange: exchange, differing: differing, culls: cullsDiffer, to: from, into: &out)
        }
    }

    mutating func handleDigestReply(exchange: UInt32, differing: UInt64, cullsDiffer: Bool, busy: Bool, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard let i = outgoingExchanges.firstIndex(where: { $0.id == exchange && $0.peer == from.nodeID }) else {
            counters.drop(.unknownExchange)
            return
        }
        outgoingExchanges.remove(at: i)
        if busy { return }
        if differing == 0 && !cullsDiffer { synced = true }
        if differing != 0 || cullsDiffer {
            sendDelta(exchange: exchange, differing: differing, culls: cullsDiffer, to: from, into: &out)
        }
    }

    /// Rows of the differing buckets only (a delta, not the full state), capped per message.
    /// Capped by whole buckets, starting at a bucket drawn from the exchange id: the buckets sent
    /// then match at the receiver and the next exchange asks for the others. (Cutting at the first
    /// `maxDeltaRecords` rows in table order sent a newcomer to a 10,000-member mesh the same
    /// 4,000 rows from the same peer every time, every bucket still differing: the 20 newcomers of
    /// `gossip-master-10000` had not learned the full membership 70 s after joining.)
    mutating func sendDelta(exchange: UInt32, differing: UInt64, culls sendCulls: Bool, to peer: PeerEntry, into out: inout [GossipOutput]) {
        var records: [MemberRecord] = []
        var perBucket = [Int](repeating: 0, count: GossipWire.bucketCount)
        var selfBucket: Int?
        if differing & (1 << UInt64(Self.bucket(me.nodeID))) != 0 { selfBucket = Self.bucket(me.nodeID); perBucket[selfBucket!] += 1 }
        for r in members.rows.indices where members.rows[r].state != .culled {
            let b = Self.bucket(members.nodeID(atRow: r))
            if differing & (1 << UInt64(b)) != 0 { perBucket[b] += 1 }
        }
        var chosen: UInt64 = 0
        var total = 0
        let start = Int(exchange % UInt32(GossipWire.bucketCount))
        for k in 0..<GossipWire.bucketCount {
            let b = (start + k) % GossipWire.bucketCount
            guard perBucket[b] > 0 else { continue }
            // Always one bucket, even an oversized one (the cap then cuts inside it).
            if total > 0, total + perBucket[b] > GossipWire.maxDeltaRecords { continue }
            chosen |= 1 << UInt64(b)
            total += perBucket[b]
        }
        if let b = selfBucket, chosen & (1 << UInt64(b)) != 0 {
            records.append(MemberRecord(entry: me, state: hasLeft ? .left : .alive, incarnation: incarnation, attributeVersion: attributeVersion))
        }
        for r in members.rows.indices where records.count < GossipWire.maxDeltaRecords {
            let row = members.rows[r]
            guard row.state != .culled, chosen & (1 << UInt64(Self.bucket(members.nodeID(atRow: r)))) != 0 else { continue }
            records.append(MemberRecord(entry: members.entry(atRow: r), state: row.state, incarnation: row.incarnation, attributeVersion: row.attributeVersion))
        }
        var cs: [CullRecord] = []
        if sendCulls {
            // A delta carries at most `maxDeltaCulls`; with more culls than that, each delta sends
            // the next slice round the list, so a newcomer learns every cull over a few exchanges.
            // (Always the newest 256 would leave the older ones unknown to newcomers for good.)
            let n = cullOrder.count
            if n <= GossipWire.maxDeltaCulls {
                for id in cullOrder { if let c = culls[id] { cs.append(c) } }
            } else {
                let start = cullDeltaCursor % n
                for k in 0..<GossipWire.maxDeltaCulls { if let c = culls[cullOrder[(start + k) % n]] { cs.append(c) } }
                cullDeltaCursor = (start + GossipWire.maxDeltaCulls) % n
            }
        }
        sendReliable(.delta(exchange: exchange, records: records, culls: cs), to: peer, into: &out)
    }

    /// Rows are merged by the same precedence rules as gossip, so a delta can never revive a dead
    /// member at the same incarnation, nor bring back a culled one.
    mutating func applyDelta(records: [MemberRecord], culls cs: [CullRecord], from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        // A delta can carry many verdicts at once (a healed partition): they travel by the queue,
        // not by an immediate push each.
        pushesVerdicts = false
        // A big delta (half the cap or more) is a catch-up: we were far behind, typically a
        // newcomer to a large mesh, and its new members are old news to everyone else, so they are
        // not queued for gossip. A newcomer that learned 10,000 members that way re-gossiped them
        // all, full datagrams every round for minutes (`gossip-master-10000`: 19.6 KB/s from one
        // newcomer 40 s after its join). Smaller deltas' members are gossiped on as before: in a
        // cold start (`gossip-walk-1000`) that is how most members are discovered (without it,
        // the least-informed node knew 54 % of the mesh after 120 s).
        catchingUp = records.count >= GossipWire.maxDeltaRecords / 2
        defer { pushesVerdicts = true; catchingUp = false }
        let known = members.count
        defer { bridgeIfAnotherWorld(learned: members.count - known, knownBefore: known, from: from, now: now, into: &out) }
        for c in cs { applyUpdate(.cull(c), from: from, now: now, into: &out) }
        let accuser = from.nodeID.leadingWord
        for r in records {
            let u: MemberUpdate
            switch r.state {
            case .alive: u = .alive(r.entry, incarnation: r.incarnation, attributeVersion: r.attributeVersion)
            case .suspect: u = .suspect(r.entry.peer, incarnation: r.incarnation, accuser: accuser)
            case .dead:
                // A dead row we never heard of is learned quietly, so it is not probed or gossiped.
                if members[r.entry.nodeID] == nil, r.entry.nodeID != me.nodeID { continue }
                u = .dead(r.entry.peer, incarnation: r.incarnation)
            case .left:
                if members[r.entry.nodeID] == nil, r.entry.nodeID != me.nodeID { continue }
                u = .left(r.entry.peer, incarnation: r.incarnation)
            case .culled: continue
            }
            applyUpdate(u, from: nil, now: now, into: &out)
        }
    }
}

/// Islands (issue 23, problem 1). HyParView's views can close in on themselves: in a cold walk-mode
/// start, a group of nodes whose active and passive views all point inward heard nothing more of
/// the rest of the mesh (`gossip-walk-1000`: 6 of 20 seeds ended with two overlays, a node knowing
/// 1.5 % of the mesh). Probes, gossip, shuffles and anti-entropy all stay inside the views, so
/// nothing inside the island ever reaches out, though its members still hold a few outsiders in
/// their tables (their seed, their first contacts), and the mainland holds some of them. Two rules
/// heal it: an exchange now and then with a random member outside the active view (a stranger),
/// and a link to any peer whose delta shows a world we did not know.
extension GossipCore {
    /// One anti-entropy exchange in this many goes to a stranger (40 s at the default interval).
    static let strangerExchangeEvery = 2
    /// Not before the node has been up this long: a cold start's tables are still filling.
    static let strangerExchangeAfter: Duration = .seconds(20)

    /// A random alive member outside the active view: a few draws, nil when none is found. In a
    /// converged mesh its digest matches ours and the exchange costs one datagram each way.
    mutating func strangerToExchangeWith() -> PeerEntry? {
        guard members.count > activeView.count else { return nil }
        for _ in 0..<4 {
            let r = Int(rng.next() % UInt64(members.count))
            guard members.rows[r].state == .alive else { continue }
            let e = members.entry(atRow: r)
            if e.nodeID != me.nodeID, !inActive(e.nodeID) { return e }
        }
        return nil
    }

    /// A delta that taught us a quarter of our table or more (at least four members) came from a
    /// part of the mesh our overlay does not reach, or we were far behind. We pass the catch-up on
    /// to a neighbour at once (an island then learns the mesh in a few exchanges, not one per
    /// interval), and when the teacher is not our neighbour we ask it in at high priority (it
    /// must accept), which links the two overlays.
    mutating func bridgeIfAnotherWorld(learned: Int, knownBefore: Int, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft, learned >= 4, learned * 4 >= knownBefore else { return }
        if let next = randomSample(activeView.filter { $0.nodeID != from.nodeID }, count: 1).first {
            startExchange(with: next, now: now, into: &out)
        }
        guard !inActive(from.nodeID), !pendingNeighbours.contains(where: { $0.peer == from.nodeID }),
              members[from.nodeID]?.state == .alive else { return }
        counters.bridges += 1
        pendingNeighbours.append((from.nodeID, now))
        send(.neighbor(priority: .high), to: .peer(from), into: &out)
    }
}
