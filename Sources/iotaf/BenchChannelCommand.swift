import ArgumentParser
import Bench
import Channels
import Foundation
import Simulator

struct BenchChannelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel",
        abstract: "Channel goodput: 64 MiB between two nodes (each on its own loop and thread) over ::1 beside a sealed GSO/GRO datagram stream on two threads; simulated 0%, 1% and 10% loss through two node cores beside the link.")

    @Option(help: "Trials of the loopback transfer and its baseline (the best of each is reported).")
    var trials = 3
    @Flag(help: "Leave out the simulated row (to profile the loopback transfer alone).")
    var skipSim = false
    @Flag(help: "Print one JSON object.")
    var json = false
    @Option(help: "Instead of the benchmark: simulate two nodes over a 10 MB/s link at loss 0-20 % and RTT 1-200 ms, print the table and write the goodput plot (SVG) here.")
    var sweepSvg: String?
    @Option(help: "Bytes per simulated transfer in a sweep (default 16 MiB for --sweep-svg, 8 MiB for --sweep-seeds).")
    var sweepBytes: Int?
    @Option(help: "Instead of the benchmark: the 10 MB/s, 50 ms RTT link at --sweep-loss over these seeds (\"1..30\" or \"3,7,9\"), once between two endpoints and once through two node cores; prints each seed's share of (1 - loss) x link and the distribution.")
    var sweepSeeds: String?
    @Option(help: "With --sweep-seeds: the loss each way (0.1 = 10 %).")
    var sweepLoss = 0.1
    @Option(help: "With --sweep-svg: draw the plot from this table of measured points instead of simulating (lines of `rtt_ms loss_percent goodput_MBps`, as scripts/netns-goodput.sh writes them; other lines are skipped).")
    var plotFrom: String?
    @Option(help: "With --plot-from: the plot's title.")
    var plotTitle = "Channel goodput between two node processes in network namespaces (veth, nftables loss, netem delay)"

    func run() throws {
        if let table = plotFrom {
            guard let path = sweepSvg else { throw CLIError("--plot-from needs --sweep-svg <path> (where to write the plot)") }
            return try plot(table, to: path)
        }
        if let path = sweepSvg { return try sweep(path) }
        if let seeds = sweepSeeds { return try seedSweep(seeds) }
        let result: BenchResult
        do { result = try ChannelBench.run(trials: trials, simulate: !skipSim, progress: json ? nil : { print($0) }) } catch {
            throw CLIError("bench channel failed: \(error)")
        }
        print(json ? result.jsonString() : result.table())
    }

    /// Goodput against loss, one line per RTT, from measured points (the namespace bed's).
    func plot(_ table: String, to path: String) throws {
        let text: String
        do { text = try String(contentsOfFile: table, encoding: .utf8) } catch {
            throw CLIError("cannot read \(table): \(error.localizedDescription)")
        }
        var byRTT: [(rtt: Double, points: [(Double, Double)])] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { Double($0) }
            guard f.count >= 3, line.first?.isNumber == true else { continue }
            if let i = byRTT.firstIndex(where: { $0.rtt == f[0] }) { byRTT[i].points.append((f[1], f[2])) } else { byRTT.append((f[0], [(f[1], f[2])])) }
        }
        guard !byRTT.isEmpty else { throw CLIError("\(table) holds no `rtt_ms loss_percent goodput_MBps` lines") }
        let series = byRTT.map { (label: "RTT \($0.rtt == $0.rtt.rounded() ? String(Int($0.rtt)) : String($0.rtt)) ms", points: $0.points) }
        let svg = SVGPlot.lines(title: plotTitle, xLabel: "loss each way (%)", yLabel: "goodput (MB/s)", series: series)
        do { try svg.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw CLIError("cannot write the plot to \(path): \(error.localizedDescription)")
        }
        print("wrote \(path)")
    }

    /// Goodput against loss, one line per RTT, each point one simulated transfer through two node cores.
    func sweep(_ path: String) throws {
        let losses = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2]
        let rtts = [1, 10, 50, 100, 200]
        let rate = 10e6
        var series: [(label: String, points: [(Double, Double)])] = []
        print("rtt_ms loss goodput_MBps goodput/(1-loss)/link virtual_s probe_timeouts suspicions")
        for rtt in rtts {
            var points: [(Double, Double)] = []
            for loss in losses {
                let r = NodeLinkGoodput.run(bytes: sweepBytes ?? 16 << 20, loss: loss, rtt: .milliseconds(Int64(rtt)), linkBytesPerSecond: rate, seed: 1)
                let share = r.goodputBytesPerSecond / ((1 - loss) * rate)
                print(String(format: "%d %.2f %.2f %.3f %.1f %llu %d%@", rtt, loss, r.goodputBytesPerSecond / 1e6, share, r.seconds,
                             r.sender.probeTimeouts, r.suspicions, r.completed ? "" : " (did not complete)"))
                points.append((loss * 100, r.goodputBytesPerSecond / 1e6))
            }
            series.append(("RTT \(rtt) ms", points))
        }
        let svg = SVGPlot.lines(title: "Channel goodput over a 10 MB/s link (simulated, two nodes)", xLabel: "loss each way (%)",
                                yLabel: "goodput (MB/s)", series: series, yRange: 0...10)
        do { try svg.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw CLIError("cannot write the plot to \(path): \(error.localizedDescription)")
        }
        print("wrote \(path)")
    }

    /// Goodput's spread over seeds at one loss: a floor holds only if every seed keeps it. Each
    /// seed is one transfer between two endpoints (`ChannelGoodput`, floor 0.6 in GoodputTests) and
    /// one through two node cores (`NodeLinkGoodput`, floor 0.5 in NodeLinkGoodputTests).
    func seedSweep(_ text: String) throws {
        guard let seeds = SeedSweep.parseSeeds(text) else { throw CLIError("--sweep-seeds \(text): give a range like 1..30 or a list like 3,7,9") }
        guard sweepLoss >= 0 && sweepLoss < 1 else { throw CLIError("--sweep-loss \(sweepLoss): give a probability in [0, 1)") }
        let bytes = sweepBytes ?? 8 << 20
        let rate = 10e6, usable = (1 - sweepLoss) * rate
        print(String(format: "# %d bytes, loss %.3f each way, 50 ms RTT, 10 MB/s link; share = goodput / ((1 - loss) x link)", bytes, sweepLoss))
        print("seed endpoint_share endpoint_s endpoint_window_probes endpoint_pto node_share node_s node_window_probes node_pto node_retransmitted node_suspicions")
        var endpoint: [Double] = [], node: [Double] = []
        for seed in seeds {
            let e = ChannelGoodput.run(bytes: bytes, lossRate: sweepLoss, rtt: .milliseconds(50), bandwidthBytesPerSecond: rate, seed: seed)
            let n = NodeLinkGoodput.run(bytes: bytes, loss: sweepLoss, rtt: .milliseconds(50), linkBytesPerSecond: rate, seed: seed)
            endpoint.append(e.completed ? e.goodputBytesPerSecond / usable : 0)
            node.append(n.completed ? n.goodputBytesPerSecond / usable : 0)
            print(String(format: "%llu %.3f %.2f %llu %llu %.3f %.2f %llu %llu %llu %d", seed, endpoint.last!, e.seconds, e.probes, e.probeTimeouts,
                         node.last!, n.seconds, n.sender.probes, n.sender.probeTimeouts, n.sender.retransmittedChunks, n.suspicions))
        }
        func spread(_ name: String, _ v: [Double], floor: Double) {
            let s = v.sorted()
            func q(_ p: Double) -> Double { s[min(s.count - 1, Int(p * Double(s.count - 1)))] }
            print(String(format: "%@: min %.3f  p10 %.3f  median %.3f  max %.3f; %d of %d seeds at or above %.2f", name, s[0], q(0.1), q(0.5),
                         s[s.count - 1], v.filter { $0 >= floor }.count, v.count, floor))
        }
        spread("endpoint", endpoint, floor: 0.6)
        spread("node", node, floor: 0.5)
    }
}
