import ArgumentParser
import Foundation
import MeshCore
import Runtime
import Simulator

/// `iotaf mesh`: starts a local mesh of real node processes on ::1 and shows it converge.
/// This is what `make run` runs.
struct MeshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "Start a local mesh of node processes on ::1, show its member table live, stop on Ctrl-C.")

    @Option(help: "Number of node processes.")
    var nodes = 5
    @Option(name: .customLong("base-port"), help: "UDP port of the first node; node i listens on base-port + i.")
    var basePort: UInt16 = 7401
    @Option(help: "Stop after this many seconds (default: run until Ctrl-C).")
    var duration: Double?
    @Option(help: "Working directory for keys, logs, sockets and pictures (default: a new one under /tmp).")
    var dir: String?

    func validate() throws {
        guard (1...64).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 64") }
    }

    func run() throws {
        let root = dir ?? NSTemporaryDirectory() + "iotaf-mesh-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        print("iotaf mesh: \(nodes) nodes on [::1]:\(basePort)...\(Int(basePort) + nodes - 1), working directory \(root)")

        var names: [String] = []
        var controls: [String] = []
        var processes: [Process] = []
        let stopAll = {
            for p in processes where p.isRunning { p.terminate() }
        }
        for i in 0..<nodes {
            let nodeDir = (root as NSString).appendingPathComponent("node-\(i)")
            try FileManager.default.createDirectory(atPath: nodeDir, withIntermediateDirectories: true)
            let keyPath = (nodeDir as NSString).appendingPathComponent("identity.key")
            if !FileManager.default.fileExists(atPath: keyPath) {
                try KeyFile.write(NodeIdentity.generate(), to: keyPath, force: false)
            }
            let identity = try KeyFile.read(keyPath)
            let control = (nodeDir as NSString).appendingPathComponent("control.sock")
            var args = ["node", "run", "--key", keyPath, "--listen", "[::1]:\(Int(basePort) + i)",
                        "--control", control, "--data", nodeDir]
            // Every node knows the first; the rest they learn from each other.
            if i > 0 { args += ["--peer", "[::1]:\(basePort)"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = args
            let log = (nodeDir as NSString).appendingPathComponent("node.log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            p.standardOutput = FileHandle.nullDevice
            do { try p.run() } catch {
                stopAll()
                throw CLIError("cannot start node \(i) (\(exe)): \(error)")
            }
            processes.append(p)
            names.append("node-\(i)")
            controls.append(control)
            print("started node-\(i)  pid \(p.processIdentifier)  id \(identity.nodeID.short)  [::1]:\(Int(basePort) + i)  log \(log)")
        }

        let loop = try EventLoop()
        var stopRequested = false
        let signals = [SIGINT, SIGTERM].map { sig in
            SignalWatcher(loop: loop, signal: sig) { _ in stopRequested = true; loop.stop() }
        }
        let started = Date()
        var lastTable = ""
        var lastPrinted = Date.distantPast
        var knownPairs: Set<String> = []
        var idToName: [String: String] = [:]
        let poll = LoopTimer(loop: loop) {}
        var tick: () -> Void = {}
        tick = {
            var snapshot: [(String, [MemberReport])] = []
            for (i, c) in controls.enumerated() {
                if idToName.count < controls.count, let data = try? ControlClient.request(c, ["command": "status"], timeoutSeconds: 1),
                   let s = try? JSONDecoder().decode(StatusReport.self, from: data) {
                    idToName[s.node_id] = names[i]
                }
                let members = (try? ControlClient.request(c, ["command": "members"], timeoutSeconds: 1))
                    .flatMap { try? JSONDecoder().decode([MemberReport].self, from: $0) } ?? []
                snapshot.append((names[i], members))
            }
            for (name, members) in snapshot {
                for m in members where m.state == "alive" {
                    let key = "\(name)>\(m.node_id)"
                    if knownPairs.insert(key).inserted {
                        print(String(format: "%6.1fs  %@ sees %@ alive (rtt %.2f ms)", Date().timeIntervalSince(started), name,
                                     idToName[m.node_id] ?? String(m.node_id.prefix(16)), m.rtt_ms ?? 0))
                    }
                }
            }
            let table = Self.table(snapshot, names: idToName, count: controls.count)
            // Print when who-sees-whom changes, and every 5 s for fresh round-trip times.
            let shape = snapshot.map { "\($0.0):" + $0.1.map { "\($0.node_id)=\($0.state)" }.joined(separator: ",") }.joined(separator: ";")
            if shape != lastTable || Date().timeIntervalSince(lastPrinted) >= 5 {
                print(String(format: "--- member table at %.1fs ---", Date().timeIntervalSince(started)))
                print(table)
                lastTable = shape
                lastPrinted = Date()
                let svg = Self.topology(snapshot, names: names, idToName: idToName)
                try? svg.write(toFile: (root as NSString).appendingPathComponent("topology.svg"), atomically: true, encoding: .utf8)
            }
            if let duration, Date().timeIntervalSince(started) >= duration { loop.stop(); return }
            if processes.allSatisfy({ !$0.isRunning }) { print("all nodes exited"); loop.stop(); return }
            poll.schedule(at: loop.now + .seconds(1))
        }
        poll.fire = { tick() }
        poll.schedule(at: loop.now + .milliseconds(500))
        loop.run()

        print(stopRequested ? "stopping (signal)..." : "stopping...")
        stopAll()
        var failed = 0
        for (i, p) in processes.enumerated() {
            p.waitUntilExit()
            let clean = p.terminationReason == .exit && p.terminationStatus == 0
            if !clean { failed += 1 }
            print("node-\(i) exited \(clean ? "cleanly" : "with status \(p.terminationStatus)")")
        }
        poll.close()
        for s in signals { s.close() }
        loop.run()
        print("topology picture: \((root as NSString).appendingPathComponent("topology.svg"))")
        if failed > 0 { throw ExitCode(1) }
    }

    static func table(_ snapshot: [(String, [MemberReport])], names: [String: String], count: Int) -> String {
        var s = "NODE     ALIVE  SUSPECT  DEAD  MEAN RTT ms\n"
        for (name, members) in snapshot {
            let alive = members.filter { $0.state == "alive" }
            let rtts = alive.compactMap(\.rtt_ms)
            let mean = rtts.isEmpty ? "-" : String(format: "%.2f", rtts.reduce(0, +) / Double(rtts.count))
            s += name.padding(toLength: 9, withPad: " ", startingAt: 0)
                + "\(alive.count)/\(count - 1)".padding(toLength: 7, withPad: " ", startingAt: 0)
                + "\(members.filter { $0.state == "suspect" }.count)".padding(toLength: 9, withPad: " ", startingAt: 0)
                + "\(members.filter { $0.state == "dead" }.count)".padding(toLength: 6, withPad: " ", startingAt: 0)
                + mean + "\n"
        }
        return s
    }

    static func topology(_ snapshot: [(String, [MemberReport])], names: [String], idToName: [String: String]) -> String {
        var edges: [(Int, Int, String)] = []
        for (i, (_, members)) in snapshot.enumerated() {
            for m in members {
                if let n = idToName[m.node_id], let j = names.firstIndex(of: n), i < j { edges.append((i, j, m.state)) }
            }
        }
        return SVGPlot.topology(title: "iotaf local mesh: who sees whom", nodes: names, edges: edges)
    }
}
