import Consensus
import MeshCore
import Sodium

/// A quorum of validators' signatures over a ledger header's hash, given after they executed the
/// block. The consensus certificate binds the payloads; this binds what executing them gave (the
/// results and the state root), so one header with it lets a light client trust a state proof.
/// (Validators sign execution results after the fact as Tendermint's next-block AppHash does, but
/// apart from the consensus rounds: consensus orders opaque bytes and knows no state.)
/// Encoding: `u64 height || u16 n || ceil(n/8) bitmap bytes || popcount × signature(64)`.
public struct HeaderCertificate: Sendable, Equatable {
    public let height: UInt64
    public let signers: SignerBitmap
    public let signatures: [[UInt8]]

    public init(height: UInt64, signers: SignerBitmap, signatures: [[UInt8]]) {
        self.height = height
        self.signers = signers
        self.signatures = signatures
    }

    /// What a validator signs: `"iotaf/ledger/header-vote/v1" || chain_id || u64 height || header_hash(32)`.
    public static func voteMessage(chainID: [UInt8], height: UInt64, headerHash: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: 100)
        w.raw(Array("iotaf/ledger/header-vote/v1".utf8))
        w.raw(chainID)
        w.u64(height)
        w.raw(headerHash)
        return w.bytes
    }

    /// One validator's vote for a header (index in the set, signature).
    public static func vote(secretKey: [UInt8], chainID: [UInt8], height: UInt64, headerHash: [UInt8]) throws -> [UInt8] {
        try Ed25519.sign(voteMessage(chainID: chainID, height: height, headerHash: headerHash), secretKey: secretKey)
    }

    /// Checks that a quorum of `genesis`'s validators signed `headerHash` at `height`.
    public func check(headerHash: [UInt8], height: UInt64, genesis: LedgerGenesis) throws {
        let set = genesis.consensus.validators
        guard self.height == height else { throw LedgerError("the header certificate is for height \(self.height), not \(height)") }
        guard signers.count == set.count, signers.population >= set.quorum, signatures.count == signers.population else {
            throw LedgerError("the header certificate has \(signers.population) of \(signers.count) signers; a quorum of \(set.count) is \(set.quorum)")
        }
        let message = HeaderCertificate.voteMessage(chainID: genesis.chainID, height: height, headerHash: headerHash)
        for (i, sig) in zip(signers.indices, signatures) {
            guard Ed25519.verify(sig, message: message, publicKey: set.keys[i].bytes) else {
                throw LedgerError("the header certificate's signature of validator \(i) does not verify")
            }
        }
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 12 + signers.bytes.count + signatures.count * 64)
        w.u64(height)
        w.u16(UInt16(signers.count))
        w.raw(signers.bytes)
        for s in signatures { w.raw(s) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> HeaderCertificate {
        var r = ByteReader(bytes)
        do {
            let h = try r.u64()
            let n = Int(try r.u16())
            guard n >= 1, n <= ValidatorSet.maxValidators else { throw LedgerError("bad signer count") }
            let raw = try r.raw((n + 7) / 8)
            var indices: [Int] = []
            for i in 0..<n where raw[i / 8] & (0x80 >> UInt8(i % 8)) != 0 { indices.append(i) }
            let bitmap = SignerBitmap(count: n, signers: indices)
            guard bitmap.bytes == raw else { throw LedgerError("bits set past the signer count") }
            var sigs: [[UInt8]] = []
            for _ in indices { sigs.append(try r.raw(Ed25519.signatureLength)) }
            guard r.remaining == 0 else { throw LedgerError("bytes after a header certificate") }
            return HeaderCertificate(height: h, signers: bitmap, signatures: sigs)
        } catch let e as LedgerError {
            throw e
        } catch {
            throw LedgerError("the header certificate is truncated")
        }
    }
}
