import Foundation
import MeshCore
import Node

/// The users' channel as a workload: now and then a random live node sends a message of known
/// content to a random member it holds alive (`NodeCommand.sendMessage`), and every message a
/// node receives is checked against what was sent. Its checkers: `messages_intact` (safety:
/// nothing arrives altered, at the wrong node, or twice) and `messages_delivered` (liveness:
/// what was sent between nodes that stayed up arrives).
///
/// ```toml
/// [[workloads]]
/// kind = "messages"
/// every_s = 0.5      # one message this often (default 1)
/// bytes = 4000       # message size, at least 16 (default 1000; more than a datagram goes in chunks)
/// from_s = 10        # first message (default 0)
/// until_s = 80       # last message (default: the end of the run)
/// stream = 1         # the channel stream the messages use (default 1)
/// ```
final class MessageWorkload: Workload {
    static let kind = WorkloadKind(name: "messages", required: [], optional: ["every_s", "bytes", "from_s", "until_s", "stream"]) {
        MessageWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("messages_intact", phase: .safety) { IntactChecker(spec: $0) },
        CheckerKind("messages_delivered", phase: .liveness, optional: ["fraction", "within_s"]) { DeliveredChecker(spec: $0) },
    ]

    /// One message sent: who to whom, when, and both nodes' incarnations then.
    struct Sent {
        var from: Int32, to: Int32
        var at: Int64
        var fromIncarnation: UInt32, toIncarnation: UInt32
        /// When the receiver handed it over (-1: not yet), and in which of its incarnations.
        var receivedAt: Int64 = -1
        var receivedIncarnation: UInt32 = 0
    }

    let spec: Scenario.WorkloadSpec
    var rng: SeededGenerator
    let every: Int64, size: Int, stream: UInt16
    let from: Double, until: Double?
    private(set) var sent: [Sent] = []
    private(set) var refused = 0, skipped = 0, failed = 0
    /// Receipts that did not match what was sent, or came twice: the safety checker's business.
    private(set) var damaged = 0, duplicated = 0, misdelivered = 0
    private(set) var firstDamage: String?

    init(spec: Scenario.WorkloadSpec, rng: SeededGenerator) {
        self.spec = spec
        self.rng = rng
        every = Simulation.nanos(spec.params["every_s"] ?? 1)
        size = max(16, Int(spec.params["bytes"] ?? 1000))
        stream = UInt16(clamping: Int(spec.params["stream"] ?? 1))
        from = spec.params["from_s"] ?? 0
        until = spec.params["until_s"]
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
        // A member the sender holds alive: sending to one it does not know is refused, not a test.
        var targets: [Int] = []
        for j in live where j != i {
            if let m = sim.nodes[i].members[sim.nodeID(j)], m.state == .alive { targets.append(j) }
        }
        guard !targets.isEmpty else { skipped += 1; return }
        let j = targets[Int(rng.next() % UInt64(targets.count))]
        let seq = UInt64(sent.count)
        sent.append(Sent(from: Int32(i), to: Int32(j), at: sim.now, fromIncarnation: sim.incarnationOf(i), toIncarnation: sim.incarnationOf(j)))
        sim.log(i, "workload messages: send #\(seq) (\(size) B) to node \(j)")
        sim.command(i, .sendMessage(to: sim.nodeID(j), stream: stream, bytes: Self.body(seq: seq, size: size)))
    }

    /// A message's bytes: its sequence number, then a pattern that depends on it, so any damage shows.
    static func body(seq: UInt64, size: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size)
        for k in 0..<8 { b[k] = UInt8((seq >> UInt64(56 - 8 * k)) & 0xff) }
        var x = seq &* 0x9E37_79B9_7F4A_7C15 | 1
        for k in 8..<size {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            b[k] = UInt8(x & 0xff)
        }
        return b
    }

    func observe(node j: Int, _ event: NodeEvent, _ sim: Simulation) {
        switch event {
        case let .messageReceived(fromID, s, bytes) where s == stream:
            guard bytes.count >= 8 else { damaged += 1; note("node \(j) received \(bytes.count) B, too short to be a workload message", sim); return }
            var seq: UInt64 = 0
            for k in 0..<8 { seq = seq << 8 | UInt64(bytes[k]) }
            guard seq < UInt64(sent.count) else { damaged += 1; note("node \(j) received a message numbered \(seq), never sent", sim); return }
            let m = sent[Int(seq)]
            guard bytes == Self.body(seq: seq, size: size) else { damaged += 1; note("message \(seq) arrived at node \(j) altered", sim); return }
            guard Int(m.to) == j, sim.nodeIndex(of: fromID) == Int(m.from) else {
                misdelivered += 1
                note("message \(seq) from node \(m.from) to node \(m.to) arrived at node \(j) from \(sim.nodeIndex(of: fromID).map { "node \($0)" } ?? "a stranger")", sim)
                return
            }
            let inc = sim.incarnationOf(j)
            if m.receivedAt >= 0, m.receivedIncarnation == inc {
                duplicated += 1
                note("message \(seq) delivered twice to node \(j)", sim)
                return
            }
            sent[Int(seq)].receivedAt = sim.now
            sent[Int(seq)].receivedIncarnation = inc
            sim.log(j, "workload messages: received #\(seq) from node \(m.from)")
        case .messageRefused(_, let s, _) where s == stream:
            refused += 1
        case .messageFailed:
            failed += 1
        default:
            break
        }
    }

    private func note(_ what: String, _ sim: Simulation) {
        if firstDamage == nil { firstDamage = what }
    }

    /// Messages whose sender and receiver stayed up (same incarnation, live at the end), sent at
    /// least `settle` before the end; and how many of those arrived.
    func deliverable(_ sim: Simulation, settle: Int64) -> (count: Int, arrived: Int, worst: Int64, missing: [Int]) {
        var count = 0, arrived = 0, worst: Int64 = 0
        var missing: [Int] = []
        for (k, m) in sent.enumerated() where m.at + settle <= sim.now {
            let a = Int(m.from), b = Int(m.to)
            guard sim.isLive(a), sim.isLive(b), sim.incarnationOf(a) == m.fromIncarnation, sim.incarnationOf(b) == m.toIncarnation else { continue }
            count += 1
            if m.receivedAt >= 0 { arrived += 1; worst = max(worst, m.receivedAt - m.at) } else if missing.count < 5 { missing.append(k) }
        }
        return (count, arrived, worst, missing)
    }

    func metrics(into m: inout [String: Double], _ sim: Simulation) {
        m["messages_sent"] = Double(sent.count)
        m["messages_received"] = Double(sent.filter { $0.receivedAt >= 0 }.count)
        m["messages_refused"] = Double(refused)
        m["messages_failed"] = Double(failed)
        m["messages_skipped"] = Double(skipped)
        m["messages_damaged"] = Double(damaged + duplicated + misdelivered)
    }
}

/// Safety: no message arrives altered, at the wrong node, from the wrong sender, or twice.
private final class IntactChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.workload(MessageWorkload.self)?.firstDamage }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(MessageWorkload.self) else {
            return .init(name: name, passed: false, detail: "no messages workload in this scenario ([[workloads]] kind = \"messages\")")
        }
        let received = w.sent.filter { $0.receivedAt >= 0 }.count
        let bad = w.damaged + w.duplicated + w.misdelivered
        return .init(name: name, passed: bad == 0,
                     detail: "\(received) of \(w.sent.count) messages received; \(w.damaged) altered, \(w.misdelivered) misdelivered, \(w.duplicated) twice")
    }
}

/// Liveness: every message sent between two nodes that stayed up, at least `within_s` (default 30)
/// before the end, arrived; `fraction` (default 1) relaxes it.
private final class DeliveredChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(MessageWorkload.self) else {
            return .init(name: name, passed: false, detail: "no messages workload in this scenario ([[workloads]] kind = \"messages\")")
        }
        let within = spec.withinSeconds ?? 30
        let want = spec.fraction ?? 1
        let d = w.deliverable(sim, settle: Simulation.nanos(within))
        guard d.count > 0 else {
            return .init(name: name, passed: false, detail: "no message was sent between nodes that stayed up, \(String(format: "%.0f", within)) s before the end (\(w.sent.count) sent, \(w.skipped) skipped)")
        }
        let share = Double(d.arrived) / Double(d.count)
        var detail = "\(d.arrived) of \(d.count) messages between nodes that stayed up arrived (\(String(format: "%.4f", share)), limit \(String(format: "%.4f", want))); slowest \(String(format: "%.3f", Double(d.worst) / 1e9)) s"
        if !d.missing.isEmpty { detail += "; missing: " + d.missing.map { "#\($0) (node \(w.sent[$0].from) → \(w.sent[$0].to))" }.joined(separator: ", ") }
        return .init(name: name, passed: share >= want, detail: detail)
    }
}
