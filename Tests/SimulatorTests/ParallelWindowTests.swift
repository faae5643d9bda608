import Foundation
import Simulator
import Testing

/// The lookahead windows (Sources/Simulator/ParallelWindow.swift): a windowed run repeats
/// exactly, whatever the threads do, and falls back to the sequential loop when the network
/// model allows no lookahead.
@Suite struct ParallelWindowTests {
    /// Every fault source at once, each on a path a window handles: loss, jitter, duplication and
    /// reordering (the driver's generators), a starved node (late deliveries inside a window),
    /// equivocation (a tally bumped on a worker thread), byzantine corruption, a crash and restart.
    func faulty() throws -> Scenario {
        var s = try scenario("byzantine.toml")
        s.durationSeconds = 40
        s.network.loss = 0.02
        s.network.duplicate = 0.05
        s.network.reorder = 0.1
        s.network.reorderMs = 30
        var crash = TimelineEvent(kind: .crash, atSeconds: 22)
        crash.nodes = .count(2)
        crash.forSeconds = 6
        s.timeline.append(crash)
        var starve = TimelineEvent(kind: .starve, atSeconds: 12)
        starve.nodes = .list([3, 4])
        starve.delayMs = 1
        starve.maxDelayMs = 300
        starve.forSeconds = 15
        s.timeline.append(starve)
        return s
    }

    @Test func windowedRunIsTheSameTwiceAndOnAnyThreadCount() throws {
        let s = try faulty()
        let first = Simulation(scenario: s, seed: 7, threads: 2)
        #expect(first.isWindowed)
        #expect(first.lookaheadMilliseconds == 4)
        let a = first.run()
        #expect(a.metrics["parallel_lookahead_ms"] == 4)
        #expect(metric(a, "byzantine_equivocated") > 0 && metric(a, "byzantine_corrupted") > 0)
        #expect(metric(a, "datagrams_duplicated") > 0 && metric(a, "datagrams_reordered") > 0 && metric(a, "datagrams_lost") > 0)
        #expect(metric(a, "restarts") == 2)
        let again = Simulation(scenario: s, seed: 7, threads: 2).run()
        #expect(canonical(a) == canonical(again))
        // The windows on the calling thread alone, and on more threads than groups could keep busy.
        let alone = Simulation(scenario: s, seed: 7, threads: 2)
        alone.concurrency = 1
        #expect(canonical(alone.run()) == canonical(a))
        #expect(canonical(Simulation(scenario: s, seed: 7, threads: 3).run()) == canonical(a))
        #expect(canonical(Simulation(scenario: s, seed: 8, threads: 2).run()) != canonical(a))
    }

    /// Many windows with many busy nodes: 120 nodes joining at once under loss and jitter, where
    /// both threads are handed groups in most windows.
    @Test func busyWindowedRunIsTheSameTwice() throws {
        var s = try scenario("churn.toml")
        s.nodes = 120
        s.durationSeconds = 12
        s.timeline = []
        s.checks = []
        let a = canonical(Simulation(scenario: s, seed: 3, threads: 2).run())
        let b = canonical(Simulation(scenario: s, seed: 3, threads: 2).run())
        #expect(a == b)
    }

    @Test func sequentialRunIsTheSameTwice() throws {
        let s = try faulty()
        let sim = Simulation(scenario: s, seed: 7, threads: 1)
        #expect(!sim.isWindowed)
        let a = sim.run()
        #expect(a.metrics["parallel_lookahead_ms"] == 0)
        #expect(canonical(a) == canonical(Simulation(scenario: s, seed: 7, threads: 1).run()))
    }

    /// The window is the least latency less jitter over every link model the run can use.
    @Test func lookaheadIsTheLeastDelayTheModelAllows() throws {
        func lookahead(_ extra: String, events: String = "") throws -> Double {
            let s = try tiny(nodes: 4, seconds: 1, extra + "\n" + events)
            return Simulation(scenario: s, seed: 1).lookaheadMilliseconds
        }
        #expect(try lookahead("") == 5)
        #expect(try lookahead("jitter_ms = 1.5") == 3.5)
        #expect(try lookahead("regions = [\"a\", \"b\"]\nregion_latency_ms = [[8, 45], [45, 3]]\njitter_ms = 2") == 1)
        #expect(try lookahead("""
            [[links]]
            from = 0
            to = 1
            latency_ms = 2.5
            jitter_ms = 0.5
            """) == 2)
        #expect(try lookahead("", events: """
            [[events]]
            kind = "degrade"
            at_s = 0.5
            nodes = [2]
            latency_ms = 0.75
            """) == 0.75)
        // Jitter as large as the latency: no lower bound, so the sequential loop.
        #expect(try lookahead("jitter_ms = 5") == 0)
    }

    @Test func noLookaheadFallsBackToTheSequentialLoop() throws {
        let s = try tiny(nodes: 6, seconds: 20, "jitter_ms = 4.95\nloss = 0.05")
        let sim = Simulation(scenario: s, seed: 4, threads: 2)
        #expect(!sim.isWindowed, "0.05 ms is below the minimum window")
        #expect(canonical(sim.run()) == canonical(Simulation(scenario: s, seed: 4, threads: 1).run()))
    }
}
