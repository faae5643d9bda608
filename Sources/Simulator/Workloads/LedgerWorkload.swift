import Consensus
import Contracts
import Foundation
import Ledger
import LedgerService
import MeshCore
import Node
import NodeService

/// The ledger as a workload: nodes 0…validators−1 run `ConsensusService` and a validating
/// `LedgerService` (the consensus service hands its commits to the ledger: `commitSink`), the
/// next `replicas` nodes a replica `LedgerService`. Clients (their own Ed25519 keys) sign a
/// `kv put` of `bytes` bytes every `every_s` and hand it to a random live ledger node (a replica
/// forwards it to a validator). A submission is acknowledged when the node reports it committed
/// (its block durable there).
///
/// Checkers: `ledger_agreement` (safety: every node that applies a height has the same header
/// hash and state root there: replicas equal validators), `ledger_no_tx_twice` (safety: no
/// transaction is executed ok at two heights), `ledger_acknowledged` (liveness: every
/// acknowledged transaction is in the block at the height it was acknowledged at, and the block's
/// record there is the one every node agreed on), `ledger_caught_up` (liveness: every live ledger
/// node holds, durable, the height reached `within_s` before the end) and
/// `ledger_submissions_committed` (liveness: every submission made after the faults healed, to a
/// node that stayed up, `within_s` before the end, was acknowledged).
///
/// ```toml
/// [[workloads]]
/// kind = "ledger"
/// validators = 4          # nodes 0…validators−1 (default 4)
/// replicas = 2            # the next nodes (default 2)
/// every_s = 0.05          # one submission this often (default 0.1)
/// bytes = 256             # the kv value (default 256)
/// clients = 4             # signing keys, used in turn (default 4)
/// from_s = 1              # first submission (default 1)
/// until_s = 25            # last submission (default: the end of the run)
/// round_timeout_ms = 1000 # ConsensusConfig.roundTimeout (default 1000)
/// contract_share = 0.5    # a WebAssembly contract: deployed at from_s, then this share of the
///                         # submissions (from from_s + 1) invoke it (default 0: no contract)
/// spin_share = 0.1        # of those, this share run out of fuel after a write (default 0.1)
/// contract_fuel = 20000   # ContractLimits.fuel on every node of the run (default 20000)
/// ```
///
/// With a contract, `ledger_contract` checks it: the deploy executed, bumps executed and spins
/// failed `out of fuel after N` with N the same everywhere, their writes dropped, and every
/// live node's `value KEY` query equal to the bumps of KEY executed ok up to that node's height.
final class LedgerWorkload: Workload {
    static let kind = WorkloadKind(name: "ledger", required: [],
                                   optional: ["validators", "replicas", "every_s", "bytes", "clients", "from_s", "until_s", "round_timeout_ms",
                                              "contract_share", "spin_share", "contract_fuel"]) {
        LedgerWorkload(spec: $0, rng: $1)
    }
    static let checkerKinds: [CheckerKind] = [
        CheckerKind("ledger_agreement", phase: .safety) { LedgerAgreementChecker(spec: $0) },
        CheckerKind("ledger_no_tx_twice", phase: .safety) { LedgerNoTxTwiceChecker(spec: $0) },
        CheckerKind("ledger_acknowledged", phase: .liveness) { LedgerAcknowledgedChecker(spec: $0) },
        CheckerKind("ledger_caught_up", phase: .liveness, optional: ["within_s"]) { LedgerCaughtUpChecker(spec: $0) },
        CheckerKind("ledger_submissions_committed", phase: .liveness, optional: ["within_s"]) { LedgerSubmissionsChecker(spec: $0) },
        CheckerKind("ledger_contract", phase: .liveness) { LedgerContractChecker(spec: $0) },
    ]

    /// The run's contract (`contract_share` > 0): a counter whose `spin` writes, then loops until
    /// its fuel runs out (so the write must be dropped on every node alike).
    static let contractName = "counter"
    static let contractSource = """
        (module
          (import "iotaf" "arg_len" (func $arg_len (param i32) (result i32)))
          (import "iotaf" "arg_read" (func $arg_read (param i32 i32) (result i32)))
          (import "iotaf" "get" (func $get (param i32 i32 i32 i32) (result i32)))
          (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
          (import "iotaf" "ret" (func $ret (param i32 i32)))
          (import "iotaf" "time" (func $time (result i64)))
          (memory (export "memory") 1)
          (func $bump (result i32) (local $kl i32)
            (local.set $kl (call $arg_len (i32.const 0)))
            (if (i32.or (i32.lt_s (local.get $kl) (i32.const 1)) (i32.gt_s (local.get $kl) (i32.const 64))) (then (unreachable)))
            (drop (call $arg_read (i32.const 0) (i32.const 0)))
            (if (i32.ne (call $get (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8)) (i32.const 8))
              (then (i64.store (i32.const 128) (i64.const 0))))
            (i64.store (i32.const 128) (i64.add (i64.load (i32.const 128)) (i64.const 1)))
            (call $put (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8))
            (local.get $kl))
          (func (export "bump") (drop (call $bump)) (call $ret (i32.const 128) (i32.const 8)))
          (func (export "spin") (drop (call $bump)) (loop $forever (br $forever)))
          (func (export "value") (local $kl i32)
            (local.set $kl (call $arg_len (i32.const 0)))
            (drop (call $arg_read (i32.const 0) (i32.const 0)))
            (if (i32.ne (call $get (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8)) (i32.const 8))
              (then (i64.store (i32.const 128) (i64.const 0))))
            (call $ret (i32.const 128) (i32.const 8)))
          (func (export "when") (i64.store (i32.const 128) (call $time)) (call $ret (i32.const 128) (i32.const 8))))
        """
    static let contractKeys = 4
    /// The Unix time at the simulation's instant zero (2026-01-01T00:00:00Z): blocks' consensus time.
    static let virtualEpochMillis: UInt64 = 1_767_225_600_000

    enum ContractStep: Equatable {
        case deploy
        case bump(key: Int)
        case spin(key: Int)
    }

    struct Submitted {
        var txID: [UInt8]
        var node: Int
        var at: Int64
        var incarnation: UInt32
        var ackHeight: UInt64 = 0
        var ackAt: Int64 = -1
        var ackOK = false
        var timedOut = false
        var refusedAtOnce: String?
        /// The chaincode's refusal, when acknowledged refused.
        var ackRefusal: Refusal?
        var contract: ContractStep?
    }

    /// The first record of each height: the header hash and state root every node must match.
    struct HeightRecord {
        var headerHash: [UInt8]
        var stateRoot: [UInt8]
        var node: Int
        var at: Int64
        var txIDs: Set<[UInt8]>
    }

    let spec: Scenario.WorkloadSpec
    var rng: SeededGenerator
    let validatorCount: Int, replicaCount: Int
    let every: Int64, size: Int
    let from: Double, until: Double?
    let roundTimeout: Duration
    private var genesis: LedgerGenesis?
    private var signers: [TransactionSigner] = []
    let contractShare: Double, spinShare: Double
    let contractLimits: ContractLimits
    private var deployer: TransactionSigner?
    private(set) var deployed = false

    private(set) var submitted: [Submitted] = []
    private(set) var skipped = 0
    private(set) var chain: [UInt64: HeightRecord] = [:]
    private(set) var okAt: [[UInt8]: UInt64] = [:]
    private(set) var firstDisagreement: String?
    private(set) var firstTwice: String?
    private(set) var halts = 0
    private(set) var appliedEvents = 0
    private(set) var certified = 0

    init(spec: Scenario.WorkloadSpec, rng: SeededGenerator) {
        self.spec = spec
        self.rng = rng
        validatorCount = max(1, Int(spec.params["validators"] ?? 4))
        replicaCount = max(0, Int(spec.params["replicas"] ?? 2))
        every = Simulation.nanos(spec.params["every_s"] ?? 0.1)
        size = max(1, Int(spec.params["bytes"] ?? 256))
        from = spec.params["from_s"] ?? 1
        until = spec.params["until_s"]
        roundTimeout = .milliseconds(Int64(spec.params["round_timeout_ms"] ?? 1000))
        let clients = max(1, Int(spec.params["clients"] ?? 4))
        contractShare = min(1, max(0, spec.params["contract_share"] ?? 0))
        spinShare = min(1, max(0, spec.params["spin_share"] ?? 0.1))
        var limits = ContractLimits.standard
        limits.fuel = UInt64(max(1000, spec.params["contract_fuel"] ?? 20000))
        contractLimits = limits
        var seeds = rng.derived(0x6c65_6467_6572)
        for _ in 0..<(clients + (contractShare > 0 ? 1 : 0)) {
            // Client keys from the run's generator: the same run signs the same transactions.
            while true {
                var seed: [UInt8] = []
                for _ in 0..<4 { let v = seeds.next(); for b in 0..<8 { seed.append(UInt8((v >> UInt64(8 * b)) & 0xff)) } }
                if let s = try? TransactionSigner(seed: seed) { signers.append(s); break }
            }
        }
        // The contract's deployer: a key of its own (its one transaction never meets a spent nonce).
        if contractShare > 0 { deployer = signers.removeLast() }
    }

    var ledgerNodes: Range<Int> { 0..<(validatorCount + replicaCount) }

    func ledgerGenesis(_ sim: Simulation) -> LedgerGenesis {
        if let genesis { return genesis }
        let n = min(validatorCount, sim.identities.count)
        let g = LedgerGenesis(consensus: Genesis(validators: ValidatorSet((0..<n).map { ValidatorKey(sim.identities[$0].publicKey)! })!), admins: [])
        genesis = g
        return g
    }

    // MARK: - Nodes

    func services(node i: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>] {
        guard i < min(validatorCount + replicaCount, sim.identities.count) else { return [] }
        let g = ledgerGenesis(sim)
        do {
            if i < validatorCount {
                var config = ConsensusConfig(genesis: g.consensus)
                config.roundTimeout = roundTimeout
                // Virtual wall clock: the run starts at 2026-01-01T00:00:00Z on every node, so block times repeat with the seed.
                config.unixMillisAtZero = Self.virtualEpochMillis
                let rng = sim.root.derived(0x6c65_6467_0000_0000 ^ UInt64(i) << 20 ^ UInt64(incarnation))
                var consensus = try ConsensusService(config: config, identity: sim.identities[i], rng: rng)
                consensus.commitSink = LedgerService.protocolID
                var lc = LedgerServiceConfig(role: .validator, genesis: g)
                lc.contractLimits = contractLimits
                return [consensus, try LedgerService(config: lc, identity: sim.identities[i])]
            }
            var lc = LedgerServiceConfig(role: .replica, genesis: g)
            lc.contractLimits = contractLimits
            return [try LedgerService(config: lc, identity: sim.identities[i])]
        } catch {
            fatalError("simulated ledger node \(i) cannot be built: \(error)")
        }
    }

    // MARK: - Clients

    func start(_ sim: Simulation) {
        sim.schedule(self, after: Simulation.nanos(from), tag: 0)
    }

    func fire(tag: Int, _ sim: Simulation) {
        let end = Simulation.nanos(until ?? sim.scenario.durationSeconds)
        guard sim.now <= end else { return }
        submitOne(sim)
        sim.schedule(self, after: max(1, every), tag: 0)
    }

    private func submitOne(_ sim: Simulation) {
        var live: [Int] = []
        for i in ledgerNodes where i < sim.nodeCount && sim.isLive(i) { live.append(i) }
        guard !live.isEmpty else { skipped += 1; return }
        let i = live[Int(rng.next() % UInt64(live.count))]
        let seq = submitted.count
        let c = seq % signers.count
        let chainID = ledgerGenesis(sim).chainID
        var call: ContractStep?
        let tx: Transaction
        if !deployed, var d = deployer {
            // The first submission deploys the contract.
            deployed = true
            guard let module = try? ContractSource.compile(wat: Self.contractSource),
                  let t = try? d.sign(.deploy, Self.contractName, WasmChaincode.deployFunction, [module], chainID: chainID) else { skipped += 1; return }
            deployer = d
            call = .deploy
            tx = t
        } else if deployer != nil, sim.now >= Simulation.nanos(from + 1), Double(rng.next() % 1_000_000) / 1e6 < contractShare {
            let key = Int(rng.next() % UInt64(Self.contractKeys))
            let spin = Double(rng.next() % 1_000_000) / 1e6 < spinShare
            call = spin ? .spin(key: key) : .bump(key: key)
            guard let t = try? signers[c].sign(.invoke, Self.contractName, spin ? "spin" : "bump", [Array("k\(key)".utf8)], chainID: chainID) else { skipped += 1; return }
            tx = t
        } else {
            var value = [UInt8](repeating: 0, count: size)
            for k in 0..<min(8, size) { value[k] = UInt8(truncatingIfNeeded: seq >> (8 * k)) }
            guard let t = try? signers[c].sign(.invoke, "kv", "put", [Array("c\(c)-\(seq)".utf8), value], chainID: chainID) else { skipped += 1; return }
            tx = t
        }
        submitted.append(Submitted(txID: tx.id, node: i, at: sim.now, incarnation: sim.incarnationOf(i), contract: call))
        sim.command(i, .service(LedgerService.protocolID, ServicePayload(LedgerRequest.submitSigned(request: UInt64(seq), transaction: tx.encoded))))
    }

    // MARK: - Events

    func observe(node j: Int, _ event: NodeEvent, _ sim: Simulation) {
        guard case let .service(id, payload) = event, id == LedgerService.protocolID, let e = payload.as(LedgerEvent.self) else { return }
        switch e {
        case let .committed(request, txID, height, result):
            let k = Int(request)
            guard k < submitted.count, submitted[k].txID == txID, submitted[k].node == j else { return }
            submitted[k].ackHeight = height
            submitted[k].ackAt = sim.now
            switch result {
            case .ok: submitted[k].ackOK = true
            case .refused(let r): submitted[k].ackRefusal = r
            }
        case let .timedOut(request, _):
            if Int(request) < submitted.count, submitted[Int(request)].node == j { submitted[Int(request)].timedOut = true }
        case let .refused(request, _, reason):
            if Int(request) < submitted.count, submitted[Int(request)].node == j { submitted[Int(request)].refusedAtOnce = reason }
        case let .applied(b):
            appliedEvents += 1
            if let first = chain[b.height] {
                if (first.headerHash != b.headerHash || first.stateRoot != b.stateRoot), firstDisagreement == nil {
                    firstDisagreement = "node \(j) applied header \(Hex.encode(b.headerHash.prefix(6))) (state root \(Hex.encode(b.stateRoot.prefix(6)))) at height \(b.height), node \(first.node) \(Hex.encode(first.headerHash.prefix(6))) (state root \(Hex.encode(first.stateRoot.prefix(6))))"
                }
                return
            }
            var ids = Set<[UInt8]>()
            for (k, id) in b.txIDs.enumerated() {
                guard let id else { continue }
                ids.insert(id)
                guard b.ok[k] else { continue }
                if let h = okAt[id], h != b.height, firstTwice == nil {
                    firstTwice = "transaction \(Hex.encode(id.prefix(8))) executed ok at heights \(h) and \(b.height)"
                }
                okAt[id] = b.height
            }
            chain[b.height] = HeightRecord(headerHash: b.headerHash, stateRoot: b.stateRoot, node: j, at: sim.now, txIDs: ids)
        case .certified:
            certified += 1
        case let .halted(why):
            halts += 1
            sim.log(j, "workload ledger: halted: \(why)")
        case .accepted:
            break
        }
    }

    /// The highest height first applied anywhere at or before `t`.
    func height(at t: Int64) -> UInt64 {
        var h: UInt64 = 0
        for (height, r) in chain where r.at <= t && height > h { h = height }
        return h
    }

    func metrics(into m: inout [String: Double], _ sim: Simulation) {
        m["ledger_submitted"] = Double(submitted.count)
        m["ledger_acknowledged"] = Double(submitted.filter { $0.ackHeight != 0 }.count)
        m["ledger_acknowledged_ok"] = Double(submitted.filter(\.ackOK).count)
        m["ledger_timed_out"] = Double(submitted.filter(\.timedOut).count)
        m["ledger_refused_at_once"] = Double(submitted.filter { $0.refusedAtOnce != nil }.count)
        m["ledger_height"] = Double(chain.keys.max() ?? 0)
        m["ledger_halts"] = Double(halts)
        m["ledger_certificates_formed_events"] = Double(certified)
        for i in ledgerNodes where i < sim.nodeCount {
            guard let s = sim.nodes[i].service(LedgerService.self) else { continue }
            m["ledger_n\(i)_height"] = Double(s.durableHeight)
            m["ledger_n\(i)_certified_height"] = Double(s.certifiedHeight)
            if s.counters.headerMismatches > 0 { m["ledger_n\(i)_header_mismatches"] = Double(s.counters.headerMismatches) }
            if s.counters.badBlocks > 0 { m["ledger_n\(i)_bad_blocks"] = Double(s.counters.badBlocks) }
            // Blocks that ran contracts, executed as an offload job (inline in the simulator).
            if s.counters.blocksOffLoop > 0 { m["ledger_n\(i)_blocks_off_loop"] = Double(s.counters.blocksOffLoop) }
        }
        let latencies = submitted.filter { $0.ackAt >= 0 }.map { Double($0.ackAt - $0.at) / 1e9 }.sorted()
        if !latencies.isEmpty {
            m["ledger_latency_p50_s"] = latencies[latencies.count / 2]
            m["ledger_latency_p99_s"] = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        }
    }
}

private func noWorkload(_ name: String) -> SimReport.Check {
    .init(name: name, passed: false, detail: "no ledger workload in this scenario ([[workloads]] kind = \"ledger\")")
}

/// Safety: every node that applies a height has the same header hash and state root there.
private final class LedgerAgreementChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.workload(LedgerWorkload.self)?.firstDisagreement }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LedgerWorkload.self) else { return noWorkload(name) }
        return .init(name: name, passed: w.firstDisagreement == nil,
                     detail: "\(w.chain.count) heights, \(w.appliedEvents) blocks applied by \(w.validatorCount) validators and \(w.replicaCount) replicas"
                         + (w.firstDisagreement.map { "; " + $0 } ?? ", every header and state root agrees"))
    }
}

/// Safety: no transaction executed ok at two heights.
private final class LedgerNoTxTwiceChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.workload(LedgerWorkload.self)?.firstTwice }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LedgerWorkload.self) else { return noWorkload(name) }
        return .init(name: name, passed: w.firstTwice == nil, detail: "\(w.okAt.count) transactions executed ok" + (w.firstTwice.map { "; " + $0 } ?? ", each once"))
    }
}

/// Liveness: every acknowledged transaction is in the agreed block at the height it was acknowledged at.
private final class LedgerAcknowledgedChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LedgerWorkload.self) else { return noWorkload(name) }
        var acked = 0
        var missing: [String] = []
        for (k, s) in w.submitted.enumerated() where s.ackHeight != 0 {
            acked += 1
            if !(w.chain[s.ackHeight]?.txIDs.contains(s.txID) ?? false), missing.count < 5 { missing.append("#\(k) at height \(s.ackHeight)") }
        }
        guard acked > 0 else { return .init(name: name, passed: false, detail: "no submission was acknowledged") }
        return .init(name: name, passed: missing.isEmpty,
                     detail: "\(acked) of \(w.submitted.count) submissions acknowledged" + (missing.isEmpty ? ", each in the ledger where acknowledged" : "; not in the ledger: " + missing.joined(separator: ", ")))
    }
}

/// Liveness: every live ledger node holds, durable and agreeing, the height reached `within_s` (default 10) before the end.
private final class LedgerCaughtUpChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LedgerWorkload.self) else { return noWorkload(name) }
        let within = Simulation.nanos(spec.withinSeconds ?? 10)
        let target = w.height(at: sim.now - within)
        var behind: [String] = []
        var wrong: [String] = []
        for i in w.ledgerNodes where i < sim.nodeCount && sim.isLive(i) {
            guard let s = sim.nodes[i].service(LedgerService.self) else { continue }
            if s.durableHeight < target { behind.append("node \(i) at \(s.durableHeight)\(s.farBehind.map { " (\($0))" } ?? "")\(s.halted.map { " (halted: \($0))" } ?? "")") }
            if s.ledger.height > 0, let r = w.chain[s.ledger.height], r.headerHash != s.ledger.headHash { wrong.append("node \(i) at \(s.ledger.height)") }
        }
        var detail = "target height \(target) (reached \(Double(within) / 1e9) s before the end)"
        if !behind.isEmpty { detail += "; behind: " + behind.joined(separator: ", ") }
        if !wrong.isEmpty { detail += "; head differs from the agreed one: " + wrong.joined(separator: ", ") }
        return .init(name: name, passed: target > 0 && behind.isEmpty && wrong.isEmpty, detail: behind.isEmpty && wrong.isEmpty ? detail + "; every live ledger node holds it" : detail)
    }
}

/// Liveness: every submission made after the faults healed, to a node that stayed up, at least
/// `within_s` (default 10) before the end, was acknowledged.
private final class LedgerSubmissionsChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LedgerWorkload.self) else { return noWorkload(name) }
        guard let healed = sim.faultsHealedAt else { return .init(name: name, passed: false, detail: "a fault lasted to the end of the run: nothing to judge") }
        let within = Simulation.nanos(spec.withinSeconds ?? 10)
        var count = 0, acked = 0
        var missing: [String] = []
        for (k, s) in w.submitted.enumerated() where s.at >= healed && s.at + within <= sim.now {
            guard sim.isLive(s.node), sim.incarnationOf(s.node) == s.incarnation else { continue }
            count += 1
            if s.ackHeight != 0 { acked += 1 } else if missing.count < 5 {
                missing.append("#\(k) to node \(s.node)" + (s.timedOut ? " (timed out)" : "") + (s.refusedAtOnce.map { " (refused: \($0))" } ?? ""))
            }
        }
        guard count > 0 else { return .init(name: name, passed: false, detail: "no submission after the faults healed to a node that stayed up") }
        return .init(name: name, passed: acked == count,
                     detail: "\(acked) of \(count) submissions after the faults healed acknowledged" + (missing.isEmpty ? "" : "; missing: " + missing.joined(separator: ", ")))
    }
}

/// The run's contract (`contract_share` > 0): the deploy executed; bumps executed ok; spins
/// executed and failed `out of fuel after N` (one N for all: the same metering everywhere), never
/// ok; and on every live ledger node, `value KEY` equals the bumps of KEY executed ok up to that
/// node's height, so a spin's write before its fuel ran out was dropped everywhere.
private final class LedgerContractChecker: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        guard let w = sim.workload(LedgerWorkload.self) else { return noWorkload(name) }
        guard let deploy = w.submitted.first(where: { $0.contract == .deploy }) else {
            return .init(name: name, passed: false, detail: "no contract in this run (set contract_share in the ledger workload)")
        }
        var problems: [String] = []
        if w.okAt[deploy.txID] == nil { problems.append("the deploy was not executed ok") }
        var bumpsOK = 0, spinsExecuted = 0
        var fuelVerdicts = Set<String>()
        var bumpHeights: [(key: Int, height: UInt64)] = []
        for s in w.submitted {
            switch s.contract {
            case let .bump(key)?:
                if let h = w.okAt[s.txID] { bumpsOK += 1; bumpHeights.append((key, h)) }
            case .spin?:
                if w.okAt[s.txID] != nil { problems.append("a spin executed ok") }
                // A spin the executor refused before the contract ran (a client's nonces ordered
                // against each other across nodes: replayed_nonce) says nothing about fuel.
                if let r = s.ackRefusal, r.reason == .contractFailed {
                    if !r.detail.hasPrefix("out of fuel after ") { problems.append("a spin refused \(r)") }
                    fuelVerdicts.insert(r.detail)
                    spinsExecuted += 1
                }
            default: break
            }
        }
        if bumpsOK == 0 { problems.append("no bump executed ok") }
        if spinsExecuted == 0 { problems.append("no spin acknowledged out of fuel") }
        if fuelVerdicts.count > 1 { problems.append("spins failed with different verdicts: \(fuelVerdicts.sorted())") }
        var nodesChecked = 0
        for i in w.ledgerNodes where i < sim.nodeCount && sim.isLive(i) {
            guard let s = sim.nodes[i].service(LedgerService.self), s.ledger.height > 0 else { continue }
            nodesChecked += 1
            for key in 0..<LedgerWorkload.contractKeys {
                let expected = UInt64(bumpHeights.filter { $0.key == key && $0.height <= s.ledger.height }.count)
                let answer = s.ledger.queryContract(LedgerWorkload.contractName, function: "value", args: [Array("k\(key)".utf8)])
                guard case .ok(let out)? = answer?.result, let r = ContractResult.decode(out), r.output.count == 8 else {
                    problems.append("node \(i): value k\(key) answered \(answer.map { "\($0.result)" } ?? "no contract")")
                    continue
                }
                let got = r.output.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                if got != expected, problems.count < 8 { problems.append("node \(i) at height \(s.ledger.height): k\(key) = \(got), expected \(expected)") }
            }
            // Consensus time: `time()` is the head block's agreed time, within the run's virtual span.
            let head = s.ledger.head?.time ?? 0
            let span = LedgerWorkload.virtualEpochMillis...(LedgerWorkload.virtualEpochMillis + UInt64(sim.now / 1_000_000))
            if !span.contains(head), problems.count < 8 { problems.append("node \(i): head time \(head) outside the run") }
            if case .ok(let out)? = s.ledger.queryContract(LedgerWorkload.contractName, function: "when", args: [])?.result,
               let r = ContractResult.decode(out), r.output.count == 8 {
                let t = r.output.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                if t != head, problems.count < 8 { problems.append("node \(i): time() = \(t), head time \(head)") }
            } else if problems.count < 8 {
                problems.append("node \(i): when failed")
            }
        }
        let detail = "deploy at height \(w.okAt[deploy.txID].map(String.init) ?? "none"); \(bumpsOK) bumps ok; \(spinsExecuted) spins out of fuel"
            + (fuelVerdicts.first.map { " (\($0))" } ?? "") + "; \(nodesChecked) nodes' counters queried"
        return .init(name: name, passed: problems.isEmpty && nodesChecked > 0, detail: detail + (problems.isEmpty ? ", each equal to its bumps" : "; " + problems.joined(separator: "; ")))
    }
}
