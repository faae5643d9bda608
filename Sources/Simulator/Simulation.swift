import Foundation
import Gossip
import MeshCore
import Node
import Sessions

/// The deterministic driver: the same `NodeCore` the libuv runtime runs, on a virtual clock
/// and a virtual network. A run is fully determined by its scenario and seed.
///
/// Determinism rules kept here: events are ordered by (time, sequence); nothing that decides
/// what happens iterates a Dictionary or Set; every random draw comes from a generator derived
/// from the seed for one purpose (a node, a fault source, a timeline event).
public final class Simulation {
    public let scenario: Scenario
    public let seed: UInt64

    enum Life: UInt8 { case waiting, up, down }

    var nodes: [NodeCore] = []
    var life: [Life]
    /// Bumped on every crash, so a restarted node draws fresh randomness and stale timers die.
    var incarnation: [UInt32]
    let identities: [NodeIdentity]
    /// One copy of each peer entry for the member tables of all the nodes of one window group
    /// (N² rows at N nodes): node i uses `peerTables[i % peerTables.count]`. One table when the
    /// run is sequential; one per group when windows run on threads, so that no table is ever
    /// touched by two threads at once (`PeerIdentities` is not locked).
    let peerTables: [PeerIdentities]
    /// Per table: the node each of its entries is (by address; -1 for none), filled as it grows.
    var nodeOfEntry: [[Int32]]
    let nodeIDs: [NodeID]
    let indexOfID: [NodeID: Int]
    let networkID: NetworkID
    let addresses: [UnderlayAddress]
    var wakeAt: [Int64]
    /// Every event when sequential; only the global ones (`isNodeLocal` false) in windowed runs.
    var queue = EventQueue()
    /// Windowed runs: deliveries, late deliveries, wakes and heard beacons (ParallelWindow.swift).
    var nodeQueue = EventQueue()
    /// The lookahead: no datagram between nodes arrives sooner than this (0: run sequentially).
    let lookahead: Int64
    /// Threads a windowed run uses at most (1: the windows still run, on the calling thread);
    /// the report does not depend on it.
    public var concurrency: Int
    var windowGroups: [WindowGroup] = []
    /// A windowed run's CPU accounting (not part of the report).
    public internal(set) var windowStats = WindowStats()
    var net: VirtualNetwork
    let root: SeededGenerator
    var byzantine: [Byzantine?]
    /// Lies told by equivocating nodes (inside their sessions, so counted here, not on the wire):
    /// one tally per equivocator installed, since each is bumped by its node's thread.
    var equivocationTallies: [Equivocator.Tally] = []
    /// The simulated disk: the peers a crashed node had synced, handed back on restart.
    var stored: [[(PeerIdentity, UnderlayAddress)]?]
    /// Each crashed node's last incarnation and attribute version: the runtime writes them as they
    /// change, so unlike `stored` no unsynced part is lost.
    /// The nodes' disks: what their services persisted (`.persist`), handed back at a restart.
    var disk: any VirtualDisk = SyncedDisk()
    var downSince: [Int64]
    /// Deaths declared about (or by) a node before this instant are blamed on a fault that just ended.
    var disturbedUntil: [Int64]
    var everyoneDisturbedUntil: Int64 = -1
    let grace: Int64
    var reverts: [Revert] = []
    var crashRecords: [CrashRecord] = []
    var heals: [HealRecord] = []
    var timelineLog: [String] = []
    var lastJoinAt: Int64 = 0
    /// The admin whose culls every node obeys (`[gossip] admin = true`), derived from the seed.
    let admin: NodeIdentity?
    /// Nodes that left gracefully and are saying goodbye: up, but no longer members.
    var leaving: [Bool]
    /// CPU starvation: how late each node handles what it receives (0: not starved).
    var starveDelay: [Int64]
    /// LAN of each node and the nodes of each LAN (mode `nearest` beacons).
    let lanOf: [Int32]
    let lanMembers: [[Int]]
    /// Dissemination trackers of joins, leaves and culls.
    var spreads: [Spread] = []
    /// Bytes each node has sent, whole run (steady-state traffic is a difference of two snapshots).
    var nodeBytes: [UInt64]
    var largestDatagram = 0
    var traffic = TrafficWindow()
    var overlay = OverlayTrack()
    var discoveredAt: Double?
    var minKnownFraction = 0.0
    var now: Int64 = 0
    public internal(set) var events: UInt64 = 0

    var c = Counters()
    var series = Series()
    var intervalBytes: [UInt32]
    var intervalMsgs: UInt64 = 0, intervalBytesTotal: UInt64 = 0, lastSampleAt: Int64 = 0
    var retiredDrops: [DropReason: UInt64] = [:]
    var retiredGossipDrops: UInt64 = 0
    /// Session-layer drops and handshakes of node incarnations that crashed.
    var retiredSessionDrops: [SessionDropReason: UInt64] = [:]
    var retiredHandshakes: UInt64 = 0

    var trace: ((String) -> Void)?
    /// Trace only these nodes (nil: all), only within this window of virtual seconds.
    public var traceNodes: Set<Int>?
    public var traceWindow: ClosedRange<Double> = 0...Double.infinity

    struct Counters {
        var sent: UInt64 = 0, bytesSent: UInt64 = 0, delivered: UInt64 = 0, lost: UInt64 = 0, partitioned: UInt64 = 0
        var queueDropped: UInt64 = 0, toDown: UInt64 = 0, unroutable: UInt64 = 0, duplicated: UInt64 = 0
        var byzDropped: UInt64 = 0, byzDelayed: UInt64 = 0, byzCorrupted: UInt64 = 0, byzReplayed: UInt64 = 0
        var byzEquivocated: UInt64 = 0, falseDead: UInt64 = 0, expectedDead: UInt64 = 0, crashes: UInt64 = 0
        var restarts: UInt64 = 0, joins: UInt64 = 0, reordered: UInt64 = 0
        var leaves: UInt64 = 0, culls: UInt64 = 0, beacons: UInt64 = 0, beaconsHeard: UInt64 = 0
        var detectSeconds: [Double] = []
        var convergedAt: Double?
    }

    struct Series {
        var alive: [[Double]] = []
        var msgsPerNode: [[Double]] = []
        var bytesPerNode: [[Double]] = []
        var maxBytesNode: [[Double]] = []
        var staleViews: [[Double]] = []
        var falseDead: [[Double]] = []
        var upNodes: [[Double]] = []
        var markers: [[Double]] = []
        var components: [[Double]] = []
        var minKnown: [[Double]] = []
    }

    enum Revert {
        case restart([Int], remember: Bool)
        case heal
        case restoreLinks([(Scenario.LinkKey, Scenario.LinkModel?)])
        case restoreNodes([Int])
        case honest([Int])
        case feed([Int])
    }

    struct CrashRecord {
        var node: Int
        var at: Int64
        var incarnation: UInt32
        /// Live nodes that had the crashed node in their table, not dead, when it crashed.
        var observers: [(Int32, UInt32)]
        var evaluated = false
        var skipped = false
        var stale = 0
    }

    struct HealRecord { var at: Int64; var healedAt: Int64? }

    /// `threads`: 1 runs today's sequential loop event by event; 2 or more run lookahead
    /// windows whose nodes are handled on up to that many threads (ParallelWindow.swift), when
    /// the network model gives a lookahead of at least `minimumLookahead` (else sequentially).
    /// A windowed run's report is the same for any thread count of 2 or more, but differs from
    /// the sequential one (ties between events of one instant are ordered differently).
    public init(scenario: Scenario, seed: UInt64, threads: Int = Simulation.defaultThreads) {
        self.scenario = scenario
        self.seed = seed
        let n = scenario.nodes
        let bound = Self.lookahead(of: scenario)
        lookahead = threads >= 2 && bound >= Self.minimumLookahead ? bound : 0
        concurrency = max(1, threads)
        let tables = lookahead > 0 ? Self.groupCount : 1
        peerTables = (0..<tables).map { _ in PeerIdentities() }
        nodeOfEntry = Array(repeating: [], count: tables)
        root = SeededGenerator(seed: seed)
        networkID = NetworkID(bytes: Array(Blake2bSeed.networkBytes(seed: seed)))!
        identities = (0..<n).map { NodeIdentity.deterministic(runSeed: seed, index: $0) }
        nodeIDs = identities.map(\.nodeID)
        indexOfID = Dictionary(uniqueKeysWithValues: nodeIDs.enumerated().map { ($1, $0) })
        addresses = (0..<n).map(Self.virtualAddress)
        life = Array(repeating: .waiting, count: n)
        incarnation = Array(repeating: 0, count: n)
        wakeAt = Array(repeating: -1, count: n)
        net = VirtualNetwork(model: scenario.network, nodes: n, root: root)
        byzantine = Array(repeating: nil, count: n)
        stored = Array(repeating: nil, count: n)
        downSince = Array(repeating: 0, count: n)
        disturbedUntil = Array(repeating: -1, count: n)
        intervalBytes = Array(repeating: 0, count: n)
        nodeBytes = Array(repeating: 0, count: n)
        leaving = Array(repeating: false, count: n)
        starveDelay = Array(repeating: 0, count: n)
        admin = scenario.adminKey ? NodeIdentity.deterministic(runSeed: seed ^ 0x6164_6d69_6e00_0000, index: 0) : nil
        let lans = (0..<n).map { Int32(scenario.lan(of: $0)) }
        var members = Array(repeating: [Int](), count: Int(lans.max() ?? 0) + 1)
        for i in 0..<n { members[Int(lans[i])].append(i) }
        lanOf = lans
        lanMembers = members
        let t = scenario.timing
        // A disturbed node's peers may rightly suspect it (a probe period and its timeout), and
        // the suspicion runs out (twice suspicionMax: nodes that only heard of it wait longer);
        // it comes back at the latest on a dead-member retry.
        grace = 2 * (t.probeInterval + t.probeTimeout).nanoseconds + 2 * t.suspicionMax.nanoseconds
            + t.deadRetryInterval.nanoseconds + 2 * t.probeInterval.nanoseconds
        nodes.reserveCapacity(n)
        for i in 0..<n { nodes.append(makeNode(index: i)) }
        if lookahead > 0 { windowGroups = (0..<Self.groupCount).map { _ in WindowGroup() } }
    }

    /// The default of `threads`: the two cores this project's machines have.
    public static let defaultThreads = 2
    /// Whether the run uses lookahead windows (otherwise the sequential loop).
    public var isWindowed: Bool { lookahead > 0 }

    /// The one place a node core is built, at start and on restart: same identity every time,
    /// fresh randomness per incarnation. When NodeCore gains parameters (secret identity,
    /// network key) they are added here only.
    func makeNode(index i: Int) -> NodeCore {
        var rng = root.derived(UInt64(i) + 1)
        if incarnation[i] > 0 { rng = rng.derived(0x7265_7374_6172_7400 | UInt64(incarnation[i])) }
        // Real sessions with real keys: the mesh's network key comes from the seed like everything else.
        do {
            // What a crashed node remembered is the simulator's own model (`stored`, `storageSyncSeconds`).
            var timing = scenario.timing
            timing.peerSnapshotInterval = nil
            var core = try NodeCore(identity: identities[i], network: networkID, networkKey: simulatedNetworkKey, address: addresses[i],
                                    timing: timing, discovery: discovery(for: i), peerIdentities: peerTables[i % peerTables.count], rng: rng)
            core.persistsCompleteAtOnce = true  // `SyncedDisk`
            core.offloadsRunInline = true  // charged in `counters.offloadCost`
            return core
        } catch {
            fatalError("simulated node \(i) cannot be built: \(error)")
        }
    }

    func discovery(for i: Int) -> Discovery {
        var d = Discovery()
        d.modes = scenario.modes
        d.isMaster = scenario.masters.contains(i)
        d.uplinkKbps = scenario.uplinkKbps
        if let admin { d.adminKeys = [admin.publicKey] }
        return d
    }

    /// The simulated mesh's 32-byte network key, derived from the run seed.
    var simulatedNetworkKey: [UInt8] {
        var g = SeededGenerator(seed: seed ^ 0x6e6b_6579)
        var key: [UInt8] = []
        for _ in 0..<4 { let v = g.next(); for b in 0..<8 { key.append(UInt8((v >> UInt64(8 * b)) & 0xff)) } }
        return key
    }

    /// Virtual node i lives at [fd51:a7e::i]:7400 (a ULA never routed anywhere).
    static func virtualAddress(_ i: Int) -> UnderlayAddress {
        var ip: [UInt8] = [0xfd, 0x51, 0x0a, 0x7e] + [UInt8](repeating: 0, count: 8)
        ip += [UInt8((i >> 24) & 0xff), UInt8((i >> 16) & 0xff), UInt8((i >> 8) & 0xff), UInt8(i & 0xff)]
        return UnderlayAddress(ip: ip, port: 7400)
    }

    /// The inverse of `virtualAddress` without hashing: this runs for every datagram sent.
    @inline(__always) func index(of a: UnderlayAddress) -> Int? {
        guard a.port == 7400 else { return nil }
        return a.ip.withUnsafeBufferPointer { p -> Int? in
            guard p.count == 16, p[0] == 0xfd, p[1] == 0x51, p[2] == 0x0a, p[3] == 0x7e else { return nil }
            for k in 4..<12 where p[k] != 0 { return nil }
            let i = Int(p[12]) << 24 | Int(p[13]) << 16 | Int(p[14]) << 8 | Int(p[15])
            return i < life.count ? i : nil
        }
    }

    static func nanos(_ seconds: Double) -> Int64 { Int64((seconds * 1e9).rounded()) }

    /// Runs to the scenario's end. `progress` is called now and then with (virtual seconds, events).
    public func run(progress: ((Double, UInt64) -> Void)? = nil, trace: ((String) -> Void)? = nil) -> SimReport {
        let wallStart = Date()
        self.trace = trace
        let end = Self.nanos(scenario.durationSeconds)
        let sampleStep = max(1, Self.nanos(scenario.sampleEverySeconds))
        var late = Array(repeating: false, count: scenario.nodes)
        for e in scenario.timeline where e.kind == .join { if case let .list(l) = e.nodes { for i in l { late[i] = true } } }
        if scenario.startConverged {
            // One shared array: every node's table copies rows out of it, not the array.
            let formed = (0..<nodes.count).filter { !late[$0] }.map { PeerEntry(peer: identities[$0].peer, address: addresses[$0]) }
            for i in 0..<nodes.count where !late[i] {
                apply(i, nodes[i].handle(.command(.membership(.restoreMembers(formed))), now: .zero))
                if let progress, i & 0xff == 0 { progress(0, events) }
            }
        }
        for i in 0..<nodes.count where !late[i] { boot(i, remembered: []) }
        for (k, e) in scenario.timeline.enumerated() { queue.push(Self.nanos(e.atSeconds), .timeline(index: Int32(k), firing: 0)) }
        queue.push(0, .sample)
        if isWindowed {
            runWindowed(end: end, sampleStep: sampleStep, progress: progress)
        } else {
            while let e = queue.pop(), e.time <= end {
                now = e.time
                events += 1
                if events & 0x3fff == 0, let progress { progress(Double(now) / 1e9, events) }
                handle(e, sampleStep: sampleStep)
            }
        }
        now = end
        if lastSampleAt < end { sampleMembership() }
        progress?(Double(end) / 1e9, events)
        return report(wallSeconds: Date().timeIntervalSince(wallStart))
    }

    /// One event of the sequential loop, or one global event of a windowed run.
    func handle(_ e: EventQueue.Entry, sampleStep: Int64) {
        switch e.kind {
        case let .deliver(to, from, bytes):
            let j = Int(to)
            if starveDelay[j] > 0, life[j] == .up {
                // A starved node's CPU gets to its input late; a fixed delay keeps the order.
                queue.push(now + starveDelay[j], .deliverLate(to: to, from: from, bytes: bytes))
                return
            }
            receive(j, from: Int(from), bytes)
        case let .deliverLate(to, from, bytes):
            receive(Int(to), from: Int(from), bytes)
        case let .beacon(node, inc):
            beacon(Int(node), incarnation: inc)
        case let .beaconHeard(to, from):
            let j = Int(to)
            guard life[j] == .up, !leaving[j] else { return }
            c.beaconsHeard += 1
            if trace != nil { log(j, "beacon heard from node \(from)") }
            apply(j, nodes[j].handle(.command(.beaconHeard(addresses[Int(from)])), now: Instant(nanoseconds: now)))
        case let .stop(node, inc):
            let i = Int(node)
            guard incarnation[i] == inc, life[i] == .up else { return }
            shutDown(i, crashRecord: false)
            leaving[i] = false
        case let .wake(node, at):
            let i = Int(node)
            guard wakeAt[i] == at, life[i] == .up else { return }
            wakeAt[i] = -1
            if trace != nil { log(i, "timer") }
            apply(i, nodes[i].handle(.timer, now: Instant(nanoseconds: now)))
        case .sample:
            sampleMembership()
            queue.push(now + sampleStep, .sample)
        case let .timeline(index, firing):
            fire(Int(index), firing: Int(firing))
        case let .revert(slot):
            undo(Int(slot))
        case let .crashDeadline(record):
            evaluateCrash(Int(record))
        }
    }

    func receive(_ j: Int, from: Int, _ bytes: [UInt8]) {
        guard life[j] == .up else { c.toDown += 1; return }
        c.delivered += 1
        if trace != nil { log(j, "← node \(from)  \(Self.describe(bytes))") }
        let before = trace == nil ? [:] : nodes[j].sessions.counters.drops
        apply(j, nodes[j].handle(.datagram(from: addresses[from], bytes: bytes), now: Instant(nanoseconds: now)))
        if trace != nil {
            // Say why a datagram went nowhere: the reason the session layer counted.
            for (reason, n) in nodes[j].sessions.counters.drops.sorted(by: { $0.key.rawValue < $1.key.rawValue })
            where n != before[reason, default: 0] {
                log(j, "session dropped it: \(reason.rawValue)")
            }
        }
    }

    /// Size of a LAN beacon on the wire (a multicast datagram sent once, heard by the whole LAN).
    static let beaconBytes = 48

    func beacon(_ i: Int, incarnation inc: UInt32) {
        guard life[i] == .up, incarnation[i] == inc, !leaving[i] else { return }
        c.beacons += 1
        c.sent += 1
        c.bytesSent += UInt64(Self.beaconBytes)
        nodeBytes[i] &+= UInt64(Self.beaconBytes)
        intervalBytes[i] &+= UInt32(Self.beaconBytes)
        intervalBytesTotal += UInt64(Self.beaconBytes)
        intervalMsgs += 1
        for j in lanMembers[Int(lanOf[i])] where j != i && life[j] == .up {
            // Each listener's copy has its own latency and loss; a partition stops it like any datagram.
            if case let .arrives(delay, _) = net.fate(from: i, to: j, bytes: Self.beaconBytes, now: now) {
                pushNodeEvent(now + delay, .beaconHeard(to: Int32(j), from: Int32(i)))
            }
        }
        queue.push(now + Self.nanos(scenario.beaconEverySeconds), .beacon(node: Int32(i), incarnation: inc))
    }

    func log(_ node: Int?, _ text: @autoclosure () -> String) {
        guard let trace else { return }
        let t = Double(now) / 1e9
        guard traceWindow.contains(t) else { return }
        if let node, let only = traceNodes, !only.contains(node) { return }
        trace(String(format: "%10.6fs  ", t) + (node.map { "node \($0)  " } ?? "") + text())
    }

    /// One line about a datagram, for traces.
    /// Datagrams are encrypted, so a trace names the session packet type; what the node made of
    /// it shows in the event lines that follow.
    static func describe(_ bytes: [UInt8]) -> String {
        guard let first = bytes.first, let type = SessionWire.PacketType(rawValue: first) else {
            return "undecodable (\(bytes.count) B)"
        }
        return "\(type) (\(bytes.count) B)"
    }

    func seedsFor(_ i: Int) -> [Int] {
        switch scenario.seeding {
        case "ring": return i == 0 ? [] : [i - 1]
        case let m where m.hasPrefix("random:"):
            let k = Int(m.dropFirst(7)) ?? 1
            guard i > 0 else { return [] }
            var rng = SeededGenerator(seed: seed).derived(0x5eed_0000 &+ UInt64(i))
            return (0..<min(k, i)).map { _ in Int(rng.next() % UInt64(i)) }
        default: return i == 0 ? [] : [0]
        }
    }

    // MARK: - Node lifecycle

    func boot(_ i: Int, remembered: [(PeerIdentity, UnderlayAddress)], restored: [StoredRow] = []) {
        if life[i] != .waiting { nodes[i] = makeNode(index: i) }
        life[i] = .up
        let t = Instant(nanoseconds: now)
        if !restored.isEmpty { apply(i, nodes[i].handle(.restored(restored), now: t)) }
        for s in seedsFor(i) { apply(i, nodes[i].handle(.command(.addSeed(addresses[s])), now: t)) }
        for (p, a) in remembered { apply(i, nodes[i].handle(.command(.rememberPeer(p, a)), now: t)) }
        apply(i, nodes[i].handle(.start, now: t))
        if scenario.beaconEverySeconds > 0, scenario.modes.contains(.nearest) {
            var g = root.derived(0x6265_6163_6f6e_0000 ^ (UInt64(i) << 8) ^ UInt64(incarnation[i]))
            let first = now + Self.nanos(g.unit() * scenario.beaconEverySeconds)
            queue.push(first, .beacon(node: Int32(i), incarnation: incarnation[i]))
        }
    }

    func crash(_ i: Int) { shutDown(i, crashRecord: true) }

    /// A node is a member worth counting: up and not on its way out.
    @inline(__always) func isLive(_ i: Int) -> Bool { life[i] == .up && !leaving[i] }

    /// Stops a node: a crash (its detection is then measured) or the end of a graceful leave or a cull.
    func shutDown(_ i: Int, crashRecord: Bool) {
        guard life[i] == .up else { return }
        let id = nodeIDs[i]
        var observers: [(Int32, UInt32)] = []
        for o in 0..<nodes.count where o != i && isLive(o) {
            if let m = nodes[o].members[id], m.state != .dead { observers.append((Int32(o), incarnation[o])) }
        }
        // The simulated disk synced every `storageSyncSeconds`: members confirmed since are lost.
        let sync = max(1, Self.nanos(scenario.storageSyncSeconds))
        let lastSync = Instant(nanoseconds: now / sync * sync)
        disk.crash(node: i, now: now)
        stored[i] = nodes[i].sortedMembers.filter { $0.state == .alive && $0.stateSince <= lastSync }.map { ($0.identity, $0.address) }
        for (reason, n) in nodes[i].counters.drops { retiredDrops[reason, default: 0] += n }
        retiredGossipDrops += nodes[i].gossip.counters.totalDrops
        for (reason, n) in nodes[i].sessions.counters.drops { retiredSessionDrops[reason, default: 0] += n }
        retiredHandshakes += nodes[i].sessions.counters.handshakesCompleted
        nodes[i] = makeNode(index: i)  // releases the old tables; rebuilt again on restart
        life[i] = .down
        downSince[i] = now
        wakeAt[i] = -1
        incarnation[i] += 1
        starveDelay[i] = 0
        guard crashRecord else { return }
        c.crashes += 1
        crashRecords.append(CrashRecord(node: i, at: now, incarnation: incarnation[i], observers: observers))
        if let spec = scenario.checks.first(where: { $0.kind == "crashed_detected_within" }), let w = spec.withinSeconds {
            queue.push(now + Self.nanos(w), .crashDeadline(record: Int32(crashRecords.count - 1)))
        }
    }

    func restart(_ i: Int, remember: Bool) {
        guard life[i] == .down else { return }
        if !remember { disk.wipe(node: i) }
        boot(i, remembered: remember ? stored[i] ?? [] : [], restored: remember ? disk.rows(node: i) : [])
        stored[i] = nil
        disturbedUntil[i] = now + grace
        c.restarts += 1
    }

    // MARK: - Outputs and the wire

    /// Carries out a node's outputs at `now`. `wakesTaken`: a window's worker has already
    /// handled the wakes (ParallelWindow.swift), so they are skipped here.
    func apply(_ i: Int, _ outputs: [NodeOutput], wakesTaken: Bool = false) {
        for o in outputs {
            switch o {
            case let .send(to, bytes): transmit(from: i, to: to, bytes: bytes)
            case let .wake(at):
                if !wakesTaken, wakeAt[i] != at.nanoseconds {
                    wakeAt[i] = at.nanoseconds
                    pushNodeEvent(max(at.nanoseconds, now), .wake(node: Int32(i), at: at.nanoseconds))
                }
            case let .event(ev):
                if !spreads.isEmpty { noteSpread(observer: i, ev) }
                if case let .memberStateChanged(id, from, to, _) = ev {
                    if to == .dead { classifyDeath(observer: i, id) }
                    if trace != nil { log(i, "member \(indexOfID[id].map { "node \($0)" } ?? id.short): \(from) → \(to)") }
                } else if trace != nil, case let .memberAdded(id, _) = ev {
                    log(i, "member added: \(indexOfID[id].map { "node \($0)" } ?? id.short)")
                }
            case let .persist(batch, then):
                // The disk is the driver's (written on this thread, also after a parallel window).
                // `SyncedDisk` is durable at once, so the nodes answer their own persists
                // (`persistsCompleteAtOnce`); a disk with faults brings a completion event instead.
                if case .durable = disk.write(node: i, batch.ops, now: now) { apply(i, then, wakesTaken: wakesTaken) }
            case .offload:
                // The nodes run their jobs inline (`offloadsRunInline`): none reaches the driver.
                break
            }
        }
    }

    func transmit(from i: Int, to address: UnderlayAddress, bytes: [UInt8]) {
        c.sent += 1
        c.bytesSent += UInt64(bytes.count)
        intervalMsgs += 1
        intervalBytesTotal += UInt64(bytes.count)
        intervalBytes[i] &+= UInt32(truncatingIfNeeded: bytes.count)
        nodeBytes[i] &+= UInt64(bytes.count)
        if bytes.count > largestDatagram { largestDatagram = bytes.count }
        guard let j = index(of: address) else {
            c.unroutable += 1
            if trace != nil { log(i, "→ \(address)  unroutable") }
            return
        }
        var payload = bytes
        var extra: Int64 = 0
        if byzantine[i] != nil {
            let a = byzantine[i]!.act(to: Int32(j), bytes: bytes, addresses: addresses)
            if a.acted {
                switch byzantine[i]!.behaviour {
                case .drop: c.byzDropped += 1
                case .delay: c.byzDelayed += 1
                case .corrupt: c.byzCorrupted += 1
                case .replay: c.byzReplayed += 1
                case .equivocate: c.byzEquivocated += 1
                }
                if trace != nil { log(i, "byzantine \(byzantine[i]!.behaviour.rawValue) → node \(j)") }
            }
            if let (to, old) = a.replay { route(from: i, to: Int(to), bytes: old, extra: 0) }
            guard let b = a.bytes else { return }
            payload = b
            extra = a.extraDelay
        }
        route(from: i, to: j, bytes: payload, extra: extra)
    }

    func route(from i: Int, to j: Int, bytes: [UInt8], extra: Int64) {
        switch net.fate(from: i, to: j, bytes: bytes.count, now: now) {
        case let .dropped(why):
            switch why {
            case .loss: c.lost += 1
            case .partition: c.partitioned += 1
            case .queue: c.queueDropped += 1
            }
            if trace != nil { log(i, "→ node \(j)  \(Self.describe(bytes))  dropped (\(why))") }
        case let .arrives(delay, dup):
            if trace != nil { log(i, "→ node \(j)  \(Self.describe(bytes))  arrives in \(String(format: "%.3f", Double(delay + extra) / 1e6)) ms\(dup == nil ? "" : ", duplicated")") }
            pushNodeEvent(now + delay + extra, .deliver(to: Int32(j), from: Int32(i), bytes: bytes))
            if let dup {
                c.duplicated += 1
                pushNodeEvent(now + dup + extra, .deliver(to: Int32(j), from: Int32(i), bytes: bytes))
            }
        }
    }

    // MARK: - Measuring

    /// A death is false when the dead node is up, reachable and honest, and no fault touching
    /// either side ended within the grace period (probe timeouts plus suspicion).
    func classifyDeath(observer i: Int, _ id: NodeID) {
        guard let j = indexOfID[id] else { c.expectedDead += 1; return }
        if life[j] != .up || leaving[j] {
            c.expectedDead += 1
            if incarnation[j] > 0 { c.detectSeconds.append(Double(now - downSince[j]) / 1e9) }
            return
        }
        let disturbed = max(disturbedUntil[i], disturbedUntil[j], everyoneDisturbedUntil) > now
        if disturbed || byzantine[i] != nil || byzantine[j] != nil || !net.reachable(i, j) || net.isDegraded(i) || net.isDegraded(j) {
            c.expectedDead += 1
            return
        }
        c.falseDead += 1
        log(i, "FALSE DEAD: declared node \(j) dead while it is up and reachable")
    }

    /// Per live node: members that are alive (or suspect) and up, against the best possible (every
    /// live node, up to the table size less the slots held by nodes that are down).
    func sampleMembership() {
        var up = 0
        for i in life.indices where isLive(i) { up += 1 }
        let cap = scenario.timing.maxMembers
        var aliveSum = 0, wantSum = 0, stale = 0
        var converged = up > 0
        var minKnown = up > 0 ? 1.0 : 0.0
        for (t, table) in peerTables.enumerated() {
            while nodeOfEntry[t].count < table.count {
                nodeOfEntry[t].append(Int32(index(of: table.entry(at: UInt32(nodeOfEntry[t].count)).address) ?? -1))
            }
        }
        for i in 0..<nodes.count where isLive(i) {
            var aliveUp = 0, staleDown = 0
            let nodeOf = nodeOfEntry[i % nodeOfEntry.count]
            // Rows by peer-table index and state: N² rows per sample at N nodes.
            nodes[i].members.forEachEntry { e, state in
                let j = Int(nodeOf[Int(e)])
                guard j >= 0 else { return }
                if isLive(j) {
                    // SWIM: a suspect is still a member (it may refute); only dead, left or
                    // culled ones are out. Under loss some member is suspect somewhere at
                    // almost any instant in a large mesh, and that is not a failure to converge.
                    if state == .alive || state == .suspect { aliveUp += 1 }
                } else {
                    staleDown += 1
                    if state == .alive || state == .suspect { stale += 1 }
                }
            }
            let want = max(0, min(up - 1, cap - staleDown))
            aliveSum += min(aliveUp, want)
            wantSum += want
            if aliveUp < want { converged = false }
            if want > 0 { minKnown = min(minKnown, Double(min(aliveUp, want)) / Double(want)) }
        }
        sampleExtras(minKnown: minKnown)
        let t = Double(now) / 1e9
        let fraction = wantSum == 0 ? 1 : Double(aliveSum) / Double(wantSum)
        series.alive.append([t, fraction])
        series.staleViews.append([t, Double(stale)])
        series.falseDead.append([t, Double(c.falseDead)])
        series.upNodes.append([t, Double(up)])
        let dt = Double(now - lastSampleAt) / 1e9
        if dt > 0 {
            var maxBytes: UInt32 = 0
            for k in intervalBytes.indices { maxBytes = max(maxBytes, intervalBytes[k]); intervalBytes[k] = 0 }
            let perNode = Double(max(1, up)) * dt
            series.msgsPerNode.append([t, Double(intervalMsgs) / perNode])
            series.bytesPerNode.append([t, Double(intervalBytesTotal) / perNode])
            series.maxBytesNode.append([t, Double(maxBytes) / dt])
            intervalMsgs = 0
            intervalBytesTotal = 0
        }
        lastSampleAt = now
        if converged {
            if c.convergedAt == nil, now >= lastJoinAt { c.convergedAt = t }
            for k in heals.indices where heals[k].healedAt == nil { heals[k].healedAt = now }
        }
    }

    func evaluateCrash(_ r: Int) {
        var rec = crashRecords[r]
        var staleNames: [String] = []
        rec.evaluated = true
        if life[rec.node] != .down || incarnation[rec.node] != rec.incarnation {
            rec.skipped = true
        } else {
            let id = nodeIDs[rec.node]
            for (o, inc) in rec.observers {
                let k = Int(o)
                guard isLive(k), incarnation[k] == inc, let m = nodes[k].members[id], m.state != .dead else { continue }
                rec.stale += 1
                if staleNames.count < 5 { staleNames.append("\(k) (\(m.state))") }
            }
        }
        crashRecords[r] = rec
        let who = staleNames.isEmpty ? "" : ": " + staleNames.joined(separator: ", ")
        log(rec.node, "crash deadline: \(rec.skipped ? "restarted before the deadline" : "\(rec.stale) of \(rec.observers.count) observers still see it not dead\(who)")")
    }
}

enum Blake2bSeed {
    /// The simulated mesh's network id, from the seed, so runs with different seeds are different meshes.
    static func networkBytes(seed: UInt64) -> [UInt8] {
        var g = SeededGenerator(seed: seed ^ 0x6e65_7469_64)
        var out: [UInt8] = []
        for _ in 0..<2 { let v = g.next(); for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8((v >> UInt64(s)) & 0xff)) } }
        return out
    }
}
