import Foundation
import Testing

/// Real processes on ::1: four validators (`iotaf node run --validator`, genesis from `iotaf
/// network init --validators`) ordering payloads a client keeps submitting (`iotaf consensus
/// submit`). The leader of the moment is killed with SIGKILL: the three others go on committing
/// within 3 s, and the killed one, restarted on its data directory (its safety state), catches up
/// and holds the same block hash at a height as the others.
@Suite(.serialized) struct ConsensusProcessTests {
    final class Validators: @unchecked Sendable {
        let dir = "/tmp/iotaf-cp-\(UUID().uuidString.prefix(8))"
        let ports: [UInt16]
        var procs: [Process?]
        var publicKeys: [String] = []
        let lock = NSLock()
        var submitting = true

        init(count: Int) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            ports = (0..<count).map { _ in freeUDPPort() }
            procs = Array(repeating: nil, count: count)
            for i in 0..<count {
                let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
                let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
                publicKeys.append(try #require(obj?["public_key"]))
            }
            let r = try runIotaf(["network", "init", "--out", "\(dir)/net", "--validators", publicKeys.joined(separator: ",")])
            #expect(r.status == 0, "network init: \(r.err)")
        }

        func start(_ i: Int) throws {
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", "\(dir)/d\(i)", "--network-key", "\(dir)/net/network.key", "--validator", "--log-level", "warning"]
            for j in ports.indices where j != i { args += ["--peer", "[::1]:\(ports[j])"] }
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

        /// `iotaf consensus status --json` of node i (nil when it does not answer).
        func status(_ i: Int, height: UInt64? = nil) -> [String: Any]? {
            var args = ["consensus", "status", "--control", socket(i), "--json"]
            if let height { args += ["--height", String(height)] }
            guard let r = try? runIotaf(args), r.status == 0 else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        }

        func height(_ i: Int) -> UInt64 { (status(i)?["height"] as? NSNumber)?.uint64Value ?? 0 }

        /// Submits 256-byte payloads to the live validators in turn until told to stop.
        func submitInBackground() {
            Thread.detachNewThread { [self] in
                var k = 0
                while lock.withLock({ submitting }) {
                    let i = k % ports.count
                    k += 1
                    guard lock.withLock({ procs[i] != nil }) else { continue }
                    var payload = String(format: "%016x", k)
                    while payload.count < 512 { payload += "ab" }
                    _ = try? runIotaf(["consensus", "submit", "--control", socket(i), "--hex", payload])
                    Thread.sleep(forTimeInterval: 0.02)
                }
            }
        }

        func stopAll() {
            lock.withLock { submitting = false }
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func killingTheLeaderCommitsResumeAndTheRestartedValidatorCatchesUp() throws {
        let v = try Validators(count: 4)
        defer { v.stopAll() }
        for i in 0..<4 { try v.start(i) }
        // All four commit (the mesh formed, sessions up, the chain moving).
        var deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<4).allSatisfy({ v.height($0) >= 3 }) { Thread.sleep(forTimeInterval: 0.3) }
        try #require((0..<4).allSatisfy { v.height($0) >= 3 }, "validators did not all commit within 30 s: \((0..<4).map { v.height($0) })")
        v.submitInBackground()
        Thread.sleep(forTimeInterval: 3)

        // The leader of the moment, as node 0 sees it (the genesis lists n0…n3 in order).
        let s0 = try #require(v.status(0))
        let leader = try #require((s0["leader"] as? NSNumber)?.intValue)
        let survivors = (0..<4).filter { $0 != leader }
        let heightAtKill = survivors.map(v.height).max() ?? 0
        let killedAt = Date()
        v.lock.withLock { v.kill9(leader) }

        // The longest pause between new heights (the highest any survivor reports) in the 8 s after the kill.
        var best = survivors.map(v.height).max() ?? 0
        var lastNew = killedAt
        var longest = 0.0
        while Date().timeIntervalSince(killedAt) < 8 {
            let h = survivors.map(v.height).max() ?? 0
            let now = Date()
            if h > best {
                best = h
                longest = max(longest, now.timeIntervalSince(lastNew))
                lastNew = now
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        longest = max(longest, Date().timeIntervalSince(lastNew))
        print("consensus processes: leader \(leader) killed; longest pause between new heights after it: \(String(format: "%.2f", longest)) s; height \(best)")
        // The 3 s floor is a figure of the simulator's sweep (consensus-leader-crash.toml, p99 over
        // 100 seeds) and of this printout, not an assertion: real processes on a loaded machine
        // pause longer. What must hold here is that the survivors commit again at all.
        #expect(best > heightAtKill, "no new height in the 8 s after the leader was killed")

        // Restarted on its data directory: it reloads its safety state and fetches the blocks it lacks.
        try v.lock.withLock { try v.start(leader) }
        let target = survivors.map(v.height).max() ?? 0
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline, v.height(leader) < target { Thread.sleep(forTimeInterval: 0.3) }
        let caught = v.height(leader)
        #expect(caught >= target, "the restarted validator reached height \(caught), the others were at \(target) when it started")
        let h = min(caught, target)
        let theirs = v.status(survivors[0], height: h)?["block"] as? [String: Any]
        let its = v.status(leader, height: h)?["block"] as? [String: Any]
        #expect(theirs?["hash"] != nil && (theirs?["hash"] as? String) == (its?["hash"] as? String),
                "block at height \(h): restarted \(its?["hash"] ?? "none"), survivor \(theirs?["hash"] ?? "none")")
        let restarted = try #require(v.status(leader))
        #expect((restarted["halted"] as? String) == nil)
        #expect(((restarted["counters"] as? [String: Any])?["conflicting_chains"] as? NSNumber)?.intValue ?? 1 == 0)
    }
}
