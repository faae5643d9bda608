import MeshCore

/// A fault-injecting key-value disk per node (the `disk` timeline faults): a store whose writes become durable
/// only when synced, as a file is after fsync. The simulator carries a node's persist outputs out
/// against it; what survives a crash depends on the faults armed on that node:
///
/// - no fault: a crash keeps every completed write, synced or not (the OS flushed its cache).
/// - `lose_unsynced`: a crash loses every write since the last sync.
/// - `tear_last_write`: a crash leaves the last unsynced write torn: only a prefix of its bytes
///   (drawn from the disk's own generator) replaces the old value (a torn delete leaves the old
///   value); writes before it are lost.
/// - `io_error`: every write and sync fails with an I/O error while the fault lasts; nothing changes.
///
/// Faults are armed by the scenario's timeline (`kind = "disk"`, `mode = …`, undone after `for_s`).
/// Completion times come back with each call, so a persist's sends can wait for its sync.
/// Protocol-free: keys are strings, values bytes; the node's store decides what they mean.
public struct FaultyDisk: Sendable {
    public enum Fault: String, Sendable, CaseIterable {
        case loseUnsynced = "lose_unsynced"
        case tearLastWrite = "tear_last_write"
        case ioError = "io_error"
    }

    public struct IOError: Error, Sendable, Equatable, CustomStringConvertible {
        public let node: Int
        public let operation: String
        public var description: String { "simulated I/O error on node \(node)'s disk during \(operation) (a `disk` io_error fault is armed)" }
    }

    public struct Counters: Sendable, Equatable {
        public var writes: UInt64 = 0, syncs: UInt64 = 0, ioErrors: UInt64 = 0
        /// Writes a crash threw away (`lose_unsynced`, and those before a torn one).
        public var lostWrites: UInt64 = 0
        public var tornWrites: UInt64 = 0
    }

    struct Disk: Sendable {
        var durable: [String: [UInt8]] = [:]
        /// Writes since the last sync, in order; a nil value deletes the key.
        var pending: [(key: String, value: [UInt8]?)] = []
        var faults: Set<Fault> = []
        /// When the disk is free again: writes and syncs queue behind each other.
        var busyUntil: Int64 = 0
    }

    private var disks: [Disk]
    private var rng: SeededGenerator
    /// Virtual time one write and one sync take.
    public let writeNanos: Int64
    public let syncNanos: Int64
    public private(set) var counters = Counters()

    public init(nodes: Int, rng: SeededGenerator, writeNanos: Int64 = 50_000, syncNanos: Int64 = 2_000_000) {
        disks = Array(repeating: Disk(), count: nodes)
        self.rng = rng
        self.writeNanos = writeNanos
        self.syncNanos = syncNanos
    }

    /// Writes `value` under `key` (not yet durable); returns when the write completes.
    public mutating func write(_ node: Int, key: String, value: [UInt8], now: Int64) -> Result<Int64, IOError> {
        record(node, key: key, value: value, now: now)
    }

    /// Deletes `key` (not yet durable: a crash may bring the old value back); returns when done.
    public mutating func delete(_ node: Int, key: String, now: Int64) -> Result<Int64, IOError> {
        record(node, key: key, value: nil, now: now)
    }

    private mutating func record(_ node: Int, key: String, value: [UInt8]?, now: Int64) -> Result<Int64, IOError> {
        if disks[node].faults.contains(.ioError) {
            counters.ioErrors += 1
            return .failure(IOError(node: node, operation: "write of \(key)"))
        }
        counters.writes += 1
        disks[node].pending.append((key, value))
        return .success(advance(node, by: writeNanos, now: now))
    }

    /// Makes every earlier write durable; returns when the sync completes. `charged: false` for a
    /// sync whose time was already reserved (`reserveSync`): it takes effect at `now`.
    public mutating func sync(_ node: Int, now: Int64, charged: Bool = true) -> Result<Int64, IOError> {
        if disks[node].faults.contains(.ioError) {
            counters.ioErrors += 1
            return .failure(IOError(node: node, operation: "sync"))
        }
        counters.syncs += 1
        for w in disks[node].pending { disks[node].durable[w.key] = w.value }
        disks[node].pending.removeAll()
        return .success(charged ? advance(node, by: syncNanos, now: now) : now)
    }

    /// Books the disk for one sync after `now` (and after what is queued); returns when it will
    /// be done. The sync itself happens with `sync(_:now:charged: false)` at that instant.
    public mutating func reserveSync(_ node: Int, now: Int64) -> Int64 { advance(node, by: syncNanos, now: now) }

    /// A persist output as etcd orders it: every write, then one sync; the sends listed after it
    /// may leave at the instant returned, not before. Fails (and writes nothing more) on an I/O error.
    public mutating func persist(_ node: Int, _ writes: [(key: String, value: [UInt8])], now: Int64) -> Result<Int64, IOError> {
        var t = now
        for w in writes {
            switch write(node, key: w.key, value: w.value, now: t) {
            case let .success(done): t = done
            case let .failure(e): return .failure(e)
            }
        }
        return sync(node, now: t)
    }

    /// What the node reads now: its latest write of `key`, synced or not.
    public func read(_ node: Int, key: String) -> [UInt8]? {
        if let w = disks[node].pending.last(where: { $0.key == key }) { return w.value }
        return disks[node].durable[key]
    }

    /// Every key the node has, as it reads them now, sorted by key (for restart).
    public func contents(_ node: Int) -> [(key: String, value: [UInt8])] {
        var all = disks[node].durable
        for w in disks[node].pending { all[w.key] = w.value }
        return all.keys.sorted().map { ($0, all[$0]!) }
    }

    /// When node `node`'s disk is free again (its queued writes and syncs done).
    public func busyUntil(_ node: Int) -> Int64 { disks[node].busyUntil }

    /// The node crashed: unsynced writes survive, vanish or tear according to its faults.
    public mutating func crash(_ node: Int) {
        var d = disks[node]
        defer { disks[node] = d; disks[node].busyUntil = 0 }
        guard !d.pending.isEmpty else { return }
        if d.faults.contains(.tearLastWrite) {
            let last = d.pending.removeLast()
            counters.lostWrites += UInt64(d.pending.count)
            counters.tornWrites += 1
            if let value = last.value {
                let keep = value.isEmpty ? 0 : Int(rng.next() % UInt64(value.count))
                d.durable[last.key] = Array(value.prefix(keep))
            }  // a torn delete leaves the old value
        } else if d.faults.contains(.loseUnsynced) {
            counters.lostWrites += UInt64(d.pending.count)
        } else {
            for w in d.pending { d.durable[w.key] = w.value }
        }
        d.pending.removeAll()
    }

    /// Wipes the node's disk (a replaced device).
    public mutating func wipe(_ node: Int) {
        counters.lostWrites += UInt64(disks[node].pending.count)
        let faults = disks[node].faults
        disks[node] = Disk()
        disks[node].faults = faults
    }

    public mutating func arm(_ fault: Fault, on node: Int) { disks[node].faults.insert(fault) }
    public mutating func disarm(_ fault: Fault, on node: Int) { disks[node].faults.remove(fault) }
    public func faults(of node: Int) -> Set<Fault> { disks[node].faults }

    private mutating func advance(_ node: Int, by nanos: Int64, now: Int64) -> Int64 {
        let done = max(now, disks[node].busyUntil) + nanos
        disks[node].busyUntil = done
        return done
    }
}
