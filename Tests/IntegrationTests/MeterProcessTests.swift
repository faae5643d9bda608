import Foundation
import MeshCore
import Testing

/// Real processes on ::1: a collector and two relays (`iotaf node run --meter-role …`) beside a
/// ledger of four validators (`--ledger-role validator`; the collector keeps a replica and anchors
/// through it); 20 meters played into relay 2 (`iotaf meter simulate`) while the collector is
/// down, so the reads wait in relay 2's custody; relay 2 is killed with SIGKILL holding them,
/// restarted on its data directory, and the collector comes back: every read arrives, every
/// interval's root is anchored on the ledger, and `iotaf meter verify --genesis` passes on a proof
/// (checked against a certified ledger header) and fails on an edited copy.
@Suite(.serialized) struct MeterProcessTests {
    final class Nodes: @unchecked Sendable {
        let dir = "/tmp/iotaf-mp-\(UUID().uuidString.prefix(8))"
        let ports: [UInt16]
        var procs: [Process?]
        /// Nodes 0-2 run the meter service; 3-6 are the ledger's validators.
        let roles = ["collector", "relay", "relay", nil, nil, nil, nil]

        init() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            ports = roles.map { _ in freeUDPPort() }
            procs = roles.map { _ in nil }
            var keys: [String] = []
            for i in roles.indices {
                let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
                let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
                keys.append(try #require(obj?["public_key"]))
            }
            let r = try runIotaf(["network", "init", "--out", "\(dir)/net", "--validators", keys[3...].joined(separator: ",")])
            #expect(r.status == 0, "network init: \(r.err)")
        }

        func start(_ i: Int) throws {
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", "\(dir)/d\(i)", "--network-key", "\(dir)/net/network.key", "--log-level", "warning"]
            if let role = roles[i] { args += ["--meter-role", role, "--meter-interval-s", "4", "--anchor-grace-s", "1"] }
            if i == 0 { args += ["--ledger-role", "replica"] } else if i >= 3 { args += ["--ledger-role", "validator"] }
            for j in ports.indices where j != i { args += ["--peer", "[::1]:\(ports[j])"] }
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

        func status(_ i: Int) -> [String: Any]? {
            guard let r = try? runIotaf(["meter", "status", "--control", socket(i), "--json"]), r.status == 0 else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        }

        func int(_ i: Int, _ key: String) -> Int { (status(i)?[key] as? NSNumber)?.intValue ?? -1 }

        func waitUntil(_ seconds: Double, _ what: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline { if what() { return true }; Thread.sleep(forTimeInterval: 0.3) }
            return what()
        }

        func stopAll() {
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func readsHeldByAKilledRelayAllArriveAndAreAnchoredAndProvable() throws {
        let n = try Nodes()
        defer { n.stopAll() }
        for i in n.roles.indices { try n.start(i) }
        try #require(n.waitUntil(30) { n.status(2)?["parent"] is String }, "relay 2 found no parent within 30 s: \(n.status(2) ?? [:])")

        // The collector goes away; 20 meters record 3 intervals into relay 2, which keeps them.
        n.kill9(0)
        let sim = try runIotaf(["meter", "simulate", "--control", n.socket(2), "--meters", "20", "--interval", "4s", "--speed", "4", "--intervals", "3"])
        try #require(sim.status == 0, "meter simulate: \(sim.err)")
        let reads = 60
        try #require(n.waitUntil(20) { n.int(2, "held") + n.int(1, "held") == reads },
                     "the relays do not hold the \(reads) reads: relay 2 \(n.int(2, "held")), relay 1 \(n.int(1, "held"))")

        // Relay 2 loses power holding its share; it comes back on its disk, then the collector.
        let heldBefore = n.int(2, "held")
        n.kill9(2)
        try n.start(2)
        // At least what it held: a read already handed on may come back too (its custody row is
        // deleted with the relay's next write, which a kill can precede); the collector keeps
        // each read once, checked below.
        try #require(n.waitUntil(15) { n.int(2, "held") >= heldBefore }, "relay 2 restarted holding \(n.int(2, "held")) reads, fewer than \(heldBefore)")
        try n.start(0)
        #expect(n.waitUntil(90) { n.int(0, "reads_stored") == reads && n.int(0, "reads_pending_anchor") == 0 },
                "collector: \(n.status(0) ?? [:])")
        let collector = try #require(n.status(0))
        #expect((collector["missing"] as? [Any])?.isEmpty == true, "missing reads: \(collector["missing"] ?? "")")
        #expect(n.int(1, "held") == 0 && n.int(2, "held") == 0)
        // Every interval's root is on the ledger (its block durable on the collector's replica).
        #expect(n.waitUntil(60) { n.int(0, "anchors") > 0 && n.int(0, "anchors_on_ledger") == n.int(0, "anchors") && n.int(0, "anchors_unconfirmed") == 0 },
                "anchors on the ledger: \(n.status(0) ?? [:])")

        // A proof of meter 3's second read verifies; an edited copy does not.
        let meter = NodeIdentity.deterministic(runSeed: 1, index: 3).publicKey.hex
        let proofPath = "\(n.dir)/proof.json"
        // (The replica's head certificate may take a moment to arrive.)
        var p = try runIotaf(["meter", "proof", "--control", n.socket(0), "--meter", meter, "--sequence", "1", "--out", proofPath])
        _ = n.waitUntil(20) {
            if p.status == 0 { return true }
            p = (try? runIotaf(["meter", "proof", "--control", n.socket(0), "--meter", meter, "--sequence", "1", "--out", proofPath])) ?? p
            return p.status == 0
        }
        try #require(p.status == 0, "meter proof: \(p.err)")
        let genesis = "\(n.dir)/net/genesis"
        let ok = try runIotaf(["meter", "verify", proofPath, "--genesis", genesis])
        #expect(ok.status == 0 && ok.out.contains("VERIFIED") && ok.out.contains("on the ledger"), "\(ok.out) \(ok.err)")
        var text = try String(contentsOfFile: proofPath, encoding: .utf8)
        let value = try #require(text.range(of: #""value" : [0-9]+"#, options: .regularExpression))
        text.replaceSubrange(value, with: "\"value\" : 999999")
        let edited = "\(n.dir)/edited.json"
        try text.write(toFile: edited, atomically: true, encoding: .utf8)
        let bad = try runIotaf(["meter", "verify", edited, "--genesis", genesis])
        #expect(bad.status != 0 && bad.out.contains("FAILED"), "\(bad.out) \(bad.err)")
    }
}
