import Foundation
import Simulator
import Testing

/// Lacero's durability floor on a small mesh over a few seeds (Simulations/lacero-100.toml is the
/// larger sweep, Docs/lacero.md).
@Suite struct LaceroScenarioTests {
    static func lacero(crashFraction: Double) throws -> Scenario {
        try tiny(nodes: 24, seconds: 45, """
            [[workloads]]
            kind = "lacero"
            objects = 4
            bytes = 2500
            k = 3
            n = 5
            segment_bytes = 1000
            put_s = 15
            get_s = 30
            [[events]]
            kind = "crash"
            at_s = 22
            fraction = \(crashFraction)
            [[checks]]
            kind = "lacero_durable"
            """)
    }

    @Test(arguments: [1, 2, 3])
    func objectsWhoseSegmentsKeptKFragmentsComeBackAfterAFifthCrashes(seed: UInt64) throws {
        let r = Simulation(scenario: try Self.lacero(crashFraction: 0.2), seed: seed).run()
        let check = try #require(r.checks.first { $0.name == "lacero_durable" })
        #expect(check.passed, "\(check.detail)")
        #expect(metric(r, "lacero_store_acks") == 4 * 3 * 5)
        #expect(metric(r, "lacero_store_failed") == 0)
    }

    /// Holders crash for good, then a repair sweep (check, fetch k, rebuild, place anew) brings
    /// every segment that kept k back to n fragments on live nodes (Simulations/lacero-repair.toml
    /// is the 100-node, 20-seed sweep).
    @Test(arguments: [1, 2])
    func repairAfterHoldersCrashForGoodRestoresNFragmentsPerSegment(seed: UInt64) throws {
        let s = try tiny(nodes: 24, seconds: 50, """
            [[workloads]]
            kind = "lacero"
            objects = 4
            bytes = 2500
            k = 3
            n = 5
            segment_bytes = 1000
            put_s = 15
            repair_s = 26
            get_s = 40
            [[events]]
            kind = "crash"
            at_s = 22
            fraction = 0.2
            [[checks]]
            kind = "lacero_repaired"
            [[checks]]
            kind = "lacero_durable"
            """)
        let r = Simulation(scenario: s, seed: seed).run()
        for name in ["lacero_repaired", "lacero_durable"] {
            let check = try #require(r.checks.first { $0.name == name })
            #expect(check.passed, "\(name): \(check.detail)")
        }
        #expect(metric(r, "lacero_repairs_finished") == 4)
        #expect(metric(r, "lacero_fragments_repaired") > 0, "crashing a fifth of the holders left something to repair")
    }

    /// The all-subsets floor in the simulator: one 3-of-6 object of 3 segments, and in
    /// each run the holders of one of the 20 sets of n−k shares of segment 0 crash for good (their
    /// other fragments with them); get returns the object every time (Simulations/lacero-subsets.toml
    /// is the same over seeds 1...20 on the command line).
    @Test func getSucceedsWithEverySetOfNMinusKHoldersOfASegmentCrashed() throws {
        var passed = 0
        for set in 0..<20 {
            let s = try tiny(nodes: 16, seconds: 32, """
                [[workloads]]
                kind = "lacero"
                objects = 1
                bytes = 2500
                k = 3
                n = 6
                segment_bytes = 1000
                put_s = 12
                subset_crash_s = 18
                subset = \(set)
                get_s = 24
                [[checks]]
                kind = "lacero_subset"
                """)
            let r = Simulation(scenario: s, seed: UInt64(set + 1)).run()
            let check = try #require(r.checks.first { $0.name == "lacero_subset" })
            #expect(check.passed, "set \(set): \(check.detail)")
            #expect(metric(r, "lacero_subset_index") == Double(set))
            #expect(metric(r, "lacero_subset_holders_crashed") == 3)
            if check.passed { passed += 1 }
        }
        #expect(passed == 20)
    }

    @Test func theCheckerFailsWithoutTheWorkload() throws {
        var s = try tiny(nodes: 4, seconds: 5)
        s.checks = [.init(kind: "lacero_durable", withinSeconds: nil)]
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(r.checks.first?.passed == false)
    }
}
