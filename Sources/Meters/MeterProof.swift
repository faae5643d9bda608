import MeshCore
import Sodium

/// One anchored batch: a collector's Merkle root over the reads it accepted for one interval
/// (batch 0 at the interval's close; later batches for reads that came late). Its `objectID` is
/// the key it is anchored under (the ledger's `anchor` chaincode, Docs/meters.md "Anchoring").
public struct MeterAnchor: Hashable, Sendable {
    public var collector: PublicKey
    /// Unix seconds: the start of the interval the reads measured.
    public var intervalStart: UInt64
    public var batch: UInt32
    public var count: UInt32
    public var root: [UInt8]

    public init(collector: PublicKey, intervalStart: UInt64, batch: UInt32, count: UInt32, root: [UInt8]) {
        self.collector = collector
        self.intervalStart = intervalStart
        self.batch = batch
        self.count = count
        self.root = root
    }

    /// `meter/<collector key hex>/<interval start>/<batch>`: the object id of the anchor.
    public var objectID: String { "meter/\(collector.hex)/\(intervalStart)/\(batch)" }
    /// The anchor chaincode's label argument.
    public static let label = "meter-interval"
    public static let domain = Array("iotaf/meter/anchor/v1".utf8)

    /// What is anchored under `objectID`: BLAKE2b-256 of the domain and every field (collector,
    /// interval start, batch, leaf count, root), so no field of a proof's anchor can be changed
    /// (a leaf count changed can keep a path valid; the digest cannot).
    public var digest: [UInt8] {
        var w = ByteWriter(capacity: 120)
        w.raw(Self.domain)
        encode(into: &w)
        return Blake2b.hash(w.bytes, outputLength: 32)
    }

    func encode(into w: inout ByteWriter) {
        w.raw(collector.bytes)
        w.u64(intervalStart)
        w.u32(batch)
        w.u32(count)
        w.raw(root)
    }

    static func decode(from r: inout ByteReader) throws -> MeterAnchor {
        guard let collector = PublicKey(try r.raw(32)) else { throw MeterError.nonCanonicalKey }
        return MeterAnchor(collector: collector, intervalStart: try r.u64(), batch: try r.u32(), count: try r.u32(), root: try r.raw(32))
    }
}

/// Where anchors are known: what a proof's anchor is checked against. On the ledger:
/// `LedgerAnchorSource` (MeterService; certified `anchor get` query proofs, one per object id);
/// else a record of what was anchored (`AnchorBook`, the collector's own), and `iotaf meter
/// verify` says which one it used.
public protocol AnchorSource {
    /// The anchor digest (`MeterAnchor.digest`) anchored under `objectID`, or nil when nothing is.
    func anchoredDigest(_ objectID: String) -> [UInt8]?
}

/// Anchors known by object id (a collector's record, or a file of them).
public struct AnchorBook: AnchorSource, Sendable, Equatable {
    public private(set) var digests: [String: [UInt8]] = [:]
    public init() {}
    public init(_ anchors: [MeterAnchor]) { for a in anchors { digests[a.objectID] = a.digest } }
    public mutating func record(_ a: MeterAnchor) { digests[a.objectID] = a.digest }
    public func anchoredDigest(_ objectID: String) -> [UInt8]? { digests[objectID] }
}

/// A leaf's place in an anchored tree.
public struct MeterInclusion: Hashable, Sendable {
    public var anchor: MeterAnchor
    public var index: UInt32
    public var path: [[UInt8]]

    public init(anchor: MeterAnchor, index: UInt32, path: [[UInt8]]) {
        self.anchor = anchor
        self.index = index
        self.path = path
    }

    public func leads(from readHash: [UInt8]) -> Bool {
        MeterMerkleTree.verify(readHash: readHash, index: Int(index), count: Int(anchor.count), path: path, root: anchor.root)
    }

    func encode(into w: inout ByteWriter) {
        anchor.encode(into: &w)
        w.u32(index)
        w.u8(UInt8(path.count))
        for p in path { w.raw(p) }
    }

    static func decode(from r: inout ByteReader) throws -> MeterInclusion {
        let anchor = try MeterAnchor.decode(from: &r)
        let index = try r.u32()
        let n = Int(try r.u8())
        guard n <= 32, index < anchor.count else { throw MeterError.badProof }
        var path: [[UInt8]] = []
        for _ in 0..<n { path.append(try r.raw(32)) }
        return MeterInclusion(anchor: anchor, index: index, path: path)
    }
}

/// Everything needed to prove one read unaltered and in its place: the signed read, its Merkle
/// path to an anchored root, and (for every read but a meter's first) the path of the read before
/// it, whose hash the read names, so a read dropped from the chain cannot go unnoticed.
public struct MeterProof: Hashable, Sendable {
    public static let version: UInt8 = 1
    public var read: MeterRead
    public var inclusion: MeterInclusion
    public var predecessor: MeterInclusion?

    public init(read: MeterRead, inclusion: MeterInclusion, predecessor: MeterInclusion?) {
        self.read = read
        self.inclusion = inclusion
        self.predecessor = predecessor
    }

    /// Why a proof fails; the raw value is what `iotaf meter verify` prints.
    public enum Failure: String, Error, Sendable, CustomStringConvertible {
        /// The read is not the meter's expected one (another key).
        case wrongMeter = "wrong_meter"
        /// The read's Merkle path does not lead to the root it names.
        case notInTree = "not_in_tree"
        /// Nothing is anchored under the anchor's object id.
        case notAnchored = "not_anchored"
        /// Something else is anchored under that id (another root, leaf count or collector).
        case rootMismatch = "root_mismatch"
        /// Sequence 0 with a predecessor, a later read without one, or a predecessor whose hash is
        /// not the read's `previous`.
        case chainBreak = "chain_break"
        /// The predecessor's path does not lead to its root.
        case predecessorNotInTree = "predecessor_not_in_tree"
        /// The predecessor's root is not anchored (a read dropped before this one).
        case predecessorNotAnchored = "predecessor_not_anchored"

        public var description: String {
            switch self {
            case .wrongMeter: "the read is signed by another meter"
            case .notInTree: "the read's Merkle path does not lead to the anchor's root (a changed read, or a path for another read)"
            case .notAnchored: "no root is anchored under the proof's anchor id (the read was never anchored)"
            case .rootMismatch: "the anchor recorded under that id differs from the proof's (another root or leaf count)"
            case .chainBreak: "the read's previous hash and the predecessor in the proof disagree"
            case .predecessorNotInTree: "the previous read's Merkle path does not lead to its anchor's root"
            case .predecessorNotAnchored: "the previous read was never anchored (a gap in the meter's chain)"
            }
        }
    }

    public enum Verdict: Equatable, Sendable {
        case verified
        case failed(Failure)
    }

    /// Checks the chain place, both Merkle paths and both anchors (the read's signature was checked
    /// when it was decoded or made). `meter`: the key the read must be signed by, when known.
    public func verify(anchors: some AnchorSource, meter: PublicKey? = nil) -> Verdict {
        if let meter, meter != read.meter { return .failed(.wrongMeter) }
        guard inclusion.leads(from: read.hash) else { return .failed(.notInTree) }
        guard let digest = anchors.anchoredDigest(inclusion.anchor.objectID) else { return .failed(.notAnchored) }
        guard digest == inclusion.anchor.digest else { return .failed(.rootMismatch) }
        switch (read.sequence, predecessor) {
        case (0, nil):
            return .verified
        case (0, _), (_, nil):
            return .failed(.chainBreak)
        case let (_, p?):
            guard p.leads(from: read.previous) else { return .failed(.predecessorNotInTree) }
            guard let pd = anchors.anchoredDigest(p.anchor.objectID), pd == p.anchor.digest else {
                return .failed(.predecessorNotAnchored)
            }
            return .verified
        }
    }

    /// version · read length (u16) · read · inclusion · has predecessor (u8 0/1) · [inclusion];
    /// an inclusion is collector key (32) · interval start (u64) · batch (u32) · leaf count (u32) ·
    /// root (32) · leaf index (u32) · path length (u8, at most 32) · path (32 each).
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 1024)
        w.u8(Self.version)
        let r = read.encode()
        w.u16(UInt16(r.count))
        w.raw(r)
        inclusion.encode(into: &w)
        if let p = predecessor { w.u8(1); p.encode(into: &w) } else { w.u8(0) }
        return w.bytes
    }

    public static let maxEncodedLength = 1 + 2 + MeterRead.maxEncodedLength + 2 * (32 + 8 + 4 + 4 + 32 + 4 + 1 + 32 * 32) + 1

    public static func decode(_ bytes: [UInt8]) throws(MeterError) -> MeterProof {
        guard bytes.count <= maxEncodedLength else { throw .oversized }
        var r = ByteReader(bytes)
        do {
            guard try r.u8() == version else { throw MeterError.badVersion }
            let n = Int(try r.u16())
            let read = try MeterRead.decode(try r.raw(n))
            let inclusion = try MeterInclusion.decode(from: &r)
            let predecessor: MeterInclusion?
            switch try r.u8() {
            case 0: predecessor = nil
            case 1: predecessor = try MeterInclusion.decode(from: &r)
            default: throw MeterError.badProof
            }
            guard r.remaining == 0 else { throw MeterError.trailingBytes }
            return MeterProof(read: read, inclusion: inclusion, predecessor: predecessor)
        } catch let e as MeterError {
            throw e
        } catch {
            throw .truncated
        }
    }
}
