import MeshCore
import SimulatorKit
import Noise
import Sessions
import Sodium

/// An in-memory network between session managers on the test kit (SimulatorKit's `SimNet`: the
/// engine's clock and event queue, one pending wake per node): latency, jitter (so reordering),
/// loss and duplication drawn from a seeded generator, so every run repeats.
struct Pump {
    struct Node {
        var manager: SessionManager
        let identity: NodeIdentity
        /// The identity each message came from, as the session proved it.
        var delivered: [(from: PeerIdentity, plaintext: [UInt8])] = []
        var established: [PublicKey] = []
        var failed: [String] = []
    }

    struct Packet {
        let at: Instant
        let seq: Int
        let from: UnderlayAddress
        let to: UnderlayAddress
        let bytes: [UInt8]
    }

    var nodes: [UnderlayAddress: Node] = [:]
    /// The kit indexes endpoints by number: every address seen (nodes and strangers) gets one.
    var index: [UnderlayAddress: Int] = [:]
    var addressOf: [UnderlayAddress] = []
    var net = SimNet<Packet>(nodes: 0, link: LinkProfile(latency: .milliseconds(20)), rng: SeededGenerator(seed: 99))
    var seq = 0
    var now: Instant { net.now }
    var rng: SeededGenerator {
        get { net.rng }
        set { net.rng = newValue }
    }
    var latency: Duration {
        get { net.link.latency }
        set { net.link.latency = newValue }
    }
    var jitter: Duration {
        get { net.link.jitter }
        set { net.link.jitter = newValue }
    }
    var loss: Double {
        get { net.link.loss }
        set { net.link.loss = newValue }
    }
    var duplication: Double {
        get { net.link.duplicate }
        set { net.link.duplicate = newValue }
    }
    /// Every datagram sent, for tests that capture and replay.
    var wire: [Packet] = []
    /// Return false to drop a datagram (targeted loss).
    var filter: ((Packet) -> Bool)?

    static let networkKey = [UInt8](repeating: 0x42, count: 32)

    static func address(_ i: Int) -> UnderlayAddress {
        UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: UInt16(5000 + i))
    }

    static func identity(_ i: Int) -> NodeIdentity { NodeIdentity.deterministic(runSeed: 7, index: i) }

    @discardableResult
    mutating func add(_ i: Int, networkKey: [UInt8] = Pump.networkKey, timing: SessionTiming = .init(),
                      seed: UInt64? = nil, identity: NodeIdentity? = nil) -> UnderlayAddress {
        let id = identity ?? Self.identity(i)
        let m = try! SessionManager(identity: id, networkKey: networkKey, timing: timing,
                                    rng: SeededGenerator(seed: seed ?? UInt64(i)))
        nodes[Self.address(i)] = Node(manager: m, identity: id)
        net.clearWake(slot(Self.address(i)))
        return Self.address(i)
    }

    func key(_ i: Int) -> PublicKey { nodes[Self.address(i)]?.identity.publicKey ?? Self.identity(i).publicKey }
    func peer(_ i: Int) -> PeerIdentity { nodes[Self.address(i)]?.identity.peer ?? Self.identity(i).peer }

    mutating func send(_ from: Int, _ to: Int, _ text: String, known: Bool = true) {
        let a = Self.address(from)
        let out = nodes[a]!.manager.send(Array(text.utf8), to: Self.address(to), peer: known ? peer(to) : nil, now: now)
        apply(out, at: a)
    }

    /// The kit's number for an address.
    mutating func slot(_ a: UnderlayAddress) -> Int {
        if let i = index[a] { return i }
        index[a] = addressOf.count
        addressOf.append(a)
        return net.addNode()
    }

    /// Carries out a manager's outputs; its wake is the one they name, or none.
    mutating func apply(_ outputs: [SessionOutput], at a: UnderlayAddress) {
        let me = slot(a)
        var wake: Instant?
        for o in outputs {
            switch o {
            case let .send(to, bytes):
                let p = Packet(at: now, seq: 0, from: a, to: to, bytes: bytes)
                wire.append(p)
                if let filter, !filter(p) { continue }
                seq += 1
                net.transmit(Packet(at: now, seq: seq, from: a, to: to, bytes: bytes), size: bytes.count, from: me, to: slot(to))
            case let .deliver(_, peer, plaintext):
                nodes[a]!.delivered.append((peer, plaintext))
            case let .established(peer, _):
                nodes[a]!.established.append(peer.publicKey)
            case let .failed(_, reason):
                nodes[a]!.failed.append(reason)
            case let .wake(at):
                wake = at
            }
        }
        if let wake { net.setWake(me, at: wake) } else { net.clearWake(me) }
    }

    /// Injects a datagram as if it arrived now.
    mutating func inject(_ bytes: [UInt8], from: UnderlayAddress, to: UnderlayAddress) {
        let out = nodes[to]!.manager.receive(bytes, from: from, now: now)
        apply(out, at: to)
    }

    /// Runs packet arrivals and timers in time order until `end` (those at `end` included).
    mutating func run(until end: Instant) {
        while let due = net.next(until: end) {
            switch due {
            case let .message(_, _, p):
                guard nodes[p.to] != nil else { continue }
                let out = nodes[p.to]!.manager.receive(p.bytes, from: p.from, now: now)
                apply(out, at: p.to)
            case let .wake(i):
                let a = addressOf[i]
                guard nodes[a] != nil else { continue }
                let out = nodes[a]!.manager.tick(now: now)
                apply(out, at: a)
            }
        }
    }

    mutating func run(for d: Duration) { run(until: now + d) }

    func texts(_ i: Int) -> [String] {
        nodes[Self.address(i)]!.delivered.map { String(decoding: $0.plaintext, as: UTF8.self) }
    }

    func counters(_ i: Int) -> SessionCounters { nodes[Self.address(i)]!.manager.counters }
    func sizes(_ i: Int) -> SessionTableSizes { nodes[Self.address(i)]!.manager.tableSizes }
}

extension Instant {
    static func seconds(_ s: Double) -> Instant { Instant(nanoseconds: Int64(s * 1e9)) }
}
