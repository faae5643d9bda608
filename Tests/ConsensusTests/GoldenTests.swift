import Foundation
import Testing
import Consensus
import MeshCore

/// A small run's full transcript (every delivered message and every commit) checked in under
/// testdata/, in the manner of etcd-raft's data-driven tests: a change of behaviour shows as a
/// diff. CONSENSUS_GOLDEN_UPDATE=1 rewrites the file after a deliberate change.
@Suite struct GoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    /// Four validators, eight payloads; validator 2 crashes at 0.3 s, so the rounds it leads (and
    /// the rounds whose votes go to it) end in timeout certificates and the others carry on.
    @Test func fourValidatorsThroughAViewChange() throws {
        let net = VirtualNet(validators: 4, seed: 7)
        net.transcript = []
        net.start()
        net.workload(count: 8, every: .milliseconds(40), startingAt: Instant(nanoseconds: 5_000_000), targets: [0, 1, 3])
        net.schedule(.crash(slot: 2), at: Instant(nanoseconds: 300_000_000))
        net.run(until: Instant(nanoseconds: 2_000_000_000))
        #expect(net.checks.violations.isEmpty)
        #expect(net.checks.committedPayloads == 8)
        let text = net.transcript!.joined(separator: "\n") + "\n"
        #expect(text.contains("tc="), "the run has no view change")
        try compare(text, "four-validators-view-change.txt")
    }

    func compare(_ text: String, _ name: String) throws {
        let url = Self.directory.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["CONSENSUS_GOLDEN_UPDATE"] == "1" {
            try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let golden = try String(contentsOf: url, encoding: .utf8)
        guard golden != text else { return }
        let a = golden.split(separator: "\n", omittingEmptySubsequences: false)
        let b = text.split(separator: "\n", omittingEmptySubsequences: false)
        let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        Issue.record("transcript differs from testdata/\(name) at line \(i + 1):\n  golden: \(i < a.count ? String(a[i]) : "<end>")\n  now:    \(i < b.count ? String(b[i]) : "<end>")")
    }
}
