import Foundation
import Glibc

/// The real-network test bed: hosts as network namespaces on one or more LANs, each with its own
/// IPv6 ULA address and a real `iotaf node run` process, and a nemesis that injects the faults the
/// simulator models (nftables loss, partitions, one-way loss, kill -9 and restart, SIGSTOP/SIGCONT).
///
/// Layout (Docs/testbed.md): one router namespace holds a bridge per LAN (multicast snooping off,
/// so the nearest-mode beacon floods like on a dumb switch) and forwards IPv6 between them; each
/// host namespace has `eth0` into its LAN's bridge, address `PREFIX:LAN::HOST+1/64` and a default
/// route via the router (`PREFIX:LAN::ff`). Everything is named under a unique per-run prefix and
/// removed by `teardown()`; a run that was interrupted leaves a marker file naming its pid, and the
/// next bed removes whatever a dead run left (`Testbed.removeStale()`).
final class Testbed {
    struct Host {
        let namespace: String
        let lan: Int
        /// The ULA address, without brackets.
        let address: String
        /// eth0's link-local address (what nearest-mode members show), without scope.
        var linkLocal: String = ""
    }

    static let ip = "/usr/sbin/ip"
    static let markerDir = "/run/iotaf-testbed"
    static let port = 7400

    let prefix: String
    let ula: String
    let dir: String
    var hosts: [Host] = []
    var namespaces: [String] = []
    var router: String { "\(prefix)r" }
    /// Node processes by host index (nil: not running).
    var procs: [Int: Process] = [:]
    var ids: [String] = []
    /// `node run` flags per host, kept for restarts.
    private var nodeArgs: [Int: [String]] = [:]
    /// Faults injected so far, in order, for failure messages and the soak summary.
    private(set) var history: [String] = []

    /// `lans[i]` hosts on LAN i. Throws (after removing what it made) when a step fails.
    init(lans: [Int]) throws {
        Self.removeStale()
        let tag = String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(10))
        prefix = "tb" + tag.prefix(4)
        ula = "fd\(tag.dropFirst(4).prefix(2)):\(tag.suffix(4))"
        dir = "/tmp/iotaf-tb-\(prefix)"
        try FileManager.default.createDirectory(atPath: Self.markerDir, withIntermediateDirectories: true)
        try "\(getpid())\n".write(toFile: "\(Self.markerDir)/\(prefix)", atomically: true, encoding: .utf8)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try make(lans: lans)
        } catch {
            teardown()
            throw error
        }
    }

    private func make(lans: [Int]) throws {
        try Self.run(Self.ip, ["netns", "add", router])
        namespaces.append(router)
        try inNS(router, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        try Self.run(Self.ip, ["-n", router, "link", "set", "lo", "up"])
        for (lan, _) in lans.enumerated() {
            try Self.run(Self.ip, ["-n", router, "link", "add", "br\(lan)", "type", "bridge", "mcast_snooping", "0"])
            try Self.run(Self.ip, ["-n", router, "addr", "add", "\(ula):\(lan)::ff/64", "dev", "br\(lan)", "nodad"])
            try Self.run(Self.ip, ["-n", router, "link", "set", "br\(lan)", "up"])
        }
        for (lan, count) in lans.enumerated() {
            for _ in 0..<count {
                let i = hosts.count
                let ns = "\(prefix)h\(i)"
                try Self.run(Self.ip, ["netns", "add", ns])
                namespaces.append(ns)
                hosts.append(Host(namespace: ns, lan: lan, address: "\(ula):\(lan)::\(String(i + 1, radix: 16))"))
                let outer = "\(prefix)v\(i)"
                try Self.run(Self.ip, ["-n", ns, "link", "set", "lo", "up"])
                try Self.run(Self.ip, ["link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns])
                try Self.run(Self.ip, ["link", "set", outer, "netns", router])
                try Self.run(Self.ip, ["-n", router, "link", "set", outer, "master", "br\(lan)", "up"])
                try inNS(ns, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
                try Self.run(Self.ip, ["-n", ns, "addr", "add", "\(hosts[i].address)/64", "dev", "eth0", "nodad"])
                try Self.run(Self.ip, ["-n", ns, "link", "set", "eth0", "up"])
                try Self.run(Self.ip, ["-n", ns, "-6", "route", "add", "default", "via", "\(ula):\(lan)::ff"])
                try nft(i, Self.nemesisTable)
                hosts[i].linkLocal = try linkLocal(ns)
            }
        }
    }

    /// The nemesis's table in every host: one base chain per fault kind and direction, so each
    /// fault is flushed without touching the others.
    static let nemesisTable = """
        table inet nemesis {
          chain loss_in { type filter hook input priority 0; }
          chain loss_out { type filter hook output priority 0; }
          chain part_in { type filter hook input priority 1; }
          chain part_out { type filter hook output priority 1; }
        }
        """

    private func linkLocal(_ ns: String) throws -> String {
        let r = try Self.command(Self.ip, ["-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])
        guard let word = r.out.split(separator: " ").first(where: { $0.hasPrefix("fe80::") }) else {
            throw TestFailure("no link-local address on eth0 in \(ns): \(r.out)")
        }
        return String(word.split(separator: "/")[0])
    }

    // MARK: nodes

    var count: Int { hosts.count }
    func socket(_ i: Int) -> String { "\(dir)/h\(i).sock" }
    func logPath(_ i: Int) -> String { "\(dir)/h\(i).log" }
    func endpoint(_ i: Int) -> String { "[\(hosts[i].address)]:\(Self.port)" }

    /// One identity per host (made once, before any start).
    func makeKeys() throws {
        for i in ids.count..<hosts.count {
            let kg = try runIotaf(["keygen", "--out", "\(dir)/h\(i).key", "--json"])
            guard let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String], let id = obj["node_id"] else {
                throw TestFailure("keygen for host \(i) failed: \(kg.err)")
            }
            ids.append(id)
        }
    }

    /// Starts host i's node on [::]:7400 in its namespace with `args` added (kept for restarts).
    func start(_ i: Int, _ args: [String]? = nil) throws {
        if ids.count < hosts.count { try makeKeys() }
        if let args { nodeArgs[i] = args }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.ip)
        p.arguments = ["netns", "exec", hosts[i].namespace, try iotafBinary(), "node", "run",
                       "--key", "\(dir)/h\(i).key", "--listen", "[::]:\(Self.port)", "--control", socket(i),
                       "--data", "\(dir)/d\(i)", "--log-level", "info"] + (nodeArgs[i] ?? [])
        if !FileManager.default.fileExists(atPath: logPath(i)) { _ = FileManager.default.createFile(atPath: logPath(i), contents: nil) }
        let log = FileHandle(forWritingAtPath: logPath(i))
        log?.seekToEndOfFile()
        p.standardError = log
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()  // `ip netns exec` execs the node: this pid is the node's
        procs[i] = p
    }

    /// Waits until host i's control socket answers (a started node is serving).
    @discardableResult
    func waitServing(_ i: Int, within seconds: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if ControlSocket.json(socket(i), "status", within: 2) != nil { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    // MARK: nemesis

    /// kill -9: no leave, no saved peers.
    func kill9(_ i: Int) {
        history.append("kill -9 host \(i)")
        guard let p = procs[i] else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        procs[i] = nil
    }

    /// A restart with the same key, data directory and flags.
    func restart(_ i: Int) throws {
        history.append("restart host \(i)")
        try start(i)
    }

    /// SIGSTOP: a starved box that answers nothing until `resume`.
    func pause(_ i: Int) {
        history.append("SIGSTOP host \(i)")
        if let p = procs[i] { kill(p.processIdentifier, SIGSTOP) }
    }

    func resume(_ i: Int) {
        history.append("SIGCONT host \(i)")
        if let p = procs[i] { kill(p.processIdentifier, SIGCONT) }
    }

    enum Direction { case inbound, outbound, both }

    /// Drops `percent` % of host i's UDP datagrams (`numgen random mod 100 < P drop`); 0 clears.
    /// Only UDP: neighbour discovery keeps working, as on a lossy radio whose link layer retries.
    /// `sparing` (an nft address or set, such as `{ fdxx:yyyy:1::/64, fe80::/10 }`) exempts inbound datagrams from those
    /// sources: a lossy LAN loses a datagram once, at its sender's egress, not again at the receiver.
    func setLoss(_ i: Int, percent: Int, _ direction: Direction = .both, sparing: String? = nil) throws {
        history.append("loss \(percent)% \(direction) on host \(i)")
        var script = "flush chain inet nemesis loss_in\nflush chain inet nemesis loss_out\n"
        if percent > 0 {
            let spare = sparing.map { "ip6 saddr != \($0) " } ?? ""
            if direction != .outbound { script += "add rule inet nemesis loss_in meta l4proto udp \(spare)numgen random mod 100 < \(percent) counter drop\n" }
            if direction != .inbound { script += "add rule inet nemesis loss_out meta l4proto udp numgen random mod 100 < \(percent) counter drop\n" }
        }
        try nft(i, script)
    }

    /// Splits the hosts into `sides`: nothing passes between hosts of different sides (by ULA and
    /// link-local address, so beacons and link-local sessions are cut too). Hosts in no side keep
    /// their links to everyone.
    func partition(_ sides: [[Int]]) throws {
        history.append("partition \(sides)")
        for (s, side) in sides.enumerated() {
            let others = sides.enumerated().filter { $0.offset != s }.flatMap(\.element)
            for h in side { try cut(h, from: others, .both) }
        }
    }

    /// One-way: host i hears nothing from `from`, while its own datagrams still reach them.
    func cutInbound(_ i: Int, from: [Int]) throws {
        history.append("one-way cut: host \(i) hears nothing from \(from)")
        try cut(i, from: from, .inbound)
    }

    private func cut(_ h: Int, from others: [Int], _ direction: Direction) throws {
        let set = others.flatMap { [hosts[$0].address, hosts[$0].linkLocal] }.joined(separator: ", ")
        var script = "flush chain inet nemesis part_in\nflush chain inet nemesis part_out\n"
        if !others.isEmpty {
            if direction != .outbound { script += "add rule inet nemesis part_in ip6 saddr { \(set) } counter drop\n" }
            if direction != .inbound { script += "add rule inet nemesis part_out ip6 daddr { \(set) } counter drop\n" }
        }
        try nft(h, script)
    }

    /// Makes LAN `lan` lossy: every UDP datagram a host on it sends, and every one it receives
    /// from beyond the LAN, is dropped with probability `percent` %, so each datagram crossing
    /// the LAN is lost once with that probability.
    func setLANLoss(_ lan: Int, percent: Int) throws {
        for i in hosts.indices where hosts[i].lan == lan {
            try setLoss(i, percent: percent, .both, sparing: "{ \(ula):\(lan)::/64, fe80::/10 }")
        }
    }

    /// Heals every partition and one-way cut.
    func heal() throws {
        history.append("heal")
        for i in hosts.indices { try nft(i, "flush chain inet nemesis part_in\nflush chain inet nemesis part_out\n") }
    }

    /// Counters of host i's nemesis rules (packets dropped), for reports.
    func nemesisRules(_ i: Int) -> String {
        (try? Self.command(Self.ip, ["netns", "exec", hosts[i].namespace, "nft", "list", "table", "inet", "nemesis"]).out) ?? ""
    }

    private func nft(_ i: Int, _ script: String) throws {
        let file = "\(dir)/nft-\(i).txt"
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        try inNS(hosts[i].namespace, ["nft", "-f", file])
    }

    // MARK: checkers

    /// node id → member row, as host i's `members --json` says (empty when it does not answer).
    func members(_ i: Int) -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for m in ControlSocket.json(socket(i), "members") as? [[String: Any]] ?? [] {
            if let id = m["node_id"] as? String { out[id] = m }
        }
        return out
    }

    func status(_ i: Int) -> [String: Any] { ControlSocket.json(socket(i), "status") as? [String: Any] ?? [:] }

    /// How host o sees host s: "alive", "suspect", "dead", ... or "unknown".
    func state(_ o: Int, _ s: Int, in m: [String: [String: Any]]) -> String { m[ids[s]]?["state"] as? String ?? "unknown" }

    /// Polls (every 250 ms) until every observer sees every subject (but itself) in `state`
    /// (several states may be named as "dead|suspect"); returns whether it held, after how many
    /// seconds, and the last views for the message.
    func waitUntil(_ observers: [Int], see subjects: [Int], _ state: String, within seconds: Double) -> (ok: Bool, after: Double, views: String) {
        let wanted = Set(state.split(separator: "|").map(String.init))
        let start = Date()
        var views = ""
        while true {
            var ok = true
            views = ""
            for o in observers {
                let m = members(o)
                let seen = subjects.filter { $0 != o }.map { "\($0):\(self.state(o, $0, in: m))" }
                views += "host \(o) sees \(seen.joined(separator: " "))\n"
                if subjects.contains(where: { $0 != o && !wanted.contains(self.state(o, $0, in: m)) }) { ok = false }
            }
            let after = Date().timeIntervalSince(start)
            if ok { return (true, after, views) }
            if after > seconds { return (false, after, views) }
            Thread.sleep(forTimeInterval: 0.25)
        }
    }

    /// The tail of host i's log, for failure messages.
    func log(_ i: Int, lines: Int = 10) -> String {
        let text = (try? String(contentsOfFile: logPath(i), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    // MARK: teardown

    /// Kills every node (SIGCONT first: a stopped process still dies of SIGKILL, but say so
    /// plainly), deletes every namespace (its links go with it) and the run's files.
    func teardown() {
        for (_, p) in procs { kill(p.processIdentifier, SIGCONT); kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        procs = [:]
        Self.removeNamespaces(namespaces)
        namespaces = []
        try? FileManager.default.removeItem(atPath: dir)
        unlink("\(Self.markerDir)/\(prefix)")
    }

    /// Kills whatever still runs in the namespaces, then deletes them.
    static func removeNamespaces(_ names: [String]) {
        for ns in names {
            if let r = try? command(ip, ["netns", "pids", ns]) {
                for pid in r.out.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? command(ip, ["netns", "del", ns])
        }
    }

    /// Removes the namespaces and files of beds whose test process is gone (killed, interrupted).
    static func removeStale() {
        guard let markers = try? FileManager.default.contentsOfDirectory(atPath: markerDir) else { return }
        let all = (try? command(ip, ["netns", "list"]).out) ?? ""
        for prefix in markers {
            let text = (try? String(contentsOfFile: "\(markerDir)/\(prefix)", encoding: .utf8)) ?? ""
            if let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 || errno == EPERM { continue }
            let stale = all.split(separator: "\n").map { String($0.split(separator: " ")[0]) }.filter { $0.hasPrefix(prefix) }
            removeNamespaces(stale)
            try? FileManager.default.removeItem(atPath: "/tmp/iotaf-tb-\(prefix)")
            unlink("\(markerDir)/\(prefix)")
        }
    }

    /// Starts `tool args` inside host i's namespace without waiting (the attacker's floods,
    /// captures); stdout goes to `out` when given.
    func spawn(in i: Int, _ args: [String], out: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.ip)
        p.arguments = ["netns", "exec", hosts[i].namespace] + args
        if let out { _ = FileManager.default.createFile(atPath: out, contents: nil) }
        p.standardOutput = out.flatMap { FileHandle(forWritingAtPath: $0) } ?? FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        return p
    }

    /// The repository's root (for scripts/testbed-flood.py).
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// Resident memory of host i's node in KiB (/proc/PID/status VmRSS), 0 when unknown.
    func rssKiB(_ i: Int) -> Int {
        guard let p = procs[i], let text = try? String(contentsOfFile: "/proc/\(p.processIdentifier)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    // MARK: availability and commands

    /// Whether this machine lets us build a bed: root, iproute2, nftables and namespace support.
    static let unavailableReason: String? = {
        guard getuid() == 0 else { return "skipped: the test bed needs root (network namespaces and nftables)" }
        guard FileManager.default.isExecutableFile(atPath: ip) else { return "skipped: /usr/sbin/ip (iproute2) is missing" }
        guard (try? command("/usr/bin/env", ["nft", "--version"]).status) == 0 else {
            return "skipped: nft (nftables) is missing; scripts/install-deps.sh installs it"
        }
        let probe = "tbprobe\(UUID().uuidString.prefix(5).lowercased())"
        guard let r = try? command(ip, ["netns", "add", probe]), r.status == 0 else {
            return "skipped: `ip netns add` is refused here (needs network namespace support)"
        }
        defer { _ = try? command(ip, ["netns", "del", probe]) }
        guard let t = try? command(ip, ["netns", "exec", probe, "nft", "add", "table", "inet", "probe"]), t.status == 0 else {
            return "skipped: nftables does not work in a namespace here"
        }
        return nil
    }()
    static var available: Bool { unavailableReason == nil }

    private func inNS(_ ns: String, _ args: [String]) throws { try Self.run(Self.ip, ["netns", "exec", ns] + args) }

    static func run(_ tool: String, _ args: [String]) throws {
        let r = try command(tool, args)
        guard r.status == 0 else { throw TestFailure("\(tool) \(args.joined(separator: " ")) failed: \(r.err)") }
    }

    @discardableResult
    static func command(_ tool: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
        try runTool(tool, args)
    }
}
