/// The simulation engine's event queue, shared by the simulator and by the tests' drivers (the
/// gossip `Mesh`, the sessions `Pump`, `ChannelNetworkSim`): a min-heap ordered by (time,
/// insertion sequence), so events of one instant run in the order they were queued and a run
/// never depends on heap internals. Generic over what an event is; `@inlinable`, so each driver
/// gets it specialised for its own event type (no generic dispatch on the hot path).
public struct EventHeap<Event> {
    public struct Entry {
        public let time: Int64
        public let seq: UInt64
        public let event: Event
        @inlinable init(time: Int64, seq: UInt64, event: Event) {
            self.time = time; self.seq = seq; self.event = event
        }
    }

    @usableFromInline var heap: [Entry] = []
    @usableFromInline var nextSeq: UInt64 = 0

    @inlinable public init() {}

    @inlinable public var count: Int { heap.count }
    @inlinable public var isEmpty: Bool { heap.isEmpty }
    /// When the next event is due (nil: none queued).
    @inlinable public var nextTime: Int64? { heap.first?.time }
    /// Events queued so far, taken or not (a count a driver may fold into a seed).
    @inlinable public var pushed: UInt64 { nextSeq }
    /// The next entry, without taking it.
    @inlinable public var first: Entry? { heap.first }

    /// Whether the entry at `i` comes before the one at `j`: reads the keys in place rather than
    /// copying entries (each copy would retain and release what the event holds); `swapAt`
    /// moves entries without touching their reference counts.
    @inlinable @inline(__always) func precedes(_ i: Int, _ j: Int) -> Bool {
        let a = heap[i].time, b = heap[j].time
        return a != b ? a < b : heap[i].seq < heap[j].seq
    }

    @inlinable public mutating func push(_ time: Int64, _ event: Event) {
        heap.append(Entry(time: time, seq: nextSeq, event: event))
        nextSeq &+= 1
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard precedes(i, parent) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    @inlinable public mutating func pop() -> Entry? {
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

    /// Drops every event (the sequence numbering goes on, so later ties still keep push order).
    @inlinable public mutating func removeAll() { heap.removeAll() }
}

extension EventHeap: Sendable where Event: Sendable {}
extension EventHeap.Entry: Sendable where Event: Sendable {}
