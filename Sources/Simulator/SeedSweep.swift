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

    /// `onDone` is called (serialised) as each run finishes, in completion order.
    public static func run(_ scenario: Scenario, seeds: [UInt64], jobs: Int,
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
                let report = Simulation(scenario: scenario, seed: seeds[k]).run()
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
