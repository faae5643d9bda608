import Foundation
import Testing

/// `make soak`: the test bed at SOAK_HOSTS hosts (default 30, on two LANs and a router, modes
/// nearest + master, a master on each LAN) for SOAK_MINUTES (default 30) under a random nemesis
/// drawn from SOAK_SEED. Each round injects one fault, heals it, and checks that every host sees
/// every other alive within 30 s (the partition scenario's bound). Ends with a summary of faults
/// injected and checks passed, printed and written to out/soak-summary.txt. Opt-in
/// (IOTAF_SOAK=1): it is far longer than `make test` may take.
@Suite(.serialized) struct TestbedSoakTests {
    static let env = ProcessInfo.processInfo.environment
    static var enabled: Bool { env["IOTAF_SOAK"] == "1" }

    /// SplitMix64: the nemesis's draws repeat for one seed (the processes' timing does not).
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test(.enabled(if: enabled && Testbed.available, "opt-in: `make soak` (IOTAF_SOAK=1, root, ip netns, nftables)"))
    func soakUnderARandomNemesis() throws {
        let hosts = Int(Self.env["SOAK_HOSTS"] ?? "") ?? 30
        let minutes = Double(Self.env["SOAK_MINUTES"] ?? "") ?? 30
        let seed = UInt64(Self.env["SOAK_SEED"] ?? "") ?? 1
        var rng = SplitMix(state: seed)
        let half = hosts / 2
        let bed = try Testbed(lans: [half, hosts - half])
        defer { bed.teardown() }
        let all = Array(0..<hosts)
        let masters = [0, half]
        for i in all {
            var args = ["--mode", "nearest", "--mode", "master"]
            if masters.contains(i) { args.append("--is-master") }
            for m in masters where m != i { args += ["--master", bed.endpoint(m)] }
            try bed.start(i, args)
        }
        var faults: [String: Int] = [:]
        var checks = 0, passed = 0
        var failures: [String] = []
        func check(_ name: String, within: Double) {
            let r = bed.waitUntil(all, see: all, "alive", within: within)
            checks += 1
            if r.ok { passed += 1 } else { failures.append("\(name): not all alive within \(within) s:\n\(r.views)") }
            print("soak: \(name): \(r.ok ? "all alive after \(Int(r.after)) s" : "FAILED")")
        }
        check("start", within: 90)

        let end = Date().addingTimeInterval(minutes * 60)
        var round = 0
        while Date() < end {
            round += 1
            let kind = ["kill", "pause", "partition", "loss", "one-way"].randomElement(using: &rng)!
            faults[kind, default: 0] += 1
            switch kind {
            case "kill":
                let victims = Array(all.shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng)))
                for v in victims { bed.kill9(v) }
                Thread.sleep(forTimeInterval: Double.random(in: 2...15, using: &rng))
                for v in victims { try bed.restart(v) }
            case "pause":
                let v = all.randomElement(using: &rng)!
                bed.pause(v)
                Thread.sleep(forTimeInterval: Double.random(in: 0.5...3, using: &rng))
                bed.resume(v)
            case "partition":
                let side = Array(all.shuffled(using: &rng).prefix(Int.random(in: 2...max(2, hosts / 3), using: &rng)))
                try bed.partition([side, all.filter { !side.contains($0) }])
                Thread.sleep(forTimeInterval: Double.random(in: 10...60, using: &rng))
                try bed.heal()
            case "loss":
                let lan = Int.random(in: 0...1, using: &rng)
                try bed.setLANLoss(lan, percent: Int.random(in: 5...30, using: &rng))
                Thread.sleep(forTimeInterval: Double.random(in: 20...60, using: &rng))
                try bed.setLANLoss(lan, percent: 0)
            default:
                let v = all.randomElement(using: &rng)!
                try bed.cutInbound(v, from: Array(all.filter { $0 != v }.shuffled(using: &rng).prefix(3)))
                Thread.sleep(forTimeInterval: Double.random(in: 5...30, using: &rng))
                try bed.heal()
            }
            check("round \(round) (\(kind))", within: 30)
        }
        let summary = """
            soak summary: \(hosts) hosts on 2 LANs, \(Int(minutes)) min, seed \(seed)
            faults injected: \(faults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) (\(faults.values.reduce(0, +)) in all)
            checks passed: \(passed) of \(checks) (every host sees every other alive within 30 s of each heal)
            nemesis history: \(bed.history.count) actions
            """
        print(summary)
        try? FileManager.default.createDirectory(atPath: "\(Testbed.repoRoot)/out", withIntermediateDirectories: true)
        try? (summary + "\n\n" + bed.history.joined(separator: "\n") + "\n" + failures.joined(separator: "\n"))
            .write(toFile: "\(Testbed.repoRoot)/out/soak-summary.txt", atomically: true, encoding: .utf8)
        #expect(failures.isEmpty, "\(failures.count) of \(checks) checks failed:\n\(failures.prefix(3).joined(separator: "\n"))")
    }
}
