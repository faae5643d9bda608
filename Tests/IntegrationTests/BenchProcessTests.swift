import Foundation
import Testing

/// `iotaf bench channel --skip-sim`: the loopback transfer with each node on its own loop and
/// thread completes (no deadlock between the two threads, every byte delivered, nothing lost by
/// the baseline) and prints both figures. No speed is asserted (Docs/benchmarks.md measures it).
@Suite struct BenchProcessTests {
    @Test func loopbackBenchOnTwoThreadsCompletes() throws {
        let r = try runIotaf(["bench", "channel", "--skip-sim", "--trials", "1"])
        #expect(r.status == 0, "bench failed: \(r.err)")
        // The bench exits non-zero unless B received all 64 MiB; the sender needed at least one
        // frame per 1,200 bytes of it.
        let sender = try #require(r.out.split(separator: "\n").first { $0.contains("sender:") })
        let frames = try #require(sender.split(separator: " ").dropFirst(1).first.flatMap { Int($0) }, "\(sender)")
        #expect(frames >= (64 << 20) / 1200, "\(sender)")
        let trial = try #require(r.out.split(separator: "\n").first { $0.hasPrefix("trial 1/1") })
        #expect(trial.contains("55925 datagrams, 0 lost"), "\(trial)")
        let row = try #require(r.out.split(separator: "\n").first { $0.contains("goodput_loopback_64MiB") })
        let ratio = try #require(row.split(separator: " ").last.flatMap { Double($0) })
        #expect(ratio > 0 && ratio < 10, "\(row)")
    }
}
