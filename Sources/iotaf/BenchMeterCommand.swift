import ArgumentParser
import Bench

struct BenchMeterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meter",
        abstract: "Reads per second through one relay (verify, keep in custody on disk, forward), beside one Ed25519 verify per read and one WAL+FULL commit per batch.")

    @Option(help: "Reads per trial.")
    var reads = 12_000
    @Option(help: "Trials of each (the best is reported).")
    var trials = 3
    @Option(help: "Directory for the database files (default: a temporary one, removed after).")
    var directory: String?
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let result: BenchResult
        do { result = try MeterBench.run(reads: max(6, reads), trials: trials, directory: directory, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench meter failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
