import ArgumentParser
import Noise

/// `iotaf noise ...`: tools for the Noise Protocol Framework implementation.
struct NoiseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "noise",
        abstract: "Noise Protocol Framework tools.",
        subcommands: [Vectors.self])

    /// Runs public test-vector files, so anyone can check the implementation against them.
    struct Vectors: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run Noise test-vector files (cacophony/snow JSON) and print a pass/fail/skip count.",
            discussion: "Vectors for suites libsodium lacks (448, BLAKE2s) are skipped and counted. "
                + "The last line is always `N passed, M failed, K skipped`; the exit status is non-zero "
                + "if any vector failed.")

        @Argument(help: "Vector files in the cacophony/snow JSON format.")
        var files: [String]

        @Flag(help: "Also list the reasons vectors were skipped.")
        var verbose = false

        func validate() throws {
            if files.isEmpty { throw ValidationError("give at least one vector file") }
        }

        func run() throws {
            var total = NoiseTestVectors.Report()
            for file in files {
                let report: NoiseTestVectors.Report
                do {
                    report = try NoiseTestVectors.run(file: file)
                } catch {
                    print("\(error)")
                    print(total.summary)
                    throw ExitCode.failure
                }
                print("\(file): \(report.summary)")
                for (name, why) in report.failures { print("  FAIL \(name): \(why)") }
                if verbose {
                    for (why, n) in report.skipReasons.sorted(by: { $0.key < $1.key }) { print("  skipped \(n): \(why)") }
                }
                total.passed += report.passed
                total.failed += report.failed
                total.skipped += report.skipped
            }
            print(total.summary)
            if total.failed > 0 { throw ExitCode.failure }
        }
    }
}
