import MeshCore

/// Attribute queries: each node matches its own attributes and answers the origin directly; the
/// query travels the mesh along the chosen mode, bounded by a hop limit and deduplicated.
extension GossipCore {
    mutating func startQuery(id: UInt64, query: AttributeQuery, mode: DiscoveryMode, hopLimit: UInt8, now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft else { return }
        myQueries.append(id)
        if myQueries.count > 64 { myQueries.removeFirst() }
        _ = markSeen(origin: me.nodeID, id: id)
        if let v = query.matches(attributes) {
            out.append(.event(.queryAnswer(id: id, from: me.nodeID, address: me.address, hops: 0,
                                           pairs: [AttributePair(key: query.key, value: v)])))
        }
        let q = QueryMessage(id: id, origin: me, hops: 1, hopLimit: max(1, hopLimit), mode: mode, query: query)
        forwardQuery(q, excluding: [], into: &out)
    }

    /// Returns false when already seen.
    mutating func markSeen(origin: NodeID, id: UInt64) -> Bool {
        var key = Array(origin.bytes.prefix(8))
        var w = ByteWriter(capacity: 8)
        w.u64(id)
        key += w.bytes
        guard !seenQueries.contains(key) else { return false }
        seenQueries.insert(key)
        seenQueryOrder.append(key)
        if seenQueryOrder.count > config.queryCacheSize {
            seenQueries.remove(seenQueryOrder.removeFirst())
        }
        return true
    }

    mutating func handleQuery(_ q: QueryMessage, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        let first = markSeen(origin: q.origin.nodeID, id: q.id)
        // A flood stops at nodes it has seen; a walk goes on (it may cross itself), answering once.
        if !first && q.mode != .walk { counters.drop(.duplicateQuery); return }
        if first, let v = q.query.matches(attributes) {
            var pair = AttributePair(key: q.query.key, value: v)
            // The answer is a datagram: a value too long for it is cut at a character boundary.
            let budget = GossipWire.maxDatagram - 64 - pair.key.utf8.count
            if pair.value.utf8.count > budget {
                var cut = ""
                for ch in pair.value {
                    if cut.utf8.count + String(ch).utf8.count > budget { break }
                    cut.append(ch)
                }
                pair.value = cut
            }
            if let origin = answerRoute(q.origin, from: from) {
                send(.queryAnswer(id: q.id, hops: q.hops, pairs: [pair]), to: .peer(origin), into: &out)
            } else {
                counters.drop(.unroutableAnswer)
            }
        }
        guard q.hops < q.hopLimit else { return }
        var next = q
        next.hops += 1
        forwardQuery(next, excluding: [from.nodeID, q.origin.nodeID], into: &out)
    }

    /// Where to answer a query's origin. The address the origin wrote into the query is the one
    /// it listens on, which for a node on `[::]:PORT` (every box, every namespace) is no address
    /// at all, and for a link-local one lacks the link: answers sent there never arrived, so
    /// queries between link-local neighbours found only the asking node (issue 25). The address
    /// the origin was heard from is used instead: the sender's own (the query came straight
    /// from the origin), else the member table's (learned by direct contact, or from the gossip
    /// of those who had it); the claimed one only when neither is known and it is usable.
    func answerRoute(_ origin: PeerEntry, from: PeerEntry) -> PeerEntry? {
        if from.nodeID == origin.nodeID { return PeerEntry(peer: origin.peer, address: from.address) }
        if let m = members[origin.nodeID], m.state == .alive || m.state == .suspect, !m.entry.address.isUnspecified {
            return PeerEntry(peer: origin.peer, address: m.entry.address)
        }
        return origin.address.isUnspecified ? nil : origin
    }

    mutating func forwardQuery(_ q: QueryMessage, excluding: [NodeID], into out: inout [GossipOutput]) {
        let candidates = activeView.filter { !excluding.contains($0.nodeID) }
        let targets: [PeerEntry]
        switch q.mode {
        case .master:
            targets = candidates
        case .walk:
            targets = randomSample(candidates, count: 1)
        case .nearest:
            let pool = candidates + passiveView.filter { !excluding.contains($0.nodeID) && members[$0.nodeID]?.rtt != nil }
            targets = Array(nearestFirst(pool).prefix(config.nearestFanout))
        }
        for t in targets { send(.query(q), to: .peer(t), into: &out) }
    }
}
