import ArgumentParser
import Bench
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks: our figure beside its physical baseline.",
                                                    subcommands: [BenchLoopCommand.self, BenchNoiseCommand.self, BenchChannelCommand.self,
                                                                  BenchLaceroCommand.self, BenchLedgerCommand.self, BenchConsensusCommand.self,
                                                                  BenchChaincodeCommand.self, BenchFootprintCommand.self, BenchMeterCommand.self])
}

struct BenchLoopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loop",
        abstract: "Datagram round trips per second between two nodes over ::1, beside raw libuv ping-pong.")

    @Option(help: "Round trips per trial.")
    var roundTrips = 20000
    @Option(help: "Trials of each (the best is reported).")
    var trials = 3
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let result: BenchResult
        do { result = try LoopBench.run(roundTrips: roundTrips, trials: trials, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench loop failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
