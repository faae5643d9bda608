import Foundation
import Testing

/// Contracts through running nodes: four validators and a replica as processes on ::1. The
/// meter-billing example is deployed through a validator's control socket (`iotaf ledger
/// deploy`), a collector registers and records intervals through another validator (`ledger
/// submit`), a validator is killed with SIGKILL between records and restarted later; the replica
/// answers the total (`ledger query`) and proves it (`--prove`, checked offline against the
/// genesis); every data directory verifies and holds the same block at the common height.
@Suite(.serialized) struct ContractServiceProcessTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Docs/examples/contracts").standardized.path

    final class Mesh: @unchecked Sendable {
        let dir = "/tmp/iotaf-cp-\(UUID().uuidString.prefix(8))"
        let validators = 4, count = 5
        let ports: [UInt16]
        var procs: [Process?]

        init() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            ports = (0..<5).map { _ in freeUDPPort() }
            procs = Array(repeating: nil, count: 5)
            var keys: [String] = []
            for i in 0..<5 {
                let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
                let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
                keys.append(try #require(obj?["public_key"]))
            }
            let r = try runIotaf(["network", "init", "--out", "\(dir)/net", "--validators", keys[0..<4].joined(separator: ",")])
            #expect(r.status == 0, "network init: \(r.err)")
        }

        func start(_ i: Int) throws {
            var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", socket(i),
                        "--data", "\(dir)/d\(i)", "--network-key", "\(dir)/net/network.key",
                        "--ledger-role", i < validators ? "validator" : "replica", "--log-level", "warning"]
            for j in 0..<validators where j != i { args += ["--peer", "[::1]:\(ports[j])"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try iotafBinary())
            p.arguments = args
            _ = FileManager.default.createFile(atPath: "\(dir)/n\(i).log", contents: nil)
            p.standardError = FileHandle(forWritingAtPath: "\(dir)/n\(i).log")
            try p.run()
            procs[i] = p
        }

        func socket(_ i: Int) -> String { "\(dir)/n\(i).sock" }
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

        /// `ledger query billing total METER TARIFF` on node i: the total, or nil.
        func total(_ i: Int, _ meter: String) -> String? {
            json(["ledger", "query", "billing", "total", meter, "day", "--control", socket(i), "--json"])?["output"] as? String
        }

        func stopAll() {
            for p in procs.compactMap({ $0 }) where p.isRunning { p.terminate(); p.waitUntilExit() }
        }
    }

    @Test func deployInvokeAndQueryThroughRunningNodesSurviveAKilledValidator() throws {
        let m = try Mesh()
        defer { m.stopAll(); try? FileManager.default.removeItem(atPath: m.dir) }
        for i in 0..<m.count { try m.start(i) }
        var deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<m.count).allSatisfy({ m.height($0) >= 1 }) { Thread.sleep(forTimeInterval: 0.3) }
        try #require((0..<m.count).allSatisfy { m.height($0) >= 1 }, "ledger nodes did not all apply a block within 30 s")

        // Deploy through validator 0: signed by its identity, ordered and executed by all four.
        let deploy = try runIotaf(["ledger", "deploy", "billing", Self.examples + "/meter-billing.wat", "--control", m.socket(0), "--json"])
        #expect(deploy.status == 0 && deploy.out.contains("\"version\":1"), "deploy: \(deploy.out) \(deploy.err)")
        // Validator 1's node registers as a collector and records an interval.
        let reg = try runIotaf(["ledger", "submit", "registry", "register", "collector", "fd00::9", "role=collector", "--control", m.socket(1)])
        #expect(reg.status == 0, "register: \(reg.out) \(reg.err)")
        let r1 = m.json(["ledger", "submit", "billing", "record", "m-1", "day", "250", "i-1", "--control", m.socket(1), "--json"])
        #expect(r1?["output"] as? String == "250", "record i-1: \(String(describing: r1))")
        #expect((r1?["events"] as? [[String: Any]])?.first?["topic"] as? String == "energy")
        // A node that is no collector is refused by the contract, on every validator alike.
        let stranger = try runIotaf(["ledger", "submit", "billing", "record", "m-1", "day", "5", "i-9", "--control", m.socket(2)])
        #expect(stranger.status != 0 && stranger.err.contains("only a collector"), "\(stranger.out) \(stranger.err)")

        // Kill -9 a validator mid-way; three of four still commit.
        m.kill9(3)
        let r2 = m.json(["ledger", "submit", "billing", "record", "m-1", "day", "100", "i-2", "--control", m.socket(1), "--json"])
        #expect(r2?["output"] as? String == "350", "record i-2 with a validator down: \(String(describing: r2))")
        let again = try runIotaf(["ledger", "submit", "billing", "record", "m-1", "day", "100", "i-2", "--control", m.socket(1)])
        #expect(again.status != 0 && again.err.contains("already recorded"), "\(again.out) \(again.err)")

        // The replica answers from its own verified copy.
        deadline = Date().addingTimeInterval(20)
        while Date() < deadline, m.total(4, "m-1") != "350" { Thread.sleep(forTimeInterval: 0.3) }
        #expect(m.total(4, "m-1") == "350", "the replica's total: \(String(describing: m.total(4, "m-1")))")
        // ... and proves it: the proof checks offline against the genesis alone.
        let proof = "\(m.dir)/total.proof"
        deadline = Date().addingTimeInterval(20)
        var proved = false
        while Date() < deadline, !proved {
            proved = (try? runIotaf(["ledger", "query", "billing", "total", "m-1", "day", "--control", m.socket(4), "--prove", proof]))?.status == 0
            if !proved { Thread.sleep(forTimeInterval: 0.3) }
        }
        #expect(proved, "no proof from the replica within 20 s")
        // Checked against the genesis from the replica's data directory, and against the file `network init` wrote.
        let check = try runIotaf(["ledger", "check-proof", proof, "--data", m.data(4)])
        #expect(check.status == 0 && check.out.contains("billing.total"), "check-proof: \(check.out) \(check.err)")
        let checkFile = try runIotaf(["ledger", "check-proof", proof, "--genesis", "\(m.dir)/net/genesis"])
        #expect(checkFile.status == 0 && checkFile.out.contains("billing.total"), "check-proof --genesis: \(checkFile.out) \(checkFile.err)")

        // Upgrade through the nodes: validator 0 deploys `svc` (the counter), then a new version (the
        // permission filter, which has no `value`); validator 2, neither its owner nor an admin, may
        // not. The replica answers the head with the new version and older heights with the old one.
        let v1 = m.json(["ledger", "deploy", "svc", Self.examples + "/counter.wat", "--control", m.socket(0), "--json"])
        let h1 = try #require((v1?["height"] as? NSNumber)?.uint64Value, "deploy svc: \(String(describing: v1))")
        let bumped = m.json(["ledger", "submit", "svc", "bump", "k", "--control", m.socket(0), "--json"])
        #expect(bumped?["output_hex"] as? String == "0100000000000000", "bump: \(String(describing: bumped))")
        let taken = try runIotaf(["ledger", "deploy", "svc", Self.examples + "/permission-filter.wat", "--control", m.socket(2)])
        #expect(taken.status != 0 && (taken.out + taken.err).contains("not_owner"), "an upgrade by another node: \(taken.out) \(taken.err)")
        let v2 = m.json(["ledger", "deploy", "svc", Self.examples + "/permission-filter.wat", "--control", m.socket(0), "--json"])
        #expect((v2?["version"] as? NSNumber)?.intValue == 2, "upgrade: \(String(describing: v2))")
        let h2 = try #require((v2?["height"] as? NSNumber)?.uint64Value)
        #expect(h2 > h1 + 1)
        deadline = Date().addingTimeInterval(20)
        while Date() < deadline, m.height(4) < h2 { Thread.sleep(forTimeInterval: 0.3) }
        let head = try runIotaf(["ledger", "query", "svc", "value", "k", "--control", m.socket(4), "--json"])
        #expect(head.status != 0 && head.out.contains("unknown_function"), "svc at the head: \(head.out) \(head.err)")
        // An older height runs as the chain stood then (the replica re-executes its stored blocks up
        // to it): at h1 the counter before the bump, at h2 - 1 after it.
        for (h, want) in [(h1, "0000000000000000"), (h2 - 1, "0100000000000000")] {
            let old = m.json(["ledger", "query", "svc", "value", "k", "--height", String(h), "--control", m.socket(4), "--json"])
            #expect(old?["output_hex"] as? String == want, "svc at height \(h): \(String(describing: old))")
        }

        // The killed validator restarts on its data directory and catches up.
        try m.start(3)
        let r3 = m.json(["ledger", "submit", "billing", "record", "m-1", "day", "50", "i-3", "--control", m.socket(1), "--json"])
        #expect(r3?["output"] as? String == "400", "record i-3: \(String(describing: r3))")
        let target = m.height(1)
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(0..<m.count).allSatisfy({ m.height($0) >= target }) { Thread.sleep(forTimeInterval: 0.3) }
        #expect((0..<m.count).allSatisfy { m.height($0) >= target }, "every node should reach height \(target): \((0..<m.count).map(m.height))")
        #expect(m.total(3, "m-1") == "400", "the restarted validator's total: \(String(describing: m.total(3, "m-1")))")
        m.stopAll()

        // Every data directory re-executes the contract from genesis and holds the same block at the common height.
        var tops: [UInt64] = []
        for i in 0..<m.count {
            let v = try runIotaf(["ledger", "verify", "--data", m.data(i), "--json"])
            #expect(v.status == 0, "ledger verify on node \(i): \(v.out) \(v.err)")
            tops.append((m.json(["ledger", "status", "--data", m.data(i), "--json"])?["height"] as? NSNumber)?.uint64Value ?? 0)
        }
        let common = tops.min() ?? 0
        #expect(common >= target)
        let hashes = (0..<m.count).map { m.json(["ledger", "block", String(common), "--data", m.data($0), "--json"])?["hash"] as? String }
        #expect(hashes.allSatisfy { $0 != nil } && Set(hashes.compactMap { $0 }).count == 1, "block \(common): \(hashes)")
    }
}
