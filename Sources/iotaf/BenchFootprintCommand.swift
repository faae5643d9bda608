import ArgumentParser
import Foundation
import MeshCore
import Runtime

/// `iotaf bench footprint`: what one idle node costs a box, measured from outside through
/// /proc/PID as an operator would: resident memory, CPU over a window, bytes written to disk over
/// the window, and the stripped binary's size, beside the published figures of memberlist's agent
/// (Serf). The node sits in a formed mesh of real node processes on ::1.
struct BenchFootprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "footprint",
        abstract: "One idle node in a formed mesh of node processes on ::1: RSS, CPU %, disk writes, stripped binary size.")

    @Option(help: "Node processes in the mesh.")
    var nodes = 100
    @Option(help: "Seconds of idle measurement once the mesh has formed.")
    var seconds = 60.0
    @Option(help: "Give up waiting for the mesh to form after this many seconds (then measure anyway, and say so).")
    var formTimeout = 300.0
    @Option(help: "Working directory (default: a new one under /tmp, removed afterwards).")
    var dir: String?
    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (2...400).contains(nodes) else { throw ValidationError("--nodes must be 2...400") }
        guard seconds >= 5 else { throw ValidationError("--seconds must be at least 5") }
    }

    /// memberlist's agent, Serf: "It is extremely lightweight: it uses 5 to 10 MB of resident memory
    /// and primarily communicates using infrequent UDP messages" (serf.io/intro, hashicorp/serf
    /// website/source/intro/index.html.markdown). memberlist publishes no CPU, disk or size figure.
    static let serfResidentMiB = "5-10 (published, Serf agent)"

    struct Sample {
        var residentKiB: UInt64
        var cpuTicks: UInt64
        var writeBytes: UInt64?
        /// The process's own memory (heap, stacks, relocated data): RssAnon.
        var anonymousKiB: UInt64 = 0
        /// Pages of the binary and libraries mapped from the page cache (clean, shared,
        /// reclaimable): RssFile. The kernel maps them up to 64 KiB at a time around each fault.
        var fileKiB: UInt64 = 0
        /// Proportional set size: shared pages divided among the processes that map them.
        var proportionalKiB: UInt64?
        /// Page faults served from memory since the start (each may map several pages).
        var minorFaults: UInt64 = 0
    }

    /// The kB figure of `key:` in a /proc file's `key: value kB` lines.
    static func kilobytes(_ text: String, _ key: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }

    static func sample(_ pid: Int32) -> Sample? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        let rss = kilobytes(status, "VmRSS") ?? 0
        // Fields after the command name (which may hold spaces, so split after its closing paren).
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the paren.
        guard fields.count > 13, let u = UInt64(fields[11]), let s = UInt64(fields[12]) else { return nil }
        var written: UInt64?
        if let io = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) {
            for line in io.split(separator: "\n") where line.hasPrefix("write_bytes:") {
                written = UInt64(line.dropFirst("write_bytes:".count).trimmingCharacters(in: .whitespaces))
            }
        }
        let rollup = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)
        return Sample(residentKiB: rss, cpuTicks: u + s, writeBytes: written,
                      anonymousKiB: kilobytes(status, "RssAnon") ?? 0, fileKiB: kilobytes(status, "RssFile") ?? 0,
                      proportionalKiB: rollup.flatMap { kilobytes($0, "Pss") }, minorFaults: fields.count > 7 ? UInt64(fields[7]) ?? 0 : 0)
    }

    func run() throws {
        let root = dir ?? NSTemporaryDirectory() + "iotaf-footprint-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: root) } }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        func note(_ s: String) { if !json { print(s) } }

        var processes: [Process] = []
        var controls: [String] = []
        defer { for p in processes where p.isRunning { p.terminate() }; for p in processes { p.waitUntilExit() } }
        let seedPort = Self.freePort()
        note("bench footprint: starting \(nodes) node processes on ::1 (seed [::1]:\(seedPort)), working directory \(root)")
        for i in 0..<nodes {
            let nodeDir = (root as NSString).appendingPathComponent("node-\(i)")
            try FileManager.default.createDirectory(atPath: nodeDir, withIntermediateDirectories: true)
            let key = (nodeDir as NSString).appendingPathComponent("identity.key")
            try KeyFile.write(NodeIdentity.generate(), to: key, force: true)
            let control = (nodeDir as NSString).appendingPathComponent("control.sock")
            var args = ["node", "run", "--key", key, "--control", control, "--data", nodeDir, "--log-level", "warning"]
            // Every node joins through the first; the others listen on a port the kernel picks.
            args += i == 0 ? ["--listen", "[::1]:\(seedPort)"] : ["--listen", "[::1]:0", "--peer", "[::1]:\(seedPort)"]
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = args
            let log = (nodeDir as NSString).appendingPathComponent("node.log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            processes.append(p)
            controls.append(control)
            if i == 0 { Thread.sleep(forTimeInterval: 0.5) }
        }

        // The measured node: one in the middle, not the seed every join went through.
        let target = nodes / 2
        let started = Date()
        var formed = false
        var lastAlive = 0
        while Date().timeIntervalSince(started) < formTimeout {
            if let data = try? ControlClient.request(controls[target], ["command": "status"], timeoutSeconds: 2),
               let s = try? JSONDecoder().decode(StatusReport.self, from: data) {
                lastAlive = s.members["alive"] ?? 0
                if lastAlive == nodes - 1 { formed = true; break }
            }
            Thread.sleep(forTimeInterval: 1)
        }
        let formSeconds = Date().timeIntervalSince(started)
        note(formed ? String(format: "formed: node %d sees all %d others alive after %.0f s", target, nodes - 1, formSeconds)
                    : String(format: "NOT formed after %.0f s: node %d sees %d of %d alive; measuring anyway", formSeconds, target, lastAlive, nodes - 1))
        // Let the join's burst (anti-entropy, attribute fetches, the first peer-store write) pass.
        Thread.sleep(forTimeInterval: 10)

        let pid = processes[target].processIdentifier
        guard let before = Self.sample(pid) else { throw CLIError("cannot read /proc/\(pid): the node exited (see \(root)/node-\(target)/node.log)") }
        note(String(format: "measuring node %d (pid %d) idle for %.0f s...", target, pid, seconds))
        let t0 = Date()
        var peakKiB = before.residentKiB
        while Date().timeIntervalSince(t0) < seconds {
            Thread.sleep(forTimeInterval: min(5, max(0.1, seconds - Date().timeIntervalSince(t0))))
            if let s = Self.sample(pid) { peakKiB = max(peakKiB, s.residentKiB) }
        }
        let elapsed = Date().timeIntervalSince(t0)
        guard let after = Self.sample(pid) else { throw CLIError("node \(target) exited during the measurement") }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpuPercent = Double(after.cpuTicks - before.cpuTicks) / ticks / elapsed * 100
        let written = after.writeBytes.flatMap { a in before.writeBytes.map { a >= $0 ? a - $0 : 0 } }
        // Every node's resident memory, for the spread.
        let all = processes.compactMap { Self.sample($0.processIdentifier)?.residentKiB }.sorted()
        let median = all.isEmpty ? 0 : all[all.count / 2]
        let stripped = Self.strippedSize(exe, scratch: root)

        let mib = { (k: UInt64) in Double(k) / 1024 }
        if json {
            var o: [String: Any] = ["bench": "footprint", "nodes": nodes, "formed": formed, "form_seconds": (formSeconds * 10).rounded() / 10, "window_seconds": (elapsed * 10).rounded() / 10,
                                    "rss_mib": (mib(after.residentKiB) * 100).rounded() / 100, "rss_peak_mib": (mib(peakKiB) * 100).rounded() / 100,
                                    "rss_median_all_nodes_mib": (mib(median) * 100).rounded() / 100,
                                    "rss_anonymous_mib": (mib(after.anonymousKiB) * 100).rounded() / 100, "rss_file_mib": (mib(after.fileKiB) * 100).rounded() / 100,
                                    "minor_faults": Int(after.minorFaults),
                                    "cpu_percent_one_core": (cpuPercent * 1000).rounded() / 1000,
                                    "baseline_serf_rss_mib": "5-10", "baseline_source": "serf.io/intro (hashicorp/serf website/source/intro/index.html.markdown)"]
            if let w = written { o["write_bytes"] = Int(w) } else { o["write_bytes"] = NSNull() }
            if let p = after.proportionalKiB { o["pss_mib"] = (mib(p) * 100).rounded() / 100 } else { o["pss_mib"] = NSNull() }
            if let b = stripped { o["stripped_binary_bytes"] = Int(b) } else { o["stripped_binary_bytes"] = NSNull() }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            func row(_ a: String, _ b: String, _ c: String) {
                print(a.padding(toLength: 34, withPad: " ", startingAt: 0) + " " + b.padding(toLength: 18, withPad: " ", startingAt: 0) + " " + c)
            }
            row("figure", "iotaf", "memberlist (Serf agent), published")
            row("resident memory (MiB)", String(format: "%.1f (peak %.1f)", mib(after.residentKiB), mib(peakKiB)), "5-10")
            row("  median over all nodes (MiB)", String(format: "%.1f", mib(median)), "")
            row("  anonymous / file-backed (MiB)", String(format: "%.1f / %.1f", mib(after.anonymousKiB), mib(after.fileKiB)), "")
            row("  proportional (PSS, MiB)", after.proportionalKiB.map { String(format: "%.1f", mib($0)) } ?? "unreadable", "")
            row("  minor page faults", "\(after.minorFaults)", "")
            row("CPU, % of one core", String(format: "%.2f", cpuPercent), "not published")
            row("disk writes over the window (B)", written.map { "\($0)" } ?? "unreadable", "not published")
            row("stripped binary (bytes)", stripped.map { "\($0)" } ?? "strip missing", "not published")
        }
    }

    /// The size of this executable after `strip --strip-unneeded` (a copy; nil without strip).
    static func strippedSize(_ exe: String, scratch: String) -> UInt64? {
        let copy = (scratch as NSString).appendingPathComponent("iotaf.stripped")
        try? FileManager.default.removeItem(atPath: copy)
        guard (try? FileManager.default.copyItem(atPath: exe, toPath: copy)) != nil else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/strip")
        p.arguments = ["--strip-unneeded", copy]
        guard (try? p.run()) != nil else { return nil }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return ((try? FileManager.default.attributesOfItem(atPath: copy))?[.size] as? NSNumber)?.uint64Value
    }

    /// A free UDP port on ::1 (bound, read, released).
    static func freePort() -> UInt16 {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_addr = in6addr_loopback
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sa.sin6_port)
    }
}
