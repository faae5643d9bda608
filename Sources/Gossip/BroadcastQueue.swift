import MeshCore

/// Updates waiting to be piggybacked. Items are kept in buckets by how often they were sent, and
/// the least-sent, newest items go first (memberlist's ordering). A newer update about the same
/// member supersedes the older one, which is dropped lazily when met.
///
/// Items are 32-byte records: the peer is an index into `PeerIdentities` (as in the member table),
/// so a queue of thousands of updates (a join wave at 10,000 nodes) holds no decoded identities;
/// the rare culls are kept beside the items.
struct BroadcastQueue: Sendable {
    enum Kind: UInt8 { case alive, suspect, dead, left, cull }

    struct Item: Sendable {
        var generation: UInt64
        /// Attribute version (alive), accuser (suspect), or the key of the cull in `cullRecords`.
        var aux: UInt64
        var entry: UInt32
        var incarnation: UInt32
        var kind: Kind
    }

    private var buckets: [[Item]] = [[]]
    /// Items before `heads[b]` in bucket b are gone (dropped oldest-first over capacity): an
    /// offset instead of `removeFirst`, which would move the whole bucket on every drop.
    private var heads: [Int] = [0]
    /// The generation of the newest item per subject (see `subjectKey`); looked up, never iterated.
    private var latest: [UInt64: UInt64] = [:]
    /// Culls by item generation, with the subject key they were queued under.
    private var cullRecords: [UInt64: (record: CullRecord, key: UInt64)] = [:]
    private var nextGeneration: UInt64 = 1
    private(set) var count = 0
    let capacity: Int
    let identities: PeerIdentities

    init(capacity: Int, identities: PeerIdentities = PeerIdentities()) {
        self.capacity = capacity
        self.identities = identities
    }

    var isEmpty: Bool { count == 0 }

    /// A node's first entry index in the identity table; a culled node nobody holds gets a key
    /// outside that range (from its id).
    private func subjectKey(_ item: Item) -> UInt64 {
        if item.kind == .cull { return cullRecords[item.aux]?.key ?? 0 }
        return UInt64(identities.nodeKey(item.entry))
    }

    private func update(_ item: Item) -> MemberUpdate {
        switch item.kind {
        case .alive: .alive(identities.entry(item.entry), incarnation: item.incarnation, attributeVersion: UInt32(truncatingIfNeeded: item.aux))
        case .suspect: .suspect(identities.identity(item.entry), incarnation: item.incarnation, accuser: item.aux)
        case .dead: .dead(identities.identity(item.entry), incarnation: item.incarnation)
        case .left: .left(identities.identity(item.entry), incarnation: item.incarnation)
        case .cull: .cull(cullRecords[item.aux]!.record)
        }
    }

    private func encodedLength(_ item: Item) -> Int {
        switch item.kind {
        case .alive: 1 + PeerEntry.encodedLength + 8
        case .suspect: 1 + 32 + 4 + 8
        case .dead, .left: 1 + 32 + 4
        case .cull: 1 + CullRecord.encodedLength
        }
    }

    /// An item leaves the queue for good.
    private mutating func discard(_ item: Item, key: UInt64) {
        if latest[key] == item.generation { latest[key] = nil }
        if item.kind == .cull { cullRecords[item.aux] = nil }
    }

    mutating func enqueue(_ u: MemberUpdate) {
        let g = nextGeneration
        nextGeneration += 1
        var item: Item
        switch u {
        case let .alive(e, inc, av): item = Item(generation: g, aux: UInt64(av), entry: identities.intern(e), incarnation: inc, kind: .alive)
        case let .suspect(p, inc, acc): item = Item(generation: g, aux: acc, entry: identities.intern(identity: p), incarnation: inc, kind: .suspect)
        case let .dead(p, inc): item = Item(generation: g, aux: 0, entry: identities.intern(identity: p), incarnation: inc, kind: .dead)
        case let .left(p, inc): item = Item(generation: g, aux: 0, entry: identities.intern(identity: p), incarnation: inc, kind: .left)
        case let .cull(c):
            cullRecords[g] = (c, identities.firstEntry(of: c.subject).map(UInt64.init) ?? (1 << 63 | c.subject.leadingWord))
            item = Item(generation: g, aux: g, entry: 0, incarnation: 0, kind: .cull)
        }
        latest[subjectKey(item)] = g
        buckets[0].append(item)
        count += 1
        // Over capacity: drop the most-sent items first (they have had their chance).
        var b = buckets.count - 1
        while count > capacity, b >= 0 {
            if heads[b] >= buckets[b].count { b -= 1; continue }
            let old = buckets[b][heads[b]]
            heads[b] += 1
            discard(old, key: subjectKey(old))
            count -= 1
            if heads[b] >= 64, heads[b] * 2 >= buckets[b].count { compact(b) }
        }
    }

    /// Drops the gone head of bucket `b` and gives back the memory of a bucket that emptied: an
    /// item moves through `limit` buckets, and arrays never shrink by themselves, so each bucket
    /// would otherwise keep the capacity of the largest wave that ever passed through it.
    private mutating func compact(_ b: Int) {
        buckets[b] = Array(buckets[b][heads[b]...])
        heads[b] = 0
    }

    /// Takes updates that fit `budget` bytes, each counted as sent once; items reaching `limit`
    /// sends leave the queue.
    mutating func take(budget: Int, limit: Int, maxItems: Int = GossipWire.maxUpdates) -> [MemberUpdate] {
        var out: [MemberUpdate] = []
        var remaining = budget
        var promoted: [(Int, Item)] = []
        let smallest = 1 + 32 + 4
        // Items that do not fit are passed over, but only so many in a row: a nearly full
        // datagram would otherwise walk the whole queue (thousands of items at 10,000 members)
        // looking for one small enough.
        var misses = 0
        let maxMisses = 16
        var t = 0
        while t < buckets.count, remaining >= smallest, out.count < maxItems, misses < maxMisses {
            var removed: [Int] = []
            var i = buckets[t].count - 1
            while i >= heads[t], remaining >= smallest, out.count < maxItems, misses < maxMisses {
                let item = buckets[t][i]
                let key = subjectKey(item)
                let length = encodedLength(item)
                if latest[key] != item.generation {
                    removed.append(i)
                    if item.kind == .cull { cullRecords[item.aux] = nil }
                } else if length > remaining {
                    misses += 1
                } else {
                    misses = 0
                    out.append(update(item))
                    remaining -= length
                    removed.append(i)
                    if t + 1 < limit {
                        promoted.append((t + 1, item))
                    } else {
                        discard(item, key: key)
                    }
                }
                i -= 1
            }
            if !removed.isEmpty {
                // `removed` is in descending index order.
                for idx in removed { buckets[t].remove(at: idx) }
                count -= removed.count
                if buckets[t].capacity > 2 * (buckets[t].count - heads[t]) + 64 { compact(t) }
            }
            t += 1
        }
        for (b, item) in promoted.reversed() {
            while buckets.count <= b { buckets.append([]); heads.append(0) }
            if buckets[b].count == buckets[b].capacity, buckets[b].count >= 64 {
                // Grow by half, not double: a wave of items passes through every bucket in turn.
                buckets[b].reserveCapacity(buckets[b].count + buckets[b].count / 2)
            }
            buckets[b].append(item)
            count += 1
        }
        // Drained: give back the index's memory too (dictionaries never shrink by themselves).
        if count == 0, latest.capacity > 64 { latest = [:] }
        return out
    }
}
