import MeshCore
import SimulatorKit
import Noise
import Sessions
import Sodium

/// An in-memory network between session managers on a virtual clock: latency, jitter (so
/// reordering), loss and duplication drawn from a seeded generator, so every run repeats.
struct Pump {
    struct Node {
        var manager: SessionManager
        let identity: NodeIdentity
        var wake: Instant?
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

    enum Event { case packet(Packet), wake(UnderlayAddress) }

    var nodes: [UnderlayAddress: Node] = [:]
    var now = Instant.zero
    /// Datagrams on their way and the nodes' wakes, on the simulation engine's queue
    /// (SimulatorKit): by time, then the order they were queued. A node has one pending wake
    /// (`Node.wake`): the manager's latest outputs name it or clear it, and a wake replaced or
    /// cleared since it was queued is skipped when it comes due.
    var queue = EventHeap<Event>()
    var seq = 0
    var rng = SeededGenerator(seed: 99)
    var latency: Duration = .milliseconds(20)
    var jitter: Duration = .zero
    var loss = 0.0
    var duplication = 0.0
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
        return Self.address(i)
    }

    func key(_ i: Int) -> PublicKey { nodes[Self.address(i)]?.identity.publicKey ?? Self.identity(i).publicKey }
    func peer(_ i: Int) -> PeerIdentity { nodes[Self.address(i)]?.identity.peer ?? Self.identity(i).peer }

    mutating func send(_ from: Int, _ to: Int, _ text: String, known: Bool = true) {
        let a = Self.address(from)
        let out = nodes[a]!.manager.send(Array(text.utf8), to: Self.address(to), peer: known ? peer(to) : nil, now: now)
        apply(out, at: a)
    }

    mutating func apply(_ outputs: [SessionOutput], at a: UnderlayAddress) {
        let queued = nodes[a]!.wake
        nodes[a]!.wake = nil
        for o in outputs {
            switch o {
            case let .send(to, bytes):
                let p = Packet(at: now, seq: 0, from: a, to: to, bytes: bytes)
                wire.append(p)
                if let filter, !filter(p) { continue }
                if rng.unit() < loss { continue }
                let copies = rng.unit() < duplication ? 2 : 1
                for _ in 0..<copies {
                    let extra = Duration.nanoseconds(Int64(Double(jitter.nanoseconds) * rng.unit()))
                    seq += 1
                    let at = now + latency + extra
                    queue.push(at.nanoseconds, .packet(Packet(at: at, seq: seq, from: a, to: to, bytes: bytes)))
                }
            case let .deliver(_, peer, plaintext):
                nodes[a]!.delivered.append((peer, plaintext))
            case let .established(peer, _):
                nodes[a]!.established.append(peer.publicKey)
            case let .failed(_, reason):
                nodes[a]!.failed.append(reason)
            case let .wake(at):
                nodes[a]!.wake = at
                // The same wake as before is queued already.
                if at != queued { queue.push(max(at, now).nanoseconds, .wake(a)) }
            }
        }
    }

    /// Injects a datagram as if it arrived now.
    mutating func inject(_ bytes: [UInt8], from: UnderlayAddress, to: UnderlayAddress) {
        let out = nodes[to]!.manager.receive(bytes, from: from, now: now)
        apply(out, at: to)
    }

    /// Runs packet arrivals and timers in time order until `end` (those at `end` included).
    mutating func run(until end: Instant) {
        while let t = queue.nextTime, t <= end.nanoseconds, let e = queue.pop() {
            now = max(now, Instant(nanoseconds: t))
            switch e.event {
            case let .packet(p):
                guard nodes[p.to] != nil else { continue }
                let out = nodes[p.to]!.manager.receive(p.bytes, from: p.from, now: now)
                apply(out, at: p.to)
            case let .wake(a):
                // Replaced or cleared since it was queued: not this node's wake any more.
                guard let w = nodes[a]?.wake, w <= now else { continue }
                nodes[a]!.wake = nil
                let out = nodes[a]!.manager.tick(now: now)
                apply(out, at: a)
            }
        }
        now = max(now, end)
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
