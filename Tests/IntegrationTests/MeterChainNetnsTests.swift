import Foundation
import MeshCore
import Testing

/// Custody hop by hop along a real chain: a collector and three relays, each `iotaf node run` in
/// a network namespace of its own, linked only to their neighbours (collector – relay 1 – relay 2
/// – relay 3, one bridge per link, link-local IPv6 only, mode `nearest`, each node beaconing on its
/// own veths alone), with nftables in every namespace dropping 10 % of the UDP it receives
/// (`numgen random mod 100 < 10`). 20 meters hosted on relay 3, the far end, record a read every
/// 4 s; relay 2, the middle of the chain, is killed with SIGKILL and kept down for a minute, so
/// relay 3 holds what it records meanwhile (its only neighbour is gone) and relay 2 comes back on
/// its disk with what it held. Every read reaches the collector exactly once (stored once, no
/// sequence missing, each meter's chain whole), all are anchored, no relay holds any, and a proof
/// checks offline while an edited copy fails. Opt-in (about 3 minutes, and not yet reliable: see
/// Docs/meters.md, "Not built yet"): `make meter-chain` (IOTAF_METER_CHAIN=1, root, `ip netns`, nftables).
@Suite(.serialized) struct MeterChainNetnsTests {
    static let nft = LossyNetnsTests.Bed.nftPath
    static var available: Bool {
        ProcessInfo.processInfo.environment["IOTAF_METER_CHAIN"] == "1"
            && NearestNetnsTests.LAN.available && FileManager.default.isExecutableFile(atPath: nft)
    }

    @Test(.enabled(if: available, "opt-in: `make meter-chain` (IOTAF_METER_CHAIN=1; root, `ip netns` and nftables)"),
          .timeLimit(.minutes(5)))
    func readsCrossALossyChainExactlyOnceAcrossAMiddleRelayKill() throws {
        // Node 0 the collector, 1-3 relays; link k joins node k and node k+1 on bridge brk.
        let lan = try NearestNetnsTests.LAN(count: 4, bridges: ["br0", "br1", "br2"],
                                            links: [(0, "br0", "eth0"), (1, "br0", "eth0"), (1, "br1", "eth1"),
                                                    (2, "br1", "eth0"), (2, "br2", "eth1"), (3, "br2", "eth0")])
        defer { lan.remove() }
        for i in 0..<4 {
            for args in [["add", "table", "inet", "lossy"],
                         ["add", "chain", "inet", "lossy", "in", "{ type filter hook input priority 0 ; }"],
                         ["add", "rule", "inet", "lossy", "in", "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", "10", "counter", "drop"]] {
                let r = try NearestNetnsTests.LAN.command("/usr/sbin/ip", ["netns", "exec", lan.node(i), Self.nft] + args)
                try #require(r.status == 0, "nft in node \(i): \(r.err)")
            }
        }
        let nodes = try NearestNetnsTests.Nodes(lan: lan, count: 4)
        defer { nodes.stopAll() }
        let interfaces: [[String]] = [["eth0"], ["eth0", "eth1"], ["eth0", "eth1"], ["eth0"]]
        func start(_ i: Int) throws {
            try nodes.start(i, extra: interfaces[i].flatMap { ["--beacon-interface", $0] }
                + ["--meter-role", i == 0 ? "collector" : "relay", "--meter-interval-s", "4", "--anchor-grace-s", "1"])
        }
        func status(_ i: Int) -> [String: Any] {
            guard let r = try? runIotaf(["meter", "status", "--control", nodes.socket(i), "--json"]), r.status == 0 else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]) ?? [:]
        }
        func int(_ i: Int, _ key: String) -> Int { (status(i)[key] as? NSNumber)?.intValue ?? -1 }
        func waitUntil(_ seconds: Double, _ what: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline { if what() { return true }; Thread.sleep(forTimeInterval: 0.5) }
            return what()
        }
        func summary() -> String {
            (0..<4).map { i in
                let s = status(i)
                return "node \(i): parent \((s["parent"] as? String)?.prefix(8) ?? "none") rank \(s["rank"] ?? "?") held \(s["held"] ?? "?") stored \(s["reads_stored"] ?? "?") pending \(s["reads_pending_anchor"] ?? "?") counters \(s["counters"] ?? "?")"
            }.joined(separator: "\n") + "\n" + (0..<4).map { i in
                "node \(i) sees: " + nodes.members(i).values.map { "\((($0["node_id"] as? String) ?? "").prefix(8)) \($0["state"] ?? "?") \($0["address"] ?? "?")" }.sorted().joined(separator: ", ")
            }.joined(separator: "\n")
        }
        for i in 0..<4 { try start(i) }
        let ids = nodes.ids
        // Each relay's parent is its neighbour towards the collector: the only one it can reach.
        try #require(waitUntil(60) { (1..<4).allSatisfy { status($0)["parent"] as? String == ids[$0 - 1] } },
                     "the chain did not form within 60 s:\n\(summary())\nnode 3 log:\n\(nodes.log(3))")

        // 20 meters on relay 3 record a read every 4 s for 21 intervals (84 s), in the background.
        let intervals = 21, meters = 20
        let sim = Process()
        sim.executableURL = URL(fileURLWithPath: try iotafBinary())
        sim.arguments = ["meter", "simulate", "--control", nodes.socket(3), "--meters", "\(meters)", "--interval", "4s", "--speed", "1",
                         "--intervals", "\(intervals)"]
        sim.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let simErr = Pipe()
        sim.standardError = simErr
        try sim.run()
        defer { if sim.isRunning { sim.terminate() } }

        // Relay 2 loses power mid-chain once reads flow through it, and stays down a minute.
        try #require(waitUntil(30) { int(0, "reads_stored") >= meters }, "no reads reached the collector:\n\(summary())")
        nodes.kill9(2)
        try? FileManager.default.removeItem(atPath: nodes.socket(2))
        Thread.sleep(forTimeInterval: 60)
        let heldByRelay3 = int(3, "held")
        let storedBeforeRestart = int(0, "reads_stored")
        try start(2)
        sim.waitUntilExit()
        let e = simErr.fileHandleForReading.readDataToEndOfFile()
        try #require(sim.terminationStatus == 0, "meter simulate: \(String(decoding: e, as: UTF8.self))")

        let reads = intervals * meters
        #expect(waitUntil(90) { int(0, "reads_stored") == reads && int(0, "reads_pending_anchor") == 0 && (1..<4).allSatisfy { int($0, "held") == 0 } },
                "not every read arrived and was anchored:\n\(summary())")
        let collector = status(0)
        let counters = collector["counters"] as? [String: NSNumber] ?? [:]
        print("MeterChainNetnsTests: \(reads) reads; relay 3 held \(heldByRelay3) while relay 2 was down, the collector had \(storedBeforeRestart) then\n\(summary())")
        // Relay 3 really had to hold reads across the outage, and the loss really happened.
        #expect(heldByRelay3 > meters, "relay 3 held \(heldByRelay3) reads while its parent was down")
        #expect(storedBeforeRestart < reads)
        // Exactly once: each read stored and accepted once, no sequence number missing (whatever
        // arrived twice, after a lost ack or from the restarted relay's disk, was acknowledged as a duplicate).
        #expect(counters["accepted"]?.intValue == reads, "accepted \(counters["accepted"] ?? -1) of \(reads)")
        #expect((collector["missing"] as? [Any])?.isEmpty == true, "missing: \(collector["missing"] ?? "")")
        #expect(int(0, "anchors") > 0)

        // A read's proof checks offline; an edited copy does not.
        let meter = NodeIdentity.deterministic(runSeed: 1, index: 7).publicKey.hex
        let proofPath = "\(nodes.dir)/proof.json"
        let p = try runIotaf(["meter", "proof", "--control", nodes.socket(0), "--meter", meter, "--sequence", "12", "--out", proofPath])
        try #require(p.status == 0, "meter proof: \(p.err)")
        let ok = try runIotaf(["meter", "verify", proofPath])
        #expect(ok.status == 0 && ok.out.contains("VERIFIED"), "\(ok.out) \(ok.err)")
        var text = try String(contentsOfFile: proofPath, encoding: .utf8)
        let value = try #require(text.range(of: #""value" : [0-9]+"#, options: .regularExpression))
        text.replaceSubrange(value, with: "\"value\" : 999999")
        let edited = "\(nodes.dir)/edited.json"
        try text.write(toFile: edited, atomically: true, encoding: .utf8)
        let bad = try runIotaf(["meter", "verify", edited])
        #expect(bad.status != 0 && bad.out.contains("FAILED"), "\(bad.out) \(bad.err)")
    }
}
