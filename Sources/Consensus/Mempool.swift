import MeshCore
import Sodium

/// Payloads waiting to be ordered: de-duplicated by BLAKE2b-256, bounded by count and bytes, kept
/// in arrival order so a leader's batch is first come, first served.
struct Mempool {
    struct Entry {
        let payload: [UInt8]
        /// Submitted here (not forwarded to us): we keep handing it to upcoming leaders.
        let local: Bool
        /// Leaders (validator indices) it was forwarded to, and in which round.
        var forwardedTo: [Int: UInt64] = [:]
    }

    let maxCount: Int
    let maxBytes: Int
    private(set) var bytes = 0
    /// Arrival order; `order[k]` is position `base + k` (positions survive compaction).
    private var order: [PayloadID] = []
    private var head = 0
    private var base = 0
    /// Per leader: the position before which every local payload was forwarded to it once, and
    /// the round from which to look again for payloads forwarded long ago and still pending.
    private var forwardCursor: [Int: Int] = [:]
    private var lookAgainAt: [Int: UInt64] = [:]
    private var entries: [PayloadID: Entry] = [:]
    /// Committed payloads, remembered so that a late forward or a replay is not ordered twice.
    private var committed: Set<PayloadID> = []
    private var committedOrder: [PayloadID] = []
    private var committedHead = 0
    let maxCommittedRemembered: Int

    init(maxCount: Int, maxBytes: Int, maxCommittedRemembered: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
        self.maxCommittedRemembered = maxCommittedRemembered
    }

    var count: Int { entries.count }

    enum AddResult: Equatable { case added, duplicate, full }

    mutating func add(_ payload: [UInt8], local: Bool) -> AddResult {
        let id = PayloadID(payload)
        if entries[id] != nil || committed.contains(id) { return .duplicate }
        guard entries.count < maxCount, bytes + payload.count <= maxBytes else { return .full }
        entries[id] = Entry(payload: payload, local: local)
        order.append(id)
        bytes += payload.count
        return .added
    }

    func isCommitted(_ id: PayloadID) -> Bool { committed.contains(id) }

    /// Up to `maxCount` payloads and `maxBytes` bytes, oldest first, skipping `excluded`
    /// (payloads already in the uncommitted chain the batch extends).
    func batch(maxCount: Int, maxBytes: Int, excluding excluded: Set<PayloadID>) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var size = 0
        for id in order[head...] {
            guard out.count < maxCount else { break }
            guard let e = entries[id], !excluded.contains(id) else { continue }
            if size + e.payload.count > maxBytes { break }
            out.append(e.payload)
            size += e.payload.count
        }
        return out
    }

    /// Local payloads for `leader`, oldest first: those not forwarded to it yet, or forwarded
    /// `again` rounds ago or more and still pending (the forward, or the leader's block, was lost).
    /// Cheap under load: new payloads are found from a per-leader cursor, and the old ones are
    /// looked over once every `again` rounds, not at every call.
    mutating func forward(to leader: Int, round: UInt64, again: UInt64, maxCount: Int, maxBytes: Int,
                          excluding excluded: Set<PayloadID>) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var size = 0
        let cursor = max(forwardCursor[leader] ?? base, base + head)
        func take(_ k: Int) -> Bool {
            let id = order[k]
            guard var e = entries[id], e.local, !excluded.contains(id) else { return true }
            guard out.count < maxCount, size + e.payload.count <= maxBytes else { return false }
            out.append(e.payload)
            size += e.payload.count
            e.forwardedTo[leader] = round
            entries[id] = e
            return true
        }
        if round >= lookAgainAt[leader] ?? 0 {
            lookAgainAt[leader] = round + again
            for k in head..<(cursor - base) {
                guard let e = entries[order[k]], e.local, !excluded.contains(order[k]) else { continue }
                if let last = e.forwardedTo[leader], round < last + again { continue }
                if !take(k) { break }
            }
        }
        var k = cursor - base
        while k < order.count, take(k) { k += 1 }
        forwardCursor[leader] = base + k
        return out
    }

    mutating func markCommitted(_ payload: [UInt8]) {
        let id = PayloadID(payload)
        if let e = entries.removeValue(forKey: id) { bytes -= e.payload.count }
        if committed.insert(id).inserted {
            committedOrder.append(id)
            if committedOrder.count - committedHead > maxCommittedRemembered {
                committed.remove(committedOrder[committedHead])
                committedHead += 1
                if committedHead > 4096, committedHead * 2 > committedOrder.count {
                    committedOrder.removeFirst(committedHead)
                    committedHead = 0
                }
            }
        }
        compact()
    }

    /// Drops ids of removed entries from the front of the arrival order.
    private mutating func compact() {
        while head < order.count, entries[order[head]] == nil { head += 1 }
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            base += head
            head = 0
        }
    }
}

/// A payload's identity for de-duplication: BLAKE2b-256 of its bytes.
struct PayloadID: Hashable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    init(_ payload: [UInt8]) {
        let h = Blake2b.hash(payload, outputLength: 32)
        func word(_ i: Int) -> UInt64 { h[i..<i + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        a = word(0); b = word(8); c = word(16); d = word(24)
    }
}
