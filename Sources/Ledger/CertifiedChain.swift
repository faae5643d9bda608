import Consensus
import MeshCore
import Sodium

/// Makes committed blocks exactly as a quorum of real validators would certify them (real
/// Ed25519 votes over real consensus block hashes), without running rounds: for tests, the
/// benchmark and offline tools that need a chain to execute. Round r holds height r.
public struct CertifiedChain: Sendable {
    public let genesis: LedgerGenesis
    let secretKeys: [[UInt8]]
    public private(set) var height: UInt64 = 0
    public private(set) var lastCertificate: QuorumCertificate

    /// `validatorSeeds`: one 32-byte Ed25519 seed per validator, in set order.
    public init(validatorSeeds: [[UInt8]], admins: [[UInt8]]) throws {
        var keys: [ValidatorKey] = [], secrets: [[UInt8]] = []
        for seed in validatorSeeds {
            let kp = try Ed25519.keyPair(seed: seed)
            guard let k = ValidatorKey(kp.publicKey) else { throw LedgerError("a validator seed gives a non-canonical key") }
            keys.append(k); secrets.append(kp.secretKey)
        }
        guard let set = ValidatorSet(keys) else { throw LedgerError("bad validator set") }
        let g = Genesis(validators: set)
        genesis = LedgerGenesis(consensus: g, admins: admins)
        secretKeys = secrets
        lastCertificate = g.certificate
    }

    /// Continues a stored chain whose head is `height`, certified by `certificate` (offline tools
    /// that extend a sample ledger).
    public mutating func resume(at height: UInt64, certificate: QuorumCertificate) {
        self.height = height
        lastCertificate = certificate
    }

    /// The first quorum's signatures over an executed block's header (what validators exchange
    /// after executing it).
    public func certify(_ block: ExecutedBlock) -> HeaderCertificate {
        let signers = Array(0..<genesis.consensus.validators.quorum)
        let sigs = signers.map { try! HeaderCertificate.vote(secretKey: secretKeys[$0], chainID: genesis.chainID, height: block.header.height, headerHash: block.hash) }
        return HeaderCertificate(height: block.header.height, signers: SignerBitmap(count: genesis.consensus.validators.count, signers: signers), signatures: sigs)
    }

    /// The next block, certified by the first quorum of validators.
    /// `time`: the block's consensus time in Unix milliseconds (0: none, a version 1 block).
    public mutating func next(_ payloads: [[UInt8]], time: UInt64 = 0) -> CommittedBlock {
        let h = height + 1, round = h
        let set = genesis.consensus.validators
        let block = Block(chainID: genesis.chainID, epoch: 0, round: round, height: h, proposer: UInt16(round % UInt64(set.count)),
                          justify: lastCertificate, payloads: payloads, time: time)
        let message = QuorumCertificate.voteMessage(chainID: genesis.chainID, epoch: 0, round: round, block: block.hash)
        let signers = Array(0..<set.quorum)
        let sigs = signers.map { try! Ed25519.sign(message, secretKey: secretKeys[$0]) }
        let qc = QuorumCertificate(epoch: 0, round: round, blockHash: block.hash, signers: SignerBitmap(count: set.count, signers: signers), signatures: sigs)
        height = h
        lastCertificate = qc
        return CommittedBlock(height: h, epoch: 0, round: round, hash: block.hash, payloads: payloads, certificate: qc,
                              proposer: block.proposer, justify: block.justify, time: time)
    }
}

/// A signing identity with its next nonce: tests, the benchmark and the CLI's offline tools.
public struct TransactionSigner: Sendable {
    public let publicKey: [UInt8]
    let secretKey: [UInt8]
    public var nextNonce: UInt64 = 1

    /// Throws for a seed whose key is not canonical (`IdentityError.nonCanonicalKey`).
    public init(seed: [UInt8]) throws {
        let kp = try Ed25519.keyPair(seed: seed)
        guard IdentityKey.isCanonical(kp.publicKey) else { throw IdentityError.nonCanonicalKey }
        publicKey = kp.publicKey
        secretKey = kp.secretKey
    }

    /// The first seed with a canonical key among BLAKE2b("iotaf/ledger/test-seed" || label || counter):
    /// fixed identities for tests and benchmarks.
    public static func testSeed(_ label: UInt64) -> [UInt8] {
        var counter: UInt64 = 0
        while true {
            var w = ByteWriter(); w.raw(Array("iotaf/ledger/test-seed".utf8)); w.u64(label); w.u64(counter)
            let seed = Blake2b.hash(w.bytes, outputLength: 32)
            if let kp = try? Ed25519.keyPair(seed: seed), IdentityKey.isCanonical(kp.publicKey) { return seed }
            counter += 1
        }
    }

    /// Signs a transaction with the next nonce.
    public mutating func sign(_ kind: TransactionKind = .invoke, _ chaincode: String, _ function: String, _ args: [[UInt8]],
                              chainID: [UInt8]) throws -> Transaction {
        defer { nextNonce += 1 }
        return try Transaction.signed(kind: kind, chaincode: chaincode, function: function, args: args, nonce: nextNonce,
                                      publicKey: publicKey, secretKey: secretKey, chainID: chainID)
    }
}
