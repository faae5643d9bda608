import Testing
import Consensus
import MeshCore

@Suite struct HappyPathTests {
    @Test(arguments: [4, 7])
    func everySubmittedPayloadCommitsOnceInOneOrderEverywhere(validators n: Int) {
        let net = VirtualNet(validators: n, seed: 1)
        net.start()
        net.workload(count: 200, every: .milliseconds(5), startingAt: Instant(nanoseconds: 10_000_000), targets: Array(0..<n))
        net.run(until: Instant(nanoseconds: 5_000_000_000))
        #expect(net.checks.violations.isEmpty, "\(net.checks.violations.prefix(5))")
        #expect(net.checks.committedPayloads == 200)
        for s in 0..<n {
            // Empty blocks keep coming while idle, so a slot may be a block or two behind at the cut.
            #expect(net.checks.height[s]! + 2 >= net.checks.maxDecidedHeight, "slot \(s) behind")
            // Only the f late votes of each round (after the certificate formed) and payloads forwarded
            // again after they committed are dropped.
            let c = net.slots[s].core!.counters
            #expect(c.totalDrops == c.dropped(.staleRound) + c.dropped(.duplicate), "\(c.drops)")
        }
    }

    /// With a wall clock, leaders stamp blocks: every committed block's time is at or after its
    /// parent's and within the run (the hash covers it, so agreement on hashes is agreement on times).
    @Test func blocksCarryANonDecreasingConsensusTime() {
        let epoch: UInt64 = 1_767_225_600_000
        let net = VirtualNet(validators: 4, seed: 3) { $0.unixMillisAtZero = epoch }
        net.start()
        net.workload(count: 50, every: .milliseconds(10), startingAt: Instant(nanoseconds: 10_000_000), targets: Array(0..<4))
        net.run(until: Instant(nanoseconds: 3_000_000_000))
        #expect(net.checks.violations.isEmpty, "\(net.checks.violations.prefix(5))")
        let times = net.checks.times.sorted { $0.key < $1.key }.map(\.value)
        #expect(times.count > 5)
        #expect(times.allSatisfy { $0 >= epoch && $0 <= epoch + 3_000 }, "\(times.prefix(5))")
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(times.last! > times.first!)
    }

    /// A validator whose clock runs 60 s behind the others refuses their blocks as too far ahead
    /// (`maxClockAhead`, 30 s) and counts them as invalid proposals; the other three still commit.
    @Test func aBlockFarAheadOfAVotersClockIsRefused() {
        let epoch: UInt64 = 1_767_225_600_000
        let net = VirtualNet(validators: 4, seed: 4) { $0.unixMillisAtZero = epoch }
        net.slots[3].configure = { $0.unixMillisAtZero = epoch - 60_000 }
        net.start()
        net.workload(count: 30, every: .milliseconds(10), startingAt: Instant(nanoseconds: 10_000_000), targets: [0, 1, 2])
        net.run(until: Instant(nanoseconds: 3_000_000_000))
        #expect(net.checks.violations.isEmpty, "\(net.checks.violations.prefix(5))")
        #expect(net.slots[3].core!.counters.dropped(.invalidProposal) > 0)
        #expect(net.checks.maxDecidedHeight > 3)
    }
}
