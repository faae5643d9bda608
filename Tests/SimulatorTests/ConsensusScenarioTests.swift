import Foundation
import Simulator
import Testing

/// The consensus workload through the whole node (sessions, the reliable stream, the persist
/// path) in the simulator: small sweeps that guard the scenarios' floors in the suite. The big
/// sweeps are `iotaf sim run Simulations/consensus-4.toml --seeds 1..N` (Docs/consensus.md).
@Suite struct ConsensusScenarioTests {
    /// consensus-4.toml under three seeds: every check passes (agreement, validity, liveness after
    /// the faults heal, every payload given to a validator that stayed up committed).
    @Test(arguments: [1, 2, 3] as [UInt64])
    func mixedFaultsKeepAgreementAndLiveness(seed: UInt64) throws {
        let r = Simulation(scenario: try scenario("consensus-4.toml"), seed: seed).run()
        #expect(r.passed, "\(r.checks)")
        #expect(metric(r, "consensus_height") > 20)
        #expect(metric(r, "consensus_payloads_committed") > 300)
    }

    /// The leader-crash floor over a few seeds: commits resume within 3 s of a validator crash.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func commitsResumeWithinThreeSecondsOfALeaderCrash(seed: UInt64) throws {
        let r = Simulation(scenario: try scenario("consensus-leader-crash.toml"), seed: seed).run()
        #expect(r.passed, "\(r.checks)")
        let pause = metric(r, "consensus_crash_pause_s")
        #expect(pause > 0 && pause < 3, "pause \(pause) s")
    }

    /// One byzantine validator of four (f = 1) signing two blocks per round it leads, then double
    /// voting: the honest cores agree, commit only what was submitted, never sign two votes in a
    /// round, and keep committing.
    @Test(arguments: [1, 2] as [UInt64])
    func honestValidatorsAgreeBesideAnEquivocatingDoubleVoter(seed: UInt64) throws {
        let r = Simulation(scenario: try scenario("consensus-byzantine-4.toml"), seed: seed).run()
        #expect(r.passed, "\(r.checks)")
        #expect(metric(r, "consensus_lies") > 10, "the byzantine validator barely lied")
        #expect(metric(r, "consensus_payloads_committed") > 200)
    }

    /// The safety checkers are not vacuous: with Mutation.voteTwiceInARound in every validator
    /// (each votes for a leader's second block too), `consensus_votes` fails in the first seed
    /// beside the equivocating leader.
    @Test func voteTwiceMutationIsCaughtThroughTheSimulator() throws {
        var s = try scenario("consensus-byzantine-4.toml")
        for k in s.workloads.indices { s.workloads[k].params["vote_twice"] = 1 }
        let r = Simulation(scenario: s, seed: 1).run()
        let votes = r.checks.first { $0.name == "consensus_votes" }
        #expect(votes?.passed == false, "\(String(describing: votes))")
    }

    /// The payload checker is not vacuous: a run whose client submits nothing fails it (and the
    /// chain of empty blocks still agrees).
    @Test func livenessCheckersFailOnCue() throws {
        var s = try scenario("consensus-4.toml")
        for k in s.workloads.indices { s.workloads[k].params["from_s"] = 1000 }
        let r = Simulation(scenario: s, seed: 1).run()
        let byName = Dictionary(uniqueKeysWithValues: r.checks.map { ($0.name, $0.passed) })
        #expect(byName["consensus_payloads_committed"] == false)
        #expect(byName["consensus_agreement"] == true)
    }
}
