import Foundation
import Testing

/// Gossip membership between real processes on ::1: master mode, a SIGKILLed node declared dead
/// by every other, its restart seen alive again, `iotaf join` and a graceful `iotaf leave`.
@Suite(.serialized) struct GossipProcessTests {
    final class Mesh: ProcessMesh {
        let dir = "/tmp/iotaf-gp-\(UUID().uuidString.prefix(8))"
        let ports: [UInt16]
        var procs: [Process?]
        var ids: [String] = []

        init(count: Int) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            ports = (0..<count).map { _ in freeUDPPort() }
            procs = Array(repeating: nil, count: count)
            for i in 0..<count {
                let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
                let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
                ids.append(try #require(obj?["node_id"]))
            }
        }

        /// Node 0 is the master; the others join through it unless `master` is false.
        func start(_ i: Int, master: Bool = true) throws {
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", "\(dir)/d\(i)", "--log-level", "warning", "--mode", "master"]
            if i == 0 { args.append("--is-master") } else if master { args += ["--master", "[::1]:\(ports[0])"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            procs[i] = p
        }

        func socket(_ i: Int) -> String { "\(dir)/n\(i).sock" }

        func kill9(_ i: Int) {
            guard let p = procs[i] else { return }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            procs[i] = nil
            try? FileManager.default.removeItem(atPath: socket(i))
        }

        func stopAll() {
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func fiveNodesInMasterModeDetectAKillAndARestart() throws {
        let mesh = try Mesh(count: 5)
        defer { mesh.stopAll() }
        for i in 0..<5 { try mesh.start(i) }
        let all = Array(0..<5)
        let (met, seen) = mesh.waitUntil(all, see: all, "alive", within: 30)
        #expect(met, "all five alive everywhere: \(seen)")

        // SIGKILL: no leave, no goodbye. Every other node must declare it dead.
        mesh.kill9(3)
        let others = [0, 1, 2, 4]
        let (dead, seenDead) = mesh.waitUntil(others, see: [3], "dead", within: 30)
        #expect(dead, "node 3 dead everywhere: \(seenDead)")

        // Same key, same data directory: it refutes its death with a higher incarnation.
        try mesh.start(3)
        let (back, seenBack) = mesh.waitUntil(all, see: all, "alive", within: 40)
        #expect(back, "node 3 alive again everywhere: \(seenBack)")
        let r = try runIotaf(["members", "--control", mesh.socket(0), "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]] ?? []
        let row3 = rows.first { $0["node_id"] as? String == mesh.ids[3] }
        #expect((row3?["incarnation"] as? Int ?? 0) > 0, "the restarted node out-bid its dead record: \(String(describing: row3))")
        for row in rows { #expect(row["attributes"] != nil && row["overlay_address"] != nil && row.keys.contains("rtt_ms")) }
    }

    @Test func joinByCommandAndGracefulLeave() throws {
        let mesh = try Mesh(count: 3)
        defer { mesh.stopAll() }
        try mesh.start(0)
        try mesh.start(1)
        try mesh.start(2, master: false)  // knows nobody until told
        Thread.sleep(forTimeInterval: 1)
        #expect(mesh.states(2).isEmpty)
        let j = try runIotaf(["join", "[::1]:\(mesh.ports[0])", "--control", mesh.socket(2)])
        #expect(j.status == 0 && j.out.contains("joined: [::1]:\(mesh.ports[0]) answered"), "\(j.out) \(j.err)")
        let all = [0, 1, 2]
        let (met, seen) = mesh.waitUntil(all, see: all, "alive", within: 30)
        #expect(met, "joined by command: \(seen)")

        let l = try runIotaf(["leave", "--control", mesh.socket(2)])
        #expect(l.status == 0, "\(l.err)")
        let (left, seenLeft) = mesh.waitUntil([0, 1], see: [2], "left", within: 15)
        #expect(left, "the mesh learned node 2 left (not failed): \(seenLeft)")
        // It stops by itself after telling its neighbours.
        mesh.procs[2]?.waitUntilExit()
        #expect(mesh.procs[2]?.terminationStatus == 0)
    }
}
