import MeshCore
import Sodium

/// Which validators signed: bit i (of byte i/8, most significant bit first) is validator i.
/// Bits past `count` are zero in a canonical encoding.
public struct SignerBitmap: Hashable, Sendable {
    public let count: Int
    public private(set) var bytes: [UInt8]

    public init(count: Int) {
        self.count = count
        bytes = [UInt8](repeating: 0, count: (count + 7) / 8)
    }

    public init(count: Int, signers: [Int]) {
        self.init(count: count)
        for i in signers { insert(i) }
    }

    public func contains(_ i: Int) -> Bool { i >= 0 && i < count && bytes[i / 8] & (0x80 >> UInt8(i % 8)) != 0 }
    public mutating func insert(_ i: Int) { bytes[i / 8] |= 0x80 >> UInt8(i % 8) }
    public var indices: [Int] { (0..<count).filter(contains) }
    public var population: Int { bytes.reduce(0) { $0 + $1.nonzeroBitCount } }

    func encode(into w: inout ByteWriter) {
        w.u16(UInt16(count))
        w.raw(bytes)
    }

    static func decode(_ r: inout ByteReader) throws(DropReason) -> SignerBitmap {
        let count = Int(try read { try r.u16() })
        guard count >= 1, count <= ValidatorSet.maxValidators else { throw .malformed }
        let raw = try read { try r.raw((count + 7) / 8) }
        var b = SignerBitmap(count: count)
        b.bytes = raw
        // Canonical: no bits set past `count`.
        if count % 8 != 0, raw[raw.count - 1] & (0xff >> UInt8(count % 8)) != 0 { throw .malformed }
        return b
    }
}

/// What a vote signs: the chain, the epoch, the round and the block.
public func voteDigest(chainID: [UInt8], epoch: UInt64, round: UInt64, block: BlockHash) -> [UInt8] {
    var w = ByteWriter(capacity: 120)
    w.raw(Array("iotaf/consensus/vote/v1".utf8))
    w.raw(chainID)
    w.u64(epoch)
    w.u64(round)
    w.raw(block.bytes)
    return w.bytes
}

/// What a timeout signs: the round given up and the round of the signer's highest certificate
/// (so a timeout certificate proves the highest certificate any of its signers held).
func timeoutDigest(chainID: [UInt8], epoch: UInt64, round: UInt64, highQCRound: UInt64) -> [UInt8] {
    var w = ByteWriter(capacity: 100)
    w.raw(Array("iotaf/consensus/timeout/v1".utf8))
    w.raw(chainID)
    w.u64(epoch)
    w.u64(round)
    w.u64(highQCRound)
    return w.bytes
}

/// What a proposer signs: the block hash (which covers epoch, round, height, parent, certificate, payloads).
func proposalDigest(chainID: [UInt8], block: BlockHash) -> [UInt8] {
    Array("iotaf/consensus/proposal/v1".utf8) + chainID + block.bytes
}

/// 2f+1 votes for one block in one round: the signers as a bitmap, their signatures in index order.
public struct QuorumCertificate: Hashable, Sendable {
    public let epoch: UInt64
    public let round: UInt64
    public let blockHash: BlockHash
    public let signers: SignerBitmap
    public let signatures: [[UInt8]]

    public init(epoch: UInt64, round: UInt64, blockHash: BlockHash, signers: SignerBitmap, signatures: [[UInt8]]) {
        self.epoch = epoch
        self.round = round
        self.blockHash = blockHash
        self.signers = signers
        self.signatures = signatures
    }

    func encode(into w: inout ByteWriter) {
        w.u64(epoch)
        w.u64(round)
        w.raw(blockHash.bytes)
        signers.encode(into: &w)
        for s in signatures { w.raw(s) }
    }

    public var encoded: [UInt8] {
        var w = ByteWriter()
        encode(into: &w)
        return w.bytes
    }

    static func decode(_ r: inout ByteReader) throws(DropReason) -> QuorumCertificate {
        let epoch = try read { try r.u64() }
        let round = try read { try r.u64() }
        let hash = BlockHash(try read { try r.raw(32) })
        let signers = try SignerBitmap.decode(&r)
        var sigs: [[UInt8]] = []
        for _ in 0..<signers.population { sigs.append(try read { try r.raw(Ed25519.signatureLength) }) }
        return QuorumCertificate(epoch: epoch, round: round, blockHash: hash, signers: signers, signatures: sigs)
    }

    /// Checks the certificate against `set`: the genesis certificate as is; any other needs a
    /// quorum of valid signatures from `set`.
    func verify(set: ValidatorSet, genesis: Genesis) throws(DropReason) {
        if round == 0 {
            guard self == genesis.certificate else { throw .badCertificate }
            return
        }
        guard signers.count == set.count else { throw .wrongValidatorSet }
        guard signers.population >= set.quorum else { throw .tooFewSigners }
        let digest = voteDigest(chainID: genesis.chainID, epoch: epoch, round: round, block: blockHash)
        for (i, sig) in zip(signers.indices, signatures) {
            guard Ed25519.verify(sig, message: digest, publicKey: set.keys[i].bytes) else { throw .badSignature }
        }
    }
}

/// 2f+1 timeouts for one round: the signers' bitmap and, per signer in index order, the round of
/// its highest certificate and its signature.
public struct TimeoutCertificate: Hashable, Sendable {
    public let epoch: UInt64
    public let round: UInt64
    public let signers: SignerBitmap
    public let highQCRounds: [UInt64]
    public let signatures: [[UInt8]]

    /// The highest certificate round any signer reported: a proposal justified by this timeout
    /// certificate must extend a certificate at least this high (the lock carried across the view change).
    public var maxHighQCRound: UInt64 { highQCRounds.max() ?? 0 }

    func encode(into w: inout ByteWriter) {
        w.u64(epoch)
        w.u64(round)
        signers.encode(into: &w)
        for (r, s) in zip(highQCRounds, signatures) {
            w.u64(r)
            w.raw(s)
        }
    }

    static func decode(_ r: inout ByteReader) throws(DropReason) -> TimeoutCertificate {
        let epoch = try read { try r.u64() }
        let round = try read { try r.u64() }
        let signers = try SignerBitmap.decode(&r)
        var rounds: [UInt64] = []
        var sigs: [[UInt8]] = []
        for _ in 0..<signers.population {
            rounds.append(try read { try r.u64() })
            sigs.append(try read { try r.raw(Ed25519.signatureLength) })
        }
        return TimeoutCertificate(epoch: epoch, round: round, signers: signers, highQCRounds: rounds, signatures: sigs)
    }

    func verify(set: ValidatorSet, genesis: Genesis) throws(DropReason) {
        guard signers.count == set.count else { throw .wrongValidatorSet }
        guard signers.population >= set.quorum else { throw .tooFewSigners }
        for ((i, sig), hq) in zip(zip(signers.indices, signatures), highQCRounds) {
            guard hq < round else { throw .badCertificate }
            let digest = timeoutDigest(chainID: genesis.chainID, epoch: epoch, round: round, highQCRound: hq)
            guard Ed25519.verify(sig, message: digest, publicKey: set.keys[i].bytes) else { throw .badSignature }
        }
    }
}

/// Runs a ByteReader read, turning its truncation into the drop reason `.malformed`.
@inline(__always)
func read<T>(_ body: () throws -> T) throws(DropReason) -> T {
    do { return try body() } catch { throw .malformed }
}
