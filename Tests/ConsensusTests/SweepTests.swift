import Foundation
import Testing
import Consensus
import MeshCore

/// Mixed-fault runs over many seeds (Scenario.random): 0 agreement or validity violations, and
/// every payload committed after the faults heal. The suite runs `defaultSeeds`; set
/// CONSENSUS_SWEEP_SEEDS=FIRST..LAST for a larger sweep (Docs/consensus.md reports one).
@Suite struct SweepTests {
    static let defaultSeeds: ClosedRange<UInt64> = 1...40

    static var seeds: ClosedRange<UInt64> {
        guard let text = ProcessInfo.processInfo.environment["CONSENSUS_SWEEP_SEEDS"] else { return defaultSeeds }
        let parts = text.split(separator: ".", omittingEmptySubsequences: true).compactMap { UInt64($0) }
        guard parts.count == 2, parts[0] <= parts[1] else { return defaultSeeds }
        return parts[0]...parts[1]
    }

    struct SeedResult: Sendable {
        let seed: UInt64
        let violations: [String]
        let liveness: [String]
        let description: String
        let commits: UInt64
    }

    static func sweep(_ seeds: ClosedRange<UInt64>, scenario: @escaping @Sendable (UInt64) -> Scenario) async -> [SeedResult] {
        let workers = max(1, min(2, ProcessInfo.processInfo.activeProcessorCount))
        return await withTaskGroup(of: [SeedResult].self) { group in
            for w in 0..<workers {
                group.addTask {
                    var out: [SeedResult] = []
                    for seed in seeds where Int(seed % UInt64(workers)) == w {
                        let s = scenario(seed)
                        let o = s.run(seed: seed)
                        out.append(SeedResult(seed: seed, violations: o.violations, liveness: o.livenessFailures,
                                              description: s.describe, commits: o.net.checks.maxDecidedHeight))
                    }
                    return out
                }
            }
            var all: [SeedResult] = []
            for await part in group { all += part }
            return all.sorted { $0.seed < $1.seed }
        }
    }

    @Test func mixedFaultSweepKeepsAgreementValidityAndLiveness() async {
        let seeds = Self.seeds
        let start = Date()
        let results = await Self.sweep(seeds) { Scenario.random(seed: $0) }
        let unsafe = results.filter { !$0.violations.isEmpty }
        let stuck = results.filter { !$0.liveness.isEmpty }
        let clean = results.count - Set((unsafe + stuck).map(\.seed)).count
        print("consensus sweep seeds \(seeds.lowerBound)...\(seeds.upperBound): \(clean)/\(results.count) clean, \(unsafe.count) with safety violations, \(stuck.count) with liveness failures, \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        for r in unsafe.prefix(5) { print("UNSAFE seed \(r.seed): \(r.violations.prefix(3)) | \(r.description)") }
        for r in stuck.prefix(5) { print("STUCK seed \(r.seed): \(r.liveness) | \(r.description)") }
        #expect(unsafe.isEmpty, "seeds with agreement/validity violations: \(unsafe.map(\.seed))")
        #expect(stuck.isEmpty, "seeds with liveness failures: \(stuck.map(\.seed))")
    }

    /// The checkers are not vacuous: with f+1 identities allowed to vote twice (twins of two of four
    /// validators, each twin with a different half of the rest) the agreement checker reports the
    /// split within a few seeds.
    @Test func brokenRunWithTwoIdentitiesVotingTwiceIsCaughtWithinAFewSeeds() async {
        let results = await Self.sweep(1...5) { _ in
            var s = Scenario()
            s.validators = 4
            s.twins = [0, 1]
            // Slots 0..3 are validators 0..3; slots 4 and 5 are the twins of 0 and 1.
            s.faults.partitions = [(Instant.zero, Instant(nanoseconds: 4_000_000_000), [[0, 1, 2], [4, 5, 3]])]
            s.livenessBound = .seconds(1)
            return s
        }
        let caught = results.filter { r in r.violations.contains { $0.hasPrefix("agreement") } }
        print("broken run: agreement violation caught in seeds \(caught.map(\.seed)) of 1...5")
        #expect(caught.first?.seed ?? 99 <= 3, "no agreement violation reported in the first 3 seeds")
    }
}

/// Commits resume after the leader of the moment crashes, on a simulated LAN with the default
/// configuration (1 s round timeout). The suite runs 10 seeds; CONSENSUS_LEADER_CRASH_SEEDS=N runs
/// N and prints the p50/p99 the floor in Docs/consensus.md is read from.
@Suite struct LeaderCrashTests {
    static var seedCount: Int { ProcessInfo.processInfo.environment["CONSENSUS_LEADER_CRASH_SEEDS"].flatMap(Int.init) ?? 10 }

    /// The longest pause between two new heights in the 6 s after the crash: how long commits
    /// stop while the crashed leader's rounds (its own, and the one whose votes go to it) time out.
    static func resumeTime(seed: UInt64) -> Double? {
        let net = VirtualNet(validators: 4, seed: seed, faults: NetFaults(minDelay: .microseconds(200), maxDelay: .milliseconds(2))) { c in
            c = ConsensusConfig(genesis: c.genesis)
        }
        net.start()
        net.workload(count: 700, every: .milliseconds(10), startingAt: Instant(nanoseconds: 10_000_000), targets: [0, 1, 2, 3])
        // Crash at a seed-dependent instant, whoever leads then.
        net.run(until: Instant(nanoseconds: 1_000_000_000 + Int64(seed % 97) * 7_000_000))
        let live = net.slots.indices.first { net.slots[$0].core != nil }!
        let leader = net.slots[live].core!.leader(of: net.slots[live].core!.round)
        let crashAt = net.now
        net.schedule(.crash(slot: leader), at: crashAt)
        var last = crashAt
        var height = net.checks.maxDecidedHeight
        var longest = 0.0
        while net.now < crashAt + .seconds(6) {
            net.run(until: net.now + .milliseconds(5))
            if net.checks.maxDecidedHeight > height {
                height = net.checks.maxDecidedHeight
                longest = max(longest, (net.now - last).secondsDouble)
                last = net.now
            }
        }
        longest = max(longest, (net.now - last).secondsDouble)
        return net.checks.violations.isEmpty ? longest : nil
    }

    @Test func commitsResumeWithinThreeSecondsOfALeaderCrash() async {
        let n = Self.seedCount
        let times: [Double?] = await withTaskGroup(of: [(Int, Double?)].self) { group in
            for w in 0..<2 {
                group.addTask { (0..<n).filter { $0 % 2 == w }.map { ($0, Self.resumeTime(seed: UInt64($0 + 1))) } }
            }
            var all: [(Int, Double?)] = []
            for await part in group { all += part }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let got = times.compactMap { $0 }.sorted()
        #expect(got.count == n, "\(n - got.count) of \(n) seeds had safety violations")
        guard !got.isEmpty else { return }
        let p50 = got[got.count / 2]
        let p99 = got[min(got.count - 1, Int((Double(got.count) * 0.99).rounded(.up)) - 1)]
        print("leader crash, \(n) seeds: longest pause between commits p50 \(String(format: "%.3f", p50)) s, p99 \(String(format: "%.3f", p99)) s, max \(String(format: "%.3f", got.last!)) s")
        #expect(p99 < 3.0)
    }
}
