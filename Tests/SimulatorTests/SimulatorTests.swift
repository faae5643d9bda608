import Foundation
import Simulator
import Testing

let simRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func scenario(_ name: String) throws -> Scenario {
    try Scenario.load(path: simRoot.appendingPathComponent("Simulations/\(name)").path)
}

/// The report with wall_seconds zeroed: the only field allowed to differ.
func canonical(_ r: SimReport) -> Data {
    var r = r
    r.wall_seconds = 0
    return r.json()
}

@Suite struct SimulatorTests {
    @Test func sameSeedSameBytes() throws {
        let s = try scenario("small-5.toml")
        let a = canonical(Simulation(scenario: s, seed: 11).run())
        let b = canonical(Simulation(scenario: s, seed: 11).run())
        #expect(a == b)
        let c = canonical(Simulation(scenario: s, seed: 12).run())
        #expect(a != c)
    }

    /// Determinism with every fault source in play (timeline picks, byzantine, duplication, reordering).
    @Test func sameSeedSameBytesUnderFaults() throws {
        var s = try scenario("byzantine.toml")
        s.durationSeconds = 40
        var crash = TimelineEvent(kind: .crash, atSeconds: 25)
        crash.nodes = .count(2)
        crash.forSeconds = 5
        s.timeline.append(crash)
        let a = canonical(Simulation(scenario: s, seed: 7).run())
        let b = canonical(Simulation(scenario: s, seed: 7).run())
        #expect(a == b)
        #expect(a != canonical(Simulation(scenario: s, seed: 8).run()))
    }

    @Test(arguments: ["crash-restart.toml", "partition-heal.toml", "byzantine.toml"])
    func faultScenariosPassTheirChecks(name: String) throws {
        let r = Simulation(scenario: try scenario(name), seed: 1).run()
        #expect(r.passed, "\(r.checks)")
    }

    /// `start = "converged"`: the nodes up at 0 s know each other from the first sample, with
    /// no join storm; a node that joins later is learned the usual way, and the mesh stays sound.
    @Test func convergedStartSkipsTheJoinStorm() throws {
        let text = """
            name = "warm"
            nodes = 60
            duration_s = 40
            seeding = "random:2"
            start = "%@"
            sample_every_s = 1
            [network]
            latency_ms = 5
            loss = 0.01
            [[events]]
            kind = "join"
            at_s = 10
            nodes = [59]
            [[checks]]
            kind = "no_false_dead"
            [[checks]]
            kind = "membership_converged"
            within_s = 30
            [[checks]]
            kind = "overlay_connected_within"
            within_s = 20
            """
        let warm = Simulation(scenario: try Scenario.parse(text.replacingOccurrences(of: "%@", with: "converged"), file: "warm.toml"), seed: 3).run()
        let cold = Simulation(scenario: try Scenario.parse(text.replacingOccurrences(of: "%@", with: "cold"), file: "cold.toml"), seed: 3).run()
        #expect(warm.passed, "\(warm.checks)")
        #expect(cold.passed, "\(cold.checks)")
        // The first sample (0 s) already has every node up at 0 s knowing all others alive.
        #expect(warm.series["alive_fraction"]?.first?.last == 1.0, "\(String(describing: warm.series["alive_fraction"]?.prefix(3)))")
        #expect((cold.series["alive_fraction"]?.first?.last ?? 1) < 1.0)
        #expect((warm.metrics["bytes_sent"] ?? .infinity) < (cold.metrics["bytes_sent"] ?? 0))
        #expect(throws: (any Error).self) { try Scenario.parse("start = \"tepid\"", file: "bad.toml") }
    }

    @Test func hundredNodeScenarioPassesItsChecks() throws {
        let r = Simulation(scenario: try scenario("mesh-100.toml"), seed: 1).run()
        #expect(r.nodes == 100)
        #expect(r.passed, "\(r.checks)")
        #expect(r.events > 10_000)
    }

    /// Every member costs a Noise session, so a node's handshakes follow its table, not the mesh:
    /// probing all 99 others would complete ~200 per node (both ends count one).
    @Test func handshakesPerNodeFollowTheTableNotTheMesh() throws {
        let s = try scenario("mesh-100.toml")
        let r = Simulation(scenario: s, seed: 1).run()
        let perNode = (r.metrics["handshakes_completed"] ?? 0) / Double(r.nodes)
        #expect(perNode > 0)
        #expect(perNode <= Double(4 * s.timing.maxMembers), "\(perNode) handshakes per node")
    }

    @Test func aCheckBuiltToFailFails() throws {
        let r = Simulation(scenario: try scenario("lossy-link.toml"), seed: 1).run()
        #expect(!r.passed)
        #expect(r.checks.first { $0.name == "all_alive_at_end" }?.passed == false)
    }

    @Test func lossTakesEffect() throws {
        var s = try scenario("small-5.toml")
        s.network.loss = 0
        let clean = Simulation(scenario: s, seed: 3).run()
        s.network.loss = 0.3
        let lossy = Simulation(scenario: s, seed: 3).run()
        #expect(clean.metrics["datagrams_lost"] == 0)
        let sent = try #require(lossy.metrics["datagrams_sent"]), lost = try #require(lossy.metrics["datagrams_lost"])
        #expect(lost / sent > 0.2 && lost / sent < 0.4)
    }

    @Test func latencyTakesEffect() throws {
        var s = try scenario("small-5.toml")
        s.network.jitterMs = 0
        s.network.loss = 0
        s.network.latencyMs = 1
        let fast = Simulation(scenario: s, seed: 3).run()
        s.network.latencyMs = 400
        let slow = Simulation(scenario: s, seed: 3).run()
        #expect(try #require(slow.metrics["convergence_s"]) > (try #require(fast.metrics["convergence_s"])))
    }

    @Test(arguments: [
        ("nodes = 0\n", "nodes"), ("bogus = 1\n", "bogus"), ("[network]\nloss = 2\n", "network.loss"),
        ("[[checks]]\nkind = \"nope\"\n", "checks[0]"), ("[timing]\ntick = 5\n", "timing.tick"), ("seeding = \"star\"\n", "seeding"),
    ])
    func badScenariosNameTheKey(text: String, key: String) {
        do {
            _ = try Scenario.parse(text, file: "x.toml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect("\(error)".contains(key))
        }
    }
}
