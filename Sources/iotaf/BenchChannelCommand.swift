import ArgumentParser
import Bench
import Foundation

struct BenchChannelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel",
        abstract: "Channel goodput: 64 MiB between two nodes over ::1 beside raw libuv datagrams; simulated 1% loss beside the link's bandwidth.")

    @Option(help: "Trials of the loopback transfer and its baseline (the best of each is reported).")
    var trials = 3
    @Flag(help: "Leave out the simulated row (to profile the loopback transfer alone).")
    var skipSim = false
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let result: BenchResult
        do { result = try ChannelBench.run(trials: trials, simulate: !skipSim, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench channel failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
