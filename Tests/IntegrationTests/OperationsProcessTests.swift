import Foundation
import Testing

/// What an operator relies on, on real node processes on ::1: Prometheus metrics over HTTP and
/// the control socket, JSON logs, and SIGHUP reloading the config (Docs/operations.md).
@Suite(.serialized) struct OperationsProcessTests {
    /// A free TCP port on ::1 (bound, read, released).
    static func freeTCPPort() -> UInt16 {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_addr = in6addr_loopback
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sa.sin6_port)
    }

    /// Sends `request` to [::1]:port over TCP and returns everything the server wrote until it closed.
    static func http(_ port: UInt16, _ request: String) -> String? {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_addr = in6addr_loopback
        sa.sin6_port = port.bigEndian
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        guard rc == 0 else { return nil }
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { return nil }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of one sample line (`name{labels} value`) in Prometheus text, if present.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    final class Nodes {
        let dir = "/tmp/iotaf-ops-\(UUID().uuidString.prefix(8))"
        var procs: [Process] = []
        var ids: [String] = []
        var ports: [UInt16] = []

        init() throws { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }

        func socket(_ i: Int) -> String { "\(dir)/n\(i).sock" }
        func log(_ i: Int) -> String { (try? String(contentsOfFile: "\(dir)/n\(i).log", encoding: .utf8)) ?? "" }

        /// Starts node i with `args` after the usual key, listen, control and data flags.
        @discardableResult
        func start(_ extra: [String], config: String? = nil) throws -> Int {
            let i = procs.count
            let key = "\(dir)/n\(i).key"
            let kg = try runIotaf(["keygen", "--out", key, "--json"])
            let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
            ids.append(obj?["node_id"] ?? "")
            let port = freeUDPPort()
            ports.append(port)
            var args = ["node", "run", "--key", key, "--control", socket(i), "--data", "\(dir)/d\(i)"]
            if let config { args += ["--config", config] } else { args += ["--listen", "[::1]:\(port)"] }
            args += extra
            _ = FileManager.default.createFile(atPath: "\(dir)/n\(i).log", contents: nil)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            p.standardError = FileHandle(forWritingAtPath: "\(dir)/n\(i).log")
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            procs.append(p)
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, p.isRunning, (try? runIotaf(["status", "--control", socket(i), "--json"]))?.status != 0 {
                Thread.sleep(forTimeInterval: 0.2)
            }
            return i
        }

        func stop() {
            for p in procs where p.isRunning { p.terminate(); p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// A scraper sees every status family with its type, and values that move as a second node
    /// joins: datagrams, alive members, probe round trips in the histogram; the same text comes
    /// from `iotaf metrics` over the control socket; bad requests get a 4xx and the node goes on.
    @Test func aScraperSeesTheMeshFormInTheMetrics() throws {
        let nodes = try Nodes()
        defer { nodes.stop() }
        let http = Self.freeTCPPort()
        try nodes.start(["--metrics-listen", "[::1]:\(http)", "--log-level", "warning"])
        guard let first = Self.http(http, "GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n") else {
            Issue.record("no answer on [::1]:\(http); log: \(nodes.log(0))")
            return
        }
        #expect(first.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(first.prefix(200))")
        #expect(first.contains("Content-Type: text/plain; version=0.0.4"))
        for family in ["# TYPE iotaf_node_datagrams_in_total counter", "# TYPE iotaf_members gauge", "# TYPE iotaf_gossip_active_view gauge",
                       "# TYPE iotaf_sessions_drops_total counter", "# TYPE iotaf_gossip_probe_rtt_seconds histogram",
                       "# TYPE iotaf_channel_delivery_seconds histogram", "# TYPE iotaf_uptime_seconds gauge"] {
            #expect(first.contains(family), "missing \(family)")
        }
        #expect(Self.sample(first, "iotaf_members{state=\"alive\"}") == 0)
        let before = Self.sample(first, "iotaf_node_datagrams_in_total") ?? -1

        try nodes.start(["--peer", "[::1]:\(nodes.ports[0])", "--log-level", "warning"])
        var last = ""
        let deadline = Date().addingTimeInterval(30)
        var formed = false
        while Date() < deadline && !formed {
            Thread.sleep(forTimeInterval: 0.5)
            last = Self.http(http, "GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n") ?? ""
            formed = Self.sample(last, "iotaf_members{state=\"alive\"}") == 1
                && (Self.sample(last, "iotaf_gossip_probe_rtt_seconds_count") ?? 0) > 0
        }
        #expect(formed, "alive members and probe round trips: \(last.split(separator: "\n").filter { $0.contains("members") || $0.contains("rtt_seconds_count") })")
        #expect((Self.sample(last, "iotaf_node_datagrams_in_total") ?? 0) > before)
        #expect((Self.sample(last, "iotaf_sessions_handshakes_completed_total") ?? 0) >= 1)
        #expect(last.contains("iotaf_sessions_drops_total{reason=\""), "drops carry their reason as a label")

        // The control socket answers the same families.
        let cli = try runIotaf(["metrics", "--control", nodes.socket(0)])
        #expect(cli.status == 0)
        #expect(cli.out.contains("# TYPE iotaf_gossip_probe_rtt_seconds histogram"))
        #expect(Self.sample(cli.out, "iotaf_members{state=\"alive\"}") == 1)

        // Anything but GET /metrics is refused with a reason, and the node goes on serving.
        #expect(Self.http(http, "GET /other HTTP/1.1\r\n\r\n")?.hasPrefix("HTTP/1.1 404") == true)
        #expect(Self.http(http, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")?.hasPrefix("HTTP/1.1 405") == true)
        #expect(Self.http(http, "garbage\r\n\r\n")?.hasPrefix("HTTP/1.1 400") == true)
        #expect(Self.http(http, "GET /metrics HTTP/1.1\r\n" + String(repeating: "X-Pad: 0123456789\r\n", count: 600))?.hasPrefix("HTTP/1.1 431") == true)
        #expect(Self.http(http, "HEAD /metrics HTTP/1.1\r\n\r\n").map { $0.hasPrefix("HTTP/1.1 200") && !$0.contains("# TYPE") } == true)
        #expect(Self.http(http, "GET /metrics HTTP/1.1\r\n\r\n")?.hasPrefix("HTTP/1.1 200") == true)
        #expect(nodes.procs[0].isRunning)
    }

    /// A port already taken is refused at start with the reason, not ignored.
    @Test func aTakenMetricsPortIsRefusedWithTheReason() throws {
        let nodes = try Nodes()
        defer { nodes.stop() }
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_addr = in6addr_loopback
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        listen(fd, 1)
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let taken = UInt16(bigEndian: sa.sin6_port)
        try nodes.start(["--metrics-listen", "[::1]:\(taken)"])
        nodes.procs[0].waitUntilExit()
        #expect(nodes.procs[0].terminationStatus == 1)
        #expect(nodes.log(0).contains("cannot serve metrics on [::1]:\(taken)"), "\(nodes.log(0))")
    }

    /// `--log-format json`: every line the node writes is one JSON object with time, level and
    /// message, and the structured fields of the line beside them.
    @Test func jsonLogsAreOneObjectALine() throws {
        let nodes = try Nodes()
        defer { nodes.stop() }
        try nodes.start(["--log-format", "json", "--log-level", "info"])
        nodes.procs[0].terminate()
        nodes.procs[0].waitUntilExit()
        let lines = nodes.log(0).split(separator: "\n")
        #expect(lines.count >= 2, "\(nodes.log(0))")
        var started: [String: Any]?
        for line in lines {
            let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(obj != nil, "not a JSON object: \(line)")
            #expect(obj?["time"] is String && obj?["level"] is String && obj?["message"] is String, "\(line)")
            if obj?["message"] as? String == "node started" { started = obj }
        }
        #expect(started?["node_id"] as? String == nodes.ids[0])
        #expect(started?["level"] as? String == "info")
        #expect(started?["label"] as? String == "iotaf.node")
        #expect((started?["time"] as? String)?.hasSuffix("Z") == true)
    }

    /// SIGHUP re-reads the config: the log level, attributes and a new peer take effect at once;
    /// a key that cannot change live (the listen address) is reported and kept; a config that no
    /// longer loads is refused with its reason while the node runs on.
    @Test func sighupReloadsTheLiveKeysAndReportsTheRest() throws {
        let nodes = try Nodes()
        defer { nodes.stop() }
        let other = try nodes.start(["--log-level", "warning"])
        let config = "\(nodes.dir)/reload.toml"
        let listen = "[::1]:\(freeUDPPort())"
        func write(level: String, role: String, peers: [String], listen: String) throws {
            try """
            [node]
            listen = "\(listen)"
            peers = [\(peers.map { "\"\($0)\"" }.joined(separator: ", "))]
            [log]
            level = "\(level)"
            [attributes]
            role = "\(role)"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try write(level: "warning", role: "before", peers: [], listen: listen)
        let i = try nodes.start([], config: config)
        #expect(nodes.procs[i].isRunning, "\(nodes.log(i))")

        try write(level: "info", role: "after", peers: ["[::1]:\(nodes.ports[other])"], listen: "[::1]:\(freeUDPPort())")
        kill(nodes.procs[i].processIdentifier, SIGHUP)
        var attrs = ""
        var sawOther = false
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !(attrs.contains("\"after\"") && sawOther) {
            Thread.sleep(forTimeInterval: 0.3)
            attrs = (try? runIotaf(["attributes", "--control", nodes.socket(i), "--json"]))?.out ?? ""
            let members = (try? runIotaf(["members", "--control", nodes.socket(i), "--json"]))?.out ?? ""
            sawOther = members.contains(nodes.ids[other])
        }
        #expect(attrs.contains("\"role\":\"after\""), "attributes after reload: \(attrs)")
        #expect(sawOther, "the peer added by the reload became a member")
        let log = nodes.log(i)
        #expect(log.contains("config reload: log.level = info"), "\(log)")
        #expect(log.contains("node.listen cannot change while the node runs; kept until a restart"), "\(log)")
        // The level took effect: info lines appear after the reload (none before, at warning).
        #expect(log.contains("member added"), "info lines after the reload: \(log)")

        try "[node]\nlisten = 12\n".write(toFile: config, atomically: true, encoding: .utf8)
        kill(nodes.procs[i].processIdentifier, SIGHUP)
        Thread.sleep(forTimeInterval: 1)
        #expect(nodes.log(i).contains("config reload refused, the running settings are kept"), "\(nodes.log(i))")
        #expect(nodes.procs[i].isRunning)
        #expect(try runIotaf(["attributes", "--control", nodes.socket(i), "--json"]).out.contains("\"after\""))
    }
}
