import Foundation
import Lacero
import LaceroService
import MeshCore
import Node
import NodeService

/// Lacero as a workload: at `put_s` each of `objects` objects is shredded (its key and delete
/// secret from the workload's generator) and its fragments handed to a random live node's Lacero
/// service to relay into the mesh; at `get_s` a live node asks the mesh for every fragment of every
/// object by id. Nodes crashed in between (the scenario's `crash` events) take their fragments with
/// them. Its checker `lacero_durable` (liveness) compares what came back with the truth read off
/// the live nodes' services: every object whose segments each kept k fragments on live nodes is
/// returned intact, and the segments reported below k (fewer than k fragments came back) are
/// exactly those that are below k.
///
/// With `repair_s`, a live node (the object's owner while it lives) runs the `repair` operation of
/// its Lacero service on each object at that time — check (who answers for which fragment), fetch
/// k per short segment, rebuild, place the missing fragments through the relay — and the checker
/// `lacero_repaired` judges it: each repair finished, it reported below k exactly the segments that
/// were (the truth read off the live nodes when it started), and every other segment has all n of
/// its fragments on live nodes at the end (nodes that crash after the repair aside: none should).
/// The metadata reaches the repairing node through its `SimLaceroHost` (in-memory files).
///
/// ```toml
/// [[workloads]]
/// kind = "lacero"
/// objects = 10          # objects put (default 10)
/// bytes = 3000          # object size (default 3000)
/// k = 3                 # data fragments per segment (default 3)
/// n = 5                 # all fragments per segment (default 5)
/// segment_bytes = 1000  # plaintext per segment (default 1000)
/// threshold = 1         # status-register threshold: nodes that keep each fragment (default 1)
/// hops = 16             # relay hop budget (default 16)
/// put_s = 10            # when the objects are put (default 10)
/// get_s = 60            # when they are fetched (default: 20 s before the end)
/// repair_s = 40         # when each object is repaired (default: never)
/// subset_crash_s = 30   # when the holders of one set of n−k shares of object 0's segment 0 crash (default: never)
/// subset = 7            # which set, in lexicographic order of the C(n, n−k) sets (default: run seed − 1, mod their count)
/// ```
///
/// With `subset_crash_s` the run is one case of the issue's all-subsets floor: the holders of the
/// chosen n−k shares of object 0's segment 0 crash for good (their fragments of other segments go
/// with them), and the checker `lacero_subset` asks that exactly those shares were lost, the other
/// k still live, and `get` returned object 0 intact. A sweep over seeds 1...C(n, n−k) covers every
/// set once (Simulations/lacero-subsets.toml).
final class LaceroWorkload: Workload {
    static let kind = WorkloadKind(name: "lacero", required: [],
                                   optional: ["objects", "bytes", "k", "n", "segment_bytes", "threshold", "hops", "put_s", "get_s", "repair_s",
                                              "subset_crash_s", "subset"]) {
        LaceroWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("lacero_durable", phase: .liveness) { LaceroDurableChecker(spec: $0) },
        CheckerKind("lacero_repaired", phase: .liveness) { LaceroRepairedChecker(spec: $0) },
        CheckerKind("lacero_subset", phase: .liveness) { LaceroSubsetChecker(spec: $0) },
    ]

    struct Object {
        var content: [UInt8]
        var metadata: LaceroMetadata
        var owner: Int
    }

    let spec: Scenario.WorkloadSpec
    var rng: SeededGenerator
    let objectCount: Int, size: Int, threshold: UInt8, hops: UInt8
    let parameters: LaceroParameters?
    let parameterError: String?
    let putAt: Double, getAt: Double?, repairAt: Double?, subsetCrashAt: Double?
    /// The all-subsets case this run is (`subset_crash_s`): the set's index, its shares, the
    /// nodes crashed for them, and shares that had no holder to crash (a placement failure).
    private(set) var subsetIndex: Int?
    private(set) var subsetShares: [Int] = []
    private(set) var subsetCrashed: [Int] = []
    private(set) var subsetUnheld: [Int] = []
    /// Each node's host (its in-memory files), by node, for the incarnation running now.
    private var hosts: [Int: SimLaceroHost] = [:]
    /// Per object: the node that repaired it, the segments truly below k when the repair began,
    /// and the repair's final report.
    private(set) var repairers: [Int?] = []
    private(set) var belowKAtRepair: [Set<Int>] = []
    private(set) var repairReports: [Int: LaceroReport] = [:]
    private(set) var repairedAt: Int64 = -1
    /// Operation numbers of the repairs: object o is operation `repairOpBase + o`.
    static let repairOpBase: UInt64 = 1_000
    private(set) var objects: [Object] = []
    /// Fragment id → (object, segment, share).
    private var where_: [[UInt8]: (object: Int, segment: Int, share: Int)] = [:]
    private(set) var fetched: [[UInt8]: [UInt8]] = [:]
    private(set) var storedAcks = 0, storeFailed = 0, belowThreshold = 0, missing = 0
    private(set) var fetchedAt: Int64 = -1
    /// Which node fetched each object.
    private(set) var getters: [Int?] = []

    init(spec: Scenario.WorkloadSpec, rng: SeededGenerator) {
        self.spec = spec
        self.rng = rng
        objectCount = max(1, Int(spec.params["objects"] ?? 10))
        size = max(0, Int(spec.params["bytes"] ?? 3000))
        threshold = UInt8(clamping: max(1, Int(spec.params["threshold"] ?? 1)))
        hops = UInt8(clamping: max(1, Int(spec.params["hops"] ?? 16)))
        putAt = spec.params["put_s"] ?? 10
        getAt = spec.params["get_s"]
        repairAt = spec.params["repair_s"]
        subsetCrashAt = spec.params["subset_crash_s"]
        subsetIndex = spec.params["subset"].map { Int($0) }
        do {
            parameters = try LaceroParameters(k: Int(spec.params["k"] ?? 3), n: Int(spec.params["n"] ?? 5),
                                              segmentSize: Int(spec.params["segment_bytes"] ?? 1000))
            parameterError = nil
        } catch {
            parameters = nil
            parameterError = "\(error)"
        }
    }

    /// Every node runs a Lacero service (one per node, however many lacero workloads the scenario
    /// names: the first one brings it), its generator derived from the node's.
    func services(node i: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>] {
        guard sim.workload(LaceroWorkload.self) === self else { return [] }
        let rng = sim.nodeGenerator(i, incarnation: incarnation)
        let host = SimLaceroHost(rng: rng.derived(0x5ec7))
        hosts[i] = host
        return [LaceroService(me: sim.nodeID(i), rng: rng.derived(0x1ace), host: host)]
    }

    func start(_ sim: Simulation) {
        sim.schedule(self, after: Simulation.nanos(putAt), tag: 0)
        sim.schedule(self, after: Simulation.nanos(getAt ?? max(putAt + 1, sim.scenario.durationSeconds - 20)), tag: 1)
        if let r = repairAt { sim.schedule(self, after: Simulation.nanos(r), tag: 2) }
        if let c = subsetCrashAt { sim.schedule(self, after: Simulation.nanos(c), tag: 3) }
    }

    private func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            let v = rng.next()
            for b in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * b))) }
        }
        return Array(out.prefix(count))
    }

    private func randomLive(_ sim: Simulation) -> Int? {
        var live: [Int] = []
        for i in 0..<sim.nodeCount where sim.isLive(i) { live.append(i) }
        return live.isEmpty ? nil : live[Int(rng.next() % UInt64(live.count))]
    }

    func fire(tag: Int, _ sim: Simulation) {
        guard let p = parameters else { return }
        switch tag {
        case 0: put(p, sim)
        case 1: get(sim)
        case 2: repair(sim)
        default: crashSubset(p, sim)
        }
    }

    /// The sets of `size` shares out of `n`, in lexicographic order.
    static func subsets(of n: Int, size: Int) -> [[Int]] {
        guard size > 0 else { return [[]] }
        guard size <= n else { return [] }
        var out: [[Int]] = []
        func extend(_ chosen: [Int], from: Int) {
            if chosen.count == size { out.append(chosen); return }
            guard from < n else { return }
            for i in from..<n { extend(chosen + [i], from: i + 1) }
        }
        extend([], from: 0)
        return out
    }

    /// Crashes for good every live holder of the chosen n−k shares of object 0's segment 0.
    private func crashSubset(_ p: LaceroParameters, _ sim: Simulation) {
        guard let object = objects.first else { return }
        let sets = Self.subsets(of: p.n, size: p.n - p.k)
        let index = (subsetIndex ?? Int((sim.seed &- 1) % UInt64(sets.count))) % sets.count
        subsetIndex = index
        subsetShares = sets[index]
        let ids = Array(object.metadata.segment(0))
        var crash = Set<Int>()
        for share in subsetShares {
            let holders = (0..<sim.nodeCount).filter { sim.isLive($0) && (sim.nodes[$0].service(LaceroService.self)?.holds(ids[share]) ?? false) }
            if holders.isEmpty { subsetUnheld.append(share) }
            crash.formUnion(holders)
        }
        subsetCrashed = crash.sorted()
        for i in subsetCrashed {
            sim.log(i, "workload lacero: crash, holder of a share in set \(index) \(subsetShares) of object 0 segment 0")
            sim.crash(i)
        }
    }

    /// Each object's metadata goes to a live node's files (the owner's while it lives) and that
    /// node's service repairs the object.
    private func repair(_ sim: Simulation) {
        repairedAt = sim.now
        belowKAtRepair = segmentsBelowK(sim)
        repairers = Array(repeating: nil, count: objects.count)
        for (o, object) in objects.enumerated() {
            guard let node = sim.isLive(object.owner) ? object.owner : randomLive(sim), let host = hosts[node] else { return }
            repairers[o] = node
            let path = "/lacero/object-\(o).meta"
            host.put(path, object.metadata.encode())
            sim.log(node, "workload lacero: repair object \(o)")
            sim.command(node, .service(LaceroService.protocolID, ServicePayload(
                LaceroCommand.operation(LaceroRequest(op: Self.repairOpBase + UInt64(o), kind: .repair(meta: path))))))
        }
    }

    private func put(_ p: LaceroParameters, _ sim: Simulation) {
        for o in 0..<objectCount {
            guard let owner = randomLive(sim) else { return }
            let content = bytes(size)
            guard let (metadata, segments) = try? Shredder.shred(content, parameters: p, key: bytes(32), deleteSecret: bytes(32)) else { return }
            var fragments: [LaceroCommand.Fragment] = []
            for seg in segments {
                let tag = bytes(16)
                for i in 0..<p.n {
                    where_[seg.ids[i]] = (o, seg.index, i)
                    fragments.append(.init(id: seg.ids[i], bytes: Array(seg.fragment(i)), segmentTag: tag,
                                           deleteCheck: LaceroMetadata.deleteCheck(proof: metadata.deleteProof(for: seg.ids[i]))))
                }
            }
            objects.append(Object(content: content, metadata: metadata, owner: owner))
            sim.log(owner, "workload lacero: put object \(o) (\(content.count) B, \(fragments.count) fragments)")
            sim.command(owner, .service(LaceroService.protocolID, ServicePayload(
                LaceroCommand.store(fragments, threshold: threshold, hops: hops, leaseSeconds: 86_400))))
        }
    }

    private func get(_ sim: Simulation) {
        fetchedAt = sim.now
        getters = Array(repeating: nil, count: objects.count)
        for (o, object) in objects.enumerated() {
            guard let getter = sim.isLive(object.owner) ? object.owner : randomLive(sim) else { return }
            getters[o] = getter
            sim.log(getter, "workload lacero: get object \(o)")
            sim.command(getter, .service(LaceroService.protocolID, ServicePayload(
                LaceroCommand.fetch(object.metadata.fragmentIDs, from: []))))
        }
    }

    func observe(node: Int, _ event: NodeEvent, _ sim: Simulation) {
        guard case let .service(id, payload) = event, id == LaceroService.protocolID, let e = payload.as(LaceroEvent.self) else { return }
        switch e {
        case let .stored(_, reached, _):
            storedAcks += 1
            if !reached { belowThreshold += 1 }
        case .storeFailed: storeFailed += 1
        case let .fetched(fid, bytes): if where_[fid] != nil { fetched[fid] = bytes }
        case .missing: missing += 1
        case let .finished(report):
            // The workload's operations are its repairs; it stores and fetches by id.
            if report.op >= Self.repairOpBase, report.op < Self.repairOpBase + UInt64(objects.count) {
                repairReports[Int(report.op - Self.repairOpBase)] = report
            }
        }
    }

    /// Per object: the segments whose fragments on live nodes number fewer than k (the truth).
    func segmentsBelowK(_ sim: Simulation) -> [Set<Int>] {
        guard let p = parameters else { return [] }
        var liveHolders: [LaceroService] = []
        for i in 0..<sim.nodeCount where sim.isLive(i) {
            if let s = sim.nodes[i].service(LaceroService.self) { liveHolders.append(s) }
        }
        return objects.map { object in
            var below = Set<Int>()
            for s in 0..<object.metadata.segmentCount {
                let alive = object.metadata.segment(s).filter { id in liveHolders.contains { $0.holds(id) } }.count
                if alive < p.k { below.insert(s) }
            }
            return below
        }
    }

    /// Where the fragments of these segments are and whether they came back: for a failure's detail.
    func explain(_ o: Int, segments: Set<Int>, _ sim: Simulation) -> String {
        let getter = getters[o]
        var parts: [String] = []
        for s in segments.sorted() {
            for (share, id) in objects[o].metadata.segment(s).enumerated() {
                let holders = (0..<sim.nodeCount).filter { sim.nodes[$0].service(LaceroService.self)?.holds(id) ?? false }
                let desc = holders.map { h in
                    "\(h)\(sim.isLive(h) ? "" : " dead")\(getter.map { sim.nodes[$0].members[sim.nodeID(h)].map { " \($0.state)" } ?? " unknown" } ?? "")"
                }
                parts.append("s\(s)/\(share): held by [\(desc.joined(separator: ", "))], fetched \(fetched[id] != nil)")
            }
        }
        return "getter \(getter.map(String.init) ?? "none"): " + parts.joined(separator: "; ")
    }

    func metrics(into m: inout [String: Double], _ sim: Simulation) {
        m["lacero_objects"] = Double(objects.count)
        m["lacero_fragments"] = Double(objects.reduce(0) { $0 + $1.metadata.fragmentIDs.count })
        m["lacero_store_acks"] = Double(storedAcks)
        m["lacero_store_below_threshold"] = Double(belowThreshold)
        m["lacero_store_failed"] = Double(storeFailed)
        m["lacero_fragments_fetched"] = Double(fetched.count)
        m["lacero_fragments_missing"] = Double(missing)
        if let i = subsetIndex {
            m["lacero_subset_index"] = Double(i)
            m["lacero_subset_holders_crashed"] = Double(subsetCrashed.count)
        }
        if repairAt != nil {
            m["lacero_repairs_finished"] = Double(repairReports.count)
            m["lacero_fragments_repaired"] = Double(repairReports.values.reduce(0) { $0 + ($1.fragments_repaired ?? 0) })
        }
    }

    /// Per object: the segments with fewer than n distinct fragments on live nodes (the truth).
    func segmentsBelowN(_ sim: Simulation) -> [Set<Int>] {
        guard let p = parameters else { return [] }
        var live: [LaceroService] = []
        for i in 0..<sim.nodeCount where sim.isLive(i) {
            if let s = sim.nodes[i].service(LaceroService.self) { live.append(s) }
        }
        return objects.map { object in
            var below = Set<Int>()
            for s in 0..<object.metadata.segmentCount {
                let alive = object.metadata.segment(s).filter { id in live.contains { $0.holds(id) } }.count
                if alive < p.n { below.insert(s) }
            }
            return below
        }
    }

    /// What `get` of object `o` returns from the fetched fragments: the object, or the segments
    /// it found below k (what `check` reports).
    func rebuild(_ o: Int) -> (bytes: [UInt8]?, below: Set<Int>) {
        let object = objects[o]
        guard var r = try? Reassembler(metadata: object.metadata) else { return (nil, []) }
        var below = Set<Int>()
        var out: [UInt8] = []
        var ok = true
        for s in 0..<object.metadata.segmentCount {
            let have = object.metadata.segment(s).enumerated().compactMap { i, id in fetched[id].map { (index: i, bytes: $0[...]) } }
            do { out += try r.decodeSegment(s, fragments: have) } catch { below.insert(s); ok = false }
        }
        return (ok ? out : nil, below)
    }
}

/// Liveness: every object whose segments kept k fragments on live nodes comes back intact, and the
/// segments found below k are exactly those below k.
private final class LaceroDurableChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LaceroWorkload.self) else {
            return .init(name: name, passed: false, detail: "no lacero workload in this scenario ([[workloads]] kind = \"lacero\")")
        }
        if let e = w.parameterError { return .init(name: name, passed: false, detail: "lacero workload: \(e)") }
        guard w.fetchedAt >= 0, !w.objects.isEmpty else {
            return .init(name: name, passed: false, detail: "the lacero workload never got to fetch (put at \(w.putAt) s; the run ended first)")
        }
        let truth = w.segmentsBelowK(sim)
        var intact = 0, recoverable = 0, wrongReport: [String] = [], damaged: [Int] = []
        var belowTotal = 0
        for o in w.objects.indices {
            let (bytes, reported) = w.rebuild(o)
            belowTotal += truth[o].count
            if reported != truth[o] {
                wrongReport.append("object \(o): reported below k \(reported.sorted()), truth \(truth[o].sorted()) ("
                                   + w.explain(o, segments: reported.symmetricDifference(truth[o]), sim) + ")")
            }
            if truth[o].isEmpty {
                recoverable += 1
                if bytes == w.objects[o].content { intact += 1 } else { damaged.append(o) }
            }
        }
        var detail = "\(intact) of \(recoverable) recoverable objects returned intact (\(w.objects.count) put); \(belowTotal) segments below k, reported exactly: \(wrongReport.isEmpty)"
        if !damaged.isEmpty { detail += "; not returned: objects \(damaged.prefix(5).map(String.init).joined(separator: ", "))" }
        if !wrongReport.isEmpty { detail += "; " + wrongReport.prefix(3).joined(separator: "; ") }
        // Nothing recoverable is nothing judged: the relay placed nothing that survived.
        if recoverable == 0 { detail += "; no object was recoverable, so nothing was judged (store acks \(w.storedAcks), failed \(w.storeFailed))" }
        return .init(name: name, passed: recoverable > 0 && intact == recoverable && wrongReport.isEmpty, detail: detail)
    }
}

/// Liveness, with `subset_crash_s`: the run's set of n−k shares of object 0's segment 0 lost all
/// their holders, the other k shares each kept one live, and `get` returned object 0 intact.
private final class LaceroSubsetChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LaceroWorkload.self), w.subsetCrashAt != nil, let p = w.parameters else {
            return .init(name: name, passed: false, detail: "no lacero workload with subset_crash_s in this scenario")
        }
        guard let index = w.subsetIndex, w.fetchedAt >= 0, let object = w.objects.first else {
            return .init(name: name, passed: false, detail: "the lacero workload never crashed its set or never fetched (the run ended first)")
        }
        let ids = Array(object.metadata.segment(0))
        let live = (0..<sim.nodeCount).filter { sim.isLive($0) }.compactMap { sim.nodes[$0].service(LaceroService.self) }
        let liveShares = Set((0..<p.n).filter { i in live.contains { $0.holds(ids[i]) } })
        let expected = Set(0..<p.n).subtracting(w.subsetShares)
        let back = w.rebuild(0).bytes == object.content
        var detail = "set \(index) \(w.subsetShares) of segment 0: \(w.subsetCrashed.count) holders crashed, live shares \(liveShares.sorted()), object 0 returned intact: \(back)"
        if !w.subsetUnheld.isEmpty { detail += "; shares \(w.subsetUnheld) had no holder to crash (placement failed)" }
        return .init(name: name, passed: w.subsetUnheld.isEmpty && liveShares == expected && back, detail: detail)
    }
}

/// Liveness, with `repair_s`: every object's repair finished without error, reported below k
/// exactly the segments that were below k when it began, and left every other segment with all n
/// fragments on live nodes.
private final class LaceroRepairedChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LaceroWorkload.self), w.repairAt != nil else {
            return .init(name: name, passed: false, detail: "no lacero workload with repair_s in this scenario")
        }
        guard w.repairedAt >= 0, !w.objects.isEmpty else {
            return .init(name: name, passed: false, detail: "the lacero workload never got to repair (the run ended first)")
        }
        let belowN = w.segmentsBelowN(sim)
        var problems: [String] = []
        var whole = 0, short = 0, repaired = 0
        for o in w.objects.indices {
            let beyond = o < w.belowKAtRepair.count ? w.belowKAtRepair[o] : []
            guard let r = w.repairReports[o] else { problems.append("object \(o): its repair on node \(w.repairers[o].map(String.init) ?? "none") never finished"); continue }
            if let e = r.error { problems.append("object \(o): repair failed: \(e)"); continue }
            repaired += r.fragments_repaired ?? 0
            let reported = Set(r.segments_below_k ?? [])
            if reported != beyond { problems.append("object \(o): repair reported below k \(reported.sorted()), truth \(beyond.sorted())") }
            let left = belowN[o].subtracting(beyond)
            if left.isEmpty { whole += 1 } else {
                short += 1
                problems.append("object \(o): segments \(left.sorted().prefix(5)) still short of n after repair (" + w.explain(o, segments: left, sim) + ")")
            }
        }
        var detail = "\(whole) of \(w.objects.count) objects with every repairable segment back at n (\(repaired) fragments repaired, \(w.belowKAtRepair.reduce(0) { $0 + $1.count }) segments beyond repair)"
        if !problems.isEmpty { detail += "; " + problems.prefix(3).joined(separator: "; ") }
        return .init(name: name, passed: problems.isEmpty && whole == w.objects.count, detail: detail)
    }
}

/// Lacero's host in the simulator: one node's files in memory (the workload puts metadata there
/// for the node to repair), secrets from a generator of the node's, and metadata "sealed" as its
/// plain encoding: the simulator judges placement, check and repair, and any node may repair any
/// object; the sealed box is LaceroTests' (`LaceroMetadata.seal`). Jobs run on the driver's
/// threads; the lock keeps the type honest about `Sendable`.
final class SimLaceroHost: LaceroHost, @unchecked Sendable {
    private let lock = NSLock()
    private var files: [String: [UInt8]] = [:]
    private var rng: SeededGenerator

    init(rng: SeededGenerator) { self.rng = rng }

    func put(_ path: String, _ bytes: [UInt8]) { lock.withLock { files[path] = bytes } }

    func read(_ path: String, limit: UInt64) -> Result<[UInt8], LaceroHostError> {
        lock.withLock {
            guard let f = files[path] else { return .failure(LaceroHostError("No such file or directory")) }
            return UInt64(f.count) <= limit ? .success(f) : .failure(LaceroHostError("\(f.count) bytes is more than \(limit)"))
        }
    }

    func write(_ path: String, _ bytes: [UInt8]) -> LaceroHostError? {
        put(path, bytes)
        return nil
    }

    func freshSecrets() -> (key: [UInt8], deleteSecret: [UInt8]) {
        lock.withLock {
            var bytes: [UInt8] = []
            for _ in 0..<8 { let v = rng.next(); for b in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * b))) } }
            return (Array(bytes[0..<32]), Array(bytes[32..<64]))
        }
    }

    func seal(_ metadata: LaceroMetadata) -> Result<[UInt8], LaceroHostError> { .success(metadata.encode()) }

    func open(_ sealed: [UInt8]) -> Result<LaceroMetadata, LaceroHostError> {
        do { return .success(try LaceroMetadata.decode(sealed)) } catch { return .failure(LaceroHostError("not a Lacero metadata object (\(error))")) }
    }
}
