import Foundation
import Testing

/// `iotaf up` / `status` / `down` as a laptop user runs them, on real processes on ::1: the node
/// goes to the background in the user's directories (here a test HOME with XDG paths), the
/// control commands find it without flags, and a join that cannot work ends within 15 s with one
/// line saying why (Docs/operations.md, "Joining from a laptop").
@Suite(.serialized) struct LaptopUpProcessTests {
    final class Laptop {
        let dir = "/tmp/iotaf-up-\(UUID().uuidString.prefix(8))"
        var seed: Process?
        let seedPort = freeUDPPort()

        init() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            #expect(try runIotaf(["network", "init", "--out", "\(dir)/mesh"]).status == 0)
            #expect(try runIotaf(["network", "init", "--out", "\(dir)/other"]).status == 0)
        }

        var environment: [String: String] {
            var e = ProcessInfo.processInfo.environment
            e["HOME"] = dir
            e["XDG_DATA_HOME"] = "\(dir)/data"
            e["XDG_RUNTIME_DIR"] = "\(dir)/run"
            return e
        }

        /// Runs the CLI as the laptop user (its HOME and XDG directories), with the time it took.
        func iotaf(_ args: [String]) throws -> (status: Int32, out: String, err: String, seconds: Double) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            p.environment = environment
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            let started = Date()
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self), Date().timeIntervalSince(started))
        }

        /// A member of the mesh on [::1]:seedPort with the mesh's key; its node id.
        func startSeed() throws -> String {
            let kg = try runIotaf(["keygen", "--out", "\(dir)/seed.key", "--json"])
            let id = (try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String])?["node_id"] ?? ""
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = ["node", "run", "--key", "\(dir)/seed.key", "--listen", "[::1]:\(seedPort)", "--control", "\(dir)/seed.sock",
                           "--data", "\(dir)/seed", "--network-key", "\(dir)/mesh/network.key", "--log-level", "warning"]
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            seed = p
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, (try? runIotaf(["status", "--control", "\(dir)/seed.sock", "--json"]))?.status != 0 {
                Thread.sleep(forTimeInterval: 0.2)
            }
            return id
        }

        func seedMembers() -> [[String: Any]] {
            guard let r = try? runIotaf(["members", "--control", "\(dir)/seed.sock", "--json"]), r.status == 0 else { return [] }
            return (try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]]) ?? []
        }

        var laptopPID: Int32? {
            (try? String(contentsOfFile: "\(dir)/run/iotaf/node.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        func close() {
            _ = try? iotaf(["down", "--timeout", "3"])
            if let seed, seed.isRunning { seed.terminate(); seed.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Alive and not a zombie waiting for whoever adopted it to reap it.
    static func running(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// The last line of what a command printed on standard error (ArgumentParser's `Error: ...`).
    static func lastLine(_ text: String) -> String {
        text.split(separator: "\n").last.map(String.init) ?? ""
    }

    @Test func upJoinsInTheBackgroundStatusNeedsNoFlagsAndDownLeaves() throws {
        let laptop = try Laptop()
        defer { laptop.close() }
        let seedID = try laptop.startSeed()

        let up = try laptop.iotaf(["up", "--network-key", "\(laptop.dir)/mesh/network.key", "--peer", "[::1]:\(laptop.seedPort)", "--listen", "[::1]:0"])
        #expect(up.status == 0, "up failed: \(up.err)")
        #expect(up.seconds < 15)
        #expect(up.out.contains(String(seedID.prefix(16))), "up lists the members it sees: \(up.out)")
        #expect(up.err.contains("created identity"))
        #expect(FileManager.default.fileExists(atPath: "\(laptop.dir)/data/iotaf/identity.key"))
        let pid = try #require(laptop.laptopPID)
        #expect(Self.running(pid))

        // No flags: the control commands find the user's node.
        let status = try laptop.iotaf(["status", "--json"])
        #expect(status.status == 0, "status without flags: \(status.err)")
        let report = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        let laptopID = try #require(report?["node_id"] as? String)
        #expect(laptopID != seedID)
        // The seed sees the laptop alive.
        var seen = false
        let deadline = Date().addingTimeInterval(10)
        while !seen, Date() < deadline {
            seen = laptop.seedMembers().contains { $0["node_id"] as? String == laptopID && $0["state"] as? String == "alive" }
            if !seen { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(seen)

        // A second `up` finds the node already up and changes nothing.
        let again = try laptop.iotaf(["up", "--network-key", "\(laptop.dir)/mesh/network.key", "--peer", "[::1]:\(laptop.seedPort)"])
        #expect(again.status == 0)
        #expect(again.err.contains("already up"))
        #expect(laptop.laptopPID == pid)

        // `down`: the node leaves (the seed marks it left, not dead) and its process ends.
        let down = try laptop.iotaf(["down"])
        #expect(down.status == 0, "down: \(down.err)")
        #expect(!Self.running(pid), "the background node still runs after down")
        let left = laptop.seedMembers().first { $0["node_id"] as? String == laptopID }?["state"] as? String
        #expect(left == "left")
        let after = try laptop.iotaf(["status"])
        #expect(after.status != 0)
    }

    @Test func aJoinThatCannotWorkEndsWithOneLineWithin15Seconds() throws {
        let laptop = try Laptop()
        defer { laptop.close() }
        _ = try laptop.startSeed()
        func up(_ key: String, peer: String, listen: String = "[::1]:0") throws -> (status: Int32, line: String, seconds: Double) {
            let r = try laptop.iotaf(["up", "--network-key", "\(laptop.dir)/\(key)/network.key", "--peer", peer, "--listen", listen])
            return (r.status, Self.lastLine(r.err), r.seconds)
        }

        // Another network key: the seed's port is open but no handshake completes.
        let wrongKey = try up("other", peer: "[::1]:\(laptop.seedPort)")
        #expect(wrongKey.status != 0)
        #expect(wrongKey.seconds < 15)
        #expect(wrongKey.line.contains("network key"), "\(wrongKey.line)")
        #expect(!ControlClientProbe.listening("\(laptop.dir)/run/iotaf/control.sock"), "a failed up leaves no node behind")

        // Nothing listens on the peer's port.
        let closed = freeUDPPort()
        let unreachable = try up("mesh", peer: "[::1]:\(closed)")
        #expect(unreachable.status != 0)
        #expect(unreachable.seconds < 15)
        #expect(unreachable.line.contains("nothing listens on UDP port \(closed)"), "\(unreachable.line)")

        // The laptop's listen port is taken (by the seed).
        let busy = try up("mesh", peer: "[::1]:\(laptop.seedPort)", listen: "[::1]:\(laptop.seedPort)")
        #expect(busy.status != 0)
        #expect(busy.seconds < 15)
        #expect(busy.line.contains("port \(laptop.seedPort)"), "\(busy.line)")
        #expect(!ControlClientProbe.listening("\(laptop.dir)/run/iotaf/control.sock"))
    }
}

/// Whether something accepts connections on a Unix socket path.
enum ControlClientProbe {
    static func listening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.prefix(buf.count - 1).enumerated() { buf[i] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }
}
