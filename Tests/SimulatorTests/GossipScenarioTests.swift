import Foundation
import Simulator
import Testing

/// Small versions of the gossip scenarios, so CI exercises every check kind and the
/// leave, cull, starve and beacon events the 1,000-node scenarios use.
@Suite struct GossipScenarioTests {
    /// gossip-dissemination.toml at 40 nodes, its events moved 40 s earlier (a small mesh forms
    /// sooner): 10 % failed nodes, then a join, a leave and a cull, each measured in
    /// gossip rounds to 99.9 % of live nodes.
    @Test func joinLeaveAndCullDisseminate() throws {
        var s = try scenario("gossip-dissemination.toml")
        s.nodes = 40
        s.durationSeconds = 30
        for k in s.timeline.indices {
            s.timeline[k].atSeconds -= 40
            // 2 % loss here: the 10 % figure is the scenario's to measure (Docs/gossip.md); this
            // test is about the events and the check, which must pass and fail on cue.
            if s.timeline[k].kind == .degrade { s.timeline[k].model?.loss = 0.02 }
        }
        // The floor (10 rounds) is the 1,000-node scenario's to measure; a join in this small,
        // just-formed mesh can take longer (Docs/gossip.md), so the check here only asks that
        // all three arrive within the run.
        s.checks = [Scenario.CheckSpec(kind: "disseminated_within", withinSeconds: nil, withinRounds: 60)]
        let r = Simulation(scenario: s, seed: 3).run()
        let passed = r.passed
        #expect(passed, "\(r.checks)")
        #expect(metric(r, "leaves") == 1)
        #expect(metric(r, "culls") == 1)
        #expect(metric(r, "crashes") == 4)
        for kind in ["join", "leave", "cull"] {
            #expect(metric(r, "dissemination_\(kind)_events") == 1)
            let rounds = metric(r, "dissemination_\(kind)_rounds")
            #expect(rounds >= 0 && rounds <= (kind == "join" ? 60 : 10), "\(kind): \(rounds) rounds")
        }
        // A fiftieth of a round (4 ms) is less than one hop's latency: the check must fail. (Half
        // a round was, until a newcomer's first join stopped being lost to reordering.)
        s.checks = [Scenario.CheckSpec(kind: "disseminated_within", withinSeconds: nil, withinRounds: 0.02)]
        let strict = Simulation(scenario: s, seed: 3).run().checks
        #expect(strict.map(\.passed) == [false], "\(strict)")
    }

    /// Beacons (mode nearest), starved nodes, a mass crash, and the traffic, datagram, overlay and
    /// discovery checks, on 30 nodes.
    @Test func nearestStarvedAndCrashedMeshKeepsItsFloors() throws {
        let s = try tiny(nodes: 30, seconds: 40, """
            loss = 0.02
            [gossip]
            modes = ["nearest", "master"]
            masters = [0]
            beacon_every_s = 5
            lan_size = 10
            [[events]]
            kind = "starve"
            at_s = 3
            nodes = [1, 2, 3]
            delay_ms = 500
            max_delay_ms = 1000
            [[events]]
            kind = "crash"
            at_s = 25
            fraction = 0.5
            exclude = [0, 1, 2, 3]
            [[checks]]
            kind = "discovered_within"
            fraction = 0.9
            within_s = 30
            [[checks]]
            kind = "overlay_connected_within"
            within_s = 30
            [[checks]]
            kind = "traffic_within"
            max_bytes = 8000
            [[checks]]
            kind = "datagram_fits"
            """)
        let r = Simulation(scenario: s, seed: 2).run()
        let passed = r.passed
        #expect(passed, "\(r.checks)")
        #expect(metric(r, "beacons") > 30 * 6)
        #expect(metric(r, "beacons_heard") > metric(r, "beacons") * 5)
        #expect(metric(r, "same_lan_neighbour_fraction") > 0.3)
        #expect(metric(r, "overlay_components_end") == 1)
        #expect(metric(r, "largest_datagram_bytes") > 100)
        #expect(metric(r, "traffic_mean_bytes_per_node_s") > 0)
        let same = canonical(r) == canonical(Simulation(scenario: s, seed: 2).run())
        #expect(same)
    }

    @Test func cullNeedsAnAdminKey() {
        #expect(throws: ScenarioError.self) {
            _ = try Scenario.parse("nodes = 4\n[[events]]\nkind = \"cull\"\nat_s = 1\nnodes = [2]\n", file: "x.toml")
        }
        #expect(throws: ScenarioError.self) {
            _ = try Scenario.parse("nodes = 4\n[[checks]]\nkind = \"disseminated_within\"\n", file: "x.toml")
        }
    }
}
