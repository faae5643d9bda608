import Foundation
import Testing
import GRDB
import Consensus
import Ledger
import LedgerStore
import MeshCore
import NodeService

/// The store on real SQLite files in a fresh directory.
@Suite struct StoreTests {
    static func tempDir() -> String {
        let d = NSTemporaryDirectory() + "ledger-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// A store with `blocks` blocks of a kv workload (and every header certified), and the ledger that wrote it.
    static func build(at dir: String, blocks: Int = 5) throws -> (LedgerStore, Ledger, Fixture) {
        var f = Fixture()
        let store = try LedgerStore(path: dir + "/" + LedgerStore.fileName)
        try store.apply(LedgerRows.genesisOps(f.genesis))
        var l = Ledger(genesis: f.genesis)
        for h in 0..<blocks {
            var payloads = (0..<4).map { i in f.alice.invoke(f, "kv", "put", "k\(h)-\(i)", "v\(h)-\(i)") }
            payloads.append(f.bob.invoke(f, "kv", "put", "k\(h)-0", "not-his"))
            if h == 2 { payloads.append(f.alice.invoke(f, "kv", "delete", "k0-0")) }
            let e = try #require(try l.apply(f.chain.next(payloads)))
            try store.apply(LedgerRows.ops(for: e))
            try store.apply(LedgerRows.ops(for: f.chain.certify(e)))
        }
        try store.checkpoint()
        return (store, l, f)
    }

    @Test func blocksAndStateComeBackFromTheFileAndTheStoreIsWALWithFullSync() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (store, l, f) = try Self.build(at: dir)
        let settings = try store.durabilitySettings()
        #expect(settings.journalMode == "wal" && settings.synchronous == 2)

        let reopened = try LedgerStore(path: dir + "/" + LedgerStore.fileName)
        var back = try reopened.load()
        #expect(back.height == 5 && back.headHash == l.headHash && back.state.root == l.state.root)
        #expect(try reopened.genesis() == f.genesis)
        #expect(try reopened.verify() == 5)
        // The refused transaction is found by its id, with its reason.
        let txs = try reopened.txBytes(at: 1)
        let (payload, result) = try LedgerRows.decodeTxValue(txs[4])
        #expect(result == .refused(Refusal(.notOwner, "key is owned by \(Hex.encode(f.alice.publicKey.prefix(6)))…")))
        let found = try #require(try reopened.transaction(id: try Transaction.decode(payload).id))
        #expect(found.height == 1 && found.index == 4)
        // The restored ledger goes on where it stopped.
        var g = f
        let next = g.chain.next([g.alice.invoke(g, "kv", "put", "after", "restart")])
        #expect(try back.apply(next)?.header.height == 6)
    }

    /// Changes one byte of one stored row with plain SQL (as someone editing the file would).
    static func flip(_ path: String, _ sql: String, _ column: String, where condition: String) throws {
        let q = try DatabaseQueue(path: path)
        try q.write { db in
            var bytes = [UInt8](try #require(try Data.fetchOne(db, sql: "SELECT \(column) FROM \(sql) WHERE \(condition)")))
            bytes[bytes.count / 2] ^= 0x01
            try db.execute(sql: "UPDATE \(sql) SET \(column) = ? WHERE \(condition)", arguments: [Data(bytes)])
        }
    }

    @Test(arguments: [
        ("blocks", "header", "height = 3", 3 as UInt64),
        ("txs", "body", "height = 2 AND idx = 1", 2),
        ("txs", "body", "height = 4 AND idx = 4", 4),  // the refused transaction's stored result
        ("headercerts", "cert", "height = 5", 5),
        ("txids", "location", "location = (SELECT location FROM txids ORDER BY location LIMIT 1 OFFSET 7)", 2),
    ])
    func changingAnyByteOfAStoredBlockIsDetectedAtItsHeight(table: String, column: String, condition: String, height: UInt64) throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + LedgerStore.fileName
        _ = try Self.build(at: dir)
        try Self.flip(path, table, column, where: condition)
        do {
            _ = try LedgerStore(path: path, readOnly: true).verify()
            Issue.record("verify passed a changed \(table) row")
        } catch let failure as LedgerVerifier.Failure {
            #expect(failure.height == height, "\(failure)")
        }
    }

    @Test func changingAStoredStateRowIsDetectedAndTheStoreRefusesToLoad() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + LedgerStore.fileName
        _ = try Self.build(at: dir)
        try Self.flip(path, "state", "value", where: "key = (SELECT key FROM state ORDER BY key LIMIT 1 OFFSET 7)")
        do {
            _ = try LedgerStore(path: path, readOnly: true).verify()
            Issue.record("verify passed a changed state row")
        } catch let failure as LedgerVerifier.Failure {
            guard case .state(5, _) = failure else { Issue.record("\(failure)"); return }
        }
        #expect(throws: LedgerError.self) { try LedgerStore(path: path).load() }
    }

    /// A crash in the middle of writing a block: the files as they are on disk at that instant
    /// (the WAL holding the block's uncommitted pages) open at the previous block, whole and
    /// verified; the files after the commit open at the new block.
    @Test func aCrashMidBlockLeavesTheWholeBlockOrNoneOfIt() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + LedgerStore.fileName
        let built = try Self.build(at: dir, blocks: 3)
        var l = built.1, f = built.2
        let big = (0..<200).map { i in f.alice.invoke(f, "kv", "put", "big-\(i)", String(repeating: "x", count: 256)) }
        let e = try #require(try l.apply(f.chain.next(big)))

        // A second connection writes the block's rows in one transaction with a tiny page cache,
        // so its pages spill into the WAL before the commit; the files are copied mid-transaction.
        let crashed = dir + "/crashed"
        try FileManager.default.createDirectory(atPath: crashed, withIntermediateDirectories: true)
        let writer = try DatabaseQueue(path: path)
        try writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA cache_size = 2")
            try db.execute(sql: "BEGIN IMMEDIATE")
            for op in LedgerRows.ops(for: e) {
                guard case .put(let table, let key, let value) = op else { continue }
                switch table {
                case LedgerRows.blocks: try db.execute(sql: "INSERT INTO blocks VALUES (?, ?)", arguments: [4, Data(value)])
                case LedgerRows.txs:
                    var r = ByteReader(key)
                    try db.execute(sql: "INSERT INTO txs VALUES (?, ?, ?)", arguments: [Int64(try r.u64()), Int64(try r.u32()), Data(value)])
                case LedgerRows.txids: try db.execute(sql: "INSERT INTO txids VALUES (?, ?)", arguments: [Data(key), Data(value)])
                default: try db.execute(sql: "INSERT OR REPLACE INTO state VALUES (?, ?)", arguments: [Data(key), Data(value)])
                }
            }
            let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            #expect(wal > 0, "the uncommitted block reached the WAL")
            for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: path + suffix) {
                try FileManager.default.copyItem(atPath: path + suffix, toPath: crashed + "/" + LedgerStore.fileName + suffix)
            }
            try db.execute(sql: "ROLLBACK")
        }
        let before = try LedgerStore(path: crashed + "/" + LedgerStore.fileName)
        #expect(try before.headHeight() == 3)
        #expect(try before.verify() == 3)
        #expect(try before.txBytes(at: 4).isEmpty)

        // The real store, committed: the whole block.
        try LedgerStore(path: path).apply(LedgerRows.ops(for: e))
        let after = try LedgerStore(path: path, readOnly: true)
        #expect(try after.headHeight() == 4 && after.txBytes(at: 4).count == 200)
        #expect(try after.verify() == 4)
    }

    @Test func aBatchWithAnUnknownTableWritesNothing() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (store, _, _) = try Self.build(at: dir, blocks: 1)
        #expect(throws: LedgerError.self) {
            try store.apply([.put(table: LedgerRows.blocks, key: LedgerRows.heightKey(2), value: [1]), .put(table: "gossip.x", key: [1], value: [1])])
        }
        #expect(try store.headHeight() == 1)
    }
}
