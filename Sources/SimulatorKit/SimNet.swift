import MeshCore

/// How a directed virtual link treats what crosses it. Faults are plain data, so a seed
/// reproduces a run.
public struct LinkProfile: Sendable, Equatable {
    /// One-way propagation delay.
    public var latency: Duration
    /// Extra delay drawn uniformly from [0, jitter) per message; more jitter means more reordering.
    public var jitter: Duration
    public var loss: Double
    public var duplicate: Double
    /// 0 means unlimited. Otherwise messages are serialised at this rate behind a drop-tail queue
    /// of `queueBytes` per directed link.
    public var bandwidthBytesPerSecond: Double
    public var queueBytes: Int

    public init(latency: Duration = .milliseconds(10), jitter: Duration = .zero, loss: Double = 0, duplicate: Double = 0,
                bandwidthBytesPerSecond: Double = 0, queueBytes: Int = 1 << 20) {
        self.latency = latency; self.jitter = jitter; self.loss = loss; self.duplicate = duplicate
        self.bandwidthBytesPerSecond = bandwidthBytesPerSecond; self.queueBytes = queueBytes
    }
}

/// The test kit's engine: a virtual clock, the simulation engine's event queue (`EventHeap`),
/// directed links with a `LinkProfile`, and one pending wake per node. Every hand-written driver
/// (the gossip tests' `Mesh`, the sessions and node tests' `Pump`, `ChannelNetworkSim`) is a thin
/// adapter on it: it turns its machine's outputs into `transmit`, `deliver` and `setWake`, and
/// feeds what `next(until:)` returns back in. Generic over what travels (`Message`), so each
/// driver carries its own datagrams, frames or scheduled inputs.
public struct SimNet<Message: Sendable>: Sendable {
    /// What comes due, in time order (then the order queued).
    public enum Due: Sendable {
        case message(to: Int, from: Int, Message)
        /// The node's pending wake has come; it is cleared (a driver sets the next one from the
        /// machine's outputs).
        case wake(Int)
    }

    @usableFromInline enum Entry: Sendable {
        case message(to: Int, from: Int, Message)
        case wake(Int, at: Instant)
    }

    public private(set) var now = Instant.zero
    public var link: LinkProfile
    /// A link's own one-way latency, replacing `link.latency` and jitter (per-link topologies).
    public var linkLatency: (@Sendable (Int, Int) -> Duration)?
    /// Links that drop everything (a partition).
    public var blocked: (@Sendable (Int, Int) -> Bool)?
    /// The network's generator: every transmitted message draws loss, then duplication, then jitter
    /// (when the link has any), in that order.
    public var rng: SeededGenerator
    /// Each node's one pending wake.
    public private(set) var wakes: [Instant?]
    /// Messages handed to `transmit`, and those the link lost (loss, a full queue, a cut).
    public private(set) var transmitted = 0
    public private(set) var lost = 0
    @usableFromInline var queue = EventHeap<Entry>()
    /// When each directed link's serialiser is free (bandwidth-limited links only), by `from * n + to`.
    var busyUntil: [Int: Instant] = [:]

    public init(nodes: Int, link: LinkProfile = LinkProfile(), rng: SeededGenerator) {
        self.link = link
        self.rng = rng
        wakes = Array(repeating: nil, count: nodes)
    }

    public var nodeCount: Int { wakes.count }
    /// Nothing queued: no message in flight and no wake pending.
    public var isIdle: Bool { queue.isEmpty }
    /// Events queued so far (a count a driver may fold into a seed).
    public var queued: UInt64 { queue.pushed }

    /// Adds a node; returns its index.
    @discardableResult
    public mutating func addNode() -> Int {
        wakes.append(nil)
        return wakes.count - 1
    }

    /// The one-way delay of the next message from `from` to `to`: the link's own latency, or the
    /// profile's latency plus jitter.
    public mutating func delay(from: Int, to: Int) -> Duration {
        if let linkLatency { return linkLatency(from, to) }
        guard link.jitter > .zero else { return link.latency }
        return link.latency + .nanoseconds(Int64(rng.unit() * Double(link.jitter.nanoseconds)))
    }

    /// Puts `message` (`size` bytes on the wire) on the link `from` → `to`: dropped if the link is
    /// cut, lost with `link.loss`, queued behind the link's serialiser when it has a bandwidth
    /// (dropped when its queue is full), delayed by `delay(from:to:)` plus `extraDelay`, and
    /// duplicated with `link.duplicate`. Returns false when the message was dropped.
    @discardableResult
    public mutating func transmit(_ message: Message, size: Int, from: Int, to: Int, extraDelay: Duration = .zero) -> Bool {
        transmitted += 1
        if let blocked, blocked(from, to) { lost += 1; return false }
        if rng.unit() < link.loss { lost += 1; return false }
        var depart = now
        if link.bandwidthBytesPerSecond > 0 {
            let key = from * nodeCount + to
            let start = max(now, busyUntil[key] ?? .zero)
            let backlog = Double((start - now).nanoseconds) / 1e9 * link.bandwidthBytesPerSecond
            if Int(backlog) + size > link.queueBytes { lost += 1; return false }
            let free = start + .nanoseconds(Int64(Double(size) / link.bandwidthBytesPerSecond * 1e9))
            busyUntil[key] = free
            depart = free
        }
        let copies = rng.unit() < link.duplicate ? 2 : 1
        for _ in 0..<copies {
            queue.push((depart + delay(from: from, to: to) + extraDelay).nanoseconds, .message(to: to, from: from, message))
        }
        return true
    }

    /// Hands `message` to `to` after `after`, past every link fault: a scheduled input (a start,
    /// a message on a reliable stream, an injected datagram).
    public mutating func deliver(_ message: Message, to: Int, from: Int, after: Duration = .zero) {
        queue.push((now + after).nanoseconds, .message(to: to, from: from, message))
    }

    /// Sets node `node`'s one pending wake (a wake in the past is due now). The same instant
    /// again is already queued; a wake replaced or cleared before it comes due is skipped.
    public mutating func setWake(_ node: Int, at: Instant) {
        guard wakes[node] != at else { return }
        wakes[node] = at
        queue.push(max(at, now).nanoseconds, .wake(node, at: at))
    }

    /// Forgets node `node`'s pending wake (a crashed or replaced machine).
    public mutating func clearWake(_ node: Int) { wakes[node] = nil }

    /// The next event due at or before `end`, with the clock moved to it; nil when nothing is due
    /// by then (the clock then stands at `end`, or later if it already was).
    public mutating func next(until end: Instant) -> Due? {
        if let due = step(until: end) { return due }
        now = max(now, end)
        return nil
    }

    /// Like `next(until:)`, but leaves the clock at the last event when nothing more is due (a
    /// driver that stops as soon as its network is idle).
    public mutating func step(until end: Instant) -> Due? {
        while let t = queue.nextTime, t <= end.nanoseconds, let e = queue.pop() {
            now = max(now, Instant(nanoseconds: t))
            switch e.event {
            case let .message(to, from, m):
                return .message(to: to, from: from, m)
            case let .wake(node, at):
                guard wakes[node] == at else { continue }
                wakes[node] = nil
                return .wake(node)
            }
        }
        return nil
    }
}
