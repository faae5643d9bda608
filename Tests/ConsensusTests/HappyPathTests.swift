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
}
