import Consensus
import Foundation
import MeshCore
import Node
import NodeService

/// Consensus as a workload: the first `validators` nodes run `ConsensusService` (genesis: their
/// keys in node order), and a client submits a payload of known content to a random live
/// validator every `every_s`. Every commit any validator reports is checked. Its checkers:
/// `consensus_agreement` (safety: no two validators commit different blocks at one height),
/// `consensus_validity` (safety: every committed payload was submitted, unaltered, and none is
/// committed at two heights or twice in a block), `consensus_live` (liveness: commits resume
/// within `within_s` after the last fault heals, and every validator live at the end committed
/// within the last `within_s`) and `consensus_payloads_committed` (liveness: every payload handed
/// to a validator that stayed up, `within_s` before the end, was committed).
///
/// ```toml
/// [[workloads]]
/// kind = "consensus"
/// validators = 4          # nodes 0…validators−1 are the validators (default 4)
/// every_s = 0.05          # one payload this often (default 0.1)
/// bytes = 256             # payload size, at least 16 (default 256)
/// from_s = 1              # first payload (default 1)
/// until_s = 20            # last payload (default: the end of the run)
/// round_timeout_ms = 1000 # ConsensusConfig.roundTimeout (default 1000)
/// vote_twice = 1          # a deliberate bug in every validator (Mutation.voteTwiceInARound): for checker tests
/// ```
final class ConsensusWorkload: Workload {
    static let kind = WorkloadKind(name: "consensus", required: [],
                                   optional: ["validators", "every_s", "bytes", "from_s", "until_s", "round_timeout_ms", "vote_twice"]) {
        ConsensusWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("consensus_agreement", phase: .safety) { ConsensusAgreementChecker(spec: $0) },
        CheckerKind("consensus_validity", phase: .safety) { ConsensusValidityChecker(spec: $0) },
        CheckerKind("consensus_votes", phase: .safety) { ConsensusVotesChecker(spec: $0) },
        CheckerKind("consensus_live", phase: .liveness, optional: ["within_s"]) { ConsensusLiveChecker(spec: $0) },
        CheckerKind("consensus_payloads_committed", phase: .liveness, optional: ["within_s"]) { ConsensusPayloadsChecker(spec: $0) },
    ]

    struct Submitted {
        var node: Int32
        var at: Int64
        var incarnation: UInt32
        /// Height it was committed at (0: not yet).
        var height: UInt64 = 0
        var committedAt: Int64 = -1
    }

    let spec: Scenario.WorkloadSpec
    var rng: SeededGenerator
    let validatorCount: Int
    let every: Int64, size: Int
    let from: Double, until: Double?
    let roundTimeout: Duration
    let voteTwice: Bool
    private var genesis: Genesis?
    /// Per validator: the votes its core signed (the `consensus_votes` record), over all its lives.
    private(set) var voteLogs: [VoteLog] = []
    let debugStates = ProcessInfo.processInfo.environment["CONSENSUS_SIM_DEBUG"] != nil

    private(set) var submitted: [Submitted] = []
    private(set) var skipped = 0
    /// The first validator to commit each height: its block hash and when (the run's commit record).
    private(set) var chain: [UInt64: (hash: BlockHash, node: Int, at: Int64)] = [:]
    /// Instants at which a height was first committed anywhere, in order.
    private(set) var firstCommitTimes: [Int64] = []
    /// Per node: the last instant it committed a block.
    private(set) var lastCommitAt: [Int: Int64] = [:]
    private(set) var commits = 0
    private(set) var halts = 0
    private(set) var firstDisagreement: String?
    private(set) var firstInvalid: String?

    init(spec: Scenario.WorkloadSpec, rng: SeededGenerator) {
        self.spec = spec
        self.rng = rng
        validatorCount = max(1, Int(spec.params["validators"] ?? 4))
        every = Simulation.nanos(spec.params["every_s"] ?? 0.1)
        size = max(16, Int(spec.params["bytes"] ?? 256))
        from = spec.params["from_s"] ?? 1
        until = spec.params["until_s"]
        roundTimeout = .milliseconds(Int64(spec.params["round_timeout_ms"] ?? 1000))
        voteTwice = (spec.params["vote_twice"] ?? 0) != 0
    }

    // MARK: - Nodes

    func services(node i: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>] {
        guard i < min(validatorCount, sim.identities.count) else { return [] }
        let g = genesis ?? Genesis(validators: ValidatorSet((0..<min(validatorCount, sim.identities.count)).map { ValidatorKey(sim.identities[$0].publicKey)! })!)
        genesis = g
        var config = ConsensusConfig(genesis: g)
        config.roundTimeout = roundTimeout
        if voteTwice { config.mutation = .voteTwiceInARound }
        let rng = sim.root.derived(0x636f_6e73_0000_0000 ^ UInt64(i) << 20 ^ UInt64(incarnation))
        while voteLogs.count <= i { voteLogs.append(VoteLog()) }
        // Restarted without its safety state (the disk wiped): a new life for the vote record.
        if incarnation > 0, !sim.disk.rows(node: i).contains(where: { $0.table == ConsensusService.safetyTable }) { voteLogs[i].newLife() }
        do {
            var service = try ConsensusService(config: config, identity: sim.identities[i], rng: rng)
            service.rewriter = ConsensusLiar(lie: sim.serviceLies[i], votes: voteLogs[i], identity: sim.identities[i], genesis: g, node: i,
                                             rng: sim.root.derived(0x6c69_6573_0000_0000 ^ UInt64(i) << 20 ^ UInt64(incarnation)))
            return [service]
        } catch {
            fatalError("simulated validator \(i) cannot run consensus: \(error)")
        }
    }

    // MARK: - Client

    func start(_ sim: Simulation) {
        sim.schedule(self, after: Simulation.nanos(from), tag: 0)
    }

    func fire(tag: Int, _ sim: Simulation) {
        let end = Simulation.nanos(until ?? sim.scenario.durationSeconds)
        guard sim.now <= end else { return }
        if debugStates {
            var line = String(format: "%.2f", Double(sim.now) / 1e9)
            for i in 0..<min(validatorCount, sim.nodeCount) {
                if let st = sim.nodes[i].service(ConsensusService.self)?.status {
                    line += " | v\(i) r\(st.round) h\(st.height) lv\(st.lastVotedRound) qc\(st.highQCRound) L\(st.leader) mem\(st.mempool) to\(st.core?.timeoutsSent ?? -1) drops\(st.core?.drops.filter { $0.value > 0 }.map { "\($0.key.rawValue)=\($0.value)" }.sorted().joined(separator: ",") ?? "")"
                }
            }
            print(line)
        }
        submitOne(sim)
        sim.schedule(self, after: max(1, every), tag: 0)
    }

    /// A live validator that halted (its stored safety state did not decode, say after a torn
    /// write): out of the game, as a crashed one is; a client hears its refusal and goes elsewhere.
    func halted(_ i: Int, _ sim: Simulation) -> Bool {
        sim.nodes[i].service(ConsensusService.self)?.halted != nil
    }

    private func submitOne(_ sim: Simulation) {
        var live: [Int] = []
        for i in 0..<min(validatorCount, sim.nodeCount) where sim.isLive(i) && !halted(i, sim) { live.append(i) }
        guard !live.isEmpty else { skipped += 1; return }
        let i = live[Int(rng.next() % UInt64(live.count))]
        let seq = UInt64(submitted.count)
        submitted.append(Submitted(node: Int32(i), at: sim.now, incarnation: sim.incarnationOf(i)))
        sim.command(i, .service(ConsensusService.protocolID, ServicePayload(ConsensusRequest.submit(MessageWorkload.body(seq: seq, size: size)))))
    }

    // MARK: - Commits

    func observe(node j: Int, _ event: NodeEvent, _ sim: Simulation) {
        guard case let .service(id, payload) = event, id == ConsensusService.protocolID, let e = payload.as(ConsensusEvent.self) else { return }
        switch e {
        case .halted(let why):
            halts += 1
            sim.log(j, "workload consensus: halted: \(why)")
        case .committed(let b):
            commits += 1
            lastCommitAt[j] = sim.now
            if let first = chain[b.height] {
                if first.hash != b.hash, firstDisagreement == nil {
                    firstDisagreement = "node \(j) committed block \(b.hash) at height \(b.height), node \(first.node) committed \(first.hash) there"
                }
                return  // a block already judged (another validator, or a restarted one committing again from 1)
            }
            chain[b.height] = (b.hash, j, sim.now)
            firstCommitTimes.append(sim.now)
            var inBlock = Set<UInt64>()
            for p in b.payloads { judge(p, height: b.height, node: j, inBlock: &inBlock, sim) }
        }
    }

    private func judge(_ p: [UInt8], height: UInt64, node j: Int, inBlock: inout Set<UInt64>, _ sim: Simulation) {
        func invalid(_ what: String) { if firstInvalid == nil { firstInvalid = what } }
        guard p.count >= 8 else { invalid("node \(j) committed a \(p.count)-byte payload at height \(height), never submitted"); return }
        var seq: UInt64 = 0
        for k in 0..<8 { seq = seq << 8 | UInt64(p[k]) }
        guard seq < UInt64(submitted.count), p == MessageWorkload.body(seq: seq, size: size) else {
            invalid("node \(j) committed a payload at height \(height) that was never submitted (or altered)"); return
        }
        guard inBlock.insert(seq).inserted else { invalid("payload #\(seq) twice in the block at height \(height)"); return }
        let s = submitted[Int(seq)]
        if s.height != 0, s.height != height { invalid("payload #\(seq) committed at heights \(s.height) and \(height)"); return }
        submitted[Int(seq)].height = height
        submitted[Int(seq)].committedAt = sim.now
    }

    /// The longest pause between two consecutive first commits that overlaps [t, t + window].
    func longestPause(after t: Int64, window: Int64) -> Int64 {
        var worst: Int64 = 0
        for k in 1..<max(1, firstCommitTimes.count) {
            let a = firstCommitTimes[k - 1], b = firstCommitTimes[k]
            if b > t, a < t + window { worst = max(worst, b - a) }
        }
        if let last = firstCommitTimes.last, last <= t { return -1 }  // never resumed
        return worst
    }

    func metrics(into m: inout [String: Double], _ sim: Simulation) {
        m["consensus_submitted"] = Double(submitted.count)
        m["consensus_payloads_committed"] = Double(submitted.filter { $0.height != 0 }.count)
        m["consensus_height"] = Double(chain.count)
        m["consensus_commit_events"] = Double(commits)
        m["consensus_halts"] = Double(halts)
        m["consensus_votes_signed"] = Double(voteLogs.reduce(0) { $0 + $1.votes })
        m["consensus_lies"] = Double(sim.serviceLies.prefix(validatorCount).reduce(0) { $0 + $1.acts })
        var gap: Int64 = 0
        for k in 1..<max(1, firstCommitTimes.count) { gap = max(gap, firstCommitTimes[k] - firstCommitTimes[k - 1]) }
        m["consensus_max_commit_gap_s"] = Double(gap) / 1e9
        // Pauses around each crash of a validator (the leader's turn comes within one rotation).
        var pause: Int64 = 0, crashes = 0
        for r in sim.crashRecords where r.node < validatorCount {
            crashes += 1
            let p = longestPause(after: r.at, window: Simulation.nanos(10))
            pause = p < 0 ? -1 : (pause < 0 ? -1 : max(pause, p))
        }
        if crashes > 0 { m["consensus_crash_pause_s"] = pause < 0 ? -1 : Double(pause) / 1e9 }
        // Each validator's state at the end (to tell a stalled chain from a lagging validator).
        for i in 0..<min(validatorCount, sim.nodeCount) {
            guard let st = sim.nodes[i].service(ConsensusService.self)?.status else { continue }
            m["consensus_v\(i)_round"] = Double(st.round)
            m["consensus_v\(i)_height"] = Double(st.height)
            m["consensus_v\(i)_unreachable"] = Double(st.service.unreachable)
            if let c = st.core {
                m["consensus_v\(i)_timeouts_sent"] = Double(c.timeoutsSent)
                m["consensus_v\(i)_block_requests"] = Double(c.blockRequestsSent)
                m["consensus_v\(i)_drops"] = Double(c.totalDrops)
                for (r, n) in c.drops where n > 0 { m["consensus_v\(i)_drop_\(r.rawValue)"] = Double(n) }
            }
        }
        let latencies = submitted.filter { $0.committedAt >= 0 }.map { Double($0.committedAt - $0.at) / 1e9 }.sorted()
        if !latencies.isEmpty {
            m["consensus_latency_p50_s"] = latencies[latencies.count / 2]
            m["consensus_latency_p99_s"] = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        }
    }
}


private func noWorkload(_ name: String) -> SimReport.Check {
    .init(name: name, passed: false, detail: "no consensus workload in this scenario ([[workloads]] kind = \"consensus\")")
}

/// Safety: no two validators commit different blocks at one height.
private final class ConsensusAgreementChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.workload(ConsensusWorkload.self)?.firstDisagreement }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(ConsensusWorkload.self) else { return noWorkload(name) }
        return .init(name: name, passed: w.firstDisagreement == nil,
                     detail: "\(w.chain.count) heights, \(w.commits) commits by validators" + (w.firstDisagreement.map { "; " + $0 } ?? ", all agree"))
    }
}

/// Safety: no validator's core signs votes for two blocks in one round (across restarts with its
/// state; a restart with the state lost starts afresh). Byzantine lies (`double_vote`) are told
/// beside the core and are not its votes.
private final class ConsensusVotesChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? {
        sim.workload(ConsensusWorkload.self)?.voteLogs.lazy.compactMap(\.firstDouble).first
    }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(ConsensusWorkload.self) else { return noWorkload(name) }
        let double = w.voteLogs.lazy.compactMap(\.firstDouble).first
        return .init(name: name, passed: double == nil,
                     detail: "\(w.voteLogs.reduce(0) { $0 + $1.votes }) votes signed" + (double.map { "; " + $0 } ?? ", at most one block per validator per round"))
    }
}

/// Safety: every committed payload was submitted, unaltered; none at two heights or twice in a block.
private final class ConsensusValidityChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.workload(ConsensusWorkload.self)?.firstInvalid }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(ConsensusWorkload.self) else { return noWorkload(name) }
        let n = w.submitted.filter { $0.height != 0 }.count
        return .init(name: name, passed: w.firstInvalid == nil,
                     detail: "\(n) of \(w.submitted.count) submitted payloads committed" + (w.firstInvalid.map { "; " + $0 } ?? ", each once"))
    }
}

/// Liveness: within `within_s` (default 10) after the last fault healed a block is committed, and
/// every validator live at the end committed within the last `within_s` of the run.
private final class ConsensusLiveChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(ConsensusWorkload.self) else { return noWorkload(name) }
        let within = Simulation.nanos(spec.withinSeconds ?? 10)
        guard let healed = sim.faultsHealedAt else {
            return .init(name: name, passed: false, detail: "a fault lasted to the end of the run: nothing to judge")
        }
        guard sim.now - healed >= within else {
            return .init(name: name, passed: false, detail: String(format: "faults healed at %.1f s, less than within_s before the end", Double(healed) / 1e9))
        }
        guard let resumed = w.firstCommitTimes.first(where: { $0 >= healed }), resumed - healed <= within else {
            return .init(name: name, passed: false, detail: String(format: "no block committed within %.1f s after faults healed at %.1f s", Double(within) / 1e9, Double(healed) / 1e9))
        }
        var behind: [Int] = []
        for i in 0..<min(w.validatorCount, sim.nodeCount) where sim.isLive(i) && !w.halted(i, sim) {
            if (w.lastCommitAt[i] ?? -1) < sim.now - within { behind.append(i) }
        }
        let detail = String(format: "commits resumed %.3f s after faults healed at %.1f s", Double(resumed - healed) / 1e9, Double(healed) / 1e9)
        if !behind.isEmpty {
            return .init(name: name, passed: false, detail: detail + "; validators \(behind) committed nothing in the last \(Double(within) / 1e9) s")
        }
        return .init(name: name, passed: true, detail: detail + "; every live validator committed in the last \(Double(within) / 1e9) s")
    }
}

/// Liveness: every payload handed to a validator that stayed up (same incarnation, live at the
/// end), at least `within_s` (default 10) before the end, was committed.
private final class ConsensusPayloadsChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(ConsensusWorkload.self) else { return noWorkload(name) }
        let within = Simulation.nanos(spec.withinSeconds ?? 10)
        var count = 0, committed = 0
        var missing: [Int] = []
        for (k, s) in w.submitted.enumerated() where s.at + within <= sim.now {
            let i = Int(s.node)
            guard sim.isLive(i), sim.incarnationOf(i) == s.incarnation else { continue }
            count += 1
            if s.height != 0 { committed += 1 } else if missing.count < 5 { missing.append(k) }
        }
        var detail = "\(committed) of \(count) payloads given to validators that stayed up were committed"
        if !missing.isEmpty { detail += "; missing: " + missing.map { "#\($0) (to node \(w.submitted[$0].node))" }.joined(separator: ", ") }
        return .init(name: name, passed: count > 0 && committed == count, detail: count == 0 ? "no payload was submitted to a validator that stayed up" : detail)
    }
}
