import Foundation
import Testing

/// Real processes on ::1: discovery in mode `walk` from a single known peer each, attribute
/// queries across the mesh (`iotaf query`) and admin-signed culls (`iotaf cull`).
@Suite(.serialized) struct DiscoveryProcessTests {
    final class Mesh: ProcessMesh {
        let dir = "/tmp/iotaf-dp-\(UUID().uuidString.prefix(8))"
        let ports: [UInt16]
        var procs: [Process?]
        var ids: [String] = []
        var publicKeys: [String] = []
        /// Extra `node run` arguments per node.
        var extra: [[String]]

        init(count: Int) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            ports = (0..<count).map { _ in freeUDPPort() }
            procs = Array(repeating: nil, count: count)
            extra = Array(repeating: [], count: count)
            for i in 0..<count {
                let (id, key) = try keygen("n\(i)")
                ids.append(id)
                publicKeys.append(key)
            }
        }

        /// Writes a key file; returns (node id, public key).
        func keygen(_ name: String) throws -> (String, String) {
            let kg = try runIotaf(["keygen", "--out", "\(dir)/\(name).key", "--json"])
            let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
            return (try #require(obj?["node_id"]), try #require(obj?["public_key"]))
        }

        func start(_ i: Int) throws {
            let args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", "\(dir)/d\(i)", "--log-level", "warning"] + extra[i]
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            _ = FileManager.default.createFile(atPath: log(i), contents: nil)
            p.standardError = FileHandle(forWritingAtPath: log(i))
            try p.run()
            procs[i] = p
        }

        func socket(_ i: Int) -> String { "\(dir)/n\(i).sock" }
        func log(_ i: Int) -> String { "\(dir)/n\(i).log" }

        func kill9(_ i: Int) {
            guard let p = procs[i] else { return }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            procs[i] = nil
            try? FileManager.default.removeItem(atPath: socket(i))
        }

        /// Waits for node i's process to end by itself; its exit status, or nil if it still runs.
        func exitStatus(_ i: Int, within seconds: Double) -> Int32? {
            guard let p = procs[i] else { return nil }
            let deadline = Date().addingTimeInterval(seconds)
            while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            return p.isRunning ? nil : p.terminationStatus
        }

        /// `iotaf query --json` from node i: the answers as (node id → hops, value) and the raw report.
        func query(_ i: Int, _ q: String, _ args: [String]) throws -> (answers: [String: (hops: Int, value: String)], report: [String: Any]) {
            let r = try runIotaf(["query", q, "--control", socket(i), "--json"] + args)
            #expect(r.status == 0, "query \(q) \(args): \(r.err)")
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any], "query output: \(r.out)")
            var out: [String: (hops: Int, value: String)] = [:]
            for a in obj["answers"] as? [[String: Any]] ?? [] {
                if let id = a["node_id"] as? String, let h = a["hops"] as? Int, let v = a["value"] as? String { out[id] = (h, v) }
            }
            return (out, obj)
        }

        func stopAll() {
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Mode `walk`: each node knows only the one started before it (a chain); they learn the whole
    /// mesh from there. A SIGKILLed node is declared dead by all others and is alive again after a restart.
    @Test func fiveNodesInWalkModeFromAChainOfKnownPeers() throws {
        let mesh = try Mesh(count: 5)
        defer { mesh.stopAll() }
        for i in 0..<5 {
            mesh.extra[i] = ["--mode", "walk"] + (i > 0 ? ["--peer", "[::1]:\(mesh.ports[i - 1])"] : [])
            try mesh.start(i)
        }
        let all = Array(0..<5)
        let (met, seen) = mesh.waitUntil(all, see: all, "alive", within: 40)
        #expect(met, "all five alive everywhere from a chain of single known peers: \(seen)")
        // Node 4 was only told about node 3, yet knows node 0 (the far end of the chain).
        #expect(mesh.states(4)[mesh.ids[0]] == "alive")

        mesh.kill9(2)
        let others = [0, 1, 3, 4]
        let (dead, seenDead) = mesh.waitUntil(others, see: [2], "dead", within: 30)
        #expect(dead, "node 2 dead everywhere: \(seenDead)")

        try mesh.start(2)
        let (back, seenBack) = mesh.waitUntil(all, see: all, "alive", within: 40)
        #expect(back, "node 2 alive again everywhere: \(seenBack)")
    }

    /// `iotaf query`: exact, prefix and substring matches, over a flood and a walk, answered by
    /// nodes beyond the asker's neighbours, and a query nobody matches.
    @Test func queriesFindNodesByAttributeAcrossTheMesh() throws {
        // Seven nodes: the active view holds at most 5, so node 0 has a non-neighbour among the six others.
        let n = 7
        let mesh = try Mesh(count: n)
        defer { mesh.stopAll() }
        for i in 0..<n {
            mesh.extra[i] = ["--mode", "master", "--attribute", "type=\(i % 2 == 1 ? "meter" : "relay")", "--attribute", "room=hall-\(i)"]
                + (i == 0 ? ["--is-master"] : ["--master", "[::1]:\(mesh.ports[0])"])
            try mesh.start(i)
        }
        let all = Array(0..<n)
        let (met, seen) = mesh.waitUntil(all, see: all, "alive", within: 45)
        #expect(met, "all alive: \(seen)")
        let meters = Set([1, 3, 5].map { mesh.ids[$0] })

        let exact = try mesh.query(0, "type=meter", ["--mode", "master", "--hops", "3", "--timeout", "3"])
        #expect(Set(exact.answers.keys) == meters, "type=meter answered by nodes 1, 3, 5: \(exact.answers)")
        for (_, a) in exact.answers { #expect(a.value == "meter" && (1...3).contains(a.hops)) }
        #expect(exact.report["match"] as? String == "exact")

        let prefix = try mesh.query(0, "type=met*", ["--mode", "master", "--hops", "3", "--timeout", "3"])
        #expect(Set(prefix.answers.keys) == meters, "prefix: \(prefix.answers)")
        #expect(prefix.report["match"] as? String == "prefix")

        // Everyone has a room: all seven answer (node 0 itself with hops 0); some from beyond node 0's neighbours.
        let everyone = try mesh.query(0, "room=*all-*", ["--mode", "master", "--hops", "3", "--timeout", "3"])
        #expect(Set(everyone.answers.keys) == Set(mesh.ids), "substring: \(everyone.answers)")
        #expect(everyone.answers[mesh.ids[0]]?.hops == 0)
        #expect(everyone.answers[mesh.ids[4]]?.value == "hall-4")
        let status = try runIotaf(["status", "--control", mesh.socket(0), "--json"])
        let gossip = (try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any])?["gossip"] as? [String: Any]
        let neighbours = gossip?["active_view"] as? Int ?? -1
        #expect((1...5).contains(neighbours), "node 0's active view: \(neighbours)")
        // A node outside node 0's active view cannot be reached in one hop: each of the 6 - n
        // non-neighbours answered from 2 or more hops.
        let beyond = everyone.answers.values.filter { $0.hops >= 2 }.count
        #expect(beyond >= 6 - neighbours, "with \(neighbours) neighbours of 6 members, \(6 - neighbours) answers came over 2+ hops: \(everyone.answers)")

        // One hop reaches only node 0's neighbours (and itself).
        let oneHop = try mesh.query(0, "room=*", ["--mode", "master", "--hops", "1", "--timeout", "2"])
        #expect(oneHop.answers.count == neighbours + 1, "hops 1: \(oneHop.answers.count) answers, \(neighbours) neighbours")

        // A walk: one path, each node on it answers once.
        let walk = try mesh.query(2, "room=*", ["--mode", "walk", "--hops", "6", "--timeout", "3"])
        #expect(walk.answers.count >= 2, "the walk's first step always answers: \(walk.answers)")
        for (_, a) in walk.answers { #expect(a.hops <= 6) }

        // Nearest: to the peers with the lowest measured RTT (all measured by now through probes).
        let nearest = try mesh.query(3, "type=relay", ["--mode", "nearest", "--hops", "3", "--timeout", "3"])
        #expect(!nearest.answers.isEmpty && nearest.answers.values.allSatisfy { $0.value == "relay" && $0.hops >= 1 },
                "nearest: \(nearest.answers)")
        #expect(nearest.report["mode"] as? String == "nearest")

        // Nothing matches: an empty answer, exit 0.
        let none = try mesh.query(0, "type=toaster", ["--mode", "master", "--hops", "3", "--timeout", "1"])
        #expect(none.answers.isEmpty && (none.report["answers"] as? [Any])?.isEmpty == true, "\(none.report)")
        let text = try runIotaf(["query", "type=toaster", "--control", mesh.socket(0), "--timeout", "1"])
        #expect(text.status == 0 && text.out.contains("no answers"), "\(text.out) \(text.err)")
        let table = try runIotaf(["query", "type=meter", "--control", mesh.socket(0), "--timeout", "2", "--mode", "master"])
        #expect(table.out.contains("HOPS") && table.out.contains(String(mesh.ids[1].prefix(16))), "\(table.out)")

        // A client that hangs up before the answer: the node drops the late answer and goes on.
        let impatient = Process()
        impatient.executableURL = URL(fileURLWithPath: try iotafBinary())
        impatient.arguments = ["query", "room=*", "--control", mesh.socket(0), "--timeout", "2"]
        impatient.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try impatient.run()
        Thread.sleep(forTimeInterval: 0.5)
        kill(impatient.processIdentifier, SIGKILL)
        impatient.waitUntilExit()
        Thread.sleep(forTimeInterval: 2)
        #expect(mesh.procs[0]?.isRunning == true)
        let after = try mesh.query(0, "type=meter", ["--mode", "master", "--timeout", "2"])
        #expect(Set(after.answers.keys) == meters, "node 0 still answers queries: \(after.answers)")

        let bad = try runIotaf(["query", "typemeter", "--control", mesh.socket(0)])
        #expect(bad.status != 0 && bad.err.contains("bad query"), "\(bad.err)")
    }

    /// `iotaf cull`: an admin-signed cull spreads to every node; the culled node stops, and is
    /// refused again when restarted with its key. Culls from keys the mesh does not trust are refused.
    @Test func anAdminCullRemovesANodeForGood() throws {
        let n = 4
        let mesh = try Mesh(count: n)
        defer { mesh.stopAll() }
        _ = try mesh.keygen("untrusted-admin")
        let (_, adminPublic) = try mesh.keygen("admin")
        let adminKey = "\(mesh.dir)/admin.key"
        for i in 0..<n {
            mesh.extra[i] = ["--mode", "master", "--admin-key", adminPublic]
                + (i == 0 ? ["--is-master"] : ["--master", "[::1]:\(mesh.ports[0])"])
            try mesh.start(i)
        }
        let all = Array(0..<n)
        let (met, seen) = mesh.waitUntil(all, see: all, "alive", within: 40)
        #expect(met, "all alive: \(seen)")

        // Keys the mesh does not trust: a node's own identity, and an admin key not configured.
        let notAdmin = try runIotaf(["cull", mesh.ids[3], "--admin-key", "\(mesh.dir)/n1.key", "--control", mesh.socket(0)])
        #expect(notAdmin.status != 0 && notAdmin.err.contains("not an admin key this node trusts"), "\(notAdmin.err)")
        let otherAdmin = try runIotaf(["cull", mesh.ids[3], "--admin-key", "\(mesh.dir)/untrusted-admin.key", "--control", mesh.socket(0)])
        #expect(otherAdmin.status != 0 && otherAdmin.err.contains("not an admin key"), "\(otherAdmin.err)")
        let missing = try runIotaf(["cull", mesh.ids[3], "--admin-key", "\(mesh.dir)/nope.key", "--control", mesh.socket(0)])
        #expect(missing.status != 0 && missing.err.contains("does not exist"), "\(missing.err)")
        let itself = try runIotaf(["cull", mesh.ids[0], "--admin-key", adminKey, "--control", mesh.socket(0)])
        #expect(itself.status != 0 && itself.err.contains("does not cull itself"), "\(itself.err)")
        Thread.sleep(forTimeInterval: 1)
        #expect(mesh.states(1)[mesh.ids[3]] == "alive", "refused culls changed nothing")

        // The admin culls node 3 through node 0, by an id prefix.
        let cull = try runIotaf(["cull", String(mesh.ids[3].prefix(12)), "--admin-key", adminKey, "--control", mesh.socket(0)])
        #expect(cull.status == 0 && cull.out.contains(mesh.ids[3]), "\(cull.out) \(cull.err)")
        let (culled, seenCulled) = mesh.waitUntil([0, 1, 2], see: [3], "culled", within: 20)
        #expect(culled, "node 3 culled everywhere: \(seenCulled)")
        // Node 3 learns it was culled and stops with an error.
        let firstExit = mesh.exitStatus(3, within: 15)
        #expect(firstExit == 10, "culled node stops with its own status (README, RestartPreventExitStatus=10): \(String(describing: firstExit))")
        let log3 = (try? String(contentsOfFile: mesh.log(3), encoding: .utf8)) ?? ""
        #expect(log3.contains("culled"), "\(log3)")
        mesh.procs[3] = nil
        try? FileManager.default.removeItem(atPath: mesh.socket(3))

        // Restarted with the same key (a fresh incarnation): refused, told again, stops again.
        try mesh.start(3)
        let secondExit = mesh.exitStatus(3, within: 20)
        #expect(secondExit == 10, "restarted culled node is refused and stops: \(String(describing: secondExit))")
        Thread.sleep(forTimeInterval: 1)
        let (still, seenStill) = mesh.waitUntil([0, 1, 2], see: [3], "culled", within: 5)
        #expect(still, "still culled, alive nowhere: \(seenStill)")
        let again = try runIotaf(["cull", mesh.ids[3], "--admin-key", adminKey, "--control", mesh.socket(1), "--json"])
        #expect(again.status == 0 && again.out.contains("\"new\":false"), "\(again.out) \(again.err)")

        // The whole mesh goes down (SIGKILL: no goodbye writes) and comes back on its data
        // directories: every node holds the cull from its own store (none could learn it from
        // the others: all forgot everything but their disks), and the culled node is refused again.
        for i in 0..<3 { mesh.kill9(i) }
        for i in 0..<3 { try mesh.start(i) }
        for i in 0..<3 {
            var culls: Int?
            let deadline = Date().addingTimeInterval(10)
            while culls == nil && Date() < deadline {
                if let s = try? runIotaf(["status", "--json", "--control", mesh.socket(i)]), s.status == 0,
                   let obj = try? JSONSerialization.jsonObject(with: Data(s.out.utf8)) as? [String: Any] {
                    culls = (obj["gossip"] as? [String: Any])?["culls"] as? Int
                } else {
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
            #expect(culls == 1, "node \(i) holds the cull after the restart: \(String(describing: culls))")
        }
        try? FileManager.default.removeItem(atPath: mesh.socket(3))
        try mesh.start(3)
        let thirdExit = mesh.exitStatus(3, within: 20)
        #expect(thirdExit == 10, "after the mesh restarted the culled node is still refused: \(String(describing: thirdExit))")
    }
}
