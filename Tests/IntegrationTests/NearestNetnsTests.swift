import Foundation
import Testing

/// Mode `nearest` with no seeds at all: five real `iotaf node run` processes, each in its own
/// network namespace with one veth into a shared bridge namespace (one LAN), find each other by
/// the link-local multicast beacon alone, measure their round-trip times, declare a SIGKILLed
/// one dead and see it alive again after its restart. A sixth node of another network beacons on the same LAN and must stay out (its
/// beacons are counted as `other_network` drops). The test creates every namespace and link under
/// a unique prefix and deletes them even when it fails; it is skipped where `ip netns` is refused.
@Suite(.serialized) struct NearestNetnsTests {
    /// Network namespaces and veth links under one unique prefix.
    final class LAN {
        let prefix = "iof\(UUID().uuidString.prefix(5).lowercased())"
        var namespaces: [String] = []
        var bridge: String { "\(prefix)br" }
        func node(_ i: Int) -> String { "\(prefix)n\(i)" }

        /// A bridge namespace holding `bridges` and `count` node namespaces with lo up; without
        /// `links`, every node gets one veth named eth0 into the first bridge.
        init(count: Int, bridges: [String] = ["br0"], links: [(node: Int, bridge: String, name: String)]? = nil) throws {
            do {
                try ip(["netns", "add", bridge])
                namespaces.append(bridge)
                for br in bridges {
                    // No multicast snooping: the bridge floods the beacon group like a dumb switch.
                    try ip(["-n", bridge, "link", "add", br, "type", "bridge", "mcast_snooping", "0"])
                    try ip(["-n", bridge, "link", "set", br, "up"])
                }
                for i in 0..<count {
                    try ip(["netns", "add", node(i)])
                    namespaces.append(node(i))
                    try ip(["-n", node(i), "link", "set", "lo", "up"])
                }
                for (n, l) in (links ?? (0..<count).map { ($0, bridges[0], "eth0") }).enumerated() {
                    try link(l.node, to: l.bridge, as: l.name, outer: "\(prefix)v\(n)")
                }
            } catch {
                remove()
                throw error
            }
        }

        /// A veth from node `i` (named `name` there, DAD off so its link-local address is usable
        /// at once) into `bridgeName`.
        private func link(_ i: Int, to bridgeName: String, as name: String, outer: String) throws {
            let ns = node(i)
            try ip(["link", "add", outer, "type", "veth", "peer", "name", name, "netns", ns])
            try ip(["link", "set", outer, "netns", bridge])
            try ip(["-n", bridge, "link", "set", outer, "master", bridgeName, "up"])
            try run("/usr/sbin/ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.\(name).accept_dad=0"])
            try ip(["-n", ns, "link", "set", name, "up"])
        }

        /// Deleting a namespace deletes the links in it (and a veth's other end with it).
        func remove() {
            for ns in namespaces.reversed() { _ = try? Self.command("/usr/sbin/ip", ["netns", "del", ns]) }
            namespaces = []
        }

        private func ip(_ args: [String]) throws { try run("/usr/sbin/ip", args) }

        private func run(_ tool: String, _ args: [String]) throws {
            let r = try Self.command(tool, args)
            guard r.status == 0 else { throw TestFailure("\(tool) \(args.joined(separator: " ")) failed: \(r.err)") }
        }

        @discardableResult
        static func command(_ tool: String, _ args: [String]) throws -> (status: Int32, err: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: e, as: UTF8.self))
        }

        /// Whether this host lets us make (and delete) a network namespace: root and kernel support.
        static let available: Bool = {
            guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else { return false }
            let probe = "iofprobe\(UUID().uuidString.prefix(5).lowercased())"
            guard let r = try? command("/usr/sbin/ip", ["netns", "add", probe]), r.status == 0 else { return false }
            _ = try? command("/usr/sbin/ip", ["netns", "del", probe])
            return true
        }()
    }

    final class Nodes {
        let dir = "/tmp/iotaf-nn-\(UUID().uuidString.prefix(8))"
        let lan: LAN
        var procs: [Int: Process] = [:]
        var ids: [String] = []

        init(lan: LAN, count: Int) throws {
            self.lan = lan
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for i in 0..<count {
                let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
                let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
                ids.append(try #require(obj?["node_id"]))
            }
        }

        func socket(_ i: Int) -> String { "\(dir)/n\(i).sock" }

        /// Node i in its namespace: mode nearest, no peers, no masters; [::]:7400 like a real box.
        func start(_ i: Int, extra: [String] = []) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["netns", "exec", lan.node(i), try iotafBinary(), "node", "run",
                           "--key", "\(dir)/n\(i).key", "--listen", "[::]:7400", "--control", socket(i),
                           "--data", "\(dir)/d\(i)", "--log-level", "info", "--mode", "nearest",
                           "--beacon-interval-ms", "300"] + extra
            _ = FileManager.default.createFile(atPath: "\(dir)/n\(i).log", contents: nil)
            p.standardError = FileHandle(forWritingAtPath: "\(dir)/n\(i).log")
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()  // `ip netns exec` execs the node: this pid is the node's
            procs[i] = p
        }

        func kill9(_ i: Int) {
            guard let p = procs[i] else { return }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            procs[i] = nil
        }

        func log(_ i: Int) -> String {
            let text = (try? String(contentsOfFile: "\(dir)/n\(i).log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").suffix(8).joined(separator: "\n")
        }

        func json(_ i: Int, _ command: String) -> Any? {
            guard let r = try? runIotaf([command, "--control", socket(i), "--json"]), r.status == 0 else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(r.out.utf8))
        }

        func members(_ i: Int) -> [String: [String: Any]] {
            var out: [String: [String: Any]] = [:]
            for m in json(i, "members") as? [[String: Any]] ?? [] { if let id = m["node_id"] as? String { out[id] = m } }
            return out
        }

        /// Polls until `check` holds for every observer; returns the last view for the failure message.
        func waitUntil(_ observers: [Int], within seconds: Double, _ check: (Int, [String: [String: Any]]) -> Bool) -> (Bool, String) {
            let deadline = Date().addingTimeInterval(seconds)
            var last = ""
            while Date() < deadline {
                var ok = true
                last = ""
                for o in observers {
                    let m = members(o)
                    last += "node \(o): " + m.values.map { "\(($0["node_id"] as? String ?? "").prefix(6)) \($0["state"] ?? "?") \($0["address"] ?? "?") rtt \($0["rtt_ms"] ?? "nil")" }.sorted().joined(separator: ", ") + "\n"
                    if !check(o, m) { ok = false }
                }
                if ok { return (true, last) }
                Thread.sleep(forTimeInterval: 0.3)
            }
            return (false, last)
        }

        func stopAll() {
            for p in procs.values where p.isRunning { p.terminate(); p.waitUntilExit() }
            procs = [:]
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test(.enabled(if: LAN.available, "skipped: `ip netns add` is refused here (needs root, iproute2 and network namespace support)"),
          .timeLimit(.minutes(5)))
    func fiveNodesFindEachOtherByBeaconWithNoSeeds() throws {
        let lan = try LAN(count: 6)
        defer { lan.remove() }
        let nodes = try Nodes(lan: lan, count: 6)
        defer { nodes.stopAll() }
        let all = Array(0..<5)
        for i in all { try nodes.start(i) }
        // Another mesh on the same LAN: same beacon group and port, another network (id and key;
        // an id without its key is refused).
        #expect(try runIotaf(["network", "init", "--out", "\(nodes.dir)/other"]).status == 0)
        try nodes.start(5, extra: ["--network-key", "\(nodes.dir)/other/network.key"])

        let ids = nodes.ids
        let (met, seen) = nodes.waitUntil(all, within: 40) { o, m in
            all.allSatisfy { s in
                s == o || (m[ids[s]]?["state"] as? String == "alive"
                           && (m[ids[s]]?["address"] as? String)?.hasPrefix("[fe80::") == true
                           && m[ids[s]]?["rtt_ms"] is Double)
            }
        }
        #expect(met, "every node sees the 4 others alive at link-local addresses with a measured RTT:\n\(seen)\nnode 0 log:\n\(nodes.log(0))")

        // Beacons were what brought them together, and the stranger's were refused and counted.
        for i in all {
            let status = nodes.json(i, "status") as? [String: Any]
            let beacon = status?["beacon"] as? [String: Int] ?? [:]
            let drops = status?["beacon_drops"] as? [String: Int] ?? [:]
            #expect((beacon["sent"] ?? 0) > 0 && (beacon["heard"] ?? 0) > 0 && beacon["interfaces"] == 1, "node \(i) beacon: \(beacon)")
            #expect((drops["other_network"] ?? 0) > 0, "node \(i) dropped the other network's beacons: \(drops)")
            #expect((drops["own"] ?? 0) > 0, "node \(i) dropped its own looped-back beacons: \(drops)")
            #expect(nodes.members(i)[ids[5]] == nil, "node \(i) never admits the other network's node")
        }
        #expect(nodes.members(5).isEmpty, "the other network's node found nobody: \(nodes.members(5).keys)")

        // SIGKILL: no leave. Every other node must declare it dead.
        nodes.kill9(3)
        let others = [0, 1, 2, 4]
        let (dead, seenDead) = nodes.waitUntil(others, within: 30) { _, m in m[ids[3]]?["state"] as? String == "dead" }
        #expect(dead, "node 3 dead everywhere:\n\(seenDead)")
        let (stillAlive, seenAlive) = nodes.waitUntil(others, within: 5) { o, m in
            others.allSatisfy { s in s == o || m[ids[s]]?["state"] as? String == "alive" }
        }
        #expect(stillAlive, "the survivors stay alive to each other:\n\(seenAlive)")

        // Same key and data directory: heard by beacon again, it out-bids its dead record.
        try nodes.start(3)
        let (back, seenBack) = nodes.waitUntil(all, within: 40) { o, m in
            all.allSatisfy { s in s == o || m[ids[s]]?["state"] as? String == "alive" }
        }
        #expect(back, "node 3 alive again everywhere:\n\(seenBack)\nnode 3 log:\n\(nodes.log(3))")
    }

    /// A private mesh on a LAN: its nodes find each other by sealed beacons alone; a node of
    /// another private mesh and a node of the open network beacon on the same link, and each side
    /// refuses the other's beacons before any handshake (`unauthenticated` at the private nodes,
    /// `other_network` at the open one) and admits nobody of the other.
    @Test(.enabled(if: LAN.available, "skipped: `ip netns add` is refused here (needs root, iproute2 and network namespace support)"),
          .timeLimit(.minutes(3)))
    func aPrivateMeshBeaconsUnderItsKeyAndRefusesStrangers() throws {
        let lan = try LAN(count: 5)
        defer { lan.remove() }
        let nodes = try Nodes(lan: lan, count: 5)
        defer { nodes.stopAll() }
        #expect(try runIotaf(["network", "init", "--out", "\(nodes.dir)/ours"]).status == 0)
        #expect(try runIotaf(["network", "init", "--out", "\(nodes.dir)/theirs"]).status == 0)
        let ours = Array(0..<3)
        for i in ours { try nodes.start(i, extra: ["--network-key", "\(nodes.dir)/ours/network.key"]) }
        try nodes.start(3, extra: ["--network-key", "\(nodes.dir)/theirs/network.key"])
        try nodes.start(4)  // the open network
        let ids = nodes.ids
        let (met, seen) = nodes.waitUntil(ours, within: 40) { o, m in
            ours.allSatisfy { s in s == o || m[ids[s]]?["state"] as? String == "alive" }
        }
        #expect(met, "the private mesh's nodes found each other by beacon:\n\(seen)\nnode 0 log:\n\(nodes.log(0))")
        for i in ours {
            let status = nodes.json(i, "status") as? [String: Any]
            let beacon = status?["beacon"] as? [String: Int] ?? [:]
            let drops = status?["beacon_drops"] as? [String: Int] ?? [:]
            #expect(beacon["private"] == 1 && (beacon["heard"] ?? 0) > 0, "node \(i) beacon: \(beacon)")
            #expect((drops["unauthenticated"] ?? 0) > 0, "node \(i) refused the stranger's and the open node's beacons: \(drops)")
            #expect((drops["own"] ?? 0) > 0, "node \(i): \(drops)")
            #expect(nodes.members(i)[ids[3]] == nil && nodes.members(i)[ids[4]] == nil, "node \(i) admitted a stranger")
        }
        let open = (nodes.json(4, "status") as? [String: Any])?["beacon_drops"] as? [String: Int] ?? [:]
        #expect((open["other_network"] ?? 0) > 0, "the open node counts private beacons as another network's: \(open)")
        #expect(nodes.members(3).isEmpty && nodes.members(4).isEmpty, "the strangers found nobody: \(nodes.members(3).keys) \(nodes.members(4).keys)")
    }

    /// A node on two links (eth0 on one bridge, eth1 on another) beacons on both and reaches a
    /// neighbour on each through the right interface: the runtime's scope table at work, since the
    /// core and gossip see link-local addresses without their interface.
    @Test(.enabled(if: LAN.available, "skipped: `ip netns add` is refused here (needs root, iproute2 and network namespace support)"),
          .timeLimit(.minutes(3)))
    func aNodeOnTwoLinksReachesANeighbourOnEach() throws {
        let lan = try LAN(count: 3, bridges: ["br0", "br1"],
                          links: [(0, "br0", "eth0"), (0, "br1", "eth1"), (1, "br0", "eth0"), (2, "br1", "eth0")])
        defer { lan.remove() }
        let nodes = try Nodes(lan: lan, count: 3)
        defer { nodes.stopAll() }
        for i in 0..<3 { try nodes.start(i) }
        let ids = nodes.ids
        let (met, seen) = nodes.waitUntil([0], within: 30) { _, m in
            m[ids[1]]?["state"] as? String == "alive" && (m[ids[1]]?["address"] as? String)?.contains("%eth0]") == true
                && m[ids[2]]?["state"] as? String == "alive" && (m[ids[2]]?["address"] as? String)?.contains("%eth1]") == true
                && m[ids[1]]?["rtt_ms"] is Double && m[ids[2]]?["rtt_ms"] is Double
        }
        #expect(met, "node 0 reaches node 1 through eth0 and node 2 through eth1:\n\(seen)\nnode 0 log:\n\(nodes.log(0))")
        let (sides, seenSides) = nodes.waitUntil([1, 2], within: 10) { _, m in m[ids[0]]?["state"] as? String == "alive" }
        #expect(sides, "each single-link node holds node 0 alive:\n\(seenSides)")
        let beacon = (nodes.json(0, "status") as? [String: Any])?["beacon"] as? [String: Int] ?? [:]
        #expect(beacon["interfaces"] == 2, "node 0 beacons on both links: \(beacon)")
    }
}
