import ArgumentParser
import Bench
import Foundation

struct BenchLedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Signed kv puts committed per second by four validators on the real runtime (::1), beside each validator's signature checks and one WAL+FULL commit per block; latency at half the peak. --executor: the executor and store alone.")

    @Option(help: "Transactions (end to end: the peak phase; --executor: per trial).")
    var transactions = 20_000
    @Option(help: "Bytes of each kv value.")
    var valueBytes = 256
    @Option(help: "End to end: seconds of the latency phase at half the peak rate.")
    var latencySeconds = 3.0
    @Flag(help: "Measure the executor and the SQLite store alone (no network, no consensus rounds).")
    var executor = false
    @Option(help: "--executor: transactions per block.")
    var blockSize = 500
    @Option(help: "--executor: trials (the best is reported).")
    var trials = 3
    @Option(help: "--executor: directory for the database files (default: a temporary one, removed after).")
    var directory: String?
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let bytes = max(0, min(valueBytes, 12_000))
        if !executor {
            let f: LedgerNetBench.Figures
            do {
                f = try LedgerNetBench.run(transactions: max(1, transactions), valueBytes: bytes, latencySeconds: max(0.1, latencySeconds),
                                           progress: json ? nil : { print($0) })
            } catch {
                throw CLIError("bench ledger failed: \(error)")
            }
            guard json else {
                print(f.result.table(), terminator: "")
                print(String(format: "  commit latency at %.0f tx/s: p50 %.1f ms, p99 %.1f ms (%d blocks in the peak)", f.halfRate, f.latencyP50 * 1e3, f.latencyP99 * 1e3, f.blocks))
                return
            }
            var obj = (try? JSONSerialization.jsonObject(with: Data(f.result.jsonString().utf8)) as? [String: Any]) ?? [:]
            obj["latency"] = ["rate_tx_s": (f.halfRate * 10).rounded() / 10, "p50_ms": (f.latencyP50 * 1e6).rounded() / 1e3, "p99_ms": (f.latencyP99 * 1e6).rounded() / 1e3]
            obj["peak_blocks"] = f.blocks
            obj["setup"] = "4 NodeRuntimes with [ledger] role = validator (UDP on ::1, Noise, consensus, ledger.sqlite WAL+FULL) on one libuv loop in one process"
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var sizes = LedgerBench.Sizes()
        sizes.transactions = max(1, transactions)
        sizes.blockSize = max(1, blockSize)
        sizes.valueBytes = bytes
        let result: BenchResult
        do { result = try LedgerBench.run(sizes: sizes, trials: trials, directory: directory, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench ledger failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
