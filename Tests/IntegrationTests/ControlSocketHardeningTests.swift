import Foundation
import Testing

/// The control socket of a real node process (on ::1, no namespace needed): created 0600 and
/// owned by the node's user, closed to other users, and every bad client (malformed JSON, an
/// unknown command, a huge request, one that connects and never sends) is answered with an error
/// or closed within a bound while the node goes on serving others.
@Suite(.serialized) struct ControlSocketHardeningTests {
    final class Node {
        let dir = "/tmp/iotaf-cs-\(UUID().uuidString.prefix(8))"
        var proc: Process?
        var socket: String { "\(dir)/n.sock" }

        init() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = ["node", "run", "--key", "\(dir)/n.key", "--listen", "[::1]:\(freeUDPPort())", "--control", socket,
                           "--data", "\(dir)/d", "--log-level", "warning"]
            _ = try runIotaf(["keygen", "--out", "\(dir)/n.key"])
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            proc = p
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, ControlSocket.json(socket, "status", within: 2) == nil { Thread.sleep(forTimeInterval: 0.1) }
        }

        func stop() {
            if let p = proc, p.isRunning { p.terminate(); p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }

        /// The node still answers `status` promptly.
        var serving: Bool { (ControlSocket.json(socket, "status", within: 2) as? [String: Any])?["node_id"] != nil }
    }

    /// The error a bad request got, or what happened instead.
    static func error(_ outcome: ControlSocket.Outcome) -> String? {
        guard case .answered(let line) = outcome,
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        return obj["error"] as? String
    }

    @Test func theSocketIsPrivateToTheNodesUser() throws {
        let node = try Node()
        defer { node.stop() }
        #expect(node.serving)
        var st = stat()
        #expect(lstat(node.socket, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600, "mode \(String(st.st_mode & 0o777, radix: 8))")
        #expect(st.st_uid == getuid(), "owned by the node's user")
        // Another user (nobody) cannot even connect. Only root can switch users to try.
        if getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            let r = try Testbed.command("/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups",
                                                              try iotafBinary(), "status", "--control", node.socket, "--json"])
            #expect(r.status != 0 && r.out.isEmpty, "another user is refused: \(r.status) \(r.out) \(r.err)")
            #expect(r.err.lowercased().contains("permission"), "and told why: \(r.err)")
        }
    }

    @Test func badRequestsGetAnErrorAndTheNodeKeepsServing() throws {
        let node = try Node()
        defer { node.stop() }
        let malformed = Self.error(ControlSocket.exchange(node.socket, Array("{\"command\": \"status\"\n".utf8)))
        #expect(malformed != nil, "malformed JSON is answered with an error")
        let notObject = Self.error(ControlSocket.exchange(node.socket, Array("[1,2,3]\n".utf8)))
        #expect(notObject != nil, "a JSON array is answered with an error")
        let binary = Self.error(ControlSocket.exchange(node.socket, [0xff, 0xfe, 0x00, 0x80, 0x0a]))
        #expect(binary != nil, "binary garbage is answered with an error")
        let unknown = Self.error(ControlSocket.exchange(node.socket, Array("{\"command\":\"format-disk\"}\n".utf8)))
        #expect(unknown?.contains("format-disk") == true && unknown?.contains("unknown") == true, "an unknown command is named: \(unknown ?? "nil")")

        // 1 MiB with no newline: refused once it passes the 64 KiB limit, not buffered for ever.
        let start = Date()
        let huge = ControlSocket.exchange(node.socket, [UInt8](repeating: 0x41, count: 1 << 20), within: 5)
        #expect(Self.error(huge)?.contains("too long") == true || huge == .closed, "a huge request is refused: \(huge)")
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(node.serving, "the node keeps serving after bad requests")
    }

    /// A client that connects and never sends is answered with an error (and closed) after the
    /// server's 5 s request timeout, not held for ever; 50 of them at once do not stop the node
    /// answering others meanwhile.
    @Test func silentClientsAreClosedAndDoNotBlockOthers() throws {
        let node = try Node()
        defer { node.stop() }
        let silent = (0..<50).map { _ in ControlSocket.connect(node.socket) }
        defer { for fd in silent where fd >= 0 { close(fd) } }
        #expect(silent.allSatisfy { $0 >= 0 }, "50 clients connect")
        let opened = Date()
        #expect(node.serving, "the node answers others while 50 clients sit silent")
        // 5 s is the server's bound; 2 s more for a loaded machine to run the timer.
        let outcome = ControlSocket.read(silent[0], within: 7 - Date().timeIntervalSince(opened))
        let waited = Date().timeIntervalSince(opened)
        #expect(Self.error(outcome)?.contains("no request") == true, "the silent client is told why: \(outcome)")
        #expect(waited >= 4.5 && waited < 7, "after the 5 s request timeout (waited \(waited) s)")
        for fd in silent.dropFirst() {
            if case .timedOut = ControlSocket.read(fd, within: 1) { Issue.record("a silent client was not closed") ; break }
        }
        #expect(node.serving, "and the node still serves")
    }
}
