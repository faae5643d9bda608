import Testing
import Consensus
import MeshCore

/// Byzantine validators, crashes and network faults, each over a few seeds with loss: agreement
/// and validity hold at every commit, and every payload commits once the faults heal.
@Suite struct FaultTests {
    static let seeds: [UInt64] = Array(1...4)

    func expectClean(_ s: Scenario, seeds: [UInt64] = FaultTests.seeds, _ sourceLocation: SourceLocation = #_sourceLocation) -> [Scenario.Outcome] {
        var outcomes: [Scenario.Outcome] = []
        for seed in seeds {
            let o = s.run(seed: seed)
            #expect(o.violations.isEmpty, "seed \(seed): \(o.violations.prefix(3))", sourceLocation: sourceLocation)
            #expect(o.livenessFailures.isEmpty, "seed \(seed): \(o.livenessFailures)", sourceLocation: sourceLocation)
            outcomes.append(o)
        }
        return outcomes
    }

    static func lossy(_ n: Int) -> Scenario {
        var s = Scenario()
        s.validators = n
        s.faults.loss = 0.05
        s.faults.duplication = 0.02
        s.faults.maxDelay = .milliseconds(20)
        return s
    }

    @Test(arguments: [4, 7])
    func equivocatingLeaderSplitsNobody(validators n: Int) {
        var s = Self.lossy(n)
        s.byzantine = (0..<(n - 1) / 3).map { ($0, .equivocator) }
        let outcomes = expectClean(s)
        #expect(outcomes.allSatisfy { $0.net.byzantineActs > 0 }, "the leader never equivocated")
    }

    @Test(arguments: [4, 7])
    func doubleVotesAreRefusedAndCounted(validators n: Int) {
        var s = Self.lossy(n)
        s.byzantine = (0..<(n - 1) / 3).map { ($0, .doubleVoter) }
        let outcomes = expectClean(s)
        let caught = outcomes.reduce(0) { sum, o in sum + o.net.slots.compactMap(\.core).reduce(0) { $0 + $1.counters.dropped(.equivocatingVote) } }
        #expect(caught > 0, "no leader counted a second vote from one validator in one round")
    }

    @Test(arguments: [4, 7])
    func withheldVotesOnlySlowRoundsDown(validators n: Int) {
        var s = Self.lossy(n)
        s.byzantine = (0..<(n - 1) / 3).map { ($0, .withholdVotes) }
        #expect(expectClean(s).allSatisfy { $0.net.byzantineActs > 0 })
    }

    @Test(arguments: [4, 7])
    func invalidProposalsGetNoVotes(validators n: Int) {
        var s = Self.lossy(n)
        s.byzantine = (0..<(n - 1) / 3).map { ($0, .invalidProposer) }
        let outcomes = expectClean(s)
        var reasons: [DropReason: Int] = [:]
        for o in outcomes { for c in o.net.slots.compactMap(\.core) { reasons.merge(c.counters.drops, uniquingKeysWith: +) } }
        for r in [DropReason.badSignature, .invalidProposal, .malformed, .tooFewSigners] { #expect(reasons[r, default: 0] > 0, "\(r) never counted: \(reasons)") }
    }

    @Test(arguments: [4, 7])
    func twinsOfOneIdentityCannotSplitTheChain(validators n: Int) {
        var s = Self.lossy(n)
        s.twins = Array(0..<(n - 1) / 3)
        // Twins paper style: each twin sits with a different half of the others for a while.
        let others = Array(((n - 1) / 3)..<n)
        let half = others.count / 2
        s.faults.partitions = [(Instant(nanoseconds: 500_000_000), Instant(nanoseconds: 2_500_000_000),
                                [s.twins + Array(others.prefix(half)), Array(n..<(n + s.twins.count)) + Array(others.dropFirst(half))])]
        _ = expectClean(s)
    }

    @Test func validatorRestartedWithItsSafetyStateLostIsContained() {
        var s = Self.lossy(4)
        s.crashes = [(slot: 1, at: Instant(nanoseconds: 1_000_000_000), restart: Instant(nanoseconds: 1_050_000_000), loseState: true)]
        _ = expectClean(s)
    }

    @Test func crashedValidatorRestartsFromItsStateAndCatchesUp() {
        var s = Self.lossy(4)
        s.crashes = [(slot: 2, at: Instant(nanoseconds: 800_000_000), restart: Instant(nanoseconds: 2_500_000_000), loseState: false)]
        let outcomes = expectClean(s)
        for o in outcomes {
            #expect((o.net.checks.height[2] ?? 0) + 3 >= o.net.checks.maxDecidedHeight, "the restarted validator did not catch up")
        }
    }

    @Test func minorityAndMajorityPartitionsHeal() {
        var s = Self.lossy(7)
        s.faults.partitions = [
            (Instant(nanoseconds: 300_000_000), Instant(nanoseconds: 1_500_000_000), [[0, 1], [2, 3, 4, 5, 6]]),
            // No side has a quorum: nothing commits until it heals.
            (Instant(nanoseconds: 2_000_000_000), Instant(nanoseconds: 3_500_000_000), [[0, 1, 2], [3, 4, 5, 6]]),
        ]
        _ = expectClean(s)
    }

    @Test func heavyLossDelayAndDuplication() {
        var s = Scenario()
        s.validators = 4
        s.faults.loss = 0.2
        s.faults.duplication = 0.2
        s.faults.minDelay = .milliseconds(5)
        s.faults.maxDelay = .milliseconds(120)
        _ = expectClean(s)
    }

    /// Commits go on after the leader of the moment crashes for good: the others time its round
    /// out, form a timeout certificate and the next leader extends the highest certificate.
    @Test func commitsResumeAfterTheLeaderCrashes() {
        var resumeTimes: [Double] = []
        for seed in Self.seeds {
            var s = Scenario()
            s.validators = 4
            s.payloads = 150
            s.every = .milliseconds(20)
            let net = VirtualNet(validators: 4, seed: seed)
            net.start()
            net.workload(count: s.payloads, every: s.every, startingAt: Instant(nanoseconds: 10_000_000), targets: [1, 2, 3])
            net.run(until: Instant(nanoseconds: 1_000_000_000))
            let leader = net.slots[1].core!.leader(of: net.slots[1].core!.round)
            let crashAt = net.now
            net.schedule(.crash(slot: leader), at: crashAt)
            net.run(until: Instant(nanoseconds: 1_000_000_001))
            let before = net.checks.maxDecidedHeight
            var resumed: Instant?
            while net.now < Instant(nanoseconds: 8_000_000_000) {
                net.run(until: net.now + .milliseconds(10))
                if resumed == nil, net.checks.maxDecidedHeight > before + 1 { resumed = net.now }
            }
            #expect(net.checks.violations.isEmpty)
            #expect(resumed != nil, "seed \(seed): no commit after the leader crashed")
            if let r = resumed { resumeTimes.append((r - crashAt).secondsDouble) }
            #expect(net.checks.committedPayloads == s.payloads, "seed \(seed): \(net.checks.committedPayloads) of \(s.payloads)")
        }
        // Round timeout 400 ms here: the crashed leader's round times out, a timeout certificate
        // forms, and two more rounds commit, each waiting until the validators' own votes are on
        // disk before they count (the slowest seed: 1.7 s). The floor is 3 s.
        #expect(resumeTimes.allSatisfy { $0 < 2.0 }, "\(resumeTimes)")
    }
}
