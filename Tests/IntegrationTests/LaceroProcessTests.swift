import Foundation
import Testing

/// Lacero between real processes on ::1: node 0 puts a random object (`iotaf lacero put`), the
/// other nodes keep its fragments (`--lacero-store`), n−k of the nodes holding fragments are
/// killed with SIGKILL (a node keeps at most one fragment of a segment, so every segment keeps at
/// least k), and `iotaf lacero get` returns identical bytes. Then `check` names the segments that
/// lost fragments, `repair` places them anew, and `check` finds every segment whole again.
///
/// The suite's run: 14 nodes, a 3 MiB object, k = 4, n = 7. The issue's size, opt-in:
/// `IOTAF_LACERO_BIG=1` (20 nodes, 64 MiB, k = 10, n = 14); `IOTAF_LACERO_TRIALS=N` repeats the
/// put / kill / get / restart round N times on one mesh (`make lacero-trials`).
@Suite(.serialized) struct LaceroProcessTests {
    final class Mesh: ProcessMesh {
        let dir = "/tmp/iotaf-lp-\(UUID().uuidString.prefix(8))"
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

        /// Node 0 is the master and the requester (it keeps no fragments); the others store.
        func start(_ i: Int) throws {
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", "\(dir)/d\(i)", "--log-level", "warning", "--mode", "master"]
            if i == 0 { args.append("--is-master") } else { args += ["--master", "[::1]:\(ports[0])", "--lacero-store", "--lacero-keep-probability", "0.5"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            _ = FileManager.default.createFile(atPath: "\(dir)/n\(i).log", contents: nil)
            p.standardError = FileHandle(forWritingAtPath: "\(dir)/n\(i).log")
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

        /// Fragments node i holds (`iotaf lacero stats --json`); nil when it does not answer.
        func held(_ i: Int) -> Int? {
            guard let r = try? runIotaf(["lacero", "stats", "--control", socket(i), "--json"]), r.status == 0,
                  let obj = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any] else { return nil }
            return (obj["fragments_held"] as? NSNumber)?.intValue
        }

        /// Node i's membership health and Lacero pacing, for the log: its own incarnation (each
        /// refuted suspicion raises it), suspicions it raised, reliable messages failed and refused,
        /// and Lacero's paced, rerouted and dropped messages.
        func health(_ i: Int) -> String {
            var parts: [String] = []
            if let r = try? runIotaf(["status", "--control", socket(i), "--json"]), r.status == 0,
               let obj = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any] {
                let g = obj["gossip"] as? [String: Any] ?? [:], c = obj["counters"] as? [String: Any] ?? [:], d = obj["drops"] as? [String: Any] ?? [:]
                parts.append("incarnation \(g["incarnation"] ?? "?"), refutations \(g["refutations"] ?? "?"), suspicions raised \(g["suspicions_raised"] ?? "?"), reliable_failed \(c["reliable_failed"] ?? "?"), reliable_refused \(d["reliable_refused"] ?? "?")")
            }
            if let r = try? runIotaf(["lacero", "stats", "--control", socket(i), "--json"]), r.status == 0,
               let obj = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any] {
                let c = obj["counters"] as? [String: Any] ?? [:]
                parts.append("lacero paced \(c["paced"] ?? "?"), rerouted \(c["rerouted"] ?? "?"), retries \(c["retries"] ?? "?"), drops \(obj["drops"] ?? "?")")
            }
            return parts.joined(separator: "; ")
        }

        /// Runs `iotaf lacero ARGS --json` against node 0; the report and the exit status.
        func lacero(_ args: [String]) throws -> (status: Int32, report: [String: Any], err: String) {
            // A bound on every wait: a stuck operation fails the test rather than hanging it.
            let bound = ProcessInfo.processInfo.environment["IOTAF_LACERO_BIG"] != nil ? "900" : "180"
            let r = try runIotaf(["lacero"] + args + ["--control", socket(0), "--json", "--timeout", bound])
            let obj = (try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]) ?? [:]
            return (r.status, obj, r.err)
        }

        func stopAll() {
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
            if ProcessInfo.processInfo.environment["IOTAF_KEEP_TEST_DIRS"] == nil { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    @Test func getReturnsIdenticalBytesAfterNMinusKHoldersAreKilledAndRepairRestoresN() throws {
        let env = ProcessInfo.processInfo.environment
        let big = env["IOTAF_LACERO_BIG"] != nil
        let (count, size, k, n) = big ? (20, 64 << 20, 10, 14) : (14, 3 << 20, 4, 7)
        let trials = max(1, Int(env["IOTAF_LACERO_TRIALS"] ?? "1") ?? 1)
        let mesh = try Mesh(count: count)
        defer { mesh.stopAll() }
        for i in 0..<count { try mesh.start(i) }
        let all = Array(0..<count)
        let (met, seen) = mesh.waitUntil([0], see: all, "alive", within: 60)
        try #require(met, "node 0 sees every node alive: \(seen)")

        var passed = 0
        for trial in 1...trials {
            var rng = SystemRandomNumberGenerator()
            var object = [UInt8](repeating: 0, count: size)
            for i in stride(from: 0, to: size, by: 8) {
                let v = rng.next()
                for j in 0..<min(8, size - i) { object[i + j] = UInt8(truncatingIfNeeded: v >> (8 * j)) }
            }
            let file = "\(mesh.dir)/object-\(trial)", meta = "\(mesh.dir)/object-\(trial).meta", back = "\(mesh.dir)/back-\(trial)"
            try Data(object).write(to: URL(fileURLWithPath: file))
            let before = (0..<count).map { mesh.held($0) ?? 0 }

            let t0 = Date()
            let put = try mesh.lacero(["put", file, "--out", meta, "--k", String(k), "--n", String(n)])
            let putSeconds = Date().timeIntervalSince(t0)
            print("lacero processes: trial \(trial): put \(put.status == 0 ? "done" : "failed") in \(String(format: "%.1f", putSeconds)) s; node 0: \(mesh.health(0))")
            try #require(put.status == 0, "put: \(put.err)")
            let segments = try #require((put.report["segments"] as? NSNumber)?.intValue)
            #expect((put.report["fragments_placed"] as? NSNumber)?.intValue == segments * n, "every fragment placed: \(put.report)")
            #expect(FileManager.default.fileExists(atPath: meta))

            // Who holds this object's fragments: the nodes whose count grew. Each holds at most one per segment.
            let after = (0..<count).map { mesh.held($0) ?? 0 }
            let holders = (1..<count).filter { after[$0] > before[$0] }
            // Threshold 1: each fragment on one node, or on two when a keep-ack came after the
            // retry timeout and the store went on another walk (a spare copy, never a loss).
            #expect(after.reduce(0, +) - before.reduce(0, +) >= segments * n, "every fragment on a node (\(before) → \(after))")
            #expect((1..<count).allSatisfy { after[$0] - before[$0] <= segments }, "no node holds two fragments of a segment: \(before) → \(after)")

            // Kill n−k holders: every segment keeps at least k fragments.
            let victims = Array(holders.shuffled().prefix(n - k))
            for v in victims { mesh.kill9(v) }
            let t1 = Date()
            let get = try mesh.lacero(["get", meta, "--out", back])
            let getSeconds = Date().timeIntervalSince(t1)
            #expect(get.status == 0, "get after killing \(victims): \(get.err)")
            let same = (try? Data(contentsOf: URL(fileURLWithPath: back))) == Data(object)
            #expect(same, "get returned identical bytes")

            // check names the segments that lost fragments and none below k; repair places them anew.
            let check = try mesh.lacero(["check", meta])
            #expect(check.status == 0, "check: \(check.err)")
            let short = (check.report["segments_below_n"] as? [Int]) ?? []
            #expect(((check.report["segments_below_k"] as? [Int]) ?? [0]).isEmpty, "no segment below k: \(check.report)")
            #expect(!short.isEmpty, "killing \(victims.count) holders left some segment short of n")
            var repaired = 0
            if trial == 1 {
                let repair = try mesh.lacero(["repair", meta])
                #expect(repair.status == 0, "repair: \(repair.err)")
                repaired = (repair.report["fragments_repaired"] as? NSNumber)?.intValue ?? 0
                let again = try mesh.lacero(["check", meta])
                #expect(((again.report["segments_below_n"] as? [Int]) ?? [0]).isEmpty, "after repair every segment has n fragments answering: \(again.report)")
            }
            print("lacero processes: trial \(trial)/\(trials): \(count) nodes, \(size) bytes, k = \(k), n = \(n): put \(String(format: "%.2f", putSeconds)) s, killed \(victims.count) holders, get \(String(format: "%.2f", getSeconds)) s, identical \(same), \(short.count) segments short, \(repaired) fragments repaired")
            if same && get.status == 0 { passed += 1 }
            // 64 MiB three times per trial: twenty trials would leave gigabytes in /tmp.
            for f in [file, back] { try? FileManager.default.removeItem(atPath: f) }
            // The killed nodes come back on their data directories (their fragments with them).
            for v in victims { try mesh.start(v) }
            if trial < trials {
                let (back, seenBack) = mesh.waitUntil([0], see: all, "alive", within: 60)
                try #require(back, "restarted nodes alive again: \(seenBack)")
            }
        }
        print("lacero processes: \(passed) of \(trials) trials returned identical bytes")
        #expect(passed == trials)
    }
}
