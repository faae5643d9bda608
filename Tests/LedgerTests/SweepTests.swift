import Foundation
import Testing
import Consensus
import Ledger
import LedgerStore
import MeshCore

/// Random workloads over a sweep of seeds: a replica that runs every block, and one restarted from
/// the store half-way, agree on every header hash; the root from the stored rows is the root the
/// executor kept; the store verifies. `LEDGER_SWEEP_SEEDS=A..B` for more seeds.
@Suite struct SweepTests {
    static var seeds: ClosedRange<UInt64> {
        let parts = (ProcessInfo.processInfo.environment["LEDGER_SWEEP_SEEDS"] ?? "").split(separator: ".").compactMap { UInt64($0) }
        if parts.count == 2, parts[0] <= parts[1] { return parts[0]...parts[1] }
        return 1...20
    }

    /// One random transaction: mostly valid calls on a small key space (so owners collide), some
    /// invalid (another chain, a replayed payload, garbage).
    static func randomPayload(_ g: inout SeededGenerator, _ users: inout [TransactionSigner], _ f: Fixture, _ sent: [[UInt8]]) -> [UInt8] {
        let u = Int(g.next() % UInt64(users.count))
        let key = "k\(g.next() % 12)"
        func inv(_ cc: String, _ fn: String, _ args: [String]) -> [UInt8] {
            try! users[u].sign(.invoke, cc, fn, args.map { Array($0.utf8) }, chainID: f.chainID).encoded
        }
        switch g.next() % 14 {
        case 0...4: return inv("kv", "put", [key, "v\(g.next() % 1000)"])
        case 5: return inv("kv", "delete", [key])
        case 6: return inv("registry", "register", ["meter", "fd00::\(u)", "n=\(g.next() % 9)"])
        case 7: return inv("registry", "retire", [Hex.encode(users[Int(g.next() % UInt64(users.count))].publicKey)])
        case 8: return inv("anchor", "put", ["obj-\(g.next() % 20)", String(repeating: "ab", count: 16), "l", "\(g.next() % 99)"])
        case 9: return inv("cull", "cull", [Hex.encode(users[Int(g.next() % UInt64(users.count))].publicKey)])
        case 10: return inv("validators", "add", [Hex.encode(users[Int(g.next() % UInt64(users.count))].publicKey), "\(g.next() % 40)"])
        case 11: return try! users[u].sign(.invoke, "kv", "put", [Array(key.utf8), [1]], chainID: [UInt8](repeating: 9, count: 32)).encoded
        case 12: return sent.isEmpty ? [0] : sent[Int(g.next() % UInt64(sent.count))]
        default: return (0..<Int(g.next() % 64)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        }
    }

    @Test(arguments: Array(seeds))
    func aRestartedReplicaAndAContinuousOneAgreeOnEveryHeader(seed: UInt64) throws {
        var g = SeededGenerator(seed: seed)
        var f = Fixture()
        var users = [f.admin, f.alice, f.bob]
        let dir = NSTemporaryDirectory() + "ledger-sweep-\(seed)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + LedgerStore.fileName
        var store: LedgerStore? = try LedgerStore(path: path)
        try store!.apply(LedgerRows.genesisOps(f.genesis))

        var continuous = Ledger(genesis: f.genesis)
        var restarted: Ledger?
        var sent: [[UInt8]] = []
        var refused = 0, accepted = 0
        for height in 1...10 {
            var payloads: [[UInt8]] = []
            for _ in 0..<Int(g.next() % 30) {
                let p = Self.randomPayload(&g, &users, f, sent)
                if !payloads.contains(p) { payloads.append(p) }  // consensus never orders a payload twice in a block
            }
            sent += payloads
            let block = f.chain.next(payloads)
            let e = try #require(try continuous.apply(block))
            for r in e.results { if case .ok = r { accepted += 1 } else { refused += 1 } }
            try store!.apply(LedgerRows.ops(for: e))
            if height == 5 {
                store = nil  // the process stops; a new one opens the file
                store = try LedgerStore(path: path)
                restarted = try store!.load()
                #expect(restarted?.headHash == continuous.headHash)
            } else if var r = restarted {
                let er = try #require(try r.apply(block))
                #expect(er.hash == e.hash && er.results == e.results, "seed \(seed) height \(height)")
                restarted = r
            }
        }
        #expect(accepted > 0 && refused > 0)
        var fromRows = StateTree()
        for row in try store!.stateRows() { fromRows.set(row.key, row.value) }
        #expect(fromRows.rootHash == continuous.state.root)
        #expect(try store!.verify() == 10)
    }
}
