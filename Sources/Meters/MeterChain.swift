import MeshCore

/// What a collector knows of one meter's chain: each read's hash and its `previous`, by sequence
/// number. Reads arrive out of order (different relays, retries), so a read is linked to whichever
/// neighbours are already here and a gap stays a gap until its read comes.
public struct MeterChain: Sendable, Equatable {
    public struct Link: Sendable, Equatable {
        public var hash: [UInt8]
        public var previous: [UInt8]
    }

    public enum Outcome: String, Sendable, Equatable {
        case accepted
        /// The same read again: nothing changes.
        case duplicate
        /// Another read with this sequence number (the meter signed two): refused.
        case fork
        /// The read's `previous` is not the hash of the read before it, or the read after it does
        /// not name this one: refused.
        case brokenLink = "broken_link"
    }

    public private(set) var links: [UInt64: Link] = [:]
    public private(set) var highest: UInt64?

    public init() {}

    /// Links `read` into the chain, or says why not (and keeps nothing).
    public mutating func add(_ read: MeterRead) -> Outcome {
        add(sequence: read.sequence, hash: read.hash, previous: read.previous)
    }

    public mutating func add(sequence: UInt64, hash: [UInt8], previous: [UInt8]) -> Outcome {
        if let have = links[sequence] { return have.hash == hash ? .duplicate : .fork }
        if sequence > 0, let before = links[sequence - 1], before.hash != previous { return .brokenLink }
        if sequence < UInt64.max, let after = links[sequence + 1], after.previous != hash { return .brokenLink }
        links[sequence] = Link(hash: hash, previous: previous)
        if highest.map({ sequence > $0 }) ?? true { highest = sequence }
        return .accepted
    }

    /// Sequence numbers below the highest seen that have not arrived, from 0 (at most `limit`).
    public func missing(limit: Int = 64) -> [UInt64] {
        guard let highest else { return [] }
        var out: [UInt64] = []
        var s: UInt64 = 0
        while s < highest, out.count < limit {
            if links[s] == nil { out.append(s) }
            s += 1
        }
        return out
    }

    /// How many sequence numbers below the highest are missing.
    public var missingCount: Int {
        guard let highest else { return 0 }
        return Int(highest + 1) - links.count
    }
}
