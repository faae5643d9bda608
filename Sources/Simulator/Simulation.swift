import Foundation
import Gossip
import MeshCore
import Node
import Sessions

/// The deterministic driver: the same `NodeCore` the libuv runtime runs, on a virtual clock,
/// a virtual network, virtual disks and CPUs (Engine/, VirtualDisk.swift). A run is fully
/// determined by its scenario and seed.
///
/// What is where: the engine parts know no protocol (Engine/: event queue, network, CPU; the
/// disk); fault agents apply the timeline's faults as data (Faults/); workloads drive protocols
/// and checkers judge them, by kind from a `SimulationRegistry` (Workloads/, Checks/); this type
/// hosts the nodes and runs the loop (NodeHost.swift, Wire.swift, ParallelWindow.swift).
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
    /// Per table: the node each of its entries is (by address), filled as it grows
    /// (MembershipSampling.swift).
    var entryMaps: [EntryMap]
    let nodeIDs: [NodeID]
    let indexOfID: [NodeID: Int]
    let networkID: NetworkID
    let addresses: [UnderlayAddress]
    var wakeAt: [Int64]
    /// Every event when sequential; only the global ones (`isNodeLocal` false) in windowed runs.
    var queue = EventQueue()
    /// Windowed runs: deliveries, late deliveries, wakes and agents' signals (ParallelWindow.swift).
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
    /// Per node: the lie its services act out (`conflicting_proposals`, `double_vote`).
    var serviceLies: [ServiceLie]
    /// Lies told by equivocating nodes (inside their sessions, so counted here, not on the wire):
    /// one tally per equivocator installed, since each is bumped by its node's thread.
    var equivocationTallies: [Equivocator.Tally] = []
    /// The simulated disk: the peers a crashed node had synced, handed back on restart.
    var stored: [[(PeerIdentity, UnderlayAddress)]?]
    /// The nodes' disks: what their services persisted (`.persist`), handed back at a restart. A
    /// `FaultyDisk` when the scenario has `disk` events (writes and syncs take virtual time, and
    /// the faults reach the nodes), else a `SyncedDisk` (durable at once).
    var disk: any VirtualDisk = SyncedDisk()
    /// Per node, the persists handed to a disk that does not complete at once, oldest first: each
    /// waits for its `.diskDone` event, which carries out its sends and answers `.persisted`.
    var diskQueue: [[PendingPersist]]
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
    /// Starvation and offloaded work per node.
    var cpu: VirtualCPU
    /// Nodes down because of a crash (not a leave or a cull), for `faultsActive`.
    var crashedDown: [Bool]
    /// When the last fault healed (nil: one is still active); 0 when the run never had one.
    var faultsHealedAt: Int64? = 0
    /// The kinds the scenario's checks and workloads are built from.
    let registry: SimulationRegistry
    /// The scenario's checks, in its order, and the safety ones watched after every step.
    var checkers: [any Checker] = []
    var safetyWatches: [SafetyWatch] = []
    var workloads: [any Workload] = []
    /// The nodes' surroundings the driver plays (`NodeAgent`); per agent what its signals become
    /// (for windows' threads) and how many were handed to nodes.
    var agents: [any NodeAgent] = []
    var agentSignals: [AgentSignal] = []
    var signalsHeard: [UInt64] = []
    /// Offloaded jobs run, their results waiting for the node's virtual CPU (`.offloaded` events).
    var offloads = OffloadSlots()
    /// While a window's steps are merged: its end (nothing may be queued before it); else 0.
    var mergingUntil: Int64 = 0
    /// Set by checkers' `prepare`: measurements they need the run to take.
    var crashDeadline: Int64?
    var trafficFrom: Int64?
    var discoveryFractionOverride: Double?
    /// The first false dead declaration, in words (for the safety checker).
    var firstFalseDead: String?
    /// LAN of each node and the nodes of each LAN (`multicast`).
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
        var leaves: UInt64 = 0, culls: UInt64 = 0
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
        case repairDisks([Int], FaultyDisk.Fault)
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
    public init(scenario: Scenario, seed: UInt64, threads: Int = Simulation.defaultThreads, registry: SimulationRegistry = .standard) {
        self.scenario = scenario
        self.registry = registry
        self.seed = seed
        let n = scenario.nodes
        let bound = Self.lookahead(of: scenario)
        lookahead = threads >= 2 && bound >= Self.minimumLookahead ? bound : 0
        concurrency = max(1, threads)
        let tables = lookahead > 0 ? Self.groupCount : 1
        peerTables = (0..<tables).map { _ in PeerIdentities() }
        entryMaps = Array(repeating: EntryMap(), count: tables)
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
        serviceLies = (0..<n).map { _ in ServiceLie() }
        stored = Array(repeating: nil, count: n)
        downSince = Array(repeating: 0, count: n)
        disturbedUntil = Array(repeating: -1, count: n)
        intervalBytes = Array(repeating: 0, count: n)
        nodeBytes = Array(repeating: 0, count: n)
        leaving = Array(repeating: false, count: n)
        cpu = VirtualCPU(nodes: n)
        if scenario.timeline.contains(where: { $0.kind == .disk }) {
            disk = FaultyDisk(nodes: n, rng: root.derived(0x6469_736b_0000_0000))
        }
        diskQueue = Array(repeating: [], count: n)
        crashedDown = Array(repeating: false, count: n)
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
        // Each workload draws from a generator of its own (its position in the scenario). Built
        // before the nodes: a workload may bring the service it drives (`Workload.services`).
        workloads = scenario.workloads.enumerated().map { k, spec in
            let g = root.derived(0x776f_726b_0000_0000 ^ UInt64(k))
            return registry.workloads[spec.kind].map { $0.make(spec, g) } ?? UnknownWorkload(spec: spec)
        }
        agents = registry.agents.map { $0.make(scenario, root) }
        agentSignals = agents.map(\.signal)
        signalsHeard = Array(repeating: 0, count: agents.count)
        nodes.reserveCapacity(n)
        for i in 0..<n { nodes.append(makeNode(index: i)) }
        if lookahead > 0 { windowGroups = (0..<Self.groupCount).map { _ in WindowGroup() } }
        checkers = scenario.checks.map { spec in
            registry.checkers[spec.kind]?.make(spec) ?? UnknownChecker(spec: spec)
        }
        for c in checkers where registry.checkers[c.name]?.phase == .safety { safetyWatches.append(SafetyWatch(c)) }
        for c in checkers { c.prepare(self) }
    }

    /// The default of `threads`: the two cores this project's machines have.
    public static let defaultThreads = 2
    /// Whether the run uses lookahead windows (otherwise the sequential loop).
    public var isWindowed: Bool { lookahead > 0 }

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
        for w in workloads { w.start(self) }
        if isWindowed {
            runWindowed(end: end, sampleStep: sampleStep, progress: progress)
        } else {
            while let e = queue.pop(), e.time <= end {
                now = e.time
                events += 1
                if events & 0x3fff == 0, let progress { progress(Double(now) / 1e9, events) }
                handle(e, sampleStep: sampleStep)
                checkSafety()
            }
        }
        now = end
        if lastSampleAt < end { sampleMembership() }
        progress?(Double(end) / 1e9, events)
        return report(wallSeconds: Date().timeIntervalSince(wallStart))
    }

    /// One event of the sequential loop, or one global event of a windowed run.
    func handle(_ e: EventQueue.Entry, sampleStep: Int64) {
        switch e.event {
        case let .deliver(to, from, bytes):
            let j = Int(to)
            let late = cpu.inputDelay[j]
            if late > 0, life[j] == .up {
                // A starved node's CPU gets to its input late; a fixed delay keeps the order.
                queue.push(now + late, .deliverLate(to: to, from: from, bytes: bytes))
                return
            }
            receive(j, from: Int(from), bytes)
        case let .deliverLate(to, from, bytes):
            receive(Int(to), from: Int(from), bytes)
        case let .agent(slot, node, inc):
            agents[Int(slot)].fire(node: Int(node), incarnation: inc, self)
        case let .signal(to, from, agent):
            hear(Int(to), from: Int(from), agent: Int(agent))
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
        case let .workload(slot, tag):
            workloads[Int(slot)].fire(tag: Int(tag), self)
        case let .diskDone(node, inc):
            completeWrite(Int(node), incarnation: inc)
        case let .offloaded(slot):
            offloadDone(Int(slot))
        }
    }
}

/// A check whose kind the registry does not know (a scenario built in code): it fails, saying so.
final class UnknownChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        .init(name: name, passed: false, detail: "unknown check kind; known: \(sim.registry.checkKinds.joined(separator: ", "))")
    }
}

/// A workload whose kind the registry does not know: it does nothing (its checks fail for lack of it).
final class UnknownWorkload: Workload {
    let spec: Scenario.WorkloadSpec
    init(spec: Scenario.WorkloadSpec) { self.spec = spec }
    func start(_ sim: Simulation) {}
    func fire(tag: Int, _ sim: Simulation) {}
    func metrics(into m: inout [String: Double], _ sim: Simulation) {}
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
