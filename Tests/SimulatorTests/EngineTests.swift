import Foundation
import MeshCore
import Simulator
import Testing

/// The engine's parts that know no protocol (the virtual disk), and the seams protocols plug into:
/// checkers and workloads by kind, the two checker phases, disk faults from the timeline.
@Suite struct EngineTests {
    @Test func diskKeepsUnsyncedWritesOnACrashWithoutFaults() throws {
        var d = FaultyDisk(nodes: 1, rng: SeededGenerator(seed: 1))
        _ = d.write(0, key: "a", value: [1, 2, 3], now: 0)
        d.crash(0)
        #expect(d.read(0, key: "a") == [1, 2, 3])
    }

    @Test func diskLosesUnsyncedWritesUnderThatFault() throws {
        var d = FaultyDisk(nodes: 2, rng: SeededGenerator(seed: 1))
        d.arm(.loseUnsynced, on: 0)
        _ = d.write(0, key: "a", value: [1], now: 0)
        _ = d.sync(0, now: 0)
        _ = d.write(0, key: "a", value: [2], now: 0)
        _ = d.write(0, key: "b", value: [3], now: 0)
        #expect(d.read(0, key: "a") == [2])
        d.crash(0)
        #expect(d.read(0, key: "a") == [1])
        #expect(d.read(0, key: "b") == nil)
        #expect(d.counters.lostWrites == 2)
    }

    @Test func diskTearsTheLastWrite() throws {
        var d = FaultyDisk(nodes: 1, rng: SeededGenerator(seed: 3))
        d.arm(.tearLastWrite, on: 0)
        _ = d.write(0, key: "a", value: Array(repeating: 7, count: 100), now: 0)
        d.crash(0)
        let torn = try #require(d.read(0, key: "a"))
        #expect(torn.count < 100)
        #expect(torn.allSatisfy { $0 == 7 })
        #expect(d.counters.tornWrites == 1)
    }

    @Test func diskFailsWithAnIOErrorWhileArmed() throws {
        var d = FaultyDisk(nodes: 1, rng: SeededGenerator(seed: 1))
        d.arm(.ioError, on: 0)
        guard case let .failure(e) = d.write(0, key: "a", value: [1], now: 0) else { Issue.record("write succeeded"); return }
        #expect("\(e)".contains("node 0"))
        guard case .failure = d.sync(0, now: 0) else { Issue.record("sync succeeded"); return }
        d.disarm(.ioError, on: 0)
        guard case let .success(done) = d.write(0, key: "a", value: [1], now: 10) else { Issue.record("write failed"); return }
        #expect(done > 10)
        #expect(d.counters.ioErrors == 2)
    }

    /// A persist is durable when it returns, at an instant after every write and the sync.
    @Test func persistIsDurableByItsCompletionInstant() throws {
        var d = FaultyDisk(nodes: 1, rng: SeededGenerator(seed: 1), writeNanos: 10, syncNanos: 100)
        d.arm(.loseUnsynced, on: 0)
        guard case let .success(done) = d.persist(0, [("a", [1]), ("b", [2])], now: 1000) else { Issue.record("persist failed"); return }
        #expect(done == 1000 + 10 + 10 + 100)
        d.crash(0)
        #expect(d.read(0, key: "a") == [1] && d.read(0, key: "b") == [2])
    }

    @Test func diskFaultIsATimelineEvent() throws {
        let s = try tiny(nodes: 4, seconds: 10, """
            [[events]]
            kind = "disk"
            at_s = 2
            nodes = [1, 2]
            mode = "tear_last_write"
            for_s = 3
            """)
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(r.timeline.contains { $0.contains("disk nodes 1,2 tear_last_write") })
        #expect(r.timeline.contains { $0.contains("healthy again") })
        #expect(metric(r, "faults_healed_s") == 5)
    }

    /// The scenario's disk faults reach the nodes' persists: a crash 1 ms after a restart (whose
    /// raised incarnation is then being written and synced) loses or tears that write, and a disk
    /// failing every write silences its node until it heals. Either way the mesh ends whole and
    /// nobody live and reachable was declared dead.
    @Test(arguments: ["lose_unsynced", "tear_last_write", "io_error"])
    func diskFaultsReachTheNodesAndTheMeshSurvives(mode: String) throws {
        let crashes = mode == "io_error"
            ? "[[events]]\nkind = \"crash\"\nat_s = 6\nnodes = [2]\n[[events]]\nkind = \"restart\"\nat_s = 8\nnodes = [2]\n"
            : "[[events]]\nkind = \"crash\"\nat_s = 5\nnodes = [2]\n[[events]]\nkind = \"restart\"\nat_s = 10\nnodes = [2]\n"
                + "[[events]]\nkind = \"crash\"\nat_s = 10.001\nnodes = [2]\n[[events]]\nkind = \"restart\"\nat_s = 15\nnodes = [2]\n"
        let s = try tiny(nodes: 6, seconds: 45, """
            [[events]]
            kind = "disk"
            at_s = 1
            nodes = [2]
            mode = "\(mode)"
            for_s = \(mode == "io_error" ? 12 : 20)
            \(crashes)
            [[checks]]
            kind = "no_false_dead"
            [[checks]]
            kind = "all_alive_at_end"
            """)
        let r = Simulation(scenario: s, seed: 3).run()
        #expect(r.passed, "\(r.checks)")
        #expect(metric(r, "disk_syncs") > 0, "the nodes' writes went to the faulty disk")
        switch mode {
        case "lose_unsynced": #expect(metric(r, "disk_lost_writes") >= 1)
        case "tear_last_write": #expect(metric(r, "disk_torn_writes") >= 1)
        default: #expect(metric(r, "disk_io_errors") >= 1)
        }
    }

    /// Two nodes restart onto disks that fail every write, so every send they make is dropped for
    /// 25 s while they still hear the mesh: they learn members they cannot ask, and unanswered
    /// questions would have them declare those dead and spread the verdicts once their disks
    /// heal. Dropped sends count as lost round trips (`GossipCore.noteSendsDropped`), so a mute
    /// node leaves verdicts to the others: no live, reachable node is declared dead.
    @Test(arguments: [1, 4] as [UInt64])
    func aNodeMuteBehindAFailingDiskSpreadsNoFalseVerdictOnceItHeals(seed: UInt64) throws {
        let s = try Scenario.parse("""
            name = "mute"
            nodes = 16
            duration_s = 70
            seeding = "first"
            [network]
            latency_ms = 5
            jitter_ms = 1
            loss = 0.01
            [[events]]
            kind = "disk"
            at_s = 20
            nodes = [2, 3]
            mode = "io_error"
            for_s = 30
            [[events]]
            kind = "crash"
            at_s = 22
            nodes = [2, 3]
            [[events]]
            kind = "restart"
            at_s = 25
            nodes = [2, 3]
            [[checks]]
            kind = "no_false_dead"
            [[checks]]
            kind = "all_alive_at_end"
            """, file: "mute.toml")
        let r = Simulation(scenario: s, seed: seed).run()
        #expect(r.passed, "\(r.checks)")
        #expect(metric(r, "disk_io_errors") >= 10, "the restarted nodes' writes kept failing")
    }

    /// Without disk events the disk is durable at once: no fsync is simulated at all.
    @Test func scenariosWithoutDiskFaultsKeepTheInstantDisk() throws {
        let r = Simulation(scenario: try tiny(nodes: 4, seconds: 5), seed: 1).run()
        #expect(metric(r, "disk_syncs") == 0 && metric(r, "disk_writes") == 0)
    }

    @Test(arguments: [
        ("[[events]]\nkind = \"disk\"\nat_s = 1\nnodes = [0]\nmode = \"melt\"\n", "events[0].mode"),
        ("[[events]]\nkind = \"disk\"\nat_s = 1\nnodes = [0]\n", "events[0].mode"),
        ("[[checks]]\nkind = \"no_false_dead\"\nwithin_s = 3\n", "checks[0].within_s"),
        ("[[workloads]]\nkind = \"nope\"\n", "workloads[0]"),
        ("[[workloads]]\nkind = \"messages\"\nbogus = 1\n", "workloads[0].bogus"),
    ])
    func badEntriesNameTheKey(text: String, key: String) {
        do {
            _ = try Scenario.parse("nodes = 4\n" + text, file: "x.toml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect("\(error)".contains(key), "\(error)")
        }
    }

    @Test func checksCarryTheirPhase() throws {
        let r = Simulation(scenario: try scenario("small-5.toml"), seed: 1).run()
        #expect(r.checks.map(\.phase) == [.liveness, .liveness])
        var s = try tiny(nodes: 4, seconds: 10)
        s.checks = [.init(kind: "no_false_dead", withinSeconds: nil), .init(kind: "bogus", withinSeconds: nil)]
        let b = Simulation(scenario: s, seed: 1).run()
        #expect(b.checks[0].phase == .safety && b.checks[0].passed)
        #expect(!b.checks[1].passed && b.checks[1].detail.contains("unknown check kind"))
    }

    /// A safety checker fails at the first step that breaks it and says when.
    @Test func safetyViolationNamesItsInstant() throws {
        var s = try tiny(nodes: 4, seconds: 10)
        s.checks = [.init(kind: "datagram_fits", withinSeconds: nil, maxBytes: 100)]
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(!r.passed)
        #expect(r.checks[0].detail.contains("first violated at"), "\(r.checks[0].detail)")
    }

    /// The messages workload on a lossy small mesh: every message arrives intact, on every seed.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func messagesArriveIntactUnderLoss(seed: UInt64) throws {
        let s = try tiny(nodes: 6, seconds: 40, """
            loss = 0.05
            [[workloads]]
            kind = "messages"
            every_s = 0.5
            bytes = 3000
            from_s = 10
            [[checks]]
            kind = "messages_intact"
            [[checks]]
            kind = "messages_delivered"
            within_s = 10
            """)
        let r = Simulation(scenario: s, seed: seed).run()
        #expect(r.passed, "\(r.checks)")
        #expect(metric(r, "messages_sent") >= 50)
        #expect(r.checks.map(\.phase) == [.safety, .liveness])
    }

    /// Without its workload, a workload's checker fails and says what is missing.
    @Test func workloadCheckerWithoutItsWorkloadFails() throws {
        var s = try tiny(nodes: 4, seconds: 5)
        s.checks = [.init(kind: "messages_delivered", withinSeconds: nil)]
        let r = Simulation(scenario: s, seed: 1).run()
        #expect(!r.passed)
        #expect(r.checks[0].detail.contains("no messages workload"))
    }
}
