import ArgumentParser
import Foundation
import MeshCore
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `iotaf up`: joins a private mesh from a laptop with one command, as `tailscale up` does. The
/// node runs in the background under the user's directories (UserDirectories); `up` waits until
/// it is a member, or stops it again and says in one line why it could not join.
struct UpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up", abstract: "Start a node in the background in the user's directories, join the mesh and list its members.",
        discussion: """
            Makes an identity on first use (~/.local/share/iotaf/identity.key, or under $XDG_DATA_HOME), starts \
            `iotaf node run` in the background with its control socket in $XDG_RUNTIME_DIR/iotaf (else beside the \
            identity) and its log in node.log beside the identity, and waits until a session with the peer formed. \
            Exits 1 with a one-line reason when it cannot join within --timeout (another network key, an unreachable \
            peer, a port in use, a culled identity), and stops the node it started. `iotaf status`, `members` and \
            `down` then need no flags.
            """)

    @Option(name: .customLong("network-key"), help: "The mesh's network.key (from `iotaf network init`).")
    var networkKey: String
    @Option(name: .customLong("peer"), help: "A member or master to join through, [ADDR]:PORT (repeatable).")
    var peers: [String] = []
    @Option(help: "UDP address to listen on. Default: [::]:0 (a port the kernel picks).")
    var listen = "[::]:0"
    @Option(help: "Seconds to wait for membership before giving up.")
    var timeout: Double = 10
    @Flag(help: "Print the members as JSON.")
    var json = false

    func run() throws {
        let dirs = UserDirectories()
        if ControlClient.isListening(dirs.control) {
            let members = try? JSONDecoder().decode([MemberReport].self, from: ControlClient.request(dirs.control, ["command": "members"]))
            FileHandle.standardError.write(Data("a node is already up (control socket \(dirs.control)); `iotaf down` stops it\n".utf8))
            print(json ? String(decoding: ControlJSON.encode(members ?? []), as: UTF8.self) : MemberTable.render(members ?? []))
            return
        }
        // Read here so that a bad key file is reported before anything starts.
        do { _ = try NetworkKey.read(networkKey) } catch { throw CLIError("\(error)") }
        let seeds = try peers.map { p in
            guard let a = UnderlayAddress(parsing: p) else { throw CLIError("--peer: bad address \"\(p)\"; use [IPv6]:port or IPv4:port") }
            return a
        }
        guard UnderlayAddress(parsing: listen) != nil else { throw CLIError("--listen: bad address \"\(listen)\"; use [IPv6]:port or IPv4:port") }
        // Checked before anything starts: "nothing listens there" and "no route" are certain here,
        // while the node could only say that its peer is silent.
        for (text, seed) in zip(peers, seeds) {
            switch PeerProbe.probe(seed) {
            case .refused: throw CLIError("cannot join through \(text): nothing listens on UDP port \(seed.port) there (the kernel refused); check the peer's address and port")
            case let .unreachable(why): throw CLIError("cannot join through \(text): it is unreachable from here (\(why)); check the address and the route")
            case .silent: break
            }
        }
        do {
            try DataDirectory.create(dirs.data)
            try DataDirectory.create(dirs.runtime)
        } catch { throw CLIError("\(error)") }
        if !FileManager.default.fileExists(atPath: dirs.identity) {
            let identity = NodeIdentity.generate()
            do { try KeyFile.write(identity, to: dirs.identity, force: false) } catch { throw CLIError("\(error)") }
            FileHandle.standardError.write(Data("created identity \(dirs.identity): node \(identity.nodeID.hex)\n".utf8))
        }
        let keyPath = URL(fileURLWithPath: networkKey).standardizedFileURL.path
        var args = ["node", "run", "--key", dirs.identity, "--data", dirs.data, "--control", dirs.control,
                    "--network-key", keyPath, "--listen", listen, "--log-level", "notice"]
        for p in peers { args += ["--peer", p] }
        let pid = try Background.spawn(arguments: args, log: dirs.log)
        try? "\(pid)\n".write(toFile: dirs.pidFile, atomically: true, encoding: .utf8)

        let deadline = Date().addingTimeInterval(timeout)
        var lastSeeds: [SeedReport] = []
        while true {
            if let code = Background.exitStatus(pid) {
                try? FileManager.default.removeItem(atPath: dirs.pidFile)
                throw CLIError("the node stopped (exit status \(code)): \(Background.lastError(inLog: dirs.log) ?? "see \(dirs.log)")")
            }
            if let data = try? ControlClient.request(dirs.control, ["command": "status"], timeoutSeconds: 2),
               let status = try? JSONDecoder().decode(StatusReport.self, from: data) {
                lastSeeds = status.seeds
                if status.members["alive", default: 0] > 0 {
                    let members = (try? JSONDecoder().decode([MemberReport].self, from: ControlClient.request(dirs.control, ["command": "members"]))) ?? []
                    if json {
                        print(String(decoding: ControlJSON.encode(members), as: UTF8.self))
                    } else {
                        print("up: node \(status.node_id.prefix(16)) (\(status.overlay_address)) is a member of network \(status.network_id), listening on \(status.listen)")
                        print(MemberTable.render(members))
                        print("control socket \(dirs.control), log \(dirs.log); `iotaf status`, `iotaf members`, `iotaf down`")
                    }
                    return
                }
            }
            if Date() >= deadline { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        Background.stop(pid: pid, control: dirs.control)
        try? FileManager.default.removeItem(atPath: dirs.pidFile)
        throw CLIError(Self.reason(peers: peers, seeds: lastSeeds, keyFile: networkKey, waited: timeout))
    }

    /// Why no member answered, in one line: the peers answered the probe (something listens), so
    /// a handshake that never completed means another network key, or a peer that is no node.
    static func reason(peers: [String], seeds: [SeedReport], keyFile: String, waited: Double) -> String {
        if peers.isEmpty {
            return "no member found within \(waited) s: give --peer ADDR of a member (no peer was given, and no node near by answered)"
        }
        let heard = seeds.contains { $0.datagrams_heard > 0 }
        return "no handshake with \(peers.joined(separator: ", ")) completed within \(waited) s though the port is open: "
            + (heard ? "it answers under another network key" : "it is most likely in another mesh (a different network key than \(keyFile)) or is not an iotaf node")
            + "; the node was stopped"
    }
}

/// `iotaf down`: the node `up` started leaves the mesh gracefully and stops.
struct DownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down", abstract: "Make the node `iotaf up` started leave the mesh and stop.")

    @Option(help: "Seconds to wait for the node to stop after leaving (then it is terminated).")
    var timeout: Double = 10

    func run() throws {
        let dirs = UserDirectories()
        let pid = (try? String(contentsOfFile: dirs.pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard ControlClient.isListening(dirs.control) else {
            try? FileManager.default.removeItem(atPath: dirs.pidFile)
            print("no node is up (nothing answers on \(dirs.control))")
            return
        }
        _ = try? ControlClient.request(dirs.control, ["command": "leave"])
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, ControlClient.isListening(dirs.control) || pid.map(Background.isRunning) == true {
            Thread.sleep(forTimeInterval: 0.1)
        }
        if let pid, Background.isRunning(pid) {
            kill(pid, SIGTERM)
            FileHandle.standardError.write(Data("the node (pid \(pid)) did not stop within \(timeout) s of leaving; sent it SIGTERM\n".utf8))
        }
        try? FileManager.default.removeItem(atPath: dirs.pidFile)
        print("down: left the mesh and stopped")
    }
}

/// A detached child process for `up`: its own session (the terminal's hangup and Ctrl-C do not
/// reach it), standard input from /dev/null, output appended to a log file, no other descriptor.
enum Background {
    /// POSIX_SPAWN_SETSID, a GNU extension of spawn.h (glibc 2.26 and later) that Swift's Glibc module may not export.
    static let newSession: Int16 = 0x80

    static func spawn(arguments: [String], log: String) throws -> pid_t {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let logFD = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw CLIError("cannot write the node's log \(log): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        // Descriptors this process inherited without close-on-exec stay out of the node
        // (posix_spawn_file_actions_addclosefrom_np is a GNU extension Swift does not see).
        for fd in Int32(3)..<256 where fd != logFD {
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0, flags & FD_CLOEXEC == 0 { posix_spawn_file_actions_addclose(&actions, fd) }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Self.newSession)
        let argv: [UnsafeMutablePointer<CChar>?] = ([exe] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw CLIError("cannot start the node (\(exe)): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The exit status once the child has ended (reaped), nil while it runs.
    static func exitStatus(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Alive and not a zombie (a node `up` started is reaped by init, or whoever adopted it, not by `down`).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// Stops a node `up` started and gave up on: `stop` over the control socket, then SIGTERM.
    static func stop(pid: pid_t, control: String) {
        _ = try? ControlClient.request(control, ["command": "stop"], timeoutSeconds: 2)
        let deadline = Date().addingTimeInterval(3)
        var ended = false
        while !ended, Date() < deadline {
            ended = exitStatus(pid) != nil
            if !ended { Thread.sleep(forTimeInterval: 0.05) }
        }
        if !ended { kill(pid, SIGTERM); _ = waitpid(pid, nil, 0) }
    }

    /// The node's last `Error:` line (what `node run` prints before it exits non-zero), or its last line.
    static func lastError(inLog path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let e = lines.last(where: { $0.hasPrefix("Error: ") }) { return String(e.dropFirst("Error: ".count)) }
        return lines.last
    }
}
