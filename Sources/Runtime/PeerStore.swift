import Foundation
import GRDB
import MeshCore
import NodeService

/// Remembers the members a node has seen, in SQLite, so that after a reboot it reconnects
/// without its seeds. Only the loop's thread-pool jobs touch it after startup.
public final class PeerStore: Sendable {
    public struct Row: Sendable, Equatable {
        public var publicKey: [UInt8]
        public var address: UnderlayAddress
        public var lastSeenUnix: Int64

        public init(publicKey: [UInt8], address: UnderlayAddress, lastSeenUnix: Int64) {
            self.publicKey = publicKey
            self.address = address
            self.lastSeenUnix = lastSeenUnix
        }
    }

    let queue: DatabaseQueue
    public let path: String

    /// Opens or creates the store. A file that is not a readable SQLite database is moved
    /// aside (never deleted) and a fresh store is started, with the reason returned.
    public static func open(path: String) throws -> (PeerStore, warning: String?) {
        do {
            return (try PeerStore(path: path), nil)
        } catch let error as DatabaseError where error.resultCode != .SQLITE_CORRUPT && error.resultCode != .SQLITE_NOTADB {
            // Busy, locked, read-only, full: the file may be fine, so it stays where it is.
            throw RuntimeError("peer store \(path) cannot be opened: \(error.message ?? "\(error)"); check the data directory's permissions and free space, and that no other iotaf uses it")
        } catch {
            let aside = path + ".corrupt-\(Int(Date().timeIntervalSince1970))"
            guard rename(path, aside) == 0 else {
                throw RuntimeError("peer store \(path) cannot be opened (\(error)) nor moved aside; remove it by hand")
            }
            // Its write-ahead log goes with it: replayed into the fresh store it would corrupt it.
            for suffix in ["-wal", "-shm"] { _ = rename(path + suffix, aside + suffix) }
            return (try PeerStore(path: path), "peer store \(path) was unreadable (\(error)); moved it to \(aside) and started a new one")
        }
    }

    init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(5)  // the node's periodic writes and a reader may meet
        // WAL with synchronous = FULL (as LedgerStore): a transaction is durable when it returns,
        // with one fsync (of the log) instead of the rollback journal's two or three and a file
        // created and deleted. A validator writes its safety state before every vote, so this
        // write is on consensus's critical path. (GRDB's `journalMode = .wal` would set
        // synchronous = NORMAL, whose commits are not durable: the pragmas are set here instead.)
        // One connection writes (the node's); its automatic checkpoints run on that connection.
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        queue = try DatabaseQueue(path: path, configuration: config)
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS peers (
                    node_id TEXT PRIMARY KEY NOT NULL,
                    public_key BLOB NOT NULL,
                    address TEXT NOT NULL,
                    last_seen INTEGER NOT NULL
                )
                """)
            // One row: what this node last announced about itself, so a restart goes on above it.
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS self_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    incarnation INTEGER NOT NULL,
                    attribute_version INTEGER NOT NULL
                )
                """)
            // Services' own tables (`.persist` outputs): rows of bytes the store never reads.
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS service_state (
                    name TEXT NOT NULL,
                    key BLOB NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (name, key)
                )
                """)
            _ = try Row.fetchCount(db)
        }
    }

    /// Carries out one `.persist` batch in one transaction: durable when this returns. Puts and
    /// deletes run prepared statements cached on the connection (a relay writes a batch of rows
    /// per datagram: the SQL is compiled once per connection, not once per row).
    public func apply(_ ops: [StorageOp]) throws {
        try queue.write { db in
            for op in ops {
                switch op {
                case let .put(table, key, value):
                    try db.cachedStatement(sql: """
                        INSERT INTO service_state (name, key, value) VALUES (?, ?, ?)
                        ON CONFLICT(name, key) DO UPDATE SET value = excluded.value
                        """).execute(arguments: [table, Data(key), Data(value)])
                case let .delete(table, key):
                    try db.cachedStatement(sql: "DELETE FROM service_state WHERE name = ? AND key = ?").execute(arguments: [table, Data(key)])
                case let .replace(table, rows):
                    try db.execute(sql: "DELETE FROM service_state WHERE name = ?", arguments: [table])
                    for row in rows {
                        try db.execute(sql: "INSERT OR REPLACE INTO service_state (name, key, value) VALUES (?, ?, ?)",
                                       arguments: [table, Data(row.key), Data(row.value)])
                    }
                }
            }
        }
    }

    /// Every service row, by table then key (what `.restored` hands the node at start).
    public func loadServiceRows() throws -> [StoredRow] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT name, key, value FROM service_state ORDER BY name, key").map { r in
                StoredRow(table: r["name"], key: (r["key"] as Data?).map { Array($0) } ?? [], value: (r["value"] as Data?).map { Array($0) } ?? [])
            }
        }
    }

    /// What this node announced about itself in its last life.
    public struct SelfState: Sendable, Equatable {
        public var incarnation: UInt32
        public var attributeVersion: UInt32
        public init(incarnation: UInt32, attributeVersion: UInt32) {
            self.incarnation = incarnation
            self.attributeVersion = attributeVersion
        }
    }

    /// The stored self state; nil when none was saved. Values outside u32 are an error that names
    /// the file, so the caller can start from 0 and say why.
    public func loadSelfState() throws -> SelfState? {
        try queue.read { db in
            guard let r = try GRDB.Row.fetchOne(db, sql: "SELECT incarnation, attribute_version FROM self_state WHERE id = 1") else { return nil }
            let inc: Int64? = r["incarnation"], version: Int64? = r["attribute_version"]
            guard let inc, let version, let i = UInt32(exactly: inc), let v = UInt32(exactly: version) else {
                throw RuntimeError("peer store \(path): self_state row holds \(String(describing: inc)), \(String(describing: version)), not two u32 values")
            }
            return SelfState(incarnation: i, attributeVersion: v)
        }
    }

    public func saveSelfState(_ state: SelfState) throws {
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO self_state (id, incarnation, attribute_version) VALUES (1, ?, ?)
                ON CONFLICT(id) DO UPDATE SET incarnation = excluded.incarnation, attribute_version = excluded.attribute_version
                """, arguments: [Int64(state.incarnation), Int64(state.attributeVersion)])
        }
    }

    /// Rows that decode; a malformed row is skipped and counted rather than trusted.
    public func load() throws -> (rows: [Row], skipped: Int) {
        try queue.read { db in
            var rows: [Row] = []
            var skipped = 0
            for r in try GRDB.Row.fetchAll(db, sql: "SELECT public_key, address, last_seen FROM peers ORDER BY last_seen DESC") {
                let key: [UInt8] = (r["public_key"] as Data?).map { Array($0) } ?? []
                guard key.count == 32, let text: String = r["address"], let addr = UnderlayAddress(parsing: text) else {
                    skipped += 1
                    continue
                }
                rows.append(Row(publicKey: key, address: addr, lastSeenUnix: r["last_seen"]))
            }
            return (rows, skipped)
        }
    }

    /// Replaces the remembered set with `rows` in one transaction.
    public func save(_ rows: [Row]) throws {
        try queue.write { db in
            for row in rows {
                try db.execute(sql: """
                    INSERT INTO peers (node_id, public_key, address, last_seen) VALUES (?, ?, ?, ?)
                    ON CONFLICT(node_id) DO UPDATE SET address = excluded.address, last_seen = excluded.last_seen
                    """, arguments: [NodeID(publicKey: row.publicKey).hex, Data(row.publicKey), row.address.description, row.lastSeenUnix])
            }
            // Peers not seen for 30 days are not worth reconnecting to.
            try db.execute(sql: "DELETE FROM peers WHERE last_seen < ?", arguments: [Int64(Date().timeIntervalSince1970) - 30 * 86400])
        }
    }
}

extension PeerStore.Row {
    static func fetchCount(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM peers") ?? 0
    }
}
