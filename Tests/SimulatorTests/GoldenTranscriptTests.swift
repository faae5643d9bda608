import Foundation
import Simulator
import Testing

/// Golden transcripts, in the manner of etcd-raft's data-driven testdata/: each
/// `testdata/NAME.toml` is run (seed 1, sequential loop) with the trace on, and its transcript
/// (every delivery, send and its fate, timer, membership change and timeline event, in order with
/// virtual times, then the checks) must equal `testdata/NAME.golden` line for line. A change of
/// behaviour shows as a diff of that file. After an intended change, regenerate with
/// `IOTAF_UPDATE_GOLDEN=1 swift test --skip-build --filter GoldenTranscriptTests` and review the diff.
@Suite struct GoldenTranscriptTests {
    static let testdata = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    static var scenarios: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: testdata.path)) ?? []
        return files.filter { $0.hasSuffix(".toml") }.sorted()
    }

    /// The transcript of one run: a header naming what ran, the trace, and the checks.
    static func transcript(_ file: String, seed: UInt64 = 1) throws -> String {
        let s = try Scenario.load(path: testdata.appendingPathComponent(file).path)
        var lines = ["run \(file) seed=\(seed) threads=1", "----"]
        let sim = Simulation(scenario: s, seed: seed, threads: 1)
        let report = sim.run(trace: { lines.append($0) })
        lines.append("----")
        lines.append("events \(report.events)")
        for c in report.checks { lines.append("\(c.passed ? "pass" : "FAIL") \(c.phase?.rawValue ?? "-") \(c.name): \(c.detail)") }
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func thereIsAGoldenScenario() {
        #expect(!Self.scenarios.isEmpty)
    }

    @Test(arguments: scenarios)
    func transcriptMatchesTheGoldenFile(file: String) throws {
        let got = try Self.transcript(file)
        let golden = Self.testdata.appendingPathComponent(String(file.dropLast(5)) + ".golden")
        if ProcessInfo.processInfo.environment["IOTAF_UPDATE_GOLDEN"] == "1" {
            try got.write(to: golden, atomically: true, encoding: .utf8)
            return
        }
        guard let want = try? String(contentsOf: golden, encoding: .utf8) else {
            Issue.record("no golden file \(golden.lastPathComponent); create it with IOTAF_UPDATE_GOLDEN=1 swift test --skip-build --filter GoldenTranscriptTests")
            return
        }
        guard got != want else { return }
        let a = want.split(separator: "\n", omittingEmptySubsequences: false), b = got.split(separator: "\n", omittingEmptySubsequences: false)
        let k = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        Issue.record("""
            \(file): the transcript differs from \(golden.lastPathComponent) first at line \(k + 1)
              golden: \(k < a.count ? String(a[k]) : "(end)")
              now:    \(k < b.count ? String(b[k]) : "(end)")
            If the change of behaviour is intended, regenerate with IOTAF_UPDATE_GOLDEN=1 swift test --skip-build --filter GoldenTranscriptTests and review the diff.
            """)
    }

    /// The same run twice gives the same transcript: the golden file can only change with the code.
    @Test func transcriptIsTheSameTwice() throws {
        guard let file = Self.scenarios.first else { return }
        #expect(try Self.transcript(file) == Self.transcript(file))
    }
}
