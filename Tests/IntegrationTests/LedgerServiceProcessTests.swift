import Foundation
import Testing

/// Real processes on ::1: four validators (`iotaf node run --ledger-role validator`) and two
/// replicas (`--ledger-role replica`) under a steady load of `iotaf ledger submit kv put …` to all
/// six in turn. A validator is killed with SIGKILL, then the leader of the moment; both are
/// restarted on their data directories. Then: every transaction a submitter saw acknowledged is in
/// the ledger, every node holds the same block hash at the common height, and `iotaf ledger
/// verify` passes on every data directory.
@Suite(.serialized) struct LedgerServiceProcessTests {
    final class Mesh: @unchecked Sendable {
        let dir = "/tmp/iotaf-lp-\(UUID().uuidString.prefix(8))"
        let validators = 4, replicas = 2
        var count: Int { validators + replicas }
        let ports: [UInt16]
        var procs: [Process?]
        var publicKeys: [String] = []
        let lock = NSLock()
        var submitting = true
        var acknowledged: [String] = []
        var failures = 0

        init() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            ports = (0..<6).map { _ in freeUDPPort() }
            procs = Array(repeating: nil, count: 6)
            for i in 0..<6 {
                let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
                let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
                publicKeys.append(try #require(obj?["public_key"]))
            }
            let r = try runIotaf(["network", "init", "--out", "\(dir)/net", "--validators", publicKeys[0..<4].joined(separator: ",")])
            #expect(r.status == 0, "network init: \(r.err)")
        }

        func start(_ i: Int) throws {
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", data(i), "--network-key", "\(dir)/net/network.key",
                        "--ledger-role", i < validators ? "validator" : "replica", "--log-level", "warning"]
            for j in 0..<validators where j != i { args += ["--peer", "[::1]:\(ports[j])"] }
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
        func data(_ i: Int) -> String { "\(dir)/d\(i)" }

        func kill9(_ i: Int) {
            guard let p = procs[i] else { return }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            procs[i] = nil
            try? FileManager.default.removeItem(atPath: socket(i))
        }

        func json(_ args: [String]) -> [String: Any]? {
            guard let r = try? runIotaf(args), r.status == 0 else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        }

        func height(_ i: Int) -> UInt64 {
            (json(["ledger", "status", "--control", socket(i), "--json"])?["height"] as? NSNumber)?.uint64Value ?? 0
        }

        /// One submitter thread per node: `ledger submit` waits for the commit; an exit 0 is an acknowledgement.
        func submitInBackground() {
            for i in 0..<count {
                Thread.detachNewThread { [self] in
                    var k = 0
                    while lock.withLock({ submitting }) {
                        k += 1
                        guard lock.withLock({ procs[i] != nil }) else { Thread.sleep(forTimeInterval: 0.1); continue }
                        let value = String(repeating: "v", count: 256)
                        let r = try? runIotaf(["ledger", "submit", "kv", "put", "n\(i)-\(k)", value, "--control", socket(i), "--json"])
                        if let r, r.status == 0, let obj = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
                           let tx = obj["tx"] as? String, (obj["ok"] as? Bool) == true {
                            lock.withLock { acknowledged.append(tx) }
                        } else {
                            lock.withLock { failures += 1 }
                        }
                    }
                }
            }
        }

        /// After the nodes stopped: every data directory verifies from genesis, all hold the same
        /// block at the common height (above `target`), and no acknowledged transaction is lost.
        func finalChecks(after target: UInt64, label: String, started: Date, heights: [UInt64]) throws {
            let acknowledged = lock.withLock { self.acknowledged }
            print("ledger processes: \(label); \(acknowledged.count) acknowledged, \(failures) submissions not acknowledged; heights \(heights); \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
            #expect(acknowledged.count > 20)
            // Every data directory verifies from genesis, and all hold the same block at the common height.
            var tops: [UInt64] = []
            for i in 0..<count {
                let v = try runIotaf(["ledger", "verify", "--data", data(i), "--json"])
                #expect(v.status == 0, "ledger verify on node \(i): \(v.out) \(v.err)")
                tops.append((json(["ledger", "status", "--data", data(i), "--json"])?["height"] as? NSNumber)?.uint64Value ?? 0)
            }
            let common = tops.min() ?? 0
            #expect(common > target)
            let hashes = (0..<count).map { json(["ledger", "block", String(common), "--data", data($0), "--json"])?["hash"] as? String }
            #expect(hashes[0] != nil && Set(hashes.compactMap { $0 }).count == 1 && hashes.allSatisfy { $0 != nil }, "block \(common): \(hashes)")
            // No acknowledged transaction lost: each is in the ledger of the node that got furthest,
            // and in every other node's up to that node's height (a node stopped a few blocks behind
            // has not lost the blocks above it).
            let furthest = tops.indices.max { tops[$0] < tops[$1] }!
            var heightOf: [String: UInt64] = [:]
            var missing: [String] = []
            for tx in acknowledged {
                if let h = (json(["ledger", "tx", tx, "--data", data(furthest), "--json"])?["height"] as? NSNumber)?.uint64Value { heightOf[tx] = h } else { missing.append(tx) }
            }
            #expect(missing.isEmpty, "node \(furthest) (height \(tops[furthest])) lacks \(missing.count) acknowledged transactions, e.g. \(missing.prefix(3))")
            for node in [0, 4] where node != furthest {
                let lacking = heightOf.filter { $0.value <= tops[node] }.keys.sorted().filter { json(["ledger", "tx", $0, "--data", data(node), "--json"]) == nil }
                #expect(lacking.isEmpty, "node \(node) (height \(tops[node])) lacks \(lacking.count) acknowledged transactions at or below its height, e.g. \(lacking.prefix(3))")
            }
        }

        func stopAll() {
            lock.withLock { submitting = false }
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
        }
    }

    @Test func killingAValidatorAndTheLeaderLosesNoAcknowledgedTransaction() throws {
        let m = try Mesh()
        defer { m.stopAll(); try? FileManager.default.removeItem(atPath: m.dir) }
        let started = Date()
        for i in 0..<m.count { try m.start(i) }
        var deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<m.count).allSatisfy({ m.height($0) >= 2 }) { Thread.sleep(forTimeInterval: 0.3) }
        try #require((0..<m.count).allSatisfy { m.height($0) >= 2 }, "ledger nodes did not all apply blocks within 30 s: \((0..<m.count).map { m.height($0) })")
        m.submitInBackground()
        Thread.sleep(forTimeInterval: 4)

        // A validator that is not the leader, then the leader of the moment (as validator 0 sees it, or 2 if 0 was the first).
        let leader0 = (m.json(["consensus", "status", "--control", m.socket(0), "--json"])?["leader"] as? NSNumber)?.intValue ?? 0
        let first = (0..<4).first { $0 != leader0 }!
        m.lock.withLock { m.kill9(first) }
        Thread.sleep(forTimeInterval: 2)
        let asker = (0..<4).first { $0 != first }!
        let leader = (m.json(["consensus", "status", "--control", m.socket(asker), "--json"])?["leader"] as? NSNumber)?.intValue ?? asker
        let second = leader == first ? (0..<4).first { $0 != first && $0 != asker }! : leader
        m.lock.withLock { m.kill9(second) }
        Thread.sleep(forTimeInterval: 2)
        try m.lock.withLock {
            try m.start(first)
            try m.start(second)
        }
        // Back to progress: every node passes the height the survivors had when the two restarted.
        let target = (0..<m.count).map(m.height).max() ?? 0
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<m.count).allSatisfy({ m.height($0) > target }) { Thread.sleep(forTimeInterval: 0.3) }
        let heights = (0..<m.count).map(m.height)
        #expect(heights.allSatisfy { $0 > target }, "after the restarts every node should pass height \(target): \(heights)")
        Thread.sleep(forTimeInterval: 2)
        m.lock.withLock { m.submitting = false }
        Thread.sleep(forTimeInterval: 1)
        m.stopAll()

        try m.finalChecks(after: target, label: "killed validators \(first) and \(second)", started: started, heights: heights)
    }

    /// The kill loop: under the same load, `LEDGER_KILL_LOOP` times (3 in the suite; 100 by
    /// `make ledger-kill-loop`) a random node (validator or replica) is killed with SIGKILL at a
    /// random moment (mid-commit, most of the time: blocks are written continuously), its data
    /// directory is verified offline from genesis as the kill left it, and it is restarted and must
    /// pass the height the others had when it came back. Then the checks of the test above.
    /// `LEDGER_KILL_SEED` picks the sequence of victims and pauses (printed).
    @Test func killLoopEveryRestartRecoversAndVerifies() throws {
        let env = ProcessInfo.processInfo.environment
        let kills = max(1, Int(env["LEDGER_KILL_LOOP"] ?? "") ?? 3)
        let seed = UInt64(env["LEDGER_KILL_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        var rng = KillLoopRandom(seed)
        let m = try Mesh()
        defer { m.stopAll(); try? FileManager.default.removeItem(atPath: m.dir) }
        let started = Date()
        for i in 0..<m.count { try m.start(i) }
        var deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<m.count).allSatisfy({ m.height($0) >= 2 }) { Thread.sleep(forTimeInterval: 0.3) }
        try #require((0..<m.count).allSatisfy { m.height($0) >= 2 }, "ledger nodes did not all apply blocks within 30 s: \((0..<m.count).map { m.height($0) })")
        m.submitInBackground()
        var verified = 0, recovered = 0, victims: [Int] = []
        for round in 1...kills {
            let victim = Int(rng.next() % UInt64(m.count))
            victims.append(victim)
            Thread.sleep(forTimeInterval: 0.2 + Double(rng.next() % 1000) / 1000)
            m.lock.withLock { m.kill9(victim) }
            // What the kill left on disk: the whole of every block or none of it, verified from genesis.
            let v = try runIotaf(["ledger", "verify", "--data", m.data(victim), "--json"])
            #expect(v.status == 0, "kill \(round) (node \(victim)): ledger verify \(v.out) \(v.err)")
            if v.status == 0 { verified += 1 }
            try m.lock.withLock { try m.start(victim) }
            let target = (0..<m.count).filter { $0 != victim }.map(m.height).max() ?? 0
            deadline = Date().addingTimeInterval(60)
            while Date() < deadline, m.height(victim) <= target { Thread.sleep(forTimeInterval: 0.2) }
            guard m.height(victim) > target else {
                Issue.record("kill \(round): node \(victim) did not pass height \(target) within 60 s of its restart (seed \(seed))")
                break
            }
            recovered += 1
        }
        let target = (0..<m.count).map(m.height).max() ?? 0
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<m.count).allSatisfy({ m.height($0) > target }) { Thread.sleep(forTimeInterval: 0.3) }
        let heights = (0..<m.count).map(m.height)
        #expect(heights.allSatisfy { $0 > target }, "after the loop every node should pass height \(target): \(heights)")
        m.lock.withLock { m.submitting = false }
        Thread.sleep(forTimeInterval: 1)
        m.stopAll()
        let label = "kill loop (seed \(seed)): \(victims.count) kills of nodes \(victims), \(verified) verified after the kill, \(recovered) recovered"
        #expect(verified == kills && recovered == kills, "\(label)")
        try m.finalChecks(after: target, label: label, started: started, heights: heights)
    }
}

/// A small seeded generator for the kill loop's choices (reproducible from the printed seed).
struct KillLoopRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
