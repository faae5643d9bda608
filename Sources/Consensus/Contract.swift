import MeshCore

/// What a driver hands the consensus core. The driver owns the sessions: a message arrives with
/// the sender's proven key (a session peer), never a claimed one.
public enum ConsensusInput: Sendable {
    /// Enter the first round (after construction, or after a restart with reloaded safety state).
    case start
    /// A consensus message's bytes from a validator (or anyone: non-validators are dropped and counted).
    case message(from: ValidatorKey, bytes: [UInt8])
    /// The deadline (`ConsensusCore.deadline`) is due; early calls are harmless.
    case timer
    /// A payload to order (a batch of transaction bytes, opaque here).
    case submit([UInt8])
    /// The `.persist` with this token is durable (its sends have been or are being carried out).
    case persisted(token: UInt64)
}

public enum ConsensusOutput: Sendable, Equatable {
    /// One message to one validator (by key); the adapter picks datagram or reliable channel by size.
    case send(to: ValidatorKey, bytes: [UInt8])
    /// One message to every other validator of the current set.
    case broadcast(bytes: [UInt8])
    /// Write `state` durably, then carry out `then` (sends only), then hand back `.persisted(token)`.
    /// A vote, timeout or proposal never leaves before the state that forbids contradicting it.
    case persist(SafetyState, token: UInt64, then: [ConsensusOutput])
    /// A block is final: heights are consecutive from 1, each exactly once per core lifetime.
    case commit(CommittedBlock)
}

/// A final block handed to whoever executes payloads (the ledger), with the quorum certificate
/// that certifies it. (Finality follows from the certificate of the next block at the next round;
/// see Docs/consensus.md, "Commit rule".)
public struct CommittedBlock: Sendable, Equatable {
    public let height: UInt64
    public let epoch: UInt64
    public let round: UInt64
    public let hash: BlockHash
    public let payloads: [[UInt8]]
    public let certificate: QuorumCertificate
    /// The proposer's index and the certificate of the parent: with the fields above they are
    /// the whole block, so an offline checker recomputes `hash` and ties the payloads to `certificate`.
    public let proposer: UInt16
    public let justify: QuorumCertificate
    /// The block's agreed time, Unix milliseconds (`Block.time`; 0: the chain carries no time).
    public let time: UInt64

    public init(height: UInt64, epoch: UInt64, round: UInt64, hash: BlockHash, payloads: [[UInt8]],
                certificate: QuorumCertificate, proposer: UInt16, justify: QuorumCertificate, time: UInt64 = 0) {
        self.time = time
        self.height = height
        self.epoch = epoch
        self.round = round
        self.hash = hash
        self.payloads = payloads
        self.certificate = certificate
        self.proposer = proposer
        self.justify = justify
    }
}

/// Tuning and limits; the defaults suit a LAN or a fast radio mesh.
public struct ConsensusConfig: Sendable {
    public var genesis: Genesis
    public var limits = WireLimits()
    /// How long a round lasts before this validator times it out; doubled per consecutive
    /// timed-out round after the first, up to `2^maxBackoffExponent`, reset when a quorum
    /// certificate advances the round.
    public var roundTimeout: Duration = .seconds(1)
    public var maxBackoffExponent = 5
    /// A leader with some payloads waits this long for more before proposing (batching by time).
    public var batchTimeout: Duration = .milliseconds(20)
    /// A validator gathers payloads submitted to it for this long before handing them to the
    /// upcoming leaders in one message (sooner once `WireLimits.maxForwardCount` are waiting):
    /// one message per burst, not one per payload.
    public var forwardDelay: Duration = .milliseconds(2)
    /// A leader with nothing to order proposes an empty block after this (keeps rounds from timing out).
    public var idleProposalDelay: Duration = .milliseconds(200)
    /// A batch closes at this many payloads or bytes (batching by size). A full batch's proposal
    /// (payload bytes, 4 per payload, certificates) must stay within `maxMessageBytes`.
    public var maxBatchCount = 500
    public var maxBatchBytes = 192 * 1024
    /// The largest message the driver carries: the node's reliable stream refuses messages over
    /// 256 KiB, so block responses stop below this (a response of a megabyte was refused, and a
    /// validator behind by a few full blocks could never catch up).
    public var maxMessageBytes = 224 * 1024
    public var mempoolMaxCount = 20_000
    public var mempoolMaxBytes = 32 * 1024 * 1024
    /// Committed payload ids remembered to refuse a payload ordered twice.
    public var committedPayloadsRemembered = 1_000_000
    /// Votes and timeouts for rounds further ahead than this are dropped (`farFutureRound`).
    public var maxRoundsAhead: UInt64 = 1_000
    /// A block asked for and not received is asked for again (from another validator) after this.
    public var fetchRetry: Duration = .milliseconds(300)
    /// Committed blocks kept to serve fetches from validators that are behind.
    public var retainCommittedBlocks = 4096
    /// The Unix time in milliseconds at this core's `Instant.zero` (the driver's wall clock): set,
    /// a leader stamps each block with `max(parent's time, its clock)` and a voter refuses a block
    /// whose time is below its parent's or more than `maxClockAhead` past its own clock. Nil: blocks
    /// carry no time (0) unless the parent has one, which is then kept.
    public var unixMillisAtZero: UInt64?
    public var maxClockAhead: Duration = .seconds(30)
    /// Deliberate bugs, for proving that tests' checkers catch them. Never set outside tests.
    public var mutation: Mutation = .none

    public enum Mutation: Sendable, Equatable {
        case none
        /// Vote for every valid proposal of the current round, even after voting in it (a leader's
        /// second, different proposal for a round is taken instead of dropped).
        case voteTwiceInARound
    }

    public init(genesis: Genesis) { self.genesis = genesis }
}

/// Counters kept by the core; drops by reason.
public struct ConsensusCounters: Sendable, Equatable {
    public var drops: [DropReason: Int] = [:]
    public var proposalsSent = 0
    public var votesSent = 0
    public var timeoutsSent = 0
    /// Re-sends in backed-off rounds (`ConsensusCore.resend`): each a proposal, vote or timeout sent again.
    public var resends = 0
    public var certificatesFormed = 0
    public var timeoutCertificatesFormed = 0
    public var blocksCommitted = 0
    public var payloadsCommitted = 0
    public var blockRequestsSent = 0
    public var payloadsForwarded = 0
    /// A certified chain that does not extend our committed block: a safety violation somewhere
    /// (more than f faulty validators). Counted, never committed.
    public var conflictingChains = 0

    mutating func drop(_ r: DropReason) { drops[r, default: 0] += 1 }
    public func dropped(_ r: DropReason) -> Int { drops[r] ?? 0 }
    public var totalDrops: Int { drops.values.reduce(0, +) }
}
