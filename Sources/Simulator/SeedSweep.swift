import Foundation

/// Runs one scenario under many seeds on several worker threads. Each run owns its Simulation,
/// so runs share nothing but the (immutable) scenario; results come back in seed order.
public enum SeedSweep {
    public struct Outcome: Sendable {
        public var seed: UInt64
        public var report: SimReport
    }

    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
        var outcomes: [Outcome?]
        init(_ n: Int) { outcomes = Array(repeating: nil, count: n) }
    }

    /// `onDone` is called (serialised) as each run finishes, in completion order. `threads` is
    /// each run's `Simulation` threads setting (1: sequential); when several runs go at once,
    /// each windowed run keeps to one thread, which changes nothing in its report.
    public static func run(_ scenario: Scenario, seeds: [UInt64], jobs: Int, threads: Int = Simulation.defaultThreads,
                           onDone: @escaping @Sendable (Outcome, _ finished: Int) -> Void) -> [Outcome] {
        let state = State(seeds.count)
        let workers = max(1, min(jobs, seeds.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                state.lock.lock()
                let k = state.next
                state.next += 1
                state.lock.unlock()
                guard k < seeds.count else { return }
                let sim = Simulation(scenario: scenario, seed: seeds[k], threads: threads)
                if workers > 1 { sim.concurrency = 1 }
                let report = sim.run()
                let outcome = Outcome(seed: seeds[k], report: report)
                state.lock.lock()
                state.outcomes[k] = outcome
                let finished = state.outcomes.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
                onDone(outcome, finished)
                state.lock.unlock()
            }
        }
        return state.outcomes.compactMap { $0 }
    }

    /// Parses "N", "A..B" (inclusive) or "A,B,C".
    public static func parseSeeds(_ text: String) -> [UInt64]? {
        if let r = text.range(of: "..") {
            guard let a = UInt64(text[..<r.lowerBound]), let b = UInt64(text[r.upperBound...]), a <= b, b - a < 1_000_000 else { return nil }
            return Array(a...b)
        }
        let parts = text.split(separator: ",").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        return parts.map { $0! }
    }
}

/// Percentiles over a sweep's reports of the metrics the floors are stated in.
public enum SweepStats {
    /// Metrics summarised across seeds.
    public static let keys = ["dissemination_join_rounds", "dissemination_join_admitted_rounds", "dissemination_leave_rounds", "dissemination_cull_rounds",
                              "traffic_mean_bytes_per_node_s", "traffic_max_bytes_per_node_s", "largest_datagram_bytes",
                              "crash_detect_max_s", "overlay_connected_s", "discovered_fraction_s", "convergence_s",
                              "false_dead_declarations",
                              "consensus_crash_pause_s", "consensus_max_commit_gap_s", "consensus_latency_p99_s"]

    /// name → ["p50", "p99", "max"]; a run where the metric is -1 (never reached) counts as infinitely
    /// late and shows as -1. Only metrics some run measured are listed.
    public static func percentiles(_ reports: [SimReport]) -> [String: [String: Double]] {
        var out: [String: [String: Double]] = [:]
        for k in keys {
            let values = reports.compactMap { $0.metrics[k] }
            guard !values.isEmpty, values.contains(where: { $0 >= 0 }) else { continue }
            let sorted = values.map { $0 < 0 ? Double.infinity : $0 }.sorted()
            func at(_ q: Double) -> Double {
                let v = sorted[max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1)]
                return v.isFinite ? v : -1
            }
            out[k] = ["p50": at(0.5), "p99": at(0.99), "max": at(1)]
        }
        return out
    }

    public static func show(_ v: Double) -> String { String(format: "%.2f", v) }
}
