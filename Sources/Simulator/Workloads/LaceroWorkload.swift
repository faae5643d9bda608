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
/// ```
final class LaceroWorkload: Workload {
    static let kind = WorkloadKind(name: "lacero", required: [],
                                   optional: ["objects", "bytes", "k", "n", "segment_bytes", "threshold", "hops", "put_s", "get_s"]) {
        LaceroWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("lacero_durable", phase: .liveness) { LaceroDurableChecker(spec: $0) },
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
    let putAt: Double, getAt: Double?
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
        return [LaceroService(me: sim.nodeID(i), rng: sim.nodeGenerator(i, incarnation: incarnation).derived(0x1ace))]
    }

    func start(_ sim: Simulation) {
        sim.schedule(self, after: Simulation.nanos(putAt), tag: 0)
        sim.schedule(self, after: Simulation.nanos(getAt ?? max(putAt + 1, sim.scenario.durationSeconds - 20)), tag: 1)
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
        if tag == 0 { put(p, sim) } else { get(sim) }
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
        case .finished: break  // whole-object operations: the workload stores and fetches by id
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
