import ArgumentParser
import Bench

struct BenchLedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Committed signed kv puts per second through the executor and the SQLite store, beside signature checks and one WAL+FULL commit per block.")

    @Option(help: "Transactions per trial.")
    var transactions = 20_000
    @Option(help: "Transactions per block.")
    var blockSize = 500
    @Option(help: "Bytes of each kv value.")
    var valueBytes = 256
    @Option(help: "Trials of each (the best is reported).")
    var trials = 3
    @Option(help: "Directory for the database files (default: a temporary one, removed after).")
    var directory: String?
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        var sizes = LedgerBench.Sizes()
        sizes.transactions = max(1, transactions)
        sizes.blockSize = max(1, blockSize)
        sizes.valueBytes = max(0, min(valueBytes, 12_000))
        let result: BenchResult
        do { result = try LedgerBench.run(sizes: sizes, trials: trials, directory: directory, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench ledger failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
