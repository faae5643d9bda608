import ArgumentParser
import Bench

struct BenchChaincodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaincode",
        abstract: "WebAssembly contract calls per second (read one key, write one) beside the same logic in Swift; instantiation cost separately.")

    @Option(help: "Contract calls per trial.")
    var invokes = 100_000
    @Option(help: "Trials of each (the best is reported).")
    var trials = 3
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let result: BenchResult
        do { result = try ChaincodeBench.run(invokes: invokes, trials: trials, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench chaincode failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
