import Foundation
import Simulator
import Testing

/// Meter relays' floors on a small lossy mesh over a few seeds (Simulations/meters-narrowband.toml
/// is the larger sweep, Docs/meters.md): every read anchored once, every proof verifies, while
/// relays crash and restart and a collector is down for an interval.
@Suite struct MeterScenarioTests {
    static func meters(_ events: String = "") throws -> Scenario {
        try Scenario.parse("""
            name = "meters-small"
            nodes = 12
            duration_s = 240
            seeding = "random:2"
            [gossip]
            uplink_kbps = 64
            [network]
            latency_ms = 40
            jitter_ms = 10
            loss = 0.1
            bandwidth_kbps = 64
            queue_limit_ms = 1000
            [[workloads]]
            kind = "meters"
            collectors = 2
            meters = 40
            interval_s = 20
            grace_s = 5
            from_s = 20
            until_s = 170
            \(events)
            [[checks]]
            kind = "meters_anchored"
            within_intervals = 2
            [[checks]]
            kind = "meters_unique"
            [[checks]]
            kind = "meters_proofs"
            [[checks]]
            kind = "traffic_within"
            from_s = 60
            max_bytes = 8000
            """, file: "meters-small.toml")
    }

    static let faults = """
        [[events]]
        kind = "crash"
        at_s = 60
        nodes = [4, 7]
        for_s = 30
        [[events]]
        kind = "crash"
        at_s = 100
        nodes = [1]
        for_s = 25
        """

    @Test(arguments: [1, 2, 3])
    func everyReadIsAnchoredOnceAndProvableWhileRelaysAndACollectorCrash(seed: UInt64) throws {
        let r = Simulation(scenario: try Self.meters(Self.faults), seed: seed).run()
        for c in r.checks { #expect(c.passed, "\(c.name): \(c.detail)") }
        #expect(metric(r, "meters_reads_recorded") > 200)
        #expect(metric(r, "meters_anchors") > 0)
    }

    /// Simulations/meters-ledger.toml on one seed (the sweep: `iotaf sim run
    /// Simulations/meters-ledger.toml --seeds 1..20 --jobs 2`, Docs/meters.md): the collectors
    /// anchor through their ledger replicas; every closed interval's root is on the ledger and
    /// every anchored read proves against it, through relay, collector and validator crashes.
    @Test func everyClosedIntervalIsOnTheLedgerAndEachReadProvesAgainstIt() throws {
        let r = Simulation(scenario: try scenario("meters-ledger.toml"), seed: 1).run()
        for c in r.checks { #expect(c.passed, "\(c.name): \(c.detail)") }
        #expect(metric(r, "meters_anchors_confirmed_on_ledger") > 0)
        #expect(metric(r, "meters_anchors_confirmed_on_ledger") >= metric(r, "meters_anchors"))
    }

    @Test func theCheckersFailWithoutTheWorkload() throws {
        var s = try tiny(nodes: 4, seconds: 5)
        s.checks = [.init(kind: "meters_anchored", withinSeconds: nil), .init(kind: "meters_proofs", withinSeconds: nil)]
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(r.checks.allSatisfy { !$0.passed })
    }
}
