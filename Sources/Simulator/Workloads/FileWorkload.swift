import FileTransfer
import Foundation
import MeshCore
import Node
import NodeService
import Sodium

/// File transfer (`iotaf send`) as a workload: every node runs the `FileTransferService` over its
/// own virtual disk (`VirtualFiles`); now and then a random live node sends a file of known
/// content to a random member it holds alive, and every file that arrives is read back from the
/// receiver's disk and compared with what was sent. The file jobs (hashing, reading, writing,
/// placing) run inline and are charged to the nodes' virtual CPUs. Its checkers: `files_intact`
/// (safety: no file arrives altered, at the wrong node, or twice) and `files_delivered` (liveness:
/// every transfer between nodes that stayed up ends completed within a bound after faults heal).
///
/// ```toml
/// [[workloads]]
/// kind = "files"
/// every_s = 5             # one transfer this often (default 10)
/// bytes = 1048576         # file size (default 1 MiB)
/// max_bytes = 4194304     # when given, sizes are drawn between bytes and max_bytes
/// from_s = 10             # first transfer (default 0)
/// until_s = 60            # last transfer (default: the end of the run)
/// capacity_bytes = 1e9    # each node's virtual disk (default 1 GiB)
/// ```
final class FileWorkload: Workload {
    static let kind = WorkloadKind(name: "files", required: [],
                                   optional: ["every_s", "bytes", "max_bytes", "from_s", "until_s", "capacity_bytes"]) {
        FileWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("files_intact", phase: .safety) { FilesIntactChecker(spec: $0) },
        CheckerKind("files_delivered", phase: .liveness, optional: ["fraction", "within_s"]) { FilesDeliveredChecker(spec: $0) },
    ]
    static let stream: UInt16 = 8

    struct Transfer {
        var from: Int32, to: Int32
        var size: Int
        var hash: [UInt8]
        var at: Int64
        var fromIncarnation: UInt32, toIncarnation: UInt32
        var id: UInt64?
        var refused: String?
        var failed: String?
        /// When the sender heard the receiver's verdict, and when the receiver placed the file (-1: not yet).
        var deliveredAt: Int64 = -1
        var receivedAt: Int64 = -1
        var receivedIncarnation: UInt32 = 0
    }

    let spec: Scenario.WorkloadSpec
    var rng: SeededGenerator
    let serviceSeed: SeededGenerator
    let every: Int64, size: Int, maxSize: Int
    let from: Double, until: Double?
    let capacity: UInt64
    private(set) var disks: [VirtualFiles] = []
    private(set) var transfers: [Transfer] = []
    private var byID: [UInt64: Int] = [:]
    /// The transfer whose `.send` command is being handed to its node (its answer comes at once).
    private var sending: Int?
    private(set) var skipped = 0
    private(set) var damaged = 0, duplicated = 0, misdelivered = 0
    private(set) var firstDamage: String?

    init(spec: Scenario.WorkloadSpec, rng: SeededGenerator) {
        self.spec = spec
        self.rng = rng
        serviceSeed = rng.derived(0x5e41_f11e)
        every = Simulation.nanos(spec.params["every_s"] ?? 10)
        size = max(0, Int(spec.params["bytes"] ?? 1_048_576))
        maxSize = max(size, Int(spec.params["max_bytes"] ?? 0))
        from = spec.params["from_s"] ?? 0
        until = spec.params["until_s"]
        capacity = UInt64(max(0, spec.params["capacity_bytes"] ?? Double(1 << 30)))
    }

    func services(node i: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>] {
        while disks.count <= i { disks.append(VirtualFiles(capacity: capacity)) }
        let g = serviceSeed.derived(UInt64(i) << 32 | UInt64(incarnation))
        return [FileTransferService(me: sim.nodeID(i), files: disks[i], inbox: "inbox", rng: g)]
    }

    func start(_ sim: Simulation) {
        sim.schedule(self, after: Simulation.nanos(from), tag: 0)
    }

    func fire(tag: Int, _ sim: Simulation) {
        let end = Simulation.nanos(until ?? sim.scenario.durationSeconds)
        guard sim.now <= end else { return }
        sendOne(sim)
        sim.schedule(self, after: max(1, every), tag: 0)
    }

    private func sendOne(_ sim: Simulation) {
        var live: [Int] = []
        for i in 0..<sim.nodeCount where sim.isLive(i) { live.append(i) }
        guard live.count >= 2 else { skipped += 1; return }
        let i = live[Int(rng.next() % UInt64(live.count))]
        var targets: [Int] = []
        for j in live where j != i {
            if let m = sim.nodes[i].members[sim.nodeID(j)], m.state == .alive { targets.append(j) }
        }
        guard !targets.isEmpty else { skipped += 1; return }
        let j = targets[Int(rng.next() % UInt64(targets.count))]
        let n = maxSize > size ? size + Int(rng.next() % UInt64(maxSize - size + 1)) : size
        let seq = transfers.count
        let bytes = Self.content(seq: UInt64(seq), size: n)
        let path = "outbox/file-\(seq).bin"
        disks[i].put(path, bytes)
        transfers.append(Transfer(from: Int32(i), to: Int32(j), size: n, hash: Blake2b.hash(bytes, outputLength: TransferWire.hashLength),
                                  at: sim.now, fromIncarnation: sim.incarnationOf(i), toIncarnation: sim.incarnationOf(j)))
        sim.log(i, "workload files: send file-\(seq).bin (\(n) B) to node \(j)")
        sending = seq
        sim.command(i, .service(FileTransferService.protocolID, ServicePayload(FileCommand.send(path: path, to: sim.nodeID(j), stream: Self.stream))))
        sending = nil
    }

    /// A file's bytes: a pattern seeded by its number, so any damage shows.
    static func content(seq: UInt64, size: Int) -> [UInt8] {
        var x = (seq &+ 1) &* 0x9E37_79B9_7F4A_7C15 | 1
        return [UInt8](unsafeUninitializedCapacity: size) { buf, initialized in
            var k = 0
            while k < size {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                var v = x
                for _ in 0..<8 where k < size { buf[k] = UInt8(truncatingIfNeeded: v); v >>= 8; k += 1 }
            }
            initialized = size
        }
    }

    func observe(node j: Int, _ event: NodeEvent, _ sim: Simulation) {
        guard case let .service(id, payload) = event, id == FileTransferService.protocolID, let e = payload.as(FileEvent.self) else { return }
        switch e {
        case let .accepted(transfer, _, _):
            guard let seq = sending else { return }
            transfers[seq].id = transfer
            byID[transfer] = seq
        case let .refused(_, reason):
            guard let seq = sending else { return }
            transfers[seq].refused = reason
        case let .delivered(transfer, _, _, _):
            guard let seq = byID[transfer], Int(transfers[seq].from) == j else { return }
            transfers[seq].deliveredAt = sim.now
            sim.log(j, "workload files: file-\(seq).bin delivered")
        case let .failed(transfer, _, outgoing, _, reason):
            guard outgoing, let seq = byID[transfer], Int(transfers[seq].from) == j else { return }
            transfers[seq].failed = reason
            sim.log(j, "workload files: file-\(seq).bin failed: \(reason)")
        case let .received(transfer, fromID, path, size, _):
            guard let seq = byID[transfer] else { damaged += 1; damage("node \(j) received a file of a transfer never sent", sim); return }
            let t = transfers[seq]
            guard Int(t.to) == j, sim.nodeIndex(of: fromID) == Int(t.from) else {
                misdelivered += 1
                damage("file-\(seq).bin from node \(t.from) to node \(t.to) arrived at node \(j)", sim)
                return
            }
            guard let got = disks[j].contents(path) else { damaged += 1; damage("file-\(seq).bin: node \(j) reported \(path), which is not on its disk", sim); return }
            guard size == UInt64(t.size), got.count == t.size, Blake2b.hash(got, outputLength: TransferWire.hashLength) == t.hash else {
                damaged += 1
                damage("file-\(seq).bin arrived at node \(j) altered (\(got.count) of \(t.size) bytes)", sim)
                return
            }
            let inc = sim.incarnationOf(j)
            if t.receivedAt >= 0, t.receivedIncarnation == inc {
                duplicated += 1
                damage("file-\(seq).bin received twice by node \(j)", sim)
                return
            }
            transfers[seq].receivedAt = sim.now
            transfers[seq].receivedIncarnation = inc
            sim.log(j, "workload files: file-\(seq).bin received intact at \(path)")
        }
    }

    private func damage(_ what: String, _ sim: Simulation) {
        if firstDamage == nil { firstDamage = what }
    }

    func metrics(into m: inout [String: Double], _ sim: Simulation) {
        m["files_sent"] = Double(transfers.count)
        m["files_delivered"] = Double(transfers.filter { $0.deliveredAt >= 0 }.count)
        m["files_received"] = Double(transfers.filter { $0.receivedAt >= 0 }.count)
        m["files_failed"] = Double(transfers.filter { $0.failed != nil }.count)
        m["files_refused"] = Double(transfers.filter { $0.refused != nil }.count)
        m["files_skipped"] = Double(skipped)
        m["files_damaged"] = Double(damaged + duplicated + misdelivered)
        m["files_bytes"] = Double(transfers.reduce(0) { $0 + $1.size })
        // Transfer messages the live nodes' services dropped (malformed, unknown transfer, ...).
        var drops: UInt64 = 0
        for i in 0..<sim.nodeCount where sim.isLive(i) {
            drops += sim.nodes[i].service(FileTransferService.self)?.counters.drops.values.reduce(0, +) ?? 0
        }
        m["files_messages_dropped"] = Double(drops)
    }
}

/// Safety: no file arrives altered, at the wrong node, from the wrong sender, or twice.
private final class FilesIntactChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.workload(FileWorkload.self)?.firstDamage }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(FileWorkload.self) else {
            return .init(name: name, passed: false, detail: "no files workload in this scenario ([[workloads]] kind = \"files\")")
        }
        let received = w.transfers.filter { $0.receivedAt >= 0 }.count
        let bad = w.damaged + w.duplicated + w.misdelivered
        return .init(name: name, passed: bad == 0,
                     detail: "\(received) of \(w.transfers.count) files received, each hash equal to the sent file's; \(w.damaged) altered, \(w.misdelivered) misdelivered, \(w.duplicated) twice")
    }
}

/// Liveness: every transfer between two nodes that stayed up (same incarnation, live at the end),
/// started at least `within_s` (default 60) before the end, ends within `within_s` of its start or
/// of the instant the last fault healed, whichever is later: completed (the receiver placed the
/// file intact and the sender heard so) when it started after the faults healed; completed or
/// clearly failed (the sender told why) when a fault overlapped it. `fraction` (default 1)
/// relaxes it.
private final class FilesDeliveredChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(FileWorkload.self) else {
            return .init(name: name, passed: false, detail: "no files workload in this scenario ([[workloads]] kind = \"files\")")
        }
        let within = Simulation.nanos(spec.withinSeconds ?? 60)
        let want = spec.fraction ?? 1
        guard let healed = sim.faultsHealedAt else {
            return .init(name: name, passed: false, detail: "a fault was still active at the end: nothing to judge")
        }
        var count = 0, ok = 0, excused = 0
        var worst: Int64 = 0
        var missing: [String] = []
        for (k, t) in w.transfers.enumerated() where t.at + within <= sim.now {
            let a = Int(t.from), b = Int(t.to)
            guard sim.isLive(a), sim.isLive(b), sim.incarnationOf(a) == t.fromIncarnation, sim.incarnationOf(b) == t.toIncarnation else { continue }
            count += 1
            let startedOrHealed = max(t.at, healed)
            let done = max(t.deliveredAt, t.receivedAt)
            if t.deliveredAt >= 0, t.receivedAt >= 0, done - startedOrHealed <= within {
                ok += 1
                worst = max(worst, done - t.at)
            } else if t.at < healed, t.failed != nil {
                ok += 1  // overlapped a fault and ended, saying why
                excused += 1
            } else if missing.count < 5 {
                let why = t.refused.map { "refused: \($0)" } ?? t.failed.map { "failed: \($0)" }
                    ?? (t.deliveredAt >= 0 ? String(format: "late: %.1f s", Double(done - startedOrHealed) / 1e9) : "never completed")
                missing.append("file-\(k).bin (node \(t.from) → \(t.to), \(t.size) B) \(why)")
            }
        }
        guard count > 0 else {
            return .init(name: name, passed: false, detail: "no file was sent between nodes that stayed up, \(spec.withinSeconds ?? 60) s before the end (\(w.transfers.count) sent, \(w.skipped) skipped)")
        }
        let share = Double(ok) / Double(count)
        var detail = "\(ok) of \(count) transfers between nodes that stayed up ended in time (\(excused) of them failed clearly during a fault, the rest completed) (\(String(format: "%.4f", share)), limit \(String(format: "%.4f", want))); slowest \(String(format: "%.3f", Double(worst) / 1e9)) s"
        if !missing.isEmpty { detail += "; not: " + missing.joined(separator: ", ") }
        return .init(name: name, passed: share >= want, detail: detail)
    }
}
