import ArgumentParser
import Bench

struct BenchLaceroCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lacero",
        abstract: "Lacero's put and get pipelines beside libsodium's AEAD, ISA-L's encode and SHA-256 on the same bytes.")

    @Option(help: "Object size in MiB.")
    var mib = 64
    @Option(help: "Data fragments per segment.")
    var k = 10
    @Option(help: "All fragments per segment.")
    var n = 14
    @Option(help: "Segment size in KiB.")
    var segmentKib = 1024
    @Option(help: "Trials of each (the best is reported).")
    var trials = 3
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        var sizes = LaceroBench.Sizes()
        sizes.objectBytes = max(1, mib) << 20
        sizes.k = k
        sizes.n = n
        sizes.segmentBytes = max(1, segmentKib) << 10
        let result: BenchResult
        do { result = try LaceroBench.run(sizes: sizes, trials: trials, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench lacero failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }
}
