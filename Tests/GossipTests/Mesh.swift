import Foundation
import MeshCore
import SimulatorKit
@testable import Gossip

/// A deterministic in-memory network of `GossipCore`s on the test kit (SimulatorKit's `SimNet`:
/// the engine's clock and event queue, seeded loss and latency, one pending wake per node), with
/// crashes and partitions. No crypto: the sender's entry stands for what the node's session layer
/// would prove.
struct Mesh {
    enum Message {
        case datagram([UInt8])
        case reliable([UInt8])
        case start
    }

    var cores: [GossipCore?]
    var entries: [PeerEntry]
    var byAddress: [UnderlayAddress: Int] = [:]
    var crashed: [Bool]
    /// Clock, queue, links and wakes: latency uniform in [1 ms, 10 ms) unless set.
    var net: SimNet<Message>
    var now: Instant { net.now }
    var loss: Double {
        get { net.link.loss }
        set { net.link.loss = newValue }
    }
    /// Extra delay on everything a node receives: a CPU-starved node that handles its input late.
    var inboundDelay: [Duration?]
    /// Per-link one-way latency, replacing the uniform range (mode `nearest` tests).
    var linkLatency: (@Sendable (Int, Int) -> Duration)? {
        get { net.linkLatency }
        set { net.linkLatency = newValue }
    }
    /// Links that drop everything (a partition).
    var blocked: (@Sendable (Int, Int) -> Bool)? {
        get { net.blocked }
        set { net.blocked = newValue }
    }
    var datagrams = 0
    var datagramBytes = 0
    var reliableMessages = 0
    var largestDatagram = 0
    var eventLog: [(at: Instant, node: Int, event: GossipEvent)] = []
    var logEvents = true
    let config: GossipConfig
    let configs: [GossipConfig]
    let seed: UInt64
    /// One identity table for every core, as the simulator will share one: rows share arrays.
    let identities = PeerIdentities()

    static let network = NetworkID(bytes: [UInt8](repeating: 9, count: 16))!
    /// Tests run in parallel and share this cache, so it is locked.
    nonisolated(unsafe) static var identityCache: [Int: PeerIdentity] = [:]
    static let identityLock = NSLock()

    static func identity(_ i: Int) -> PeerIdentity {
        identityLock.lock()
        defer { identityLock.unlock() }
        if let p = identityCache[i] { return p }
        let p = NodeIdentity.deterministic(runSeed: 77, index: i).peer
        identityCache[i] = p
        return p
    }

    static func address(_ i: Int) -> UnderlayAddress {
        UnderlayAddress(high: 0xfe80_0000_0000_0000, low: UInt64(i / 60000 + 1), port: UInt16(1000 + i % 60000))
    }

    init(nodes n: Int, seed: UInt64, config: (Int) -> GossipConfig) {
        self.seed = seed
        net = SimNet(nodes: n, link: LinkProfile(latency: .milliseconds(1), jitter: .milliseconds(9)), rng: SeededGenerator(seed: seed))
        var cs: [GossipCore?] = []
        var es: [PeerEntry] = []
        for i in 0..<n {
            let e = PeerEntry(peer: Self.identity(i), address: Self.address(i))
            es.append(e)
            byAddress[e.address] = i
            cs.append(GossipCore(me: e, config: config(i), rng: SeededGenerator(seed: seed &* 1000 &+ UInt64(i)), identities: identities))
        }
        self.config = config(0)
        configs = (0..<n).map(config)
        cores = cs
        entries = es
        crashed = Array(repeating: false, count: n)
        inboundDelay = Array(repeating: nil, count: n)
    }

    static func defaultConfig(master: Int = 0) -> (Int) -> GossipConfig {
        { i in
            var c = GossipConfig(network: network)
            c.isMaster = i == master
            if i != master { c.seeds = [address(master)] }
            return c
        }
    }

    var count: Int { cores.count }

    mutating func start(_ i: Int, at: Instant) { net.deliver(.start, to: i, from: i, after: at - now) }

    /// Starts every node, spread over `over` so joins arrive as in a real roll-out.
    mutating func startAll(over: Duration = .seconds(5)) {
        for i in 0..<count {
            start(i, at: now + .nanoseconds(over.nanoseconds * Int64(i) / Int64(max(1, count))))
        }
    }

    /// A fresh process with the same identity and address (incarnation 0, empty tables).
    mutating func restart(_ i: Int, config c: GossipConfig? = nil) {
        cores[i] = GossipCore(me: entries[i], config: c ?? configs[i], rng: SeededGenerator(seed: seed &* 7919 &+ UInt64(i) &+ net.queued), identities: identities)
        crashed[i] = false
        net.clearWake(i)
        net.deliver(.start, to: i, from: i)
    }

    mutating func crash(_ i: Int) {
        crashed[i] = true
        net.clearWake(i)
    }

    mutating func command(_ i: Int, _ c: GossipCommand) { feed(i, .command(c)) }

    mutating func feed(_ i: Int, _ input: GossipInput) {
        guard !crashed[i], cores[i] != nil else { return }
        let outs = cores[i]!.handle(input, now: now) // in place: a copy would duplicate the tables on write
        process(i, outs)
    }

    mutating func process(_ i: Int, _ outs: [GossipOutput]) {
        for o in outs {
            switch o {
            case let .send(dest, bytes):
                datagrams += 1
                datagramBytes += bytes.count
                largestDatagram = max(largestDatagram, bytes.count)
                let to: Int?
                switch dest {
                case let .peer(e): to = byAddress[e.address]
                case let .address(a): to = byAddress[a]
                }
                guard let to else { continue }
                net.transmit(.datagram(bytes), size: bytes.count, from: i, to: to, extraDelay: inboundDelay[to] ?? .zero)
            case let .sendReliable(e, bytes):
                reliableMessages += 1
                guard let to = byAddress[e.address] else { continue }
                if let b = blocked, b(i, to) { continue }
                // A reliable message is never lost; it takes a round trip's worth of time.
                let d = net.delay(from: i, to: to) + net.delay(from: i, to: to)
                net.deliver(.reliable(bytes), to: to, from: i, after: d)
            case let .wake(at):
                net.setWake(i, at: at)
            case let .event(ev):
                if logEvents { eventLog.append((now, i, ev)) }
            }
        }
    }

    mutating func run(for d: Duration) { run(until: now + d) }

    mutating func run(until end: Instant) {
        while let due = net.next(until: end) {
            switch due {
            case let .message(i, _, .start):
                feed(i, .start)
            case let .wake(i):
                feed(i, .timer)
            case let .message(to, from, .datagram(bytes)):
                feed(to, .received(from: entries[from], bytes: bytes))
            case let .message(to, from, .reliable(bytes)):
                feed(to, .reliableReceived(from: entries[from], bytes: bytes))
            }
        }
    }

    /// Runs until `condition` holds (checked every `step`) or `limit` passes; returns the time taken.
    mutating func runUntil(limit: Duration, step: Duration = .milliseconds(100), _ condition: (Mesh) -> Bool) -> Duration? {
        let start = now
        while now - start < limit {
            run(for: step)
            if condition(self) { return now - start }
        }
        return nil
    }

    var live: [Int] { (0..<count).filter { !crashed[$0] && cores[$0] != nil } }

    func state(of subject: Int, at observer: Int) -> MemberState? {
        cores[observer]?.members[entries[subject].nodeID]?.state
    }

    /// How many live nodes (other than the subject) see the subject in this state.
    func observers(of subject: Int, in state: MemberState) -> Int {
        live.filter { $0 != subject && self.state(of: subject, at: $0) == state }.count
    }

    func everyoneKnowsEveryone(allowSuspect: Bool = false) -> Bool {
        let l = live
        for o in l {
            guard let c = cores[o] else { return false }
            var alive = 0
            for s in l where s != o {
                let st = c.members[entries[s].nodeID]?.state
                if st == .alive || (allowSuspect && st == .suspect) { alive += 1 }
            }
            if alive != l.count - 1 { return false }
        }
        return true
    }

    /// Connected components of the active-view graph among live nodes (edges either way).
    func components() -> Int {
        let l = live
        var parent = Array(0..<count)
        func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }
        for i in l {
            for p in cores[i]!.activeView {
                guard let j = byAddress[p.address], !crashed[j] else { continue }
                let a = find(i), b = find(j)
                if a != b { parent[a] = b }
            }
        }
        return Set(l.map { find($0) }).count
    }
}
