import MeshCore
import Sodium

/// Why an input was refused. Every refusal is counted (`ConsensusCounters.drops`), never a trap.
public enum DropReason: String, Error, Sendable, CaseIterable, Comparable {
    /// Truncated, trailing bytes, a length past its limit, a non-canonical field.
    case malformed
    case unknownType
    case oversized
    /// The sender's key is not a validator of the epoch.
    case notValidator
    /// A vote or timeout whose signer is not the validator that sent it.
    case senderMismatch
    case badSignature
    case tooFewSigners
    /// A certificate whose bitmap is not sized to the epoch's validator set.
    case wrongValidatorSet
    /// A certificate that is inconsistent in itself (a genesis look-alike, a high round past the timeout).
    case badCertificate
    case wrongEpoch
    /// A vote or timeout for a round too far beyond ours to be worth holding.
    case farFutureRound
    /// A vote for a round whose certificate is formed or that we do not lead.
    case staleRound
    case wrongLeader
    /// A proposal that breaks a block rule: parent, height, round justification, payload limits or duplicates.
    case invalidProposal
    /// A second, different vote from one validator in one round (equivocation evidence).
    case equivocatingVote
    /// A second, different proposal from one leader in one round.
    case equivocatingProposal
    /// Same vote, timeout or block again (the network duplicates; not an error).
    case duplicate
    /// A block in a response that nobody asked for.
    case unrequestedBlock
    /// A payload refused by the mempool: full or too large.
    case mempoolFull
    case payloadTooLarge

    public static func < (a: DropReason, b: DropReason) -> Bool { a.rawValue < b.rawValue }
}

/// One block of the chain. `parent` is always the block `justify` certifies (a chained rule that
/// lets a certified hash authenticate a whole chain fetched from anyone).
public struct Block: Hashable, Sendable {
    public let epoch: UInt64
    public let round: UInt64
    public let height: UInt64
    public let parent: BlockHash
    public let proposer: UInt16
    public let justify: QuorumCertificate
    public let payloads: [[UInt8]]
    /// The leader's time for the block, Unix milliseconds; 0: no time (a core without a wall
    /// clock, `ConsensusConfig.unixMillisAtZero` nil). Voters accept it only if it is not below
    /// the parent's and not too far ahead of their own clock, so a committed block's time is the
    /// consensus time every replica sees (Docs/consensus.md, "Block time").
    public let time: UInt64
    public let hash: BlockHash

    public init(chainID: [UInt8], epoch: UInt64, round: UInt64, height: UInt64, proposer: UInt16,
                justify: QuorumCertificate, payloads: [[UInt8]], time: UInt64 = 0) {
        self.epoch = epoch
        self.round = round
        self.height = height
        self.parent = justify.blockHash
        self.proposer = proposer
        self.justify = justify
        self.payloads = payloads
        self.time = time
        var w = ByteWriter(capacity: 256)
        Block.encodeFields(epoch: epoch, round: round, height: height, proposer: proposer, justify: justify, payloads: payloads, into: &w)
        if time != 0 { w.u64(time) }
        hash = Block.hash(chainID: chainID, encoding: w.bytes, timed: time != 0)
    }

    /// `BLAKE2b-256("iotaf/consensus/block/v1" || chain_id || fields)` for a block without a time;
    /// `BLAKE2b-256("iotaf/consensus/block/v2" || chain_id || fields || u64 time)` with one.
    static func hash(chainID: [UInt8], encoding: [UInt8], timed: Bool = false) -> BlockHash {
        BlockHash(Blake2b.hash(Array((timed ? "iotaf/consensus/block/v2" : "iotaf/consensus/block/v1").utf8) + chainID + encoding, outputLength: 32))
    }

    public var payloadBytes: Int { payloads.reduce(0) { $0 + $1.count } }

    private static func encodeFields(epoch: UInt64, round: UInt64, height: UInt64, proposer: UInt16,
                                     justify: QuorumCertificate, payloads: [[UInt8]], into w: inout ByteWriter) {
        w.u64(epoch)
        w.u64(round)
        w.u64(height)
        w.u16(proposer)
        justify.encode(into: &w)
        w.u32(UInt32(payloads.count))
        for p in payloads {
            w.u32(UInt32(p.count))
            w.raw(p)
        }
    }

    /// The fields, then (in a version 2 message, `timed`) `u64 time`.
    func encode(into w: inout ByteWriter, timed: Bool = false) {
        Block.encodeFields(epoch: epoch, round: round, height: height, proposer: proposer, justify: justify, payloads: payloads, into: &w)
        if timed { w.u64(time) }
    }

    static func decode(_ r: inout ByteReader, chainID: [UInt8], limits: WireLimits, timed: Bool = false) throws(DropReason) -> Block {
        let epoch = try read { try r.u64() }
        let round = try read { try r.u64() }
        let height = try read { try r.u64() }
        let proposer = try read { try r.u16() }
        let justify = try QuorumCertificate.decode(&r)
        let count = Int(try read { try r.u32() })
        guard count <= limits.maxBatchCount else { throw .oversized }
        var payloads: [[UInt8]] = []
        var total = 0
        for _ in 0..<count {
            let len = Int(try read { try r.u32() })
            guard len <= limits.maxPayloadBytes else { throw .oversized }
            total += len
            guard total <= limits.maxBatchBytes else { throw .oversized }
            payloads.append(try read { try r.raw(len) })
        }
        let time = timed ? try read { try r.u64() } : 0
        return Block(chainID: chainID, epoch: epoch, round: round, height: height, proposer: proposer, justify: justify, payloads: payloads, time: time)
    }
}

/// Size limits every decoder applies before allocating.
public struct WireLimits: Sendable, Equatable {
    public var maxPayloadBytes = 64 * 1024
    public var maxBatchCount = 4096
    public var maxBatchBytes = 1024 * 1024
    /// Blocks in one fetch response.
    public var maxBlocksPerResponse = 64
    /// Payloads in one mempool forward.
    public var maxForwardCount = 512
    public init() {}
}

public struct Vote: Hashable, Sendable {
    public let epoch: UInt64
    public let round: UInt64
    public let blockHash: BlockHash
    public let voter: UInt16
    public let signature: [UInt8]
}

public struct Timeout: Hashable, Sendable {
    public let epoch: UInt64
    public let round: UInt64
    public let voter: UInt16
    public let highQC: QuorumCertificate
    public let signature: [UInt8]
}

/// A leader's block for its round, with the timeout certificate of the round before when the
/// block does not extend that round's certificate.
public struct Proposal: Hashable, Sendable {
    public let block: Block
    public let timeoutCertificate: TimeoutCertificate?
    public let signature: [UInt8]
}

/// Every consensus message. The first byte of the encoding is a version (1), the second the type.
public enum ConsensusMessage: Hashable, Sendable {
    case proposal(Proposal)
    case vote(Vote)
    case timeout(Timeout)
    /// Our highest certificates, sent to a validator that is behind (it spoke of an older round).
    case sync(QuorumCertificate, TimeoutCertificate?)
    /// Ask for a block by hash and up to `count - 1` of its ancestors.
    case blockRequest(BlockHash, count: UInt16)
    case blockResponse([Block])
    /// Pending payloads handed to upcoming leaders by the validator they were submitted to.
    case payloads([[UInt8]])

    static let version: UInt8 = 1

    enum Tag: UInt8 {
        case proposal = 1, vote, timeout, sync, blockRequest, blockResponse, payloads
    }

    public var name: String {
        switch self {
        case .proposal: "proposal"
        case .vote: "vote"
        case .timeout: "timeout"
        case .sync: "sync"
        case .blockRequest: "blockRequest"
        case .blockResponse: "blockResponse"
        case .payloads: "payloads"
        }
    }

    /// Version 2: the message carries blocks with a time (each block's fields are followed by
    /// `u64 time`); everything else is the same as version 1, which a message without block
    /// times keeps (Docs/consensus.md, "Encodings").
    static let timedVersion: UInt8 = 2

    var carriesTime: Bool {
        switch self {
        case .proposal(let p): p.block.time != 0
        case .blockResponse(let blocks): blocks.contains { $0.time != 0 }
        default: false
        }
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        let timed = carriesTime
        w.u8(timed ? Self.timedVersion : Self.version)
        switch self {
        case .proposal(let p):
            w.u8(Tag.proposal.rawValue)
            p.block.encode(into: &w, timed: timed)
            if let tc = p.timeoutCertificate {
                w.u8(1)
                tc.encode(into: &w)
            } else {
                w.u8(0)
            }
            w.raw(p.signature)
        case .vote(let v):
            w.u8(Tag.vote.rawValue)
            w.u64(v.epoch)
            w.u64(v.round)
            w.raw(v.blockHash.bytes)
            w.u16(v.voter)
            w.raw(v.signature)
        case .timeout(let t):
            w.u8(Tag.timeout.rawValue)
            w.u64(t.epoch)
            w.u64(t.round)
            w.u16(t.voter)
            t.highQC.encode(into: &w)
            w.raw(t.signature)
        case .sync(let qc, let tc):
            w.u8(Tag.sync.rawValue)
            qc.encode(into: &w)
            if let tc {
                w.u8(1)
                tc.encode(into: &w)
            } else {
                w.u8(0)
            }
        case .blockRequest(let h, let count):
            w.u8(Tag.blockRequest.rawValue)
            w.raw(h.bytes)
            w.u16(count)
        case .blockResponse(let blocks):
            w.u8(Tag.blockResponse.rawValue)
            w.u16(UInt16(blocks.count))
            for b in blocks { b.encode(into: &w, timed: timed) }
        case .payloads(let ps):
            w.u8(Tag.payloads.rawValue)
            w.u16(UInt16(ps.count))
            for p in ps {
                w.u32(UInt32(p.count))
                w.raw(p)
            }
        }
        return w.bytes
    }

    /// Decodes one message; structure only (signatures are checked by the core, which knows the
    /// validator set). Refuses trailing bytes, unknown versions and types, and anything past `limits`.
    public static func decode(_ bytes: [UInt8], chainID: [UInt8], limits: WireLimits = WireLimits()) throws(DropReason) -> ConsensusMessage {
        guard bytes.count <= limits.maxBatchBytes * 2 + 65536 else { throw .oversized }
        var r = ByteReader(bytes)
        let v = try read({ try r.u8() })
        guard v == version || v == timedVersion else { throw .malformed }
        let timed = v == timedVersion
        guard let tag = Tag(rawValue: try read { try r.u8() }) else { throw .unknownType }
        let message: ConsensusMessage
        switch tag {
        case .proposal:
            let block = try Block.decode(&r, chainID: chainID, limits: limits, timed: timed)
            let tc = try decodeOptionalTC(&r)
            let sig = try read { try r.raw(Ed25519.signatureLength) }
            message = .proposal(Proposal(block: block, timeoutCertificate: tc, signature: sig))
        case .vote:
            let epoch = try read { try r.u64() }
            let round = try read { try r.u64() }
            let hash = BlockHash(try read { try r.raw(32) })
            let voter = try read { try r.u16() }
            let sig = try read { try r.raw(Ed25519.signatureLength) }
            message = .vote(Vote(epoch: epoch, round: round, blockHash: hash, voter: voter, signature: sig))
        case .timeout:
            let epoch = try read { try r.u64() }
            let round = try read { try r.u64() }
            let voter = try read { try r.u16() }
            let qc = try QuorumCertificate.decode(&r)
            let sig = try read { try r.raw(Ed25519.signatureLength) }
            message = .timeout(Timeout(epoch: epoch, round: round, voter: voter, highQC: qc, signature: sig))
        case .sync:
            let qc = try QuorumCertificate.decode(&r)
            message = .sync(qc, try decodeOptionalTC(&r))
        case .blockRequest:
            let hash = BlockHash(try read { try r.raw(32) })
            let count = try read { try r.u16() }
            guard count >= 1 else { throw .malformed }
            message = .blockRequest(hash, count: count)
        case .blockResponse:
            let count = Int(try read { try r.u16() })
            guard count >= 1, count <= limits.maxBlocksPerResponse else { throw .malformed }
            var blocks: [Block] = []
            for _ in 0..<count { blocks.append(try Block.decode(&r, chainID: chainID, limits: limits, timed: timed)) }
            message = .blockResponse(blocks)
        case .payloads:
            let count = Int(try read { try r.u16() })
            guard count >= 1, count <= limits.maxForwardCount else { throw .malformed }
            var ps: [[UInt8]] = []
            var total = 0
            for _ in 0..<count {
                let len = Int(try read { try r.u32() })
                guard len <= limits.maxPayloadBytes else { throw .oversized }
                total += len
                guard total <= limits.maxBatchBytes else { throw .oversized }
                ps.append(try read { try r.raw(len) })
            }
            message = .payloads(ps)
        }
        guard r.remaining == 0 else { throw .malformed }
        // One encoding per message: version 2 only when a block in it has a time, so a message
        // without block times in version 2 (or a version-2 proposal whose time is 0) is refused.
        guard message.carriesTime == timed else { throw .malformed }
        return message
    }

    private static func decodeOptionalTC(_ r: inout ByteReader) throws(DropReason) -> TimeoutCertificate? {
        switch try read({ try r.u8() }) {
        case 0: return nil
        case 1: return try TimeoutCertificate.decode(&r)
        default: throw .malformed
        }
    }
}

extension Proposal {
    /// A proposal signed by `identity` (the block's proposer).
    public static func signed(_ block: Block, timeoutCertificate: TimeoutCertificate?, by identity: NodeIdentity, chainID: [UInt8]) -> Proposal {
        Proposal(block: block, timeoutCertificate: timeoutCertificate,
                 signature: identity.sign(proposalDigest(chainID: chainID, block: block.hash)))
    }

    /// The same proposal with another signature (tests forge bad ones).
    public func withSignature(_ signature: [UInt8]) -> Proposal {
        Proposal(block: block, timeoutCertificate: timeoutCertificate, signature: signature)
    }
}

extension Vote {
    /// A vote for `block` in `round` signed by `identity`, validator `voter`.
    public static func signed(round: UInt64, block: BlockHash, voter: UInt16, by identity: NodeIdentity, chainID: [UInt8], epoch: UInt64 = 0) -> Vote {
        Vote(epoch: epoch, round: round, blockHash: block, voter: voter,
             signature: identity.sign(voteDigest(chainID: chainID, epoch: epoch, round: round, block: block)))
    }
}

extension BlockHash {
    /// A hash from 32 bytes (tests name blocks that do not exist).
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.init(bytes)
    }
}

extension QuorumCertificate {
    /// The same certificate without its last signer (tests forge short ones).
    public var droppingLastSigner: QuorumCertificate {
        let signers = self.signers.indices.dropLast()
        return QuorumCertificate(epoch: epoch, round: round, blockHash: blockHash,
                                 signers: SignerBitmap(count: self.signers.count, signers: Array(signers)),
                                 signatures: Array(signatures.dropLast()))
    }
}
