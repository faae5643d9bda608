import ArgumentParser
import Foundation
import Simulator

struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim", abstract: "Run the deterministic multi-node simulator.",
                                                    subcommands: [SimRunCommand.self, SimReplayCommand.self])
}

private func loadScenario(_ path: String) throws -> Scenario {
    do { return try Scenario.load(path: path) } catch { throw CLIError("\(error)") }
}

private func stderr(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

/// A one-line progress bar on stderr: virtual time, events and events per second, at most once a second.
private final class ProgressBar: @unchecked Sendable {
    let total: Double
    let start = Date()
    var last = Date.distantPast
    init(total: Double) { self.total = total }

    func update(_ virtual: Double, _ events: UInt64) {
        let now = Date()
        guard now.timeIntervalSince(last) >= 1 || virtual >= total else { return }
        last = now
        let wall = max(now.timeIntervalSince(start), 1e-3)
        let pct = min(100, Int(virtual / total * 100))
        let bar = String(repeating: "#", count: pct / 5).padding(toLength: 20, withPad: ".", startingAt: 0)
        let eta = virtual > 0 ? wall * (total - virtual) / virtual : 0
        stderr(String(format: "\r[%@] %3d%%  virtual %.1f/%.0f s  %llu events  %.0f events/s  %.1fx real time  wall %.0f s  eta %.0f s   ",
                      bar, pct, virtual, total, events, Double(events) / wall, virtual / wall, wall, eta))
    }
}

private func summary(_ r: SimReport) {
    print("scenario \(r.scenario)  seed \(r.seed)  nodes \(r.nodes)  virtual \(r.virtual_seconds) s  wall \(String(format: "%.2f", r.wall_seconds)) s  events \(r.events)  (\(String(format: "%.0f", Double(r.events) / max(r.wall_seconds, 1e-6))) events/s, \(String(format: "%.1f", r.virtual_seconds / max(r.wall_seconds, 1e-6)))x real time)")
    if !r.timeline.isEmpty {
        print("timeline:")
        for line in r.timeline.prefix(20) { print("  \(line)") }
        if r.timeline.count > 20 { print("  … \(r.timeline.count - 20) more in the report") }
    }
    print("metrics:")
    for (k, v) in r.metrics.sorted(by: { $0.key < $1.key }) where v != 0 || !k.hasPrefix("drops_") {
        let value = v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(format: "%.4g", v)
        print("  \(k.padding(toLength: 30, withPad: " ", startingAt: 0)) \(value)")
    }
    print("checks:")
    for c in r.checks { print("  [\(c.passed ? "pass" : "FAIL")] \(c.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(c.detail)") }
}

private func writePlots(_ r: SimReport, to dir: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let markers = (r.series["markers"] ?? []).map { $0[0] }
        func points(_ k: String) -> [(Double, Double)] { (r.series[k] ?? []).map { ($0[0], $0[1]) } }
        let title = "\(r.scenario) (seed \(r.seed))"
        let plots: [(String, String)] = [
            ("convergence.svg", SVGPlot.line(title: "\(title): membership convergence", xLabel: "virtual seconds",
                                             yLabel: "alive fraction of possible membership", points: points("alive_fraction"),
                                             yRange: 0...1, markers: markers)),
            ("messages.svg", SVGPlot.line(title: "\(title): datagrams sent per node per second", xLabel: "virtual seconds",
                                          yLabel: "datagrams / node / s", points: points("messages_per_node_s"), markers: markers)),
            ("bytes.svg", SVGPlot.line(title: "\(title): bytes sent per node per second", xLabel: "virtual seconds",
                                       yLabel: "bytes / node / s", points: points("bytes_per_node_s"), markers: markers)),
            ("bytes-max-node.svg", SVGPlot.line(title: "\(title): busiest node's bytes per second", xLabel: "virtual seconds",
                                                yLabel: "bytes / s", points: points("max_bytes_one_node_s"), markers: markers)),
            ("stale-views.svg", SVGPlot.line(title: "\(title): live views of down nodes not yet dead", xLabel: "virtual seconds",
                                             yLabel: "(observer, down node) pairs", points: points("stale_views_of_down_nodes"), markers: markers)),
            ("false-dead.svg", SVGPlot.line(title: "\(title): false dead declarations (cumulative)", xLabel: "virtual seconds",
                                            yLabel: "declarations", points: points("false_dead_cumulative"), markers: markers)),
            ("nodes-up.svg", SVGPlot.line(title: "\(title): nodes up", xLabel: "virtual seconds", yLabel: "nodes",
                                          points: points("nodes_up"), markers: markers)),
            ("overlay-components.svg", SVGPlot.line(title: "\(title): connected components of the active views", xLabel: "virtual seconds",
                                                    yLabel: "components among live nodes", points: points("overlay_components"), markers: markers)),
            ("discovery.svg", SVGPlot.line(title: "\(title): share of the live mesh the least-informed node knows", xLabel: "virtual seconds",
                                           yLabel: "fraction of live nodes known", points: points("min_known_fraction"),
                                           yRange: 0...1, markers: markers)),
        ]
        for (file, svg) in plots {
            try svg.write(toFile: (dir as NSString).appendingPathComponent(file), atomically: true, encoding: .utf8)
        }
    } catch {
        throw CLIError("cannot write plots to \(dir): \(error); check the directory is writable")
    }
}

struct SimRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a scenario; write a JSON report. Exits non-zero when a check fails.",
        discussion: "With --seeds A..B it runs every seed on --jobs worker threads and prints the failing seeds.")

    @Argument(help: "Scenario file (TOML), e.g. Simulations/mesh-100.toml.")
    var scenario: String
    @Option(help: "Seed: the same scenario and seed give the same report.")
    var seed: UInt64 = 1
    @Option(help: "Many seeds: \"1..200\" or \"3,7,9\". Prints the failing ones.")
    var seeds: String?
    @Option(help: "Worker threads for --seeds (default: the number of cores).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Threads inside one run: 1 runs the sequential loop; 2 or more run lookahead windows on that many threads (the same report for any count of 2 or more; see Docs/simulator.md).")
    var threads: Int = Simulation.defaultThreads
    @Option(help: "Where to write the JSON report (with --seeds: a summary of every run).")
    var report: String?
    @Option(help: "Directory for SVG plots (single seed only).")
    var plots: String?
    @Flag(help: "No progress bar.")
    var quiet = false

    func run() throws {
        let s = try loadScenario(scenario)
        guard threads >= 1 else { throw CLIError("--threads must be at least 1") }
        if let seeds { return try sweep(s, seeds) }
        let sim = Simulation(scenario: s, seed: seed, threads: threads)
        stderr("sim: \(s.name): \(s.nodes) nodes, \(s.durationSeconds) virtual s, seed \(seed), \(engine(sim))\n")
        let bar = ProgressBar(total: s.durationSeconds)
        let result = sim.run(progress: quiet ? nil : { bar.update($0, $1) })
        if !quiet { stderr("\n") }
        if sim.isWindowed {
            let w = sim.windowStats
            stderr(String(format: "sim: %d lookahead windows (%d on %d threads); CPU: driver thread %.1f s, nodes %.1f s; critical path on %d free cores %.1f s (%.2fx one thread)\n",
                          w.windows, w.parallelWindows, w.threads, w.driverSeconds, w.groupSeconds, w.threads, w.criticalPath, w.speedup))
        }
        if let report {
            do { try result.json().write(to: URL(fileURLWithPath: report)) } catch { throw CLIError("cannot write report \(report): \(error)") }
        }
        if let plots { try writePlots(result, to: plots) }
        summary(result)
        if !result.passed { throw ExitCode(1) }
    }

    private func sweep(_ s: Scenario, _ text: String) throws {
        guard let list = SeedSweep.parseSeeds(text) else { throw CLIError("--seeds \(text): give a range like 1..200 or a list like 3,7,9") }
        guard jobs >= 1 else { throw CLIError("--jobs must be at least 1") }
        stderr("sim: \(s.name): \(s.nodes) nodes, \(s.durationSeconds) virtual s, \(list.count) seeds on \(min(jobs, list.count)) threads\n")
        let start = Date()
        let quiet = self.quiet
        let outcomes = SeedSweep.run(s, seeds: list, jobs: jobs, threads: threads) { o, finished in
            let failed = o.report.checks.filter { !$0.passed }.map(\.name)
            if !quiet || !failed.isEmpty {
                stderr(String(format: "[%d/%d] seed %llu %@ (%.1f s wall)%@\n", finished, list.count, o.seed,
                              failed.isEmpty ? "pass" : "FAIL", o.report.wall_seconds,
                              failed.isEmpty ? "" : ": " + failed.joined(separator: ", ")))
            }
        }
        let failing = outcomes.filter { !$0.report.passed }
        let wall = Date().timeIntervalSince(start)
        print("\(s.name): \(outcomes.count) seeds in \(String(format: "%.1f", wall)) s wall, \(outcomes.count - failing.count) passed, \(failing.count) failed")
        for o in failing {
            print("  seed \(o.seed): " + o.report.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))
        }
        if !failing.isEmpty {
            print("failing seeds: \(failing.map { String($0.seed) }.joined(separator: ","))")
            print("reproduce one: iotaf sim replay \(scenario) --seed \(failing[0].seed) --trace\(threads == 1 ? " --threads 1" : "")")
        }
        let spread = SweepStats.percentiles(outcomes.map(\.report))
        if !spread.isEmpty {
            print("over \(outcomes.count) seeds (p50 / p99 / max; a -1 means some run never got there):")
            for (k, p) in spread.sorted(by: { $0.key < $1.key }) {
                print("  \(k.padding(toLength: 34, withPad: " ", startingAt: 0)) \(SweepStats.show(p["p50"]!)) / \(SweepStats.show(p["p99"]!)) / \(SweepStats.show(p["max"]!))")
            }
        }
        if let report {
            struct Summary: Encodable {
                var scenario: String; var seeds: [UInt64]; var failing: [UInt64]; var wall_seconds: Double
                var percentiles: [String: [String: Double]]
                var runs: [Run]
                struct Run: Encodable { var seed: UInt64; var passed: Bool; var events: UInt64; var wall_seconds: Double; var checks: [SimReport.Check] }
            }
            let sum = Summary(scenario: s.name, seeds: list, failing: failing.map(\.seed), wall_seconds: wall, percentiles: spread,
                              runs: outcomes.map { .init(seed: $0.seed, passed: $0.report.passed, events: $0.report.events,
                                                         wall_seconds: $0.report.wall_seconds, checks: $0.report.checks) })
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .prettyPrinted]
            do { try e.encode(sum).write(to: URL(fileURLWithPath: report)) } catch { throw CLIError("cannot write report \(report): \(error)") }
        }
        if !failing.isEmpty { throw ExitCode(1) }
    }
}

struct SimReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-run one seed of a scenario, optionally printing a readable event trace.",
        discussion: "The run is identical to `sim run` with the same seed; the trace shows every delivery, timer, send (with its fate), membership change and timeline event.")

    @Argument(help: "Scenario file (TOML).")
    var scenario: String
    @Option(help: "The seed to reproduce.")
    var seed: UInt64
    @Flag(help: "Print the event trace on stdout.")
    var trace = false
    @Option(help: "Trace only these nodes, e.g. \"3,17\".")
    var node: String?
    @Option(help: "Trace from this virtual second.")
    var from: Double = 0
    @Option(help: "Trace until this virtual second.")
    var until: Double = .infinity
    @Option(help: "Where to write the JSON report.")
    var report: String?
    @Option(help: "Threads inside the run, as given to `sim run` (1: sequential; the same run for any count of 2 or more).")
    var threads: Int = Simulation.defaultThreads

    func run() throws {
        let s = try loadScenario(scenario)
        guard from <= until else { throw CLIError("--from \(from) is after --until \(until)") }
        guard threads >= 1 else { throw CLIError("--threads must be at least 1") }
        let sim = Simulation(scenario: s, seed: seed, threads: threads)
        if let node {
            let ids = node.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard ids.allSatisfy({ $0 != nil && $0! >= 0 && $0! < s.nodes }) else {
                throw CLIError("--node \(node): give node indices below \(s.nodes), comma separated")
            }
            sim.traceNodes = Set(ids.map { $0! })
        }
        sim.traceWindow = from...until
        let result = sim.run(trace: trace ? { print($0) } : nil)
        if let report {
            do { try result.json().write(to: URL(fileURLWithPath: report)) } catch { throw CLIError("cannot write report \(report): \(error)") }
        }
        summary(result)
        if !result.passed { throw ExitCode(1) }
    }
}

/// How a run is driven, for the start line: sequential, or windows of how many milliseconds.
func engine(_ sim: Simulation) -> String {
    guard sim.isWindowed else { return "sequential" }
    return String(format: "%d threads, %.3f ms lookahead windows", sim.concurrency, sim.lookaheadMilliseconds)
}
