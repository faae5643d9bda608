import MeshCore
import NodeService

/// The simulated disks of a run's nodes: where `.persist` outputs land and what a restarted node
/// gets back as `.restored`. Two conforming types: `SyncedDisk` (durable at once, never loses
/// anything: the fault-free baseline) and `FaultyDisk` (writes and an fsync that take virtual
/// time, and the scenario's `disk` faults), chosen by the scenario (`Simulation.init`).
protocol VirtualDisk {
    /// Whether a batch is durable the moment `write` returns. Then the nodes answer their own
    /// persists (`NodeCore.persistsCompleteAtOnce`); otherwise the driver queues a completion at
    /// `DiskWrite.at` and answers `.persisted` when it fires (`completeWrite`).
    var completesAtOnce: Bool { get }
    /// Carries out one batch on node `node`'s disk at virtual time `now` (nanoseconds): the writes
    /// are staged, and the batch will be durable at `at` once its sync completes (`complete`).
    mutating func write(node: Int, _ ops: [StorageOp], now: Int64) -> DiskWrite
    /// The sync of the oldest outstanding batch of `node` completes at `now`: durable, or failed
    /// (an I/O error armed meanwhile).
    mutating func complete(node: Int, now: Int64) -> PersistOutcome
    /// What node `node`'s disk holds, by table then key (handed to it at a restart).
    func rows(node: Int) -> [StoredRow]
    /// Node `node` crashed at `now`: the disk loses what a real one would.
    mutating func crash(node: Int, now: Int64)
    /// Node `node` starts over with a blank disk.
    mutating func wipe(node: Int)
    /// The scenario's `disk` faults (a disk without faults ignores them; scenarios that name
    /// disk faults get a `FaultyDisk`).
    mutating func arm(_ fault: FaultyDisk.Fault, on node: Int)
    mutating func disarm(_ fault: FaultyDisk.Fault, on node: Int)
    func faults(of node: Int) -> Set<FaultyDisk.Fault>
    var diskCounters: FaultyDisk.Counters { get }
}

/// What a `write` did: failed at once (`.failed`, nothing staged after the failing op), or staged
/// and due to be durable at `at`.
struct DiskWrite {
    var outcome: PersistOutcome
    var at: Int64
}

/// A disk on which every write is durable at once and nothing is ever lost: the fault-free
/// baseline.
struct SyncedDisk: VirtualDisk {
    /// Per node: table → key → value.
    private var tables: [Int: [String: [[UInt8]: [UInt8]]]] = [:]

    var completesAtOnce: Bool { true }

    mutating func write(node: Int, _ ops: [StorageOp], now: Int64) -> DiskWrite {
        var t = tables[node] ?? [:]
        for op in ops {
            switch op {
            case let .put(table, key, value): t[table, default: [:]][key] = value
            case let .delete(table, key): t[table]?[key] = nil
            case let .replace(table, rows):
                var fresh: [[UInt8]: [UInt8]] = [:]
                for r in rows { fresh[r.key] = r.value }
                t[table] = fresh
            }
        }
        tables[node] = t
        return DiskWrite(outcome: .durable, at: now)
    }

    mutating func complete(node: Int, now: Int64) -> PersistOutcome { .durable }

    func rows(node: Int) -> [StoredRow] {
        guard let t = tables[node] else { return [] }
        var out: [StoredRow] = []
        for name in t.keys.sorted() {
            for (k, v) in t[name]!.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                out.append(StoredRow(table: name, key: k, value: v))
            }
        }
        return out
    }

    mutating func crash(node: Int, now: Int64) {}

    mutating func wipe(node: Int) { tables[node] = nil }

    mutating func arm(_ fault: FaultyDisk.Fault, on node: Int) {}
    mutating func disarm(_ fault: FaultyDisk.Fault, on node: Int) {}
    func faults(of node: Int) -> Set<FaultyDisk.Fault> { [] }
    var diskCounters: FaultyDisk.Counters { FaultyDisk.Counters() }
}

/// The nodes' rows on a `FaultyDisk`: one key per row, `table` NUL `hex(key)` (table names hold no
/// NUL), so a table's rows are the keys with its prefix. A batch is its writes (a `replace`
/// deletes the table's rows, then writes the new ones), then one sync when it completes; until
/// then the writes are unsynced and a crash loses or tears them as the disk's faults say.
extension FaultyDisk: VirtualDisk {
    var completesAtOnce: Bool { false }

    static func storageKey(_ table: String, _ key: [UInt8]) -> String { table + "\u{0}" + Hex.encode(key) }

    mutating func write(node: Int, _ ops: [StorageOp], now: Int64) -> DiskWrite {
        var t = max(now, busyUntil(node))
        func done(_ r: Result<Int64, IOError>) -> IOError? {
            switch r {
            case let .success(at): t = at; return nil
            case let .failure(e): return e
            }
        }
        for op in ops {
            var failure: IOError?
            switch op {
            case let .put(table, key, value):
                failure = done(write(node, key: Self.storageKey(table, key), value: value, now: t))
            case let .delete(table, key):
                failure = done(delete(node, key: Self.storageKey(table, key), now: t))
            case let .replace(table, rows):
                let prefix = table + "\u{0}"
                let fresh = Set(rows.map { Self.storageKey(table, $0.key) })
                for old in contents(node) where old.key.hasPrefix(prefix) && !fresh.contains(old.key) {
                    if let e = done(delete(node, key: old.key, now: t)) { failure = e; break }
                }
                if failure == nil {
                    for r in rows {
                        if let e = done(write(node, key: Self.storageKey(table, r.key), value: r.value, now: t)) { failure = e; break }
                    }
                }
            }
            if let failure { return DiskWrite(outcome: .failed("\(failure)"), at: t) }
        }
        return DiskWrite(outcome: .durable, at: reserveSync(node, now: t))
    }

    mutating func complete(node: Int, now: Int64) -> PersistOutcome {
        switch sync(node, now: now, charged: false) {
        case .success: return .durable
        case let .failure(e): return .failed("\(e)")
        }
    }

    func rows(node: Int) -> [StoredRow] {
        contents(node).compactMap { entry in
            guard let cut = entry.key.firstIndex(of: "\u{0}"),
                  let key = Hex.decode(String(entry.key[entry.key.index(after: cut)...])) else { return nil }
            return StoredRow(table: String(entry.key[..<cut]), key: key, value: entry.value)
        }
    }

    mutating func crash(node: Int, now: Int64) { crash(node) }
    mutating func wipe(node: Int) { wipe(node) }
    var diskCounters: FaultyDisk.Counters { counters }
}
