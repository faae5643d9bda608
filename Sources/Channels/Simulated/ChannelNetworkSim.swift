import MeshCore
import SimulatorKit

/// How a directed virtual link treats frames (the test kit's link, SimulatorKit).
public typealias LinkProfile = SimulatorKit.LinkProfile

/// A deterministic discrete-event pump: several `ChannelEndpoint<Int>`s (peer = node index) joined
/// by virtual links on the test kit's engine (SimulatorKit's `SimNet`: clock, event queue, links,
/// one pending wake per node). Used by the tests and by `ChannelGoodput`; the project simulator
/// drives the same endpoint through the node.
public struct ChannelNetworkSim: Sendable {
    public struct Delivery: Sendable, Equatable {
        public var from: Int
        public var stream: UInt16
        public var message: [UInt8]
        public var at: Instant
    }

    public private(set) var nodes: [ChannelEndpoint<Int>]
    public var profile: LinkProfile {
        get { net.link }
        set { net.link = newValue }
    }
    /// Frozen nodes neither receive nor send nor run timers (a stalled peer).
    public var frozen: [Bool]
    /// Frames from a muted node are lost on the wire (a receiver whose acks never arrive).
    public var muted: [Bool]
    public var now: Instant { net.now }
    public private(set) var deliveries: [[Delivery]]
    public private(set) var sent: [[MessageID: Instant]]
    public private(set) var failed: [[MessageID: ChannelFailure]]
    /// Peers each node was told it may write to again, cleared by the caller.
    public var writable: [[Int]]
    public private(set) var framesCarried = 0
    public private(set) var framesLost = 0
    public private(set) var events = 0

    private var net: SimNet<[UInt8]>

    public init(nodes count: Int, config: ChannelConfig = ChannelConfig(), profile: LinkProfile, seed: UInt64) {
        let root = SeededGenerator(seed: seed)
        nodes = (0..<count).map { ChannelEndpoint(config: config, rng: root.derived(UInt64($0) + 1)) }
        net = SimNet(nodes: count, link: profile, rng: root.derived(0xfeed))
        frozen = Array(repeating: false, count: count)
        muted = Array(repeating: false, count: count)
        deliveries = Array(repeating: [], count: count)
        sent = Array(repeating: [:], count: count)
        failed = Array(repeating: [:], count: count)
        writable = Array(repeating: [], count: count)
    }

    /// The application on `from` queues a message now.
    public mutating func send(_ message: [UInt8], stream: UInt16, from: Int, to: Int) -> Result<MessageID, ChannelError> {
        let (result, outputs) = nodes[from].send(message, stream: stream, to: to, now: now)
        apply(outputs, at: from)
        return result
    }

    public var idle: Bool { net.isIdle }

    /// Runs one event; false when nothing is left or the next event is after `limit`.
    public mutating func step(until limit: Instant) -> Bool {
        guard let due = net.step(until: limit) else { return false }
        events += 1
        switch due {
        case let .message(to, from, bytes):
            guard !frozen[to] else { return true }
            let outputs = nodes[to].receive(frame: bytes, from: from, now: now)
            apply(outputs, at: to)
        case let .wake(node):
            // A frozen node misses its timer; `thaw` runs it.
            guard !frozen[node] else { return true }
            let outputs = nodes[node].tick(now: now)
            apply(outputs, at: node)
        }
        return true
    }

    /// Runs events up to `limit` (or until none is left) and sets the clock to `limit`.
    public mutating func run(until limit: Instant) {
        while step(until: limit) {}
        _ = net.next(until: limit)
    }

    /// Replaces a node by a fresh process (all channel state lost), as after a crash and reboot.
    public mutating func restart(_ node: Int, seed: UInt64) {
        nodes[node] = ChannelEndpoint(config: nodes[node].config, rng: SeededGenerator(seed: seed))
        net.clearWake(node)
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
            case .wake(let at): net.setWake(node, at: at)
            }
        }
    }

    private mutating func transmit(_ bytes: [UInt8], from: Int, to: Int) {
        framesCarried += 1
        if muted[from] || frozen[from] { framesLost += 1; return }
        if !net.transmit(bytes, size: bytes.count, from: from, to: to) { framesLost += 1 }
    }
}
