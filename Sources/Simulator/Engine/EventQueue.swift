import MeshCore

/// A min-heap of simulation events ordered by (time, sequence): ties break by insertion order,
/// so a run never depends on heap internals.
struct EventQueue {
    enum Kind {
        /// Node indices, not addresses: the receiver's handler rebuilds the sender's address, so an
        /// event carries one reference (the bytes) instead of two.
        case deliver(to: Int32, from: Int32, bytes: [UInt8])
        /// A delivery to a CPU-starved node, already held back: handled as it comes.
        case deliverLate(to: Int32, from: Int32, bytes: [UInt8])
        /// Node `node` (in incarnation `incarnation`) multicasts its LAN beacon (mode `nearest`).
        case beacon(node: Int32, incarnation: UInt32)
        /// A beacon from `from` reaches `to`.
        case beaconHeard(to: Int32, from: Int32)
        /// A node that left gracefully stops, once its goodbyes had time to go out.
        case stop(node: Int32, incarnation: UInt32)
        case wake(node: Int32, at: Int64)
        case sample
        /// Apply firing `firing` of `scenario.timeline[index]`.
        case timeline(index: Int32, firing: Int32)
        /// Undo what an earlier firing did (its `for_s` ran out); the slot holds what to undo.
        case revert(slot: Int32)
        /// The deadline of `crashed_detected_within` for one crash record.
        case crashDeadline(record: Int32)
        /// A workload's timer: `workloads[slot].fire(tag:)`.
        case workload(slot: Int32, tag: Int32)
    }

    struct Entry {
        let time: Int64
        let seq: UInt64
        let kind: Kind
        @inline(__always) static func precedes(_ a: Entry, _ b: Entry) -> Bool {
            a.time != b.time ? a.time < b.time : a.seq < b.seq
        }
    }

    private var heap: [Entry] = []
    private var nextSeq: UInt64 = 0

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var nextTime: Int64? { heap.first?.time }

    /// Whether the entry at `i` comes before the one at `j`: reads the keys in place rather than
    /// copying entries (each copy retains and releases the event's bytes); `swapAt` moves
    /// entries without touching their reference counts.
    @inline(__always) private func precedes(_ i: Int, _ j: Int) -> Bool {
        let a = heap[i].time, b = heap[j].time
        return a != b ? a < b : heap[i].seq < heap[j].seq
    }

    mutating func push(_ time: Int64, _ kind: Kind) {
        heap.append(Entry(time: time, seq: nextSeq, kind: kind))
        nextSeq &+= 1
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard precedes(i, parent) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n, precedes(l, m) { m = l }
            if r < n, precedes(r, m) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
        return top
    }
}
