import MeshCore
import SimulatorKit

/// How a directed virtual link treats frames. Faults are plain data so a seed reproduces a run.
public struct LinkProfile: Sendable, Equatable {
    /// One-way propagation delay.
    public var latency: Duration
    /// Extra delay drawn uniformly from [0, jitter) per frame; more jitter means more reordering.
    public var jitter: Duration
    public var loss: Double
    public var duplicate: Double
    /// 0 means unlimited. Otherwise frames are serialised at this rate behind a drop-tail queue.
    public var bandwidthBytesPerSecond: Double
    public var queueBytes: Int

    public init(latency: Duration = .milliseconds(10), jitter: Duration = .zero, loss: Double = 0, duplicate: Double = 0,
                bandwidthBytesPerSecond: Double = 0, queueBytes: Int = 1 << 20) {
        self.latency = latency; self.jitter = jitter; self.loss = loss; self.duplicate = duplicate
        self.bandwidthBytesPerSecond = bandwidthBytesPerSecond; self.queueBytes = queueBytes
    }
}

/// A deterministic discrete-event pump: several `ChannelEndpoint<Int>`s (peer = node index) joined
/// by virtual links, a virtual clock, one seeded generator for the network. Used by the tests and
/// by `ChannelGoodput`; the project simulator drives the same endpoint through the node.
public struct ChannelNetworkSim: Sendable {
    public struct Delivery: Sendable, Equatable {
        public var from: Int
        public var stream: UInt16
        public var message: [UInt8]
        public var at: Instant
    }

    public private(set) var nodes: [ChannelEndpoint<Int>]
    public var profile: LinkProfile
    /// Frozen nodes neither receive nor send nor run timers (a stalled peer).
    public var frozen: [Bool]
    /// Frames from a muted node are lost on the wire (a receiver whose acks never arrive).
    public var muted: [Bool]
    public private(set) var now = Instant.zero
    public private(set) var deliveries: [[Delivery]]
    public private(set) var sent: [[MessageID: Instant]]
    public private(set) var failed: [[MessageID: ChannelFailure]]
    /// Peers each node was told it may write to again, cleared by the caller.
    public var writable: [[Int]]
    public private(set) var framesCarried = 0
    public private(set) var framesLost = 0
    public private(set) var events = 0

    private enum Kind: Sendable { case arrival(to: Int, from: Int, bytes: [UInt8]), wake(node: Int) }
    /// The simulation engine's queue (SimulatorKit): by time, then the order events were queued.
    private var queue = EventHeap<Kind>()
    private var rng: SeededGenerator
    private var busyUntil: [[Instant]]
    private var scheduledWake: [Instant?]

    public init(nodes count: Int, config: ChannelConfig = ChannelConfig(), profile: LinkProfile, seed: UInt64) {
        let root = SeededGenerator(seed: seed)
        nodes = (0..<count).map { ChannelEndpoint(config: config, rng: root.derived(UInt64($0) + 1)) }
        self.profile = profile
        rng = root.derived(0xfeed)
        frozen = Array(repeating: false, count: count)
        muted = Array(repeating: false, count: count)
        deliveries = Array(repeating: [], count: count)
        sent = Array(repeating: [:], count: count)
        failed = Array(repeating: [:], count: count)
        writable = Array(repeating: [], count: count)
        busyUntil = Array(repeating: Array(repeating: .zero, count: count), count: count)
        scheduledWake = Array(repeating: nil, count: count)
    }

    /// The application on `from` queues a message now.
    public mutating func send(_ message: [UInt8], stream: UInt16, from: Int, to: Int) -> Result<MessageID, ChannelError> {
        let (result, outputs) = nodes[from].send(message, stream: stream, to: to, now: now)
        apply(outputs, at: from)
        return result
    }

    public var idle: Bool { queue.isEmpty }

    /// Runs one event; false when nothing is left or the next event is after `limit`.
    public mutating func step(until limit: Instant) -> Bool {
        guard let next = queue.nextTime, next <= limit.nanoseconds, let e = queue.pop() else { return false }
        let at = Instant(nanoseconds: e.time)
        now = max(now, at)
        events += 1
        switch e.event {
        case .arrival(let to, let from, let bytes):
            guard !frozen[to] else { return true }
            let outputs = nodes[to].receive(frame: bytes, from: from, now: now)
            apply(outputs, at: to)
        case .wake(let node):
            guard scheduledWake[node] == at, !frozen[node] else { return true }
            scheduledWake[node] = nil
            let outputs = nodes[node].tick(now: now)
            apply(outputs, at: node)
        }
        return true
    }

    /// Runs events up to `limit` (or until none is left) and sets the clock to `limit` if reached.
    public mutating func run(until limit: Instant) {
        while step(until: limit) {}
        if (queue.nextTime ?? .max) > limit.nanoseconds { now = max(now, limit) }
    }

    /// Replaces a node by a fresh process (all channel state lost), as after a crash and reboot.
    public mutating func restart(_ node: Int, seed: UInt64) {
        nodes[node] = ChannelEndpoint(config: nodes[node].config, rng: SeededGenerator(seed: seed))
        scheduledWake[node] = nil
    }

    /// Gives a frozen node its timers back (it catches up on missed ones at once).
    public mutating func thaw(_ node: Int) {
        frozen[node] = false
        let outputs = nodes[node].tick(now: now)
        apply(outputs, at: node)
    }

    private mutating func apply(_ outputs: [ChannelOutput<Int>], at node: Int) {
        for o in outputs {
            switch o {
            case .frame(let to, let bytes): transmit(bytes, from: node, to: to)
            case .delivered(let from, let stream, let message):
                deliveries[node].append(Delivery(from: from, stream: stream, message: message, at: now))
            case .sent(let id, _): sent[node][id] = now
            case .failed(let id, _, let reason): failed[node][id] = reason
            case .writable(let peer): writable[node].append(peer)
            case .wake(let at):
                let t = max(at, now)
                if scheduledWake[node] != t {
                    scheduledWake[node] = t
                    queue.push(t.nanoseconds, .wake(node: node))
                }
            }
        }
    }

    private mutating func transmit(_ bytes: [UInt8], from: Int, to: Int) {
        framesCarried += 1
        if muted[from] || frozen[from] || rng.unit() < profile.loss { framesLost += 1; return }
        var depart = now
        if profile.bandwidthBytesPerSecond > 0 {
            let start = max(now, busyUntil[from][to])
            let backlog = Double((start - now).nanoseconds) / 1e9 * profile.bandwidthBytesPerSecond
            if Int(backlog) + bytes.count > profile.queueBytes { framesLost += 1; return }
            let txTime = Int64(Double(bytes.count) / profile.bandwidthBytesPerSecond * 1e9)
            busyUntil[from][to] = start + .nanoseconds(txTime)
            depart = busyUntil[from][to]
        }
        let copies = rng.unit() < profile.duplicate ? 2 : 1
        for _ in 0..<copies {
            var at = depart + profile.latency
            if profile.jitter > .zero { at = at + .nanoseconds(Int64(rng.unit() * Double(profile.jitter.nanoseconds))) }
            queue.push(at.nanoseconds, .arrival(to: to, from: from, bytes: bytes))
        }
    }
}
