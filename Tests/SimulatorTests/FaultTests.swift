import Foundation
import Simulator
import Testing

/// A small mesh with a clean network, so each test sees only the fault it adds.
func tiny(nodes: Int = 8, seconds: Double = 40, _ extra: String = "") throws -> Scenario {
    try Scenario.parse("""
        name = "tiny"
        nodes = \(nodes)
        duration_s = \(seconds)
        seeding = "ring"
        [network]
        latency_ms = 5
        \(extra)
        """, file: "tiny.toml")
}

func metric(_ r: SimReport, _ k: String) -> Double { r.metrics[k] ?? .nan }

@Suite struct FaultTests {
    @Test func duplicationDeliversExtraCopies() throws {
        let r = Simulation(scenario: try tiny(seconds: 20, "duplicate = 0.2"), seed: 5).run()
        #expect(metric(r, "datagrams_duplicated") > 0)
        #expect(metric(r, "datagrams_delivered") > metric(r, "datagrams_sent"))
    }

    @Test func reorderingHoldsDatagramsBack() throws {
        let r = Simulation(scenario: try tiny(seconds: 20, "reorder = 0.3\nreorder_ms = 200"), seed: 5).run()
        #expect(metric(r, "datagrams_reordered") > 0)
    }

    @Test func bandwidthQueuesAndDrops() throws {
        // 2 kbit/s: a 60-byte ping takes 240 ms to leave, so the uplink queue builds and overflows.
        let r = Simulation(scenario: try tiny(seconds: 20, "bandwidth_kbps = 2\nqueue_limit_ms = 500"), seed: 5).run()
        #expect(metric(r, "max_queue_delay_ms") > 100)
        #expect(metric(r, "datagrams_queue_dropped") > 0)
    }

    @Test func regionsSetLatency() throws {
        var near = try tiny(seconds: 60, "regions = [\"a\", \"b\"]\nregion_latency_ms = [[1, 1], [1, 1]]")
        near.checks = [.init(kind: "membership_converged", withinSeconds: nil)]
        var far = near
        far.network.regionLatencyMs = [[1, 600], [600, 1]]
        let a = Simulation(scenario: near, seed: 2).run(), b = Simulation(scenario: far, seed: 2).run()
        #expect(metric(b, "convergence_s") > metric(a, "convergence_s"))
    }

    @Test func crashIsDetectedAndNotFalse() throws {
        var s = try tiny(nodes: 6, seconds: 60, """
            [[events]]
            kind = "crash"
            at_s = 15
            nodes = [3]
            [[checks]]
            kind = "crashed_detected_within"
            within_s = 30
            [[checks]]
            kind = "no_false_dead"
            """)
        s.seeding = "first"
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(metric(r, "crashes") == 1)
        #expect(metric(r, "datagrams_to_down_nodes") > 0)
        #expect(metric(r, "expected_dead_declarations") > 0)
        #expect(r.passed, "\(r.checks)")
    }

    @Test func crashDetectionCheckFailsWhenTooStrict() throws {
        let s = try tiny(nodes: 6, seconds: 40, """
            [[events]]
            kind = "crash"
            at_s = 15
            nodes = [3]
            [[checks]]
            kind = "crashed_detected_within"
            within_s = 0.5
            """)
        let r = Simulation(scenario: s, seed: 1).run()
        // The strict check is the one that fails, and the only one.
        let failed = r.checks.filter { !$0.passed }
        #expect(failed.map(\.name) == ["crashed_detected_within"], "\(r.checks)")
    }

    @Test func restartRejoinsWithSameIdentity() throws {
        let s = try tiny(nodes: 6, seconds: 80, """
            [[events]]
            kind = "crash"
            at_s = 35
            nodes = [2]
            for_s = 10
            [[checks]]
            kind = "all_alive_at_end"
            [[checks]]
            kind = "no_false_dead"
            """)
        let r = Simulation(scenario: s, seed: 4).run()
        #expect(metric(r, "restarts") == 1)
        // Same identity: the others' entries for node 2 come back to alive rather than a new member appearing.
        #expect(r.passed, "\(r.checks)")
        #expect(r.timeline.contains { $0.contains("restart node 2") })
    }

    @Test func lateJoinersJoin() throws {
        let s = try tiny(nodes: 6, seconds: 40, """
            [[events]]
            kind = "join"
            at_s = 10
            nodes = "4..5"
            [[checks]]
            kind = "all_alive_at_end"
            """)
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(metric(r, "joins") == 2)
        let upAtStart: Double? = r.series["nodes_up"]?.first?[1]
        #expect(upAtStart == 4.0)
        #expect(r.passed, "\(r.checks)")
    }

    @Test func partitionSplitsAndHeals() throws {
        let s = try tiny(nodes: 8, seconds: 90, """
            [[events]]
            kind = "partition"
            at_s = 15
            fraction = 0.5
            for_s = 20
            [[checks]]
            kind = "healed_within"
            within_s = 40
            [[checks]]
            kind = "no_false_dead"
            """)
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(metric(r, "datagrams_partitioned") > 0)
        #expect(metric(r, "expected_dead_declarations") > 0)
        #expect(r.passed, "\(r.checks)")
    }

    @Test func degradedLinkLosesDatagrams() throws {
        let s = try tiny(nodes: 4, seconds: 30, """
            [[events]]
            kind = "degrade"
            at_s = 5
            from = 0
            to = 1
            loss = 1.0
            for_s = 10
            """)
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(metric(r, "datagrams_lost") > 0)
        #expect(r.timeline.contains { $0.contains("restore links") })
    }

    @Test(arguments: ["drop", "delay", "corrupt", "replay", "equivocate"])
    func byzantineBehaviourTakesEffect(behaviour: String) throws {
        let s = try tiny(nodes: 6, seconds: 30, """
            [[events]]
            kind = "byzantine"
            at_s = 10
            nodes = [2]
            behaviour = "\(behaviour)"
            """)
        let r = Simulation(scenario: s, seed: 1).run()
        let key = ["drop": "byzantine_dropped", "delay": "byzantine_delayed", "corrupt": "byzantine_corrupted",
                   "replay": "byzantine_replayed", "equivocate": "byzantine_equivocated"][behaviour]!
        #expect(metric(r, key) > 0)
        switch behaviour {
        case "drop": #expect(metric(r, "expected_dead_declarations") > 0)  // the others give up on it
        case "corrupt", "replay", "equivocate": #expect(metric(r, "drops_total") > 0)  // receivers refuse what is wrong
        default: break
        }
    }

    @Test func addingAFaultDoesNotReshuffleOtherPicks() throws {
        let base = """
            [[events]]
            kind = "crash"
            at_s = 10
            count = 2
            """
        let a = Simulation(scenario: try tiny(nodes: 20, seconds: 12, base), seed: 9).run()
        let b = Simulation(scenario: try tiny(nodes: 20, seconds: 12, "duplicate = 0.1\n" + base + """

            [[events]]
            kind = "byzantine"
            at_s = 1
            nodes = [19]
            behaviour = "delay"
            """), seed: 9).run()
        #expect(a.timeline.first == b.timeline.first { $0.contains("crash") })
    }

    @Test func unknownEventKeysAreNamed() {
        for (text, key) in [("[[events]]\nkind = \"crash\"\nat_s = 1\nnodes = [1]\nbogus = 2\n", "events[0].bogus"),
                            ("[[events]]\nkind = \"explode\"\nat_s = 1\n", "events[0].kind"),
                            ("[[events]]\nkind = \"crash\"\nnodes = [1]\n", "events[0].at_s"),
                            ("[[events]]\nkind = \"byzantine\"\nat_s = 1\nnodes = [1]\nbehaviour = \"rude\"\n", "events[0].behaviour"),
                            ("[network]\nregions = [\"a\"]\n", "network.region_latency_ms"),
                            ("[[checks]]\nkind = \"healed_within\"\n", "checks[0].within_s"),
                            ("[storage]\nsync = 1\n", "storage.sync")] {
            do {
                _ = try Scenario.parse("nodes = 4\n" + text, file: "x.toml")
                Issue.record("accepted: \(text)")
            } catch {
                #expect("\(error)".contains(key), "\(error)")
            }
        }
    }

    @Test func everyScenarioInSimulationsParses() throws {
        let dir = simRoot.appendingPathComponent("Simulations")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".toml") }.sorted()
        #expect(files.count >= 9)
        for f in files { _ = try Scenario.load(path: dir.appendingPathComponent(f).path) }
    }

    @Test func sweepRunsSeedsOnThreadsInOrder() throws {
        let s = try scenario("small-5.toml")
        let out = SeedSweep.run(s, seeds: [1, 2, 3, 4], jobs: 2) { _, _ in }
        #expect(out.map(\.seed) == [1, 2, 3, 4])
        #expect(canonical(out[2].report) == canonical(Simulation(scenario: s, seed: 3).run()))
        #expect(SeedSweep.parseSeeds("1..200")?.count == 200)
        #expect(SeedSweep.parseSeeds("3,7") == [3, 7])
        #expect(SeedSweep.parseSeeds("x") == nil)
    }

    @Test func traceIsReadableAndDoesNotChangeTheRun() throws {
        let s = try tiny(nodes: 4, seconds: 10, "[[events]]\nkind = \"crash\"\nat_s = 5\nnodes = [1]\n")
        var lines: [String] = []
        let traced = Simulation(scenario: s, seed: 3).run(trace: { lines.append($0) })
        let plain = Simulation(scenario: s, seed: 3).run()
        #expect(canonical(traced) == canonical(plain))
        #expect(lines.contains { $0.contains("transport (") })
        #expect(lines.contains { $0.contains("xxInitiation (") || $0.contains("ikInitiation (") })
        #expect(lines.contains { $0.contains("TIMELINE crash node 1") })
    }
}
