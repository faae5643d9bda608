import Foundation
import Simulator
import Testing

/// Issue 23's floors as a small CI sweep: each discovery mode, a group behind a bad link, and loss
/// on every link, each over five seeds, so a change that reopens one of them fails here. The
/// scenarios are the ones in Simulations/, shrunk to `nodes` nodes (40 by default, so the whole
/// sweep stays within a couple of minutes of a debug build on two cores) with their events and
/// checks kept; `GOSSIP_SWEEP_NODES=200` runs the 200-node size (release builds only:
/// about a minute of a core per run).
@Suite struct HardNetworkSweepTests {
    static let seeds: [UInt64] = [1, 2, 3, 4, 5]
    static var nodes: Int { ProcessInfo.processInfo.environment["GOSSIP_SWEEP_NODES"].flatMap(Int.init) ?? 40 }

    static func sweep(_ file: String, _ edit: (inout Scenario) -> Void = { _ in }) throws -> [UInt64: [String]] {
        var s = try scenario(file)
        s.nodes = nodes
        edit(&s)
        // The sequential engine, one seed at a time per test: the suite's tests already run in
        // parallel (and five windowed sweeps at once in one process crashed once; see the report).
        let out = SeedSweep.run(s, seeds: seeds, jobs: 1, threads: 1) { _, _ in }
        var failed: [UInt64: [String]] = [:]
        for o in out where !o.report.passed {
            failed[o.seed] = o.report.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }
        }
        return failed
    }

    @Test func masterModeKeepsItsFloorsOverFiveSeeds() throws {
        let failed = try Self.sweep("gossip-master-1000.toml") { s in
            s.durationSeconds = 100
            for k in s.timeline.indices where s.timeline[k].kind == .crash { s.timeline[k].atSeconds = 40; s.timeline[k].nodes = .count(2) }
            s.checks.removeAll { $0.kind == "traffic_within" }
        }
        #expect(failed.isEmpty, "\(failed)")
    }

    @Test func walkModeHasNoIslandsOverFiveSeeds() throws {
        let failed = try Self.sweep("gossip-walk-1000.toml") { s in s.checks.removeAll { $0.kind == "traffic_within" } }
        #expect(failed.isEmpty, "\(failed)")
    }

    @Test func nearestModeKeepsItsFloorsOverFiveSeeds() throws {
        let failed = try Self.sweep("gossip-nearest-1000.toml") { s in
            s.lanSize = 10
            s.durationSeconds = 90
        }
        #expect(failed.isEmpty, "\(failed)")
    }

    /// 10 % of the nodes behind 70 % loss both ways for two minutes: no healthy node declares a
    /// healthy one dead, and the degraded ones are alive everywhere at the end.
    @Test func aGroupBehindABadLinkCausesNoFalseDeathsOverFiveSeeds() throws {
        let failed = try Self.sweep("gossip-lossy-group.toml") { s in
            s.durationSeconds = 130
            for k in s.timeline.indices { s.timeline[k].atSeconds = 20; s.timeline[k].forSeconds = 60 }
        }
        #expect(failed.isEmpty, "\(failed)")
    }

    /// 20 % loss on every link: converges, nobody declared dead.
    @Test func lossEverywhereCausesNoFalseDeathsOverFiveSeeds() throws {
        let failed = try Self.sweep("gossip-lossy-everywhere.toml") { s in s.durationSeconds = 100 }
        #expect(failed.isEmpty, "\(failed)")
    }
}
