import Foundation
import Testing

/// The built `iotaf` executable, next to the test bundle.
func iotafBinary() throws -> String {
    if let env = ProcessInfo.processInfo.environment["IOTAF_BIN"] { return env }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("iotaf").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let fallback = root.appendingPathComponent(".build/debug/iotaf").path
    guard FileManager.default.isExecutableFile(atPath: fallback) else {
        throw TestFailure("iotaf binary not found; run `swift build` first or set IOTAF_BIN")
    }
    return fallback
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@discardableResult
func runIotaf(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
    try runTool(try iotafBinary(), args)
}

/// Runs a program to its end and returns its exit status and what it printed.
@discardableResult
func runTool(_ tool: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A free UDP port on ::1 (bound, read, released).
func freeUDPPort() -> UInt16 {
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

@Suite(.serialized) struct ProcessTests {
    @Test func keygenWritesPrivateFileAndRefusesOverwrite() throws {
        let dir = NSTemporaryDirectory() + "iotaf-kg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try runIotaf(["keygen", "--out", dir + "/id.key", "--json"])
        #expect(r.status == 0)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: String]
        #expect(obj?["node_id"]?.count == 64)
        #expect(obj?["overlay_address"]?.hasPrefix("fd") == true)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/id.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let again = try runIotaf(["keygen", "--out", dir + "/id.key"])
        #expect(again.status != 0)
        #expect(again.err.contains("--force"))
        #expect(try runIotaf(["keygen", "--out", dir + "/id.key", "--force"]).status == 0)
    }

    @Test func nodeRefusesBrokenConfigWithTheKeyNamed() throws {
        let dir = NSTemporaryDirectory() + "iotaf-cfg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "[node]\nlisten = \"[::1]:1\"\ncolour = \"red\"\n".write(toFile: dir + "/c.toml", atomically: true, encoding: .utf8)
        let r = try runIotaf(["node", "run", "--config", dir + "/c.toml"])
        #expect(r.status != 0)
        #expect(r.err.contains("node.colour"))
        #expect(r.err.contains(":3"))
        let missingKey = try runIotaf(["node", "run", "--key", dir + "/none.key", "--data", dir])
        #expect(missingKey.status != 0)
        #expect(missingKey.err.contains("iotaf keygen --out"))
        let noNode = try runIotaf(["status", "--control", dir + "/nothing.sock"])
        #expect(noNode.status != 0)
        #expect(noNode.err.contains("cannot reach a node"))
    }

    /// Three real node processes on ::1 find each other, report it over their control sockets,
    /// and stop cleanly on SIGTERM.
    @Test func threeProcessesSeeEachOtherAliveAndStopCleanly() throws {
        let dir = "/tmp/iotaf-it-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ports = (0..<3).map { _ in freeUDPPort() }
        var procs: [Process] = []
        var ids: [String] = []
        defer { for p in procs where p.isRunning { p.terminate() } }
        for i in 0..<3 {
            let key = "\(dir)/n\(i).key"
            let kg = try runIotaf(["keygen", "--out", key, "--json"])
            let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
            ids.append(try #require(obj?["node_id"]))
            var args = ["node", "run", "--key", key, "--listen", "[::1]:\(ports[i])", "--control", "\(dir)/n\(i).sock",
                        "--data", "\(dir)/d\(i)", "--log-level", "warning"]
            if i > 0 { args += ["--peer", "[::1]:\(ports[0])"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            procs.append(p)
        }
        let deadline = Date().addingTimeInterval(30)
        var allAlive = false
        var last = ""
        while Date() < deadline && !allAlive {
            Thread.sleep(forTimeInterval: 0.3)
            allAlive = true
            for i in 0..<3 {
                guard let r = try? runIotaf(["members", "--control", "\(dir)/n\(i).sock", "--json"]), r.status == 0,
                      let arr = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]] else { allAlive = false; continue }
                last = r.out
                let alive = Set(arr.filter { $0["state"] as? String == "alive" }.compactMap { $0["node_id"] as? String })
                if alive != Set(ids.enumerated().filter { $0.offset != i }.map(\.element)) { allAlive = false }
                for m in arr { #expect(m["overlay_address"] != nil && m["address"] != nil && m.keys.contains("rtt_ms")) }
            }
        }
        #expect(allAlive, "last members answer: \(last)")

        let status = try runIotaf(["status", "--control", "\(dir)/n0.sock", "--json"])
        let s = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        #expect(s?["node_id"] as? String == ids[0])
        let counters = s?["counters"] as? [String: Int]
        #expect((counters?["datagrams_in"] ?? 0) > 0)
        #expect((counters?["bytes_out"] ?? 0) > 0)
        #expect((s?["drops"] as? [String: Int])?["truncated"] == 0)

        for p in procs { p.terminate() }
        for (i, p) in procs.enumerated() {
            p.waitUntilExit()
            #expect(p.terminationReason == .exit && p.terminationStatus == 0, "node \(i) exit")
        }
        for i in 0..<3 { #expect(!FileManager.default.fileExists(atPath: "\(dir)/n\(i).sock")) }
    }
}


@Suite(.serialized) struct PrivateMeshTests {
    /// Two nodes with the mesh's key meet; a third with another key is refused before any
    /// public-key work, and the refusal is counted where the operator looks (`iotaf status`).
    @Test func wrongNetworkKeyIsRefused() throws {
        let dir = "/tmp/iotaf-pm-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runIotaf(["network", "init", "--out", "\(dir)/mesh"]).status == 0)
        #expect(try runIotaf(["network", "init", "--out", "\(dir)/other"]).status == 0)
        let ports = (0..<3).map { _ in freeUDPPort() }
        var procs: [Process] = []
        defer { for p in procs where p.isRunning { p.terminate() } }
        for i in 0..<3 {
            #expect(try runIotaf(["keygen", "--out", "\(dir)/n\(i).key"]).status == 0)
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", "\(dir)/n\(i).sock",
                        "--data", "\(dir)/d\(i)", "--log-level", "warning",
                        "--network-key", i == 2 ? "\(dir)/other/network.key" : "\(dir)/mesh/network.key"]
            if i > 0 { args += ["--peer", "[::1]:\(ports[0])"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            procs.append(p)
        }
        func members(_ i: Int) -> [[String: Any]] {
            guard let r = try? runIotaf(["members", "--control", "\(dir)/n\(i).sock", "--json"]), r.status == 0 else { return [] }
            return (try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]]) ?? []
        }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !(members(0).contains { $0["state"] as? String == "alive" } && members(1).contains { $0["state"] as? String == "alive" }) {
            Thread.sleep(forTimeInterval: 0.3)
        }
        Thread.sleep(forTimeInterval: 2)
        #expect(members(0).count == 1, "node 0 knows only node 1")
        #expect(members(1).count == 1)
        #expect(members(2).isEmpty, "the stranger learns nobody")
        let status = try runIotaf(["status", "--control", "\(dir)/n0.sock", "--json"])
        let s = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        let drops = s?["session_drops"] as? [String: Int]
        #expect((drops?["bad_mac1"] ?? 0) > 0, "node 0 counted the stranger's handshakes: \(drops ?? [:])")
        for p in procs { p.terminate() }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
    }
}
