import ArgumentParser
import Bench
import Foundation

struct BenchConsensusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consensus",
        abstract: "256-byte payloads committed per second by 4 validators (4 node runtimes on one loop, ::1), beside the run's raw signature work; commit latency at half the peak.")

    @Option(help: "Payloads submitted at once for the peak.")
    var payloads = 2000
    @Option(help: "Seconds of submitting at half the peak rate, for the latency.")
    var latencySeconds = 3.0
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let f: ConsensusBench.Figures
        do { f = try ConsensusBench.run(payloads: payloads, latencySeconds: latencySeconds, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench consensus failed: \(error)")
        }
        guard json else {
            print(f.result.table(), terminator: "")
            print(String(format: "  commit latency at %.0f payloads/s: p50 %.1f ms, p99 %.1f ms (%d blocks in the peak)", f.halfRate, f.latencyP50 * 1e3, f.latencyP99 * 1e3, f.blocks))
            return
        }
        var obj = (try? JSONSerialization.jsonObject(with: Data(f.result.jsonString().utf8)) as? [String: Any]) ?? [:]
        obj["latency"] = ["rate_payloads_s": (f.halfRate * 10).rounded() / 10, "p50_ms": (f.latencyP50 * 1e6).rounded() / 1e3, "p99_ms": (f.latencyP99 * 1e6).rounded() / 1e3]
        obj["peak_blocks"] = f.blocks
        obj["setup"] = "4 NodeRuntimes (UDP on ::1, Noise, SQLite safety state) on one libuv loop in one process"
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}
