import Consensus
import MeshCore
import Sodium

/// What one transaction came to: ok with the chaincode's output, or refused with a reason.
/// Encoding: `u8 0 || u32 n || output` or `u8 1 || u8 reason || u16 n || detail (UTF-8)`.
public enum TxResult: Sendable, Equatable, CustomStringConvertible {
    case ok([UInt8])
    case refused(Refusal)

    public var encoded: [UInt8] {
        var w = ByteWriter()
        switch self {
        case .ok(let out):
            w.u8(0)
            LedgerCodec.bytes(out, into: &w)
        case .refused(let r):
            w.u8(1)
            w.u8(r.reason.rawValue)
            let d = Array(r.detail.utf8.prefix(1024))
            w.u16(UInt16(d.count))
            w.raw(d)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> TxResult {
        var r = ByteReader(bytes)
        let result: TxResult
        switch try r.u8() {
        case 0: result = .ok(try LedgerCodec.readBytes(&r))
        case 1:
            guard let reason = RefusalReason(rawValue: try r.u8()) else { throw LedgerError("unknown refusal code") }
            result = .refused(Refusal(reason, String(decoding: try r.raw(Int(try r.u16())), as: UTF8.self)))
        default: throw LedgerError("unknown result tag")
        }
        guard r.remaining == 0 else { throw LedgerError("bytes after a result") }
        return result
    }

    public var description: String {
        switch self {
        case .ok(let out): "ok" + (out.isEmpty ? "" : " (\(out.count) bytes)")
        case .refused(let r): "refused: \(r)"
        }
    }
}

/// One block of the ledger: the consensus block it executes (every field, so its hash and
/// certificate are re-checked offline), the header chain link, and the roots of its payloads,
/// results and the state after it. Every field is in the hash (Docs/ledger.md, "Encodings").
public struct LedgerHeader: Sendable, Equatable {
    public let height: UInt64
    public let previous: [UInt8]
    public let epoch: UInt64
    public let round: UInt64
    public let proposer: UInt16
    public let consensusHash: [UInt8]
    public let justify: QuorumCertificate
    public let certificate: QuorumCertificate
    public let txRoot: [UInt8]
    public let resultsRoot: [UInt8]
    public let stateRoot: [UInt8]
    /// The consensus block's time, Unix milliseconds; 0 for a chain whose blocks carry none. A
    /// header with a time is version 2 (the time follows the state root); one without keeps
    /// version 1's bytes, so older ledgers keep their hashes.
    public let time: UInt64

    public init(height: UInt64, previous: [UInt8], epoch: UInt64, round: UInt64, proposer: UInt16, consensusHash: [UInt8],
                justify: QuorumCertificate, certificate: QuorumCertificate, txRoot: [UInt8], resultsRoot: [UInt8], stateRoot: [UInt8],
                time: UInt64 = 0) {
        self.height = height
        self.previous = previous
        self.epoch = epoch
        self.round = round
        self.proposer = proposer
        self.consensusHash = consensusHash
        self.justify = justify
        self.certificate = certificate
        self.txRoot = txRoot
        self.resultsRoot = resultsRoot
        self.stateRoot = stateRoot
        self.time = time
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 512)
        w.u8(time == 0 ? 1 : 2)  // version
        w.u64(height)
        w.raw(previous)
        w.u64(epoch)
        w.u64(round)
        w.u16(proposer)
        w.raw(consensusHash)
        LedgerCodec.bytes(justify.encoded, into: &w)
        LedgerCodec.bytes(certificate.encoded, into: &w)
        w.raw(txRoot)
        w.raw(resultsRoot)
        w.raw(stateRoot)
        if time != 0 { w.u64(time) }
        return w.bytes
    }

    /// `BLAKE2b-256("iotaf/ledger/header/v1" || chain_id || encoded)`.
    public func hash(chainID: [UInt8]) -> [UInt8] {
        Blake2b.hash(Array("iotaf/ledger/header/v1".utf8) + chainID + encoded, outputLength: 32)
    }

    public static func decode(_ bytes: [UInt8]) throws -> LedgerHeader {
        var r = ByteReader(bytes)
        let version = try r.u8()
        guard version == 1 || version == 2 else { throw LedgerError("unknown header version") }
        let height = try r.u64(), previous = try r.raw(32), epoch = try r.u64(), round = try r.u64()
        let proposer = try r.u16(), consensusHash = try r.raw(32)
        let justify: QuorumCertificate, certificate: QuorumCertificate
        do {
            justify = try QuorumCertificate.decode(try LedgerCodec.readBytes(&r))
            certificate = try QuorumCertificate.decode(try LedgerCodec.readBytes(&r))
        } catch { throw LedgerError("header holds a malformed certificate") }
        let h = LedgerHeader(height: height, previous: previous, epoch: epoch, round: round, proposer: proposer,
                             consensusHash: consensusHash, justify: justify, certificate: certificate,
                             txRoot: try r.raw(32), resultsRoot: try r.raw(32), stateRoot: try r.raw(32),
                             time: version == 2 ? try r.u64() : 0)
        // One encoding per header: a version 2 header's time is never 0.
        guard version == 1 || h.time != 0 else { throw LedgerError("a version 2 header with no time") }
        guard r.remaining == 0 else { throw LedgerError("bytes after a header") }
        return h
    }

    /// The consensus block this header executes, rebuilt from its fields and the payloads.
    public func committedBlock(payloads: [[UInt8]]) -> CommittedBlock? {
        guard let hash = BlockHash(bytes: consensusHash) else { return nil }
        return CommittedBlock(height: height, epoch: epoch, round: round, hash: hash, payloads: payloads,
                              certificate: certificate, proposer: proposer, justify: justify, time: time)
    }
}

/// A binary Merkle root in RFC 6962's shape over BLAKE2b-256: leaf `H(0x00 || item)`, node
/// `H(0x01 || left || right)`, the split at the largest power of two below the count; no items: `H("")`.
public enum MerkleRoot {
    public static func of(_ items: [[UInt8]]) -> [UInt8] {
        if items.isEmpty { return Blake2b.hash([], outputLength: 32) }
        return node(items.map { Blake2b.hash([0] + $0, outputLength: 32) }[...])
    }

    static func node(_ leaves: ArraySlice<[UInt8]>) -> [UInt8] {
        if leaves.count == 1 { return leaves.first! }
        var k = 1
        while k * 2 < leaves.count { k *= 2 }
        let mid = leaves.startIndex + k
        return Blake2b.hash([1] + node(leaves[..<mid]) + node(leaves[mid...]), outputLength: 32)
    }
}

/// A committed block after execution: what the store keeps and what the replica answers from.
public struct ExecutedBlock: Sendable {
    public let header: LedgerHeader
    public let hash: [UInt8]
    public let payloads: [[UInt8]]
    public let results: [TxResult]
    /// Transaction ids by payload index (nil for a payload that does not decode).
    public let txIDs: [[UInt8]?]
    /// The state rows this block set (a value) or removed (nil), in key order.
    public let writes: [(key: [UInt8], value: [UInt8]?)]
    public let validatorChanges: [ValidatorChange]
}
