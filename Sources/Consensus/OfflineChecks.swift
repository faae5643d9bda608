import MeshCore

// What a checker outside the core needs to re-check committed blocks offline (the ledger's
// `verify`, a light client holding a proof): recompute a block's hash from its fields, decode
// and check a quorum certificate, and build one (tests and benchmarks sign real votes).

extension CommittedBlock {
    /// The consensus block hash of these fields (Docs/consensus.md, "Encodings"): equal to `hash`
    /// for a block the core committed; anything else means a field was changed after the fact.
    public func recomputedHash(chainID: [UInt8]) -> BlockHash {
        Block(chainID: chainID, epoch: epoch, round: round, height: height, proposer: proposer,
              justify: justify, payloads: payloads, time: time).hash
    }
}

extension QuorumCertificate {
    /// Decodes exactly one certificate (its encoding as in Docs/consensus.md); trailing bytes are `.malformed`.
    public static func decode(_ bytes: [UInt8]) throws(DropReason) -> QuorumCertificate {
        var r = ByteReader(bytes)
        let qc = try decode(&r)
        guard r.remaining == 0 else { throw .malformed }
        return qc
    }

    /// Checks the signatures against `set` under `genesis`'s chain id (the genesis certificate as is).
    public func check(set: ValidatorSet, genesis: Genesis) throws(DropReason) {
        try verify(set: set, genesis: genesis)
    }

    /// The bytes a validator signs to vote for `block` (what `check` verifies).
    public static func voteMessage(chainID: [UInt8], epoch: UInt64, round: UInt64, block: BlockHash) -> [UInt8] {
        voteDigest(chainID: chainID, epoch: epoch, round: round, block: block)
    }
}
