import MeshCore

/// Storage as an output. A service never writes a file: it returns `.persist(batch, then:)`, the
/// driver makes the batch durable (the runtime on libuv's thread pool against SQLite, the
/// simulator on its virtual disk), carries out `then`, and answers `.persisted`. At start the
/// driver hands each service the rows it kept (`.restored`).
///
/// The store is a set of tables of byte keys and byte values, each table owned by one service
/// (its name begins with the service's name). The encodings of keys and values are the service's
/// (documented with its protocol); the driver never reads them.
public struct PersistBatch: Sendable, Equatable {
    public var ticket: PersistTicket
    public var ops: [StorageOp]

    public init(ticket: PersistTicket, ops: [StorageOp]) {
        self.ticket = ticket
        self.ops = ops
    }
}

/// Names one `.persist` so its completion finds the service that asked: the service's protocol
/// id and a number the service chose.
public struct PersistTicket: Sendable, Hashable {
    public var service: ProtocolID
    public var sequence: UInt64

    public init(service: ProtocolID, sequence: UInt64) {
        self.service = service
        self.sequence = sequence
    }
}

public enum StorageOp: Sendable, Equatable {
    /// Set one row.
    case put(table: String, key: [UInt8], value: [UInt8])
    case delete(table: String, key: [UInt8])
    /// Replace a whole table with these rows (a snapshot).
    case replace(table: String, rows: [StoredRow])
}

public struct StoredRow: Sendable, Equatable {
    public var table: String
    public var key: [UInt8]
    public var value: [UInt8]

    public init(table: String, key: [UInt8], value: [UInt8]) {
        self.table = table
        self.key = key
        self.value = value
    }
}

public enum PersistOutcome: Sendable, Equatable {
    case durable
    /// The write failed (disk full, I/O error, read-only): the message says what to check. The
    /// `then` outputs were not carried out; the service decides what to do instead.
    case failed(String)
}

/// Heavy work the node must not do on its loop. `work` is a pure function of its captured
/// inputs; `cost` is what the simulator charges its virtual CPU for it.
public struct OffloadJob: Sendable {
    public var ticket: JobTicket
    public var cost: Duration
    public var work: @Sendable () -> JobOutcome

    public init(ticket: JobTicket, cost: Duration, work: @escaping @Sendable () -> JobOutcome) {
        self.ticket = ticket
        self.cost = cost
        self.work = work
    }
}

extension OffloadJob: Equatable {
    /// Two jobs are the same job when they carry the same ticket (the work is a closure).
    public static func == (a: OffloadJob, b: OffloadJob) -> Bool { a.ticket == b.ticket && a.cost == b.cost }
}

public struct JobTicket: Sendable, Hashable {
    public var service: ProtocolID
    public var sequence: UInt64

    public init(service: ProtocolID, sequence: UInt64) {
        self.service = service
        self.sequence = sequence
    }
}

public enum JobOutcome: Sendable, Equatable {
    case bytes([UInt8])
    case failed(String)
}
