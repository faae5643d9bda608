import NodeService

/// The simulated disks of a run's nodes: where `.persist` outputs land and what a restarted node
/// gets back as `.restored`. A protocol, so a disk with faults (losing unsynced writes on a crash,
/// tearing the last write, failing with an I/O error) is one more conforming type, chosen by the
/// scenario; the engine only calls these four.
protocol VirtualDisk {
    /// Carries out one batch on node `node`'s disk at virtual time `now` (nanoseconds); the
    /// outcome is what the node hears back.
    mutating func write(node: Int, _ ops: [StorageOp], now: Int64) -> PersistOutcome
    /// What node `node`'s disk holds, by table then key (handed to it at a restart).
    func rows(node: Int) -> [StoredRow]
    /// Node `node` crashed at `now`: the disk loses what a real one would.
    mutating func crash(node: Int, now: Int64)
    /// Node `node` starts over with a blank disk.
    mutating func wipe(node: Int)
}

/// A disk on which every write is durable at once and nothing is ever lost: the fault-free
/// baseline.
struct SyncedDisk: VirtualDisk {
    /// Per node: table → key → value.
    private var tables: [Int: [String: [[UInt8]: [UInt8]]]] = [:]

    mutating func write(node: Int, _ ops: [StorageOp], now: Int64) -> PersistOutcome {
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
        return .durable
    }

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
}
