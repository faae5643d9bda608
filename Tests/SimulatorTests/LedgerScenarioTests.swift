import Foundation
import Simulator
import Testing

/// The ledger workload through whole nodes (consensus, the ledger service, sessions, the reliable
/// stream, the persist path) in the simulator: a small sweep that guards ledger-4.toml's checks in
/// the suite. The big sweep is `iotaf sim run Simulations/ledger-4.toml --seeds 1..N` (Docs/ledger.md).
@Suite struct LedgerScenarioTests {
    /// Replicas equal validators at every height, no transaction twice, every acknowledged one in
    /// the ledger, everyone caught up after a validator crash, a wiped replica, a partition.
    @Test(arguments: [1, 2] as [UInt64])
    func replicasAgreeWithValidatorsThroughFaults(seed: UInt64) throws {
        let r = Simulation(scenario: try scenario("ledger-4.toml"), seed: seed).run()
        #expect(r.passed, "\(r.checks)")
        #expect(metric(r, "ledger_acknowledged") > 300)
        #expect(metric(r, "ledger_n5_height") > 10)
    }

    /// The submissions checker is not vacuous: a run whose clients submit nothing fails it.
    @Test func submissionsCheckerFailsOnCue() throws {
        var s = try scenario("ledger-4.toml")
        for k in s.workloads.indices { s.workloads[k].params["from_s"] = 1000 }
        let r = Simulation(scenario: s, seed: 1).run()
        let byName = Dictionary(uniqueKeysWithValues: r.checks.map { ($0.name, $0.passed) })
        #expect(byName["ledger_submissions_committed"] == false)
        #expect(byName["ledger_agreement"] == true)
    }

    /// A contract deployed, then invoked through faults (ledger-contract.toml, seed 1; the sweep is
    /// `iotaf sim run Simulations/ledger-contract.toml --seeds 1..20`): every node's state root
    /// agrees, spins fail out of fuel with one verdict and their writes are dropped everywhere.
    @Test func aContractInvokedThroughFaultsAgreesEverywhere() throws {
        let r = Simulation(scenario: try scenario("ledger-contract.toml"), seed: 1).run()
        #expect(r.passed, "\(r.checks)")
        let contract = r.checks.first { $0.name == "ledger_contract" }
        #expect(contract?.passed == true, "\(contract?.detail ?? "no ledger_contract check")")
    }

    /// The contract checker is not vacuous: without a contract in the run it fails.
    @Test func contractCheckerFailsWithoutAContract() throws {
        var s = try scenario("ledger-contract.toml")
        for k in s.workloads.indices { s.workloads[k].params["contract_share"] = 0 }
        s.durationSeconds = 6
        for k in s.workloads.indices { s.workloads[k].params["until_s"] = 5 }
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(r.checks.first { $0.name == "ledger_contract" }?.passed == false)
    }
}
