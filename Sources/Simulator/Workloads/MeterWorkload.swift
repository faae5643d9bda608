import Ledger
import LedgerService
import MeshCore
import MeterService
import Meters
import Node
import NodeService

/// Smart-meter relays as a workload: nodes 0 ..< `collectors` are collectors, every other node a
/// relay hosting its share of `meters` simulated meters (meter m on relay `collectors + m mod
/// relays`; their keys derived from the run seed). Every `interval_s` from `from_s` each meter on
/// a live relay records a read (imported energy, a value the workload draws); the relays carry
/// them hop by hop to a collector, which anchors each interval `grace_s` after it ends.
///
/// Its checkers judge at the end what the nodes report and hold: `meters_anchored` (every read
/// recorded at least `within_intervals` intervals plus the grace before the end, or before the
/// faults healed, is in an anchor), `meters_unique` (no read accepted by two collectors or in two
/// anchors), `meters_proofs` (every anchored read's proof, built by its collector, verifies against
/// that collector's anchor record: signature, chain place, Merkle path, anchor). The anchors are
/// the collectors' own records (`RecordingAnchorer`), unless `ledger = 1`: then each collector
/// anchors through its node's ledger service (`LedgerAnchorer`; a `ledger` workload in the same
/// scenario gives the collectors' nodes one, as validators or replicas), and `meters_on_ledger`
/// judges that every anchor closed `within_s` before the end is on the ledger (an `anchor get`
/// query proof from a ledger node, checked against the genesis: certified header, the collector
/// as signer, the anchor's digest) and every read anchored in one has a proof that verifies
/// against those ledger anchors.
///
/// ```toml
/// [[workloads]]
/// kind = "meters"
/// collectors = 2     # nodes 0 … collectors-1 (default 1)
/// meters = 100       # simulated meters (default 20)
/// interval_s = 60    # read interval in virtual seconds (default 60)
/// grace_s = 10       # a collector anchors an interval this long after it ends (default 10)
/// from_s = 20        # first read (default 20)
/// until_s = 600      # no read after this (default: the end)
/// ledger = 1         # collectors anchor on the ledger (default 0: their own record)
/// first = 4          # nodes below this run no meter service (e.g. the ledger's validators); the
///                    # collectors are first … first+collectors-1 (default 0)
/// ```
final class MeterWorkload: Workload {
    static let kind = WorkloadKind(name: "meters", required: [],
                                   optional: ["collectors", "meters", "interval_s", "grace_s", "from_s", "until_s", "ledger", "first"]) {
        MeterWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("meters_anchored", phase: .liveness, optional: ["within_intervals"]) { MetersAnchoredChecker(spec: $0) },
        CheckerKind("meters_unique", phase: .liveness) { MetersUniqueChecker(spec: $0) },
        CheckerKind("meters_proofs", phase: .liveness) { MetersProofsChecker(spec: $0) },
        CheckerKind("meters_on_ledger", phase: .liveness, optional: ["within_s"]) { MetersOnLedgerChecker(spec: $0) },
    ]

    /// A fixed epoch for the simulated meters' clocks (unix seconds at virtual 0), on an hour.
    static let epoch: UInt64 = 1_780_000_200

    let spec: Scenario.WorkloadSpec
    var rng: SeededGenerator
    let collectorCount: Int, meterCount: Int
    let interval: Double, grace: Double, from: Double, until: Double?
    let onLedger: Bool
    /// The first node with a meter service.
    let first: Int
    /// Every anchor a collector closed, when; and the ledger heights the collectors were told.
    private(set) var closed: [(node: Int, anchor: MeterAnchor, at: Int64)] = []
    private(set) var confirmedOnLedger = 0
    private(set) var meterKeys: [NodeIdentity] = []
    /// Every read a meter recorded, by hash, with the node that recorded it and when.
    private(set) var recorded: [[UInt8]: (node: Int, at: Int64, read: MeterRead)] = [:]
    /// Collectors that accepted each read.
    private(set) var acceptedBy: [[UInt8]: [Int]] = [:]
    /// Anchors each read is in (collector node, object id).
    private(set) var anchoredIn: [[UInt8]: [(node: Int, objectID: String)]] = [:]
    private(set) var anchorCount = 0
    private(set) var readsSkipped = 0
    private var tick = 0

    init(spec: Scenario.WorkloadSpec, rng: SeededGenerator) {
        self.spec = spec
        self.rng = rng
        collectorCount = max(1, Int(spec.params["collectors"] ?? 1))
        meterCount = max(0, Int(spec.params["meters"] ?? 20))
        interval = max(1, spec.params["interval_s"] ?? 60)
        grace = max(0, spec.params["grace_s"] ?? 10)
        from = spec.params["from_s"] ?? 20
        until = spec.params["until_s"]
        onLedger = (spec.params["ledger"] ?? 0) != 0
        first = max(0, Int(spec.params["first"] ?? 0))
    }

    func role(of node: Int) -> MeterRole { node < first + collectorCount ? .collector : .relay }
    /// (Counted by identities, not by nodes built so far: services are built while the nodes are.)
    func host(of meter: Int, _ sim: Simulation) -> Int? {
        let relays = sim.identities.count - first - collectorCount
        return relays > 0 ? first + collectorCount + meter % relays : nil
    }

    private func keys(_ sim: Simulation) -> [NodeIdentity] {
        if meterKeys.isEmpty {
            meterKeys = (0..<meterCount).map { NodeIdentity.deterministic(runSeed: sim.seed ^ 0x6d65_7465_7273, index: $0) }
        }
        return meterKeys
    }

    func services(node i: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>] {
        guard i >= first else { return [] }
        var config = MeterService.Config(role: role(of: i))
        config.intervalSeconds = UInt32(interval)
        config.anchorGrace = .seconds(Int64(grace))
        config.unixAtZero = Self.epoch
        config.collectors = (first..<min(first + collectorCount, sim.identities.count)).map { sim.identities[$0].nodeID }
        let hostedSeeds = keys(sim).indices.filter { host(of: $0, sim) == i }.map { keys(sim)[$0].seed }
        let anchorer: any Anchorer = onLedger && role(of: i) == .collector ? LedgerAnchorer() : RecordingAnchorer()
        var service = MeterService(identity: sim.identities[i], config: config, anchorer: anchorer,
                                   rng: sim.root.derived(0x6d65_7465_7200_0000 ^ UInt64(i) << 20 ^ UInt64(incarnation)))
        _ = service.handle(.command(.service(MeterService.protocolID, ServicePayload(MeterCommand.host(seeds: hostedSeeds)))),
                           now: .zero, members: NoMembers())
        return [service]
    }

    func start(_ sim: Simulation) {
        sim.schedule(self, after: Simulation.nanos(from), tag: 0)
    }

    func fire(tag: Int, _ sim: Simulation) {
        let end = until ?? sim.scenario.durationSeconds
        guard Double(sim.now) / 1e9 <= end else { return }
        // Interval k is [epoch + from + k·interval, … + interval), read at its end.
        let start = Self.epoch + UInt64(from) + UInt64(tick) * UInt64(interval) - UInt64(interval)
        tick += 1
        for (m, key) in keys(sim).enumerated() {
            guard let h = host(of: m, sim), sim.isLive(h) else { readsSkipped += 1; continue }
            let value = Int64(rng.next() % 2000)
            sim.command(h, .service(MeterService.protocolID, ServicePayload(MeterCommand.record(
                meter: key.publicKey, intervalStart: start, durationSeconds: UInt32(interval),
                registers: [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: value)]))))
        }
        sim.schedule(self, after: Simulation.nanos(interval), tag: 0)
    }

    func observe(node: Int, _ event: NodeEvent, _ sim: Simulation) {
        guard case let .service(id, payload) = event, id == MeterService.protocolID, let e = payload.as(MeterEvent.self) else { return }
        switch e {
        case let .recorded(r): recorded[r.hash] = (node, sim.now, r)
        case let .accepted(r): acceptedBy[r.hash, default: []].append(node)
        case .anchorOnLedger:
            confirmedOnLedger += 1
        case let .anchored(a, leaves):
            anchorCount += 1
            closed.append((node, a, sim.now))
            for h in leaves { anchoredIn[h, default: []].append((node, a.objectID)) }
        default: break
        }
    }

    func metrics(into m: inout [String: Double], _ sim: Simulation) {
        m["meters_reads_recorded"] = Double(recorded.count)
        m["meters_reads_skipped"] = Double(readsSkipped)
        m["meters_reads_accepted"] = Double(acceptedBy.count)
        m["meters_reads_anchored"] = Double(anchoredIn.count)
        m["meters_anchors"] = Double(anchorCount)
        if onLedger {
            m["meters_anchors_confirmed_on_ledger"] = Double(confirmedOnLedger)
            var retries: UInt64 = 0
            for i in first..<min(first + collectorCount, sim.nodeCount) { retries += sim.nodes[i].service(MeterService.self)?.counters.anchorRetries ?? 0 }
            m["meters_anchor_retries"] = Double(retries)
        }
        var held = 0, retrans: UInt64 = 0, changes: UInt64 = 0, dups: UInt64 = 0, hops = 0.0
        var drops: [String: UInt64] = [:]
        for i in 0..<sim.nodeCount where sim.isLive(i) {
            guard let s = sim.nodes[i].service(MeterService.self) else { continue }
            for (k, v) in s.counters.drops { drops[k, default: 0] += v }
            held += s.heldCount
            retrans += s.counters.retransmissions
            changes += s.counters.parentChanges
            dups += s.counters.duplicates
            hops += Double(s.counters.forwarded)
        }
        m["meters_held_at_end"] = Double(held)
        // Counted drops of the live nodes' meter services, by reason (`meters_drop_<reason>`).
        for (k, v) in drops { m["meters_drop_\(k)"] = Double(v) }
        m["meters_retransmissions"] = Double(retrans)
        m["meters_parent_changes"] = Double(changes)
        m["meters_duplicates_dropped"] = Double(dups)
        // Custody hand-overs per accepted read: the mean path length in relay hops.
        m["meters_relay_hops_per_read"] = acceptedBy.isEmpty ? 0 : hops / Double(acceptedBy.count)
    }

    /// Reads that should be anchored by the end: recorded early enough before the end (and
    /// before the faults healed, counting from the heal).
    func due(_ sim: Simulation, withinIntervals k: Double) -> [[UInt8]] {
        let end = sim.now
        let healed = sim.faultsHealedAt ?? end
        let window = Simulation.nanos(k * interval + grace)
        return recorded.filter { _, v in max(v.at, healed) + window <= end }.map(\.key)
    }
}

private final class MetersAnchoredChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(MeterWorkload.self) else {
            return .init(name: name, passed: false, detail: "no meters workload in this scenario ([[workloads]] kind = \"meters\")")
        }
        let k = spec.params["within_intervals"] ?? 2
        let due = w.due(sim, withinIntervals: k)
        let missing = due.filter { w.anchoredIn[$0] == nil }
        var detail = "\(due.count - missing.count) of \(due.count) reads due (recorded \(Int(k)) intervals + grace before the end or the heal) are anchored; \(w.recorded.count) recorded, \(w.anchoredIn.count) anchored"
        if !missing.isEmpty {
            let where_ = missing.prefix(3).map { h -> String in
                let holders = (0..<sim.nodeCount).filter { sim.nodes[$0].service(MeterService.self)?.holds(h) ?? false }
                let r = w.recorded[h]!
                return "meter seq \(r.read.sequence) from node \(r.node): held by \(holders), accepted by \(w.acceptedBy[h] ?? [])"
            }
            detail += "; not anchored: " + where_.joined(separator: "; ")
        }
        return .init(name: name, passed: !due.isEmpty && missing.isEmpty, detail: detail)
    }
}

private final class MetersUniqueChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(MeterWorkload.self) else {
            return .init(name: name, passed: false, detail: "no meters workload in this scenario")
        }
        let twiceAccepted = w.acceptedBy.filter { $0.value.count > 1 }
        let twiceAnchored = w.anchoredIn.filter { $0.value.count > 1 }
        let unknown = w.acceptedBy.keys.filter { w.recorded[$0] == nil }
        var detail = "\(w.acceptedBy.count) reads accepted, \(twiceAccepted.count) by more than one collector (or twice by one); \(w.anchoredIn.count) anchored, \(twiceAnchored.count) in more than one anchor; \(unknown.count) accepted that no meter recorded"
        if let (h, a) = twiceAnchored.first { detail += "; e.g. \(Hex.encode(h.prefix(8))) in \(a.map { "\($0.node):\($0.objectID.suffix(24))" })" }
        return .init(name: name, passed: twiceAccepted.isEmpty && twiceAnchored.isEmpty && unknown.isEmpty && !w.acceptedBy.isEmpty, detail: detail)
    }
}

private final class MetersProofsChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(MeterWorkload.self) else {
            return .init(name: name, passed: false, detail: "no meters workload in this scenario")
        }
        var checked = 0, failed: [String] = [], noProof = 0
        for (h, places) in w.anchoredIn.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            guard let place = places.first, let s = sim.nodes[place.node].service(MeterService.self) else { continue }
            guard let proof = s.proof(of: h) else { noProof += 1; continue }
            checked += 1
            // The read decodes (signature), then its place, path and anchors check against the record.
            guard let read = try? MeterRead.decode(proof.read.encode()), read.hash == h else { failed.append("read does not decode"); continue }
            if case let .failed(f) = proof.verify(anchors: s.anchorBook, meter: w.recorded[h]?.read.meter) { failed.append(f.rawValue) }
        }
        let detail = "\(checked - failed.count) of \(checked) proofs verify against their collector's anchor record (signature, chain place, Merkle path, anchor; the anchors are the collectors' own records, not a ledger); \(noProof) anchored reads without a proof (predecessor not anchored)"
            + (failed.isEmpty ? "" : "; failures: \(Set(failed).sorted())")
        return .init(name: name, passed: checked > 0 && failed.isEmpty && noProof == 0, detail: detail)
    }
}

/// Every anchor closed `within_s` (default 30) before the end is on the ledger, put there by its
/// collector, proven against a certified header (`LedgerAnchorSource`: the same check as
/// `iotaf meter verify --genesis`); every read anchored in one proves against the ledger.
private final class MetersOnLedgerChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(MeterWorkload.self), w.onLedger else {
            return .init(name: name, passed: false, detail: "no meters workload with ledger = 1 in this scenario")
        }
        guard let lw = sim.workload(LedgerWorkload.self) else {
            return .init(name: name, passed: false, detail: "no ledger workload in this scenario ([[workloads]] kind = \"ledger\")")
        }
        let genesis = lw.ledgerGenesis(sim)
        // The live ledger node with the highest certified head: the proofs are read there.
        var best: (node: Int, height: UInt64)?
        for i in lw.ledgerNodes where i < sim.nodeCount && sim.isLive(i) {
            guard let l = sim.nodes[i].service(LedgerService.self), l.headCertificate != nil else { continue }
            if best == nil || l.ledger.height > best!.height { best = (i, l.ledger.height) }
        }
        guard let best, let ledger = sim.nodes[best.node].service(LedgerService.self) else {
            return .init(name: name, passed: false, detail: "no live ledger node holds its head's certificate: nothing to prove against")
        }
        let cutoff = sim.now - Simulation.nanos(spec.withinSeconds ?? 30)
        var source = LedgerAnchorSource()
        var due = 0, missing: [String] = [], bad: [String] = []
        var reads = 0, failed: [String] = [], noProof = 0
        for c in w.closed where c.at <= cutoff {
            due += 1
            let id = c.anchor.objectID
            switch ledger.prove(chaincode: "anchor", function: "get", args: [Array(id.utf8)]) {
            case .failure(let e):
                bad.append("\(id.suffix(20)): \(e)")
            case .success(let q):
                guard case .ok = q.result else { missing.append("collector \(c.node) \(id.suffix(20))"); continue }
                do { try source.add(q, genesis: genesis) } catch { bad.append("\(id.suffix(20)): \(error)"); continue }
                if source.anchoredDigest(id) != c.anchor.digest { bad.append("\(id.suffix(20)): another digest") }
            }
        }
        for c in w.closed where c.at <= cutoff && source.anchoredDigest(c.anchor.objectID) != nil {
            guard let s = sim.nodes[c.node].service(MeterService.self),
                  let i = s.anchors.firstIndex(of: c.anchor) else { continue }
            for h in s.leaves(ofAnchor: i) {
                reads += 1
                guard let proof = s.proof(of: h) else { noProof += 1; continue }
                if case let .failed(f) = proof.verify(anchors: source, meter: w.recorded[h]?.read.meter) { failed.append(f.rawValue) }
            }
        }
        var detail = "\(due - missing.count - bad.count) of \(due) anchors closed \(Int(spec.withinSeconds ?? 30)) s before the end are on the ledger (proven at node \(best.node), height \(best.height), against the genesis); \(reads - noProof - failed.count) of \(reads) reads in them prove against the ledger"
        if !missing.isEmpty { detail += "; not on the ledger: \(missing.prefix(3))" }
        if !bad.isEmpty { detail += "; bad: \(bad.prefix(3))" }
        if noProof > 0 { detail += "; \(noProof) without a proof (predecessor not anchored)" }
        if !failed.isEmpty { detail += "; failures: \(Set(failed).sorted())" }
        return .init(name: name, passed: due > 0 && missing.isEmpty && bad.isEmpty && noProof == 0 && failed.isEmpty && reads > 0, detail: detail)
    }
}
