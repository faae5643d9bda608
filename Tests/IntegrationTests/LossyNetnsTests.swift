import Foundation
import Sodium
import Testing

/// Channels on a lossy link, on real kernel networking: two (or three) `iotaf node run` processes,
/// each in a network namespace of its own, joined by veths to a bridge in a hub namespace (ULA
/// addresses), and nftables in each node's namespace
/// dropping 10 % of the UDP it receives (`numgen random mod 100 < 10 drop` in the input hook), so
/// 10 % is lost each way. A 64 MiB file must arrive intact; the test bounds the time only against a
/// stall (180 s) and prints it: speed is a benchmark's to judge, not a test's (the machine may be
/// loaded). Membership during the transfer is counted: no node may raise a suspicion of another
/// (every node is alive all along; probes are not queued behind frames, see UDPSocket's lanes).
/// The drop is on
/// input, not output: a datagram dropped in the sender's own output hook fails `sendmsg` with
/// EPERM, and the runtime resends a refused GSO train one datagram at a time, so an output rule
/// lost only about 1 % of the trains' datagrams. On input a train (up to 64 datagrams, one
/// buffer through the veth) is dropped whole: the loss comes in bursts, 10 % of datagrams overall. The test makes the namespaces
/// under a unique prefix and deletes them even when it fails; it is skipped, saying why, where
/// namespaces or nftables are unavailable.
@Suite(.serialized) struct LossyNetnsTests {
    final class Bed {
        let prefix = "iol\(UUID().uuidString.prefix(5).lowercased())"
        var namespaces: [String] = []
        func ns(_ i: Int) -> String { "\(prefix)n\(i)" }
        static func address(_ i: Int) -> String { "fd7a:27::\(i + 1)" }

        var hub: String { "\(prefix)h" }

        /// `nodes` namespaces, each with a veth to a bridge in the hub namespace, `lossPercent` of
        /// incoming UDP dropped in each node's namespace.
        init(nodes: Int, lossPercent: Int) throws {
            do {
                try run(Self.ip, ["netns", "add", hub])
                namespaces.append(hub)
                try run(Self.ip, ["-n", hub, "link", "add", "br0", "type", "bridge", "forward_delay", "0"])
                try run(Self.ip, ["-n", hub, "link", "set", "br0", "up"])
                for i in 0..<nodes {
                    try run(Self.ip, ["netns", "add", ns(i)])
                    namespaces.append(ns(i))
                    try run(Self.ip, ["-n", ns(i), "link", "set", "lo", "up"])
                    let dev = "\(prefix)a\(i)"
                    try run(Self.ip, ["link", "add", dev, "netns", ns(i), "type", "veth", "peer", "name", "\(prefix)b\(i)", "netns", hub])
                    try run(Self.ip, ["-n", hub, "link", "set", "\(prefix)b\(i)", "master", "br0", "up"])
                    try run(Self.ip, ["-n", ns(i), "addr", "add", "\(Self.address(i))/64", "dev", dev, "nodad"])
                    try run(Self.ip, ["-n", ns(i), "link", "set", dev, "up"])
                    try nft(i, ["add", "table", "inet", "lossy"])
                    try nft(i, ["add", "chain", "inet", "lossy", "in", "{ type filter hook input priority 0 ; }"])
                    try nft(i, ["add", "rule", "inet", "lossy", "in", "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", "\(lossPercent)", "counter", "drop"])
                }
            } catch {
                remove()
                throw error
            }
        }

        func nft(_ i: Int, _ args: [String]) throws { try run(Self.ip, ["netns", "exec", ns(i), Self.nftPath] + args) }

        /// The loss rule of namespace i with its counter (packets dropped), or nil.
        func dropped(_ i: Int) -> String? {
            guard let r = try? Self.command(Self.ip, ["netns", "exec", ns(i), Self.nftPath, "list", "ruleset"]), r.status == 0 else { return nil }
            return r.out.split(separator: "\n").first { $0.contains("numgen") }.map { $0.trimmingCharacters(in: .whitespaces) }
        }

        func remove() {
            for n in namespaces.reversed() { _ = try? Self.command(Self.ip, ["netns", "del", n]) }
            namespaces = []
        }

        private func run(_ tool: String, _ args: [String]) throws {
            let r = try Self.command(tool, args)
            guard r.status == 0 else { throw TestFailure("\(tool) \(args.joined(separator: " ")) failed: \(r.err)") }
        }

        static let ip = "/usr/sbin/ip"
        static let nftPath = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/nft"

        @discardableResult
        static func command(_ tool: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
            try runTool(tool, args)
        }

        /// Namespaces can be made here (root, iproute2, kernel support) and nftables works inside one.
        static let available: Bool = {
            guard FileManager.default.isExecutableFile(atPath: ip), FileManager.default.isExecutableFile(atPath: nftPath) else { return false }
            let probe = "iolprobe\(UUID().uuidString.prefix(5).lowercased())"
            guard let r = try? command(ip, ["netns", "add", probe]), r.status == 0 else { return false }
            defer { _ = try? command(ip, ["netns", "del", probe]) }
            guard let t = try? command(ip, ["netns", "exec", probe, nftPath, "add", "table", "inet", "probe"]) else { return false }
            return t.status == 0
        }()
    }

    static let skipReason: Comment = "skipped: needs root, `ip netns` and nftables (`nft`, installed by scripts/install-deps.sh) with namespace support"

    @Test(.enabled(if: Bed.available, skipReason), .timeLimit(.minutes(5)))
    func sixtyFourMiBCrossesTenPercentLossEachWay() throws {
        try transfer(nodes: 2)
    }

    /// The same with a third node in the mesh (it can probe indirectly for the other two), which
    /// watches the transfer from outside.
    @Test(.enabled(if: Bed.available, skipReason), .timeLimit(.minutes(5)))
    func sixtyFourMiBCrossesTenPercentLossWithAThirdNode() throws {
        try transfer(nodes: 3)
    }

    /// Node 1 sends 64 MiB to node 0 across the lossy bed of `nodes` nodes.
    func transfer(nodes: Int) throws {
        let bed = try Bed(nodes: nodes, lossPercent: 10)
        defer { bed.remove() }
        let dir = "/tmp/iotaf-lossy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        var ids: [String] = []
        var procs: [Process] = []
        defer { for p in procs where p.isRunning { p.terminate() } }
        for i in 0..<nodes {
            let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
            let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
            ids.append(try #require(obj?["node_id"]))
            var args = ["netns", "exec", bed.ns(i), try iotafBinary(), "node", "run", "--key", "\(dir)/n\(i).key",
                        "--listen", "[\(Bed.address(i))]:7400", "--control", "\(dir)/n\(i).sock", "--data", "\(dir)/d\(i)",
                        "--log-level", "warning"]
            if i >= 1 { args += ["--peer", "[\(Bed.address(0))]:7400"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Bed.ip)
            p.arguments = args
            _ = FileManager.default.createFile(atPath: "\(dir)/n\(i).log", contents: nil)
            p.standardError = FileHandle(forWritingAtPath: "\(dir)/n\(i).log")
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            procs.append(p)
        }
        func status(_ i: Int) -> [String: Any] {
            guard let r = try? runIotaf(["status", "--control", "\(dir)/n\(i).sock", "--json"]), r.status == 0 else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]) ?? [:]
        }
        func alive(_ i: Int, sees j: Int) -> Bool {
            guard let r = try? runIotaf(["members", "--control", "\(dir)/n\(i).sock", "--json"]), r.status == 0,
                  let arr = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]] else { return false }
            return arr.contains { $0["node_id"] as? String == ids[j] && $0["state"] as? String == "alive" }
        }
        func allAlive() -> Bool {
            (0..<nodes).allSatisfy { i in (0..<nodes).allSatisfy { j in i == j || alive(i, sees: j) } }
        }
        let joinDeadline = Date().addingTimeInterval(30)
        while Date() < joinDeadline && !allAlive() { Thread.sleep(forTimeInterval: 0.2) }
        try #require(allAlive(), "the \(nodes) nodes never all saw each other alive through the lossy bed")

        let file = "\(dir)/payload.bin"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        for _ in 0..<64 { h.write(Data(Sodium.randomBytes(1 << 20))) }
        try h.close()
        let sent = try Data(contentsOf: URL(fileURLWithPath: file))
        let suspicionsBefore = (0..<nodes).map { ((status($0)["gossip"] as? [String: Int])?["suspicions_raised"]) ?? 0 }

        // `iotaf send` from node 1 to node 0, given 180 s (a stall, not slowness); killed if it runs over.
        let send = Process()
        send.executableURL = URL(fileURLWithPath: try iotafBinary())
        send.arguments = ["send", "--control", "\(dir)/n1.sock", "--to", ids[0], "--file", file, "--json"]
        let out = Pipe(), err = Pipe()
        send.standardOutput = out
        send.standardError = err
        let started = Date()
        try send.run()
        let limit = started.addingTimeInterval(180)
        while send.isRunning && Date() < limit { Thread.sleep(forTimeInterval: 0.05) }
        let elapsed = Date().timeIntervalSince(started)
        if send.isRunning { send.terminate() }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        send.waitUntilExit()

        let statuses = (0..<nodes).map { status($0) }
        let s1 = statuses[1]
        let suspicions = statuses.enumerated().map { (((($0.element["gossip"] as? [String: Int])?["suspicions_raised"]) ?? 0) - suspicionsBefore[$0.offset]) }
        let channels = s1["channels"] as? [String: Int] ?? [:]
        let udp = statuses.map { $0["counters"] as? [String: Int] ?? [:] }
        let transfer = (s1["transfers"] as? [[String: Any]])?.first
        let summary = String(format: "%d nodes: %@ of 64 MiB in %.1f s at 10 %% loss each way; suspicions raised during the transfer by node 0, 1, ...: %@; sender: %d frames, %d chunks retransmitted, %d probe timeouts, %d congestion events, %d bulk and %d control datagrams waited for the kernel, %d control datagrams overtook waiting bulk ones (receiver: %d, %d, %d); receiver: %d chunks arrived twice (spurious retransmissions), %d stale packets; nft: %@",
                             nodes, "\(transfer?["bytes_done"] ?? "?")", elapsed, "\(suspicions)", channels["frames_out"] ?? -1,
                             channels["retransmitted_chunks"] ?? -1, channels["probe_timeouts"] ?? -1, channels["congestion_events"] ?? -1,
                             udp[1]["udp_bulk_waited"] ?? -1, udp[1]["udp_control_waited"] ?? -1, udp[1]["udp_control_overtook"] ?? -1,
                             udp[0]["udp_bulk_waited"] ?? -1, udp[0]["udp_control_waited"] ?? -1, udp[0]["udp_control_overtook"] ?? -1,
                             (statuses[0]["channel_drops"] as? [String: Int])?["duplicate_chunk"] ?? 0,
                             (statuses[0]["channel_drops"] as? [String: Int])?["stale_packet"] ?? 0,
                             (0..<nodes).map { bed.dropped($0) ?? "?" }.joined(separator: " / "))
        print("LossyNetnsTests: \(summary)")
        #expect(send.terminationStatus == 0 && elapsed <= 180, "send: \(String(decoding: e, as: UTF8.self).suffix(400)); \(summary)")
        let report = try? JSONSerialization.jsonObject(with: o) as? [String: Any]
        #expect(report?["state"] as? String == "completed", "\(summary)")
        let received = "\(dir)/d0/inbox/\(ids[1])/payload.bin"
        let got = try Data(contentsOf: URL(fileURLWithPath: received))
        #expect(got.count == sent.count)
        #expect(Blake2b.hash(Array(got)) == Blake2b.hash(Array(sent)), "the received file's hash equals the sent one")
        // The loss really happened: the sender had to repair.
        #expect((channels["retransmitted_chunks"] ?? 0) > 1000, "\(summary)")
        // Membership kept its share: neither end of the transfer suspected the other or a third
        // node (their frames prove them alive to each other, and probes overtake frames in the
        // socket). A third node's own probes at 10 % loss fail now and then as without a
        // transfer (about 1 in 2,000 probes raises a suspicion there): counted, not asserted.
        #expect(suspicions[0] == 0 && suspicions[1] == 0, "\(summary)")

        for p in procs { p.terminate() }
        for p in procs { p.waitUntilExit() }
    }
}
