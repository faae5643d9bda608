import MeshCore
import Simulator
import Testing

/// Issue 27's floor through whole node cores (Noise sessions, channels, gossip) over a simulated
/// 10 MB/s link with 50 ms RTT and 10 % loss each way, over a sweep of seeds: at least half of the
/// link's capacity less the lost share. (`iotaf bench channel` runs the 64 MiB version.)
@Suite struct NodeLinkGoodputTests {
    @Test(arguments: 1...3 as ClosedRange<UInt64>)
    func tenPercentLossKeepsHalfTheLinkThroughTwoNodes(seed: UInt64) {
        let r = NodeLinkGoodput.run(bytes: 8 << 20, loss: 0.1, rtt: .milliseconds(50), linkBytesPerSecond: 10e6, seed: seed)
        #expect(r.completed)
        let share = r.goodputBytesPerSecond / (0.9 * r.linkBytesPerSecond)
        #expect(share >= 0.5, "seed \(seed): \(share) of the link less the lost share in \(r.seconds) virtual s, \(r.sender.retransmittedChunks) retransmitted")
        #expect(r.randomLosses > 500, "the link really lost datagrams: \(r.randomLosses)")
    }

    @Test func sameSeedSameFigure() {
        let a = NodeLinkGoodput.run(bytes: 1 << 20, loss: 0.05, rtt: .milliseconds(20), linkBytesPerSecond: 2e6, seed: 9)
        let b = NodeLinkGoodput.run(bytes: 1 << 20, loss: 0.05, rtt: .milliseconds(20), linkBytesPerSecond: 2e6, seed: 9)
        #expect(a.goodputBytesPerSecond == b.goodputBytesPerSecond && a.sender == b.sender)
    }
}
