import ArgumentParser
import Bench

struct BenchNoiseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "noise",
        abstract: "Session-layer transport, handshakes and non-member rejection, beside the libsodium work they cannot avoid.")

    @Option(help: "1200-byte packets sealed and opened per trial.")
    var packets = 50_000
    @Option(help: "Handshakes of each pattern per trial.")
    var handshakes = 200
    @Option(help: "Non-member initiations rejected per trial.")
    var rejects = 50_000
    @Option(help: "Trials of each (the best is reported).")
    var trials = 5
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        var sizes = NoiseBench.Sizes()
        sizes.packets = max(1, packets)
        sizes.handshakes = max(1, handshakes)
        sizes.rejects = max(1, rejects)
        let result: BenchResult
        do { result = try NoiseBench.run(sizes: sizes, trials: trials, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench noise failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
