/// The rows a contract reads and writes: its own namespace only (the ledger hands it a view that
/// prefixes every key). Reads go through pending writes; nothing is applied until the call succeeds.
public protocol ContractState {
    mutating func get(_ key: [UInt8]) -> [UInt8]?
    mutating func put(_ key: [UInt8], _ value: [UInt8])
    mutating func delete(_ key: [UInt8])
    /// Rows with start <= key < end (end empty: no bound), in key order, at most `limit`.
    mutating func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])]
}

/// Everything a call may learn about the world: its arguments, the caller's verified identity and
/// registered attributes, and the block it runs in. Nothing else reaches a contract (no clock, no
/// randomness, no I/O), so a call is a function of this and the rows it reads.
public struct ContractCall: Sendable {
    public var function: String
    public var args: [[UInt8]]
    /// The transaction's signer (its signature checked by the executor); empty for an anonymous query.
    public var caller: [UInt8]
    public var callerIsAdmin: Bool
    /// The caller's `registry` attributes (`key=value`), split at the first `=`, in registration order.
    public var callerAttributes: [(key: String, value: [UInt8])]
    public var height: UInt64
    /// The time consensus agreed for the block, in Unix milliseconds; nil while consensus carries none.
    public var time: UInt64?
    /// A query: `put` and `delete` fail the call (`read_only`).
    public var readOnly: Bool

    public init(function: String, args: [[UInt8]], caller: [UInt8], callerIsAdmin: Bool = false,
                callerAttributes: [(key: String, value: [UInt8])] = [], height: UInt64, time: UInt64? = nil, readOnly: Bool) {
        self.function = function
        self.args = args
        self.caller = caller
        self.callerIsAdmin = callerIsAdmin
        self.callerAttributes = callerAttributes
        self.height = height
        self.time = time
        self.readOnly = readOnly
    }
}

/// An event a contract emitted: a topic and data, recorded in the transaction's result.
public struct ContractEvent: Sendable, Equatable {
    public let topic: [UInt8]
    public let data: [UInt8]

    public init(topic: [UInt8], data: [UInt8]) {
        self.topic = topic
        self.data = data
    }
}

/// What a successful call gives back. Its encoding is the transaction's result output:
/// `u64 fuel_used || u32 len || output || u16 n || n × (u32 len || topic || u32 len || data)`, big-endian
/// (Docs/encoding.md, "Contracts").
public struct ContractResult: Sendable, Equatable {
    public let output: [UInt8]
    public let events: [ContractEvent]
    public let fuelUsed: UInt64

    public init(output: [UInt8], events: [ContractEvent], fuelUsed: UInt64) {
        self.output = output
        self.events = events
        self.fuelUsed = fuelUsed
    }

    public var encoded: [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(14 + output.count + events.reduce(0) { $0 + 8 + $1.topic.count + $1.data.count })
        BigEndian.u64(fuelUsed, into: &b)
        BigEndian.bytes(output, into: &b)
        BigEndian.u16(UInt16(events.count), into: &b)
        for e in events {
            BigEndian.bytes(e.topic, into: &b)
            BigEndian.bytes(e.data, into: &b)
        }
        return b
    }

    /// Decodes `encoded`; nil for anything malformed.
    public static func decode(_ bytes: [UInt8]) -> ContractResult? {
        var r = BigEndian.Reader(bytes)
        guard let fuel = r.u64(), let output = r.bytes(), let n = r.u16() else { return nil }
        var events: [ContractEvent] = []
        for _ in 0..<n {
            guard let t = r.bytes(), let d = r.bytes() else { return nil }
            events.append(ContractEvent(topic: t, data: d))
        }
        guard r.atEnd else { return nil }
        return ContractResult(output: output, events: events, fuelUsed: fuel)
    }
}

/// The ledger's big-endian fields (Contracts does not depend on MeshCore's codec).
enum BigEndian {
    static func u16(_ v: UInt16, into b: inout [UInt8]) { b.append(UInt8(v >> 8)); b.append(UInt8(truncatingIfNeeded: v)) }
    static func u32(_ v: UInt32, into b: inout [UInt8]) { for s in stride(from: 24, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    static func u64(_ v: UInt64, into b: inout [UInt8]) { for s in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    static func bytes(_ x: [UInt8], into b: inout [UInt8]) { u32(UInt32(x.count), into: &b); b += x }

    struct Reader {
        let b: [UInt8]
        var i = 0
        init(_ b: [UInt8]) { self.b = b }
        var atEnd: Bool { i == b.count }
        mutating func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, b.count - i >= n else { return nil }
            defer { i += n }
            return b[i..<(i + n)]
        }
        mutating func u16() -> UInt16? { take(2).map { $0.reduce(0) { $0 << 8 | UInt16($1) } } }
        mutating func u32() -> UInt32? { take(4).map { $0.reduce(0) { $0 << 8 | UInt32($1) } } }
        mutating func u64() -> UInt64? { take(8).map { $0.reduce(0) { $0 << 8 | UInt64($1) } } }
        mutating func bytes() -> [UInt8]? {
            guard let n = u32() else { return nil }
            return take(Int(n)).map(Array.init)
        }
    }
}
