import ArgumentParser
import Foundation
import Simulator

struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim", abstract: "Run the deterministic multi-node simulator.",
                                                    subcommands: [SimRunCommand.self])
}

struct SimRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a scenario; write a JSON report. Exits non-zero when a check fails.")

    @Argument(help: "Scenario file (TOML), e.g. Simulations/mesh-100.toml.")
    var scenario: String
    @Option(help: "Seed: the same scenario and seed give the same report.")
    var seed: UInt64 = 1
    @Option(help: "Where to write the JSON report.")
    var report: String?
    @Option(help: "Directory for SVG plots.")
    var plots: String?
    @Flag(help: "No progress lines.")
    var quiet = false

    func run() throws {
        let s: Scenario
        do { s = try Scenario.load(path: scenario) } catch { throw CLIError("\(error)") }
        let sim = Simulation(scenario: s, seed: seed)
        FileHandle.standardError.write(Data("sim: \(s.name): \(s.nodes) nodes, \(s.durationSeconds) virtual s, seed \(seed)\n".utf8))
        let wallStart = Date()
        var lastPrint = Date.distantPast
        let result = sim.run(progress: quiet ? nil : { virtual, events in
            let now = Date()
            guard now.timeIntervalSince(lastPrint) >= 1 else { return }
            lastPrint = now
            let wall = now.timeIntervalSince(wallStart)
            let pct = Int(virtual / s.durationSeconds * 100)
            let bar = String(repeating: "#", count: pct / 5).padding(toLength: 20, withPad: ".", startingAt: 0)
            FileHandle.standardError.write(Data(String(format: "\r[%@] %3d%%  virtual %.0f/%.0f s  %llu events  %.0f events/s  ",
                                                       bar, pct, virtual, s.durationSeconds, events, Double(events) / max(wall, 1e-3)).utf8))
        })
        if !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
        if let report {
            do { try result.json().write(to: URL(fileURLWithPath: report)) } catch { throw CLIError("cannot write report \(report): \(error)") }
        }
        if let plots {
            try FileManager.default.createDirectory(atPath: plots, withIntermediateDirectories: true)
            let svg = SVGPlot.line(title: "\(s.name): membership convergence (seed \(seed))", xLabel: "virtual seconds",
                                   yLabel: "alive fraction of membership",
                                   points: (result.series["alive_fraction"] ?? []).map { ($0[0], $0[1]) }, yRange: 0...1)
            try svg.write(toFile: (plots as NSString).appendingPathComponent("convergence.svg"), atomically: true, encoding: .utf8)
        }
        print("scenario \(result.scenario)  seed \(result.seed)  nodes \(result.nodes)  virtual \(result.virtual_seconds) s  wall \(String(format: "%.2f", result.wall_seconds)) s  events \(result.events)  (\(String(format: "%.0f", Double(result.events) / max(result.wall_seconds, 1e-6))) events/s, \(String(format: "%.1f", result.virtual_seconds / max(result.wall_seconds, 1e-6)))x real time)")
        for (k, v) in result.metrics.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        for c in result.checks { print("  [\(c.passed ? "pass" : "FAIL")] \(c.name): \(c.detail)") }
        if !result.passed { throw ExitCode(1) }
    }
}
