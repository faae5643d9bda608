import MeshCore

/// Updates waiting to be piggybacked. Items are kept in buckets by how often they were sent, and
/// the least-sent, newest items go first (memberlist's ordering). A newer update about the same
/// member supersedes the older one, which is dropped lazily when met.
struct BroadcastQueue: Sendable {
    struct Item: Sendable {
        var update: MemberUpdate
        var generation: UInt64
    }

    private var buckets: [[Item]] = [[]]
    /// Items before `heads[b]` in bucket b are gone (dropped oldest-first over capacity): an
    /// offset instead of `removeFirst`, which would move the whole bucket on every drop.
    private var heads: [Int] = [0]
    private var latest: [NodeID: UInt64] = [:]
    private var nextGeneration: UInt64 = 1
    private(set) var count = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var isEmpty: Bool { count == 0 }

    mutating func enqueue(_ u: MemberUpdate) {
        let g = nextGeneration
        nextGeneration += 1
        latest[u.subject] = g
        buckets[0].append(Item(update: u, generation: g))
        count += 1
        // Over capacity: drop the most-sent items first (they have had their chance).
        var b = buckets.count - 1
        while count > capacity, b >= 0 {
            if heads[b] >= buckets[b].count { b -= 1; continue }
            let old = buckets[b][heads[b]]
            heads[b] += 1
            if latest[old.update.subject] == old.generation { latest[old.update.subject] = nil }
            count -= 1
            if heads[b] >= 64, heads[b] * 2 >= buckets[b].count {
                buckets[b].removeFirst(heads[b])
                heads[b] = 0
            }
        }
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
                if latest[item.update.subject] != item.generation {
                    removed.append(i)
                } else if item.update.encodedLength > remaining {
                    misses += 1
                } else {
                    misses = 0
                    out.append(item.update)
                    remaining -= item.update.encodedLength
                    removed.append(i)
                    if t + 1 < limit {
                        promoted.append((t + 1, item))
                    } else {
                        latest[item.update.subject] = nil
                    }
                }
                i -= 1
            }
            if !removed.isEmpty {
                // `removed` is in descending index order.
                for idx in removed { buckets[t].remove(at: idx) }
                count -= removed.count
            }
            t += 1
        }
        for (b, item) in promoted.reversed() {
            while buckets.count <= b { buckets.append([]); heads.append(0) }
            buckets[b].append(item)
            count += 1
        }
        return out
    }
}
