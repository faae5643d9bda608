import Foundation
import Synchronization
import GRDB
import Ledger
import MeshCore
import NodeService

/// The ledger's SQLite file (`DATA/ledger.sqlite`): blocks, transactions, a transaction-id index
/// and state rows, each a table of its own, written only as `LedgerRows` storage ops.
///
/// Durability: WAL with `synchronous=FULL` (a committed block survives power loss), one database
/// transaction per `apply` (per block: all of it or none of it after a crash). Debian 12's SQLite
/// is 3.40.1, older than the WAL-reset fix of 3.51.3, so the store keeps to what that bug needs
/// to be out of reach: exactly one connection writes, automatic checkpoints are off, and the same
/// connection checkpoints explicitly (`checkpoint`, every `checkpointEvery` blocks) between blocks.
public final class LedgerStore: Sendable {
    public static let fileName = "ledger.sqlite"
    public let path: String
    let queue: DatabaseQueue
    public let checkpointEvery: Int
    private let sinceCheckpoint = Mutex(0)

    /// Opens or creates the store at `path`. `readOnly` for offline readers (`verify`, `query`).
    public init(path: String, readOnly: Bool = false, checkpointEvery: Int = 64) throws {
        self.path = path
        self.checkpointEvery = checkpointEvery
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            if !readOnly {
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
            }
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        if readOnly, !FileManager.default.fileExists(atPath: path) {
            throw LedgerError("no ledger at \(path)")
        }
        do { queue = try DatabaseQueue(path: path, configuration: config) } catch {
            throw LedgerError("ledger store \(path) cannot be opened: \(error)")
        }
        if !readOnly {
            try queue.write { db in
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY NOT NULL, header BLOB NOT NULL);
                    CREATE TABLE IF NOT EXISTS txs (height INTEGER NOT NULL, idx INTEGER NOT NULL, body BLOB NOT NULL,
                                                    PRIMARY KEY (height, idx)) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS txids (id BLOB PRIMARY KEY NOT NULL, location BLOB NOT NULL) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS headercerts (height INTEGER PRIMARY KEY NOT NULL, cert BLOB NOT NULL);
                    CREATE TABLE IF NOT EXISTS meta (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
                    """)
            }
        }
    }

    /// Carries out one batch of `LedgerRows` ops in one transaction: durable when this returns.
    /// Unknown tables are an error (and nothing of the batch is written).
    public func apply(_ ops: [StorageOp]) throws {
        try queue.write { db in
            for op in ops {
                switch op {
                case .put(let table, let key, let value):
                    try put(db, table, key, value)
                case .delete(let table, let key):
                    try delete(db, table, key)
                case .replace(let table, let rows):
                    try db.execute(sql: "DELETE FROM \(try sqlTable(table))")
                    for r in rows { try put(db, table, r.key, r.value) }
                }
            }
        }
        let due = sinceCheckpoint.withLock { n -> Bool in
            n += 1
            if n >= checkpointEvery { n = 0; return true }
            return false
        }
        if due { try checkpoint() }
    }

    /// Copies the WAL into the database file and restarts it, on the writer's own connection.
    public func checkpoint() throws {
        try queue.writeWithoutTransaction { db in _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    func sqlTable(_ t: String) throws -> String {
        switch t {
        case LedgerRows.blocks: "blocks"
        case LedgerRows.txs: "txs"
        case LedgerRows.txids: "txids"
        case LedgerRows.state: "state"
        case LedgerRows.meta: "meta"
        case LedgerRows.headerCertificates: "headercerts"
        default: throw LedgerError("the ledger store has no table \(t)")
        }
    }

    func put(_ db: Database, _ table: String, _ key: [UInt8], _ value: [UInt8]) throws {
        switch table {
        // Cached statements: a block is thousands of rows, and compiling each INSERT cost more than running it.
        case LedgerRows.blocks:
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO blocks (height, header) VALUES (?, ?)")
                .execute(arguments: [Int64(try height(key)), Data(value)])
        case LedgerRows.headerCertificates:
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO headercerts (height, cert) VALUES (?, ?)")
                .execute(arguments: [Int64(try height(key)), Data(value)])
        case LedgerRows.txs:
            let (h, i) = try txLocation(key)
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO txs (height, idx, body) VALUES (?, ?, ?)").execute(arguments: [h, i, Data(value)])
        default:
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO \(try sqlTable(table)) (\(keyColumn(table)), \(valueColumn(table))) VALUES (?, ?)")
                .execute(arguments: [Data(key), Data(value)])
        }
    }

    func delete(_ db: Database, _ table: String, _ key: [UInt8]) throws {
        switch table {
        case LedgerRows.blocks: try db.execute(sql: "DELETE FROM blocks WHERE height = ?", arguments: [Int64(try height(key))])
        case LedgerRows.headerCertificates: try db.execute(sql: "DELETE FROM headercerts WHERE height = ?", arguments: [Int64(try height(key))])
        case LedgerRows.txs:
            let (h, i) = try txLocation(key)
            try db.execute(sql: "DELETE FROM txs WHERE height = ? AND idx = ?", arguments: [h, i])
        default: try db.execute(sql: "DELETE FROM \(try sqlTable(table)) WHERE \(keyColumn(table)) = ?", arguments: [Data(key)])
        }
    }

    func keyColumn(_ t: String) -> String { t == LedgerRows.txids ? "id" : "key" }
    func valueColumn(_ t: String) -> String { t == LedgerRows.txids ? "location" : "value" }

    func height(_ key: [UInt8]) throws -> UInt64 {
        var r = ByteReader(key)
        guard key.count == 8, let h = try? r.u64(), h <= UInt64(Int64.max) else { throw LedgerError("a block key is a u64 height") }
        return h
    }

    func txLocation(_ key: [UInt8]) throws -> (Int64, Int64) {
        var r = ByteReader(key)
        guard key.count == 12, let h = try? r.u64(), let i = try? r.u32(), h <= UInt64(Int64.max) else {
            throw LedgerError("a transaction key is a u64 height and a u32 index")
        }
        return (Int64(h), Int64(i))
    }

    /// The writer connection's journal mode and synchronous level (2 = FULL), as SQLite reports them.
    public func durabilitySettings() throws -> (journalMode: String, synchronous: Int) {
        try queue.read { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "", try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1)
        }
    }

    // MARK: reads

    public func genesis() throws -> LedgerGenesis? {
        guard let data = try queue.read({ db in try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [Data("genesis".utf8)]) }) else {
            return nil
        }
        return try LedgerGenesis.parse(String(decoding: data, as: UTF8.self))
    }

    /// The highest stored height (0 when no block is stored).
    public func headHeight() throws -> UInt64 {
        UInt64(try queue.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(height) FROM blocks") } ?? 0)
    }

    public func headerBytes(at height: UInt64) throws -> [UInt8]? {
        try queue.read { db in try Data.fetchOne(db, sql: "SELECT header FROM blocks WHERE height = ?", arguments: [Int64(height)]) }.map { [UInt8]($0) }
    }

    public func headerCertificateBytes(at height: UInt64) throws -> [UInt8]? {
        try queue.read { db in try Data.fetchOne(db, sql: "SELECT cert FROM headercerts WHERE height = ?", arguments: [Int64(height)]) }.map { [UInt8]($0) }
    }

    public func headerCertificate(at height: UInt64) throws -> HeaderCertificate? {
        try headerCertificateBytes(at: height).map { try HeaderCertificate.decode($0) }
    }

    public func header(at height: UInt64) throws -> LedgerHeader? {
        try headerBytes(at: height).map { try LedgerHeader.decode($0) }
    }

    /// A block's stored transactions (`LedgerRows.txValue` bytes) in index order.
    public func txBytes(at height: UInt64) throws -> [[UInt8]] {
        try queue.read { db in
            try Data.fetchAll(db, sql: "SELECT body FROM txs WHERE height = ? ORDER BY idx", arguments: [Int64(height)]).map { [UInt8]($0) }
        }
    }

    /// Where a transaction is (height, index), its payload and result.
    public func transaction(id: [UInt8]) throws -> (height: UInt64, index: Int, payload: [UInt8], result: TxResult)? {
        guard let loc = try queue.read({ db in try Data.fetchOne(db, sql: "SELECT location FROM txids WHERE id = ?", arguments: [Data(id)]) }) else {
            return nil
        }
        let (h, i) = try txLocation([UInt8](loc))
        guard let body = try queue.read({ db in
            try Data.fetchOne(db, sql: "SELECT body FROM txs WHERE height = ? AND idx = ?", arguments: [h, i])
        }) else { return nil }
        let (p, r) = try LedgerRows.decodeTxValue([UInt8](body))
        return (UInt64(h), Int(i), p, r)
    }

    /// One transaction that named a key (`iotaf ledger history KEY`).
    public struct HistoryEntry: Sendable, Equatable {
        public let height: UInt64
        public let index: Int
        public let txID: [UInt8]
        public let function: String
        public let signer: [UInt8]
        public let result: TxResult

        public var fields: [String: Any] {
            ["height": height, "index": index, "tx": Hex.encode(txID), "function": function, "signer": Hex.encode(signer), "result": result.description]
        }
    }

    /// Every stored transaction of `chaincode` whose first argument is `key` (for `kv`: each put
    /// and delete of the key, and refused attempts), oldest first, at most `limit`. A scan of the
    /// stored transactions: for an operator's look, not a hot path.
    public func history(chaincode: String, key: [UInt8], limit: Int = 1000) throws -> [HistoryEntry] {
        try queue.read { db in
            var out: [HistoryEntry] = []
            let cursor = try Row.fetchCursor(db, sql: "SELECT height, idx, body FROM txs ORDER BY height, idx")
            while let row = try cursor.next(), out.count < limit {
                let h: Int64 = row[0], i: Int64 = row[1], body: Data = row[2]
                guard let v = try? LedgerRows.decodeTxValue([UInt8](body)), let tx = try? Transaction.decode(v.payload) else { continue }
                guard tx.chaincode == chaincode, tx.args.first == key else { continue }
                out.append(HistoryEntry(height: UInt64(h), index: Int(i), txID: tx.id, function: tx.function, signer: tx.signer, result: v.result))
            }
            return out
        }
    }

    public func stateRows() throws -> [(key: [UInt8], value: [UInt8])] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT key, value FROM state ORDER BY key").map { row in
                let k: Data = row[0], v: Data = row[1]
                return (key: [UInt8](k), value: [UInt8](v))
            }
        }
    }

    /// The ledger as stored: genesis, head and state (checked against the head's state root).
    public func load(genesis given: LedgerGenesis? = nil) throws -> Ledger {
        guard let g = try given ?? genesis() else { throw LedgerError("the store at \(path) holds no genesis") }
        let h = try headHeight()
        return try Ledger(genesis: g, head: h == 0 ? nil : try header(at: h), rows: try stateRows())
    }

    /// The ledger as it stood at `height`: re-executed from genesis over the stored blocks (a node
    /// keeps only its current rows), each re-executed header compared with the stored one. What
    /// `ledger query --height H` of a contract runs on; its cost grows with `height` (every
    /// transaction up to it, signatures included). `start`: the ledger at height 0 to replay on
    /// (default: this store's genesis with the standard contract limits; a chain with other
    /// limits passes its own).
    public func ledger(at height: UInt64, from start: Ledger? = nil) throws -> Ledger {
        var l: Ledger
        if let start { l = start } else {
            guard let g = try genesis() else { throw LedgerError("the store at \(path) holds no genesis") }
            l = Ledger(genesis: g)
        }
        guard l.height == 0 else { throw LedgerError("a replay starts from height 0, not \(l.height)") }
        let head = try headHeight()
        guard height <= head else { throw LedgerError("height \(height) is above this ledger's head, \(head)") }
        // The stored blocks were checked when they were applied here; their headers are compared below.
        l.checksCertificates = false
        var h: UInt64 = 1
        while h <= height {
            guard let hb = try headerBytes(at: h), let header = try? LedgerHeader.decode(hb) else {
                throw LedgerError("the store has no header at height \(h); run `iotaf ledger verify`")
            }
            let payloads = try txBytes(at: h).map { try LedgerRows.decodeTxValue($0).payload }
            guard let block = header.committedBlock(payloads: payloads), let e = try l.apply(block), e.header == header else {
                throw LedgerError("height \(h) does not re-execute to its stored header; run `iotaf ledger verify`")
            }
            h += 1
        }
        return l
    }

    /// Re-checks the whole store from genesis (`LedgerVerifier`); returns the height verified.
    public func verify(genesis given: LedgerGenesis? = nil) throws -> UInt64 {
        guard let g = try given ?? genesis() else { throw LedgerError("the store at \(path) holds no genesis") }
        var v = LedgerVerifier(genesis: g)
        let head = try headHeight()
        // The id index is derived, but `ledger tx` answers from it: each id must name where its
        // transaction is (the last place, for bytes ordered twice), and no other row may exist.
        var stored: [[UInt8]: [UInt8]] = [:]
        for row in try queue.read({ db in try Row.fetchAll(db, sql: "SELECT id, location FROM txids") }) {
            let id: Data = row[0], loc: Data = row[1]
            stored[[UInt8](id)] = [UInt8](loc)
        }
        var expected: [[UInt8]: (UInt64, [UInt8])] = [:]
        var h: UInt64 = 1
        while h <= head {
            guard let hb = try headerBytes(at: h) else { throw LedgerVerifier.Failure.block(height: h, reason: "missing") }
            let txs = try txBytes(at: h)
            try v.check(height: h, header: hb, txs: txs, headerCertificate: try headerCertificateBytes(at: h))
            for (i, t) in txs.enumerated() {
                if let p = try? LedgerRows.decodeTxValue(t).payload, let tx = try? Transaction.decode(p) {
                    expected[tx.id] = (h, LedgerRows.txKey(h, i))
                }
            }
            h += 1
        }
        for (id, (height, loc)) in expected where stored[id] != loc {
            throw LedgerVerifier.Failure.block(height: height, reason: "the id index does not name transaction \(Hex.encode(id.prefix(8)))…")
        }
        if stored.count != expected.count {
            throw LedgerVerifier.Failure.state(height: head, reason: "\(stored.count - expected.count) id index rows name no transaction")
        }
        try v.checkState(rows: try stateRows())
        return head
    }
}
