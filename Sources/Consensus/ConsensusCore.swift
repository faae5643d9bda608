import MeshCore
import Sodium

/// A validator's consensus state machine: chained HotStuff with a two-chain commit rule and
/// timeout certificates (Jolteon / DiemBFT v4 / HotStuff-2 family; Docs/consensus.md).
///
/// Sans-IO: `handle(_:now:)` takes one input at an instant and returns outputs in the order the
/// driver must carry them out; `deadline` says when to call back with `.timer`. No clock, socket
/// or global generator inside.
public struct ConsensusCore {
    public let config: ConsensusConfig
    public let key: ValidatorKey
    /// Our index in the validator set; nil for a core that only follows (never signs).
    public let index: Int?
    public let validators: ValidatorSet
    let identity: NodeIdentity
    let genesis: Genesis
    let epoch: UInt64 = 0

    public private(set) var safety: SafetyState
    public private(set) var round: UInt64 = 0
    public private(set) var counters = ConsensusCounters()
    public private(set) var highTC: TimeoutCertificate?
    /// The highest token the driver reported durable.
    public private(set) var durableToken: UInt64 = 0

    var tree: BlockTree
    var mempool: Mempool
    var rng: SeededGenerator
    var now = Instant.zero
    var out: [ConsensusOutput] = []
    var nextToken: UInt64 = 0
    var started = false

    /// A block's certificate, from a child's `justify` or formed from votes here.
    var certificates: [BlockHash: QuorumCertificate] = [:]
    /// Certificates whose signatures were checked: the whole certificate, not its round and block,
    /// so a forged copy (a signer dropped, a signature swapped) of a checked one is checked afresh.
    var verified: Set<QuorumCertificate> = []
    /// Proposals whose parent is missing, by parent hash (bounded).
    var waiting: [BlockHash: [Proposal]] = [:]
    var waitingCount = 0
    /// Blocks asked for: when to ask again, and the round of the certificate that named them.
    var wanted: [BlockHash: Fetch] = [:]
    /// Per round: the first proposal hash seen (to spot an equivocating leader).
    var proposalSeen: [UInt64: BlockHash] = [:]
    var tallies: [UInt64: VoteTally] = [:]
    var timeouts: [UInt64: [Int: Timeout]] = [:]
    /// Our own timeout for the current round, re-broadcast while the round lasts.
    var myTimeout: (timeout: Timeout, token: UInt64)?
    var roundDeadline = Instant.zero
    var consecutiveTimeouts = 0
    /// In a backed-off round (longer than `roundTimeout`): when to send again what we sent in it
    /// (our proposal, our vote, our timeout), every `roundTimeout`. A message lost while its
    /// receiver was partitioned or degraded would otherwise cost the whole backed-off duration
    /// once the fault heals (consensus-4 seed 837: an 8 s round outlasting the 4 s bound).
    var resendAt: Instant?
    /// What we signed in the current round, for `resend`: our proposal, and our vote with the token
    /// of the persist it waits for (a vote is sent again only once that state is durable).
    var myProposal: Proposal?
    var myVote: (vote: Vote, token: UInt64)?
    var proposeAt: Instant?
    /// Our own votes and timeouts, waiting for their persist before they count toward a
    /// certificate: a certificate may leave at once (in a proposal, a sync), and one carrying our
    /// signature must never precede the state that forbids contradicting it.
    var ownPending: [(token: UInt64, vote: Vote?, timeout: Timeout?)] = []
    /// When payloads submitted here go to the upcoming leaders (`forwardDelay` after the first
    /// of a burst), and how many were submitted since the last forward.
    var forwardAt: Instant?
    var submittedSinceForward = 0
    /// When we last sent `sync` to each validator, and in which of our rounds: once per round
    /// per peer, and again after a round timeout if the peer is still behind.
    var syncedAt: [Int: (round: UInt64, at: Instant)] = [:]

    struct Fetch { var next: Instant; let round: UInt64; var asked: Int }
    struct VoteTally {
        var choice: [Int: BlockHash] = [:]
        var signatures: [BlockHash: [Int: [UInt8]]] = [:]
    }

    /// - Parameters:
    ///   - restoring: the safety state reloaded from disk after a restart (nil on first start).
    ///   - rng: used to pick which validator to ask for a missing block.
    public init(config: ConsensusConfig, identity: NodeIdentity, restoring: SafetyState? = nil, rng: SeededGenerator) {
        self.config = config
        self.identity = identity
        genesis = config.genesis
        validators = config.genesis.validators
        key = identity.publicKey
        index = validators.index(of: key)
        safety = restoring ?? SafetyState(epoch: 0, lastVotedRound: 0, highQC: config.genesis.certificate)
        tree = BlockTree(genesis: config.genesis, retain: config.retainCommittedBlocks)
        mempool = Mempool(maxCount: config.mempoolMaxCount, maxBytes: config.mempoolMaxBytes,
                          maxCommittedRemembered: config.committedPayloadsRemembered)
        self.rng = rng
        verified.insert(config.genesis.certificate)
    }

    /// When to call back with `.timer`: the round's timeout, a leader's batch closing, or a block fetch retry.
    public var deadline: Instant? {
        guard started else { return nil }
        var d = roundDeadline
        if let p = proposeAt, p < d { d = p }
        if let f = forwardAt, f < d { d = f }
        if let r = resendAt, r < d { d = r }
        for f in wanted.values where f.next < d { d = f.next }
        return d
    }

    /// The leader of a round: round-robin over the validator set.
    public func leader(of round: UInt64) -> Int { Int((round &+ epoch) % UInt64(validators.count)) }

    public var committedHeight: UInt64 { tree.committed.height }
    public var mempoolCount: Int { mempool.count }

    public mutating func handle(_ input: ConsensusInput, now: Instant) -> [ConsensusOutput] {
        self.now = now
        out = []
        switch input {
        case .start:
            if !started {
                started = true
                // Resume where the reloaded state allows: after our highest certificate, and never
                // below a round we already signed in (we may still time that one out).
                let r = max(safety.highQC.round + 1, safety.lastVotedRound, 1)
                enterRound(r, viaTimeout: false)
            }
        case .message(let from, let bytes):
            receive(from: from, bytes: bytes)
        case .timer:
            if started { fire() }
        case .submit(let payload):
            submit(payload)
        case .persisted(let token):
            durableToken = max(durableToken, token)
            tallyOwnDurable()
        }
        return out
    }

    // MARK: - Rounds (the pacemaker)

    /// The round timeout, doubled per consecutive round ended by a timeout certificate beyond the
    /// first: one crashed leader costs two timeouts (its round, and the round before, whose votes
    /// went to it), and those should not compound.
    var roundDuration: Duration {
        let k = min(max(consecutiveTimeouts - 1, 0), config.maxBackoffExponent)
        return config.roundTimeout * (1 << k)
    }

    mutating func enterRound(_ r: UInt64, viaTimeout: Bool) {
        guard r > round else { return }
        round = r
        consecutiveTimeouts = viaTimeout ? consecutiveTimeouts + 1 : 0
        roundDeadline = now + roundDuration
        proposeAt = nil
        myTimeout = nil
        myProposal = nil
        myVote = nil
        resendAt = roundDuration > config.roundTimeout ? now + config.roundTimeout : nil
        // Forget per-round state below the round before this one.
        let floor = r >= 2 ? r - 2 : 0
        tallies = tallies.filter { $0.key >= floor }
        timeouts = timeouts.filter { $0.key >= floor }
        proposalSeen = proposalSeen.filter { $0.key >= floor }
        forwardToLeaders()
        scheduleProposal()
    }

    mutating func fire() {
        if let f = forwardAt, f <= now { forwardToLeaders() }
        if let p = proposeAt, p <= now {
            proposeAt = nil
            propose()
        }
        for (hash, f) in wanted.sorted(by: { $0.value.round < $1.value.round }) where f.next <= now {
            if f.round <= tree.committed.round && tree[hash] == nil {
                wanted[hash] = nil
                continue
            }
            request(hash, from: randomPeer(), round: f.round)
        }
        if roundDeadline <= now {
            timeoutRound()
        } else if let r = resendAt, r <= now {
            resend()
        }
    }

    /// A backed-off round's periodic re-send: our proposal to everyone, our durable vote to the
    /// next leader, our durable timeout to everyone. Each is the same signed message as before
    /// (receivers count a copy as `duplicate`), so nothing new is signed and no state is written.
    mutating func resend() {
        let next = now + config.roundTimeout
        resendAt = next < roundDeadline ? next : nil
        guard let me = index else { return }
        if let p = myProposal { out.append(.broadcast(bytes: ConsensusMessage.proposal(p).encoded())) }
        if let v = myVote, v.token <= durableToken {
            let to = leader(of: v.vote.round + 1)
            if to != me { out.append(.send(to: validators.keys[to], bytes: ConsensusMessage.vote(v.vote).encoded())) }
        }
        if let t = myTimeout, t.token <= durableToken {
            out.append(.broadcast(bytes: ConsensusMessage.timeout(t.timeout).encoded()))
        }
        counters.resends += 1
    }

    /// Our round ran out: sign a timeout (once per round; re-broadcast after that) and back off.
    mutating func timeoutRound() {
        roundDeadline = now + roundDuration
        if roundDuration > config.roundTimeout { resendAt = now + config.roundTimeout }
        guard let me = index else { return }
        if let mine = myTimeout {
            let message = ConsensusMessage.timeout(mine.timeout).encoded()
            if mine.token <= durableToken {
                out.append(.broadcast(bytes: message))
            } else {
                // Its write did not come back within a round: it may have failed (the driver only
                // counts a failed write, and its sends never leave). Write the state again with the
                // timeout behind it: a round that needs our timeout would otherwise stay stuck for
                // good once the disk works again (nothing else makes this validator write).
                myTimeout = (mine.timeout, persist(then: [.broadcast(bytes: message)]))
            }
            return
        }
        safety.lastVotedRound = max(safety.lastVotedRound, round)
        let qc = safety.highQC
        let sig = identity.sign(timeoutDigest(chainID: genesis.chainID, epoch: epoch, round: round, highQCRound: qc.round))
        let t = Timeout(epoch: epoch, round: round, voter: UInt16(me), highQC: qc, signature: sig)
        let token = persist(then: [.broadcast(bytes: ConsensusMessage.timeout(t).encoded())])
        myTimeout = (t, token)
        counters.timeoutsSent += 1
        ownPending.append((token, nil, t))
    }

    // MARK: - Proposing (leader)

    /// When to propose: at once with a full batch, after `batchTimeout` with some payloads (ours,
    /// or in the uncommitted blocks this one would help commit), else after `idleProposalDelay`.
    /// Only ever brought forward: payloads forwarded to us, or a block that arrives after its
    /// certificate, end an idle wait.
    mutating func scheduleProposal() {
        guard let me = index, leader(of: round) == me, safety.lastVotedRound < round else { return }
        let full = mempool.count >= config.maxBatchCount || mempool.bytes >= config.maxBatchBytes
        if let p = proposeAt, p <= now + (full ? .zero : config.batchTimeout) { return }
        let busy = mempool.count > 0 || tree.pathCarriesPayloads(to: safety.highQC.blockHash)
        let at = now + (full ? .zero : busy ? config.batchTimeout : config.idleProposalDelay)
        if proposeAt.map({ at < $0 }) ?? true { proposeAt = at }
    }

    mutating func propose() {
        guard let me = index, leader(of: round) == me, safety.lastVotedRound < round else { return }
        let qc = safety.highQC
        var tc: TimeoutCertificate?
        if qc.round + 1 != round {
            guard let t = highTC, t.round + 1 == round, qc.round >= t.maxHighQCRound else { return }
            tc = t
        }
        guard let parent = tree[qc.blockHash], let excluded = tree.uncommittedPayloads(from: qc.blockHash) else {
            // The certified block is not here yet: fetch it; `insertFetched` proposes when it lands.
            want(qc.blockHash, round: qc.round, from: nil)
            return
        }
        let payloads = mempool.batch(maxCount: config.maxBatchCount, maxBytes: config.maxBatchBytes, excluding: excluded)
        let block = Block(chainID: genesis.chainID, epoch: epoch, round: round, height: parent.height + 1,
                          proposer: UInt16(me), justify: qc, payloads: payloads, time: max(parent.block?.time ?? 0, clockMillis ?? 0))
        let proposal = Proposal(block: block, timeoutCertificate: tc,
                                signature: identity.sign(proposalDigest(chainID: genesis.chainID, block: block.hash)))
        tree.insert(block)
        proposalSeen[round] = block.hash
        safety.lastVotedRound = round
        let vote = makeVote(block)
        // The proposal is not a vote: it leaves at once, and only the leader's own vote waits for
        // the safety state (as DiemBFT's leader votes on its proposal through its safety rules).
        // A leader restarted before that write landed may propose again in the round: honest
        // validators vote for one of the two at most, as for any equivocating leader.
        out.append(.broadcast(bytes: ConsensusMessage.proposal(proposal).encoded()))
        var sends: [ConsensusOutput] = []
        let next = leader(of: round + 1)
        if next != me { sends.append(.send(to: validators.keys[next], bytes: ConsensusMessage.vote(vote).encoded())) }
        let token = persist(then: sends)
        myProposal = proposal
        myVote = (vote, token)
        counters.proposalsSent += 1
        counters.votesSent += 1
        if next == me { ownPending.append((token, vote, nil)) }
    }

    func makeVote(_ b: Block) -> Vote {
        let sig = identity.sign(voteDigest(chainID: genesis.chainID, epoch: epoch, round: b.round, block: b.hash))
        return Vote(epoch: epoch, round: b.round, blockHash: b.hash, voter: UInt16(index!), signature: sig)
    }

    /// Counts our own votes and timeouts whose persist is durable (in the order they were signed).
    mutating func tallyOwnDurable() {
        guard let me = index else { return }
        while let first = ownPending.first, first.token <= durableToken {
            ownPending.removeFirst()
            if let v = first.vote { tallyVote(v, from: me) }
            if let t = first.timeout { tallyTimeout(t, from: me) }
        }
    }

    /// Emits `.persist` of the current safety state with `sends` behind it; returns its token.
    @discardableResult
    mutating func persist(then sends: [ConsensusOutput]) -> UInt64 {
        nextToken += 1
        out.append(.persist(safety, token: nextToken, then: sends))
        return nextToken
    }

    // MARK: - Receiving

    mutating func receive(from key: ValidatorKey, bytes: [UInt8]) {
        guard let sender = validators.index(of: key) else { return counters.drop(.notValidator) }
        let message: ConsensusMessage
        do {
            message = try ConsensusMessage.decode(bytes, chainID: genesis.chainID, limits: config.limits)
        } catch {
            return counters.drop(error)
        }
        do {
            switch message {
            case .proposal(let p): try receiveProposal(p, from: sender)
            case .vote(let v): try receiveVote(v, from: sender)
            case .timeout(let t): try receiveTimeout(t, from: sender)
            case .sync(let qc, let tc):
                try check(qc)
                if let tc { try check(tc) }
                noteCertificate(qc, from: sender)
                if let tc { noteTimeoutCertificate(tc) }
            case .blockRequest(let hash, let count): serve(hash, count: Int(count), to: sender)
            case .blockResponse(let blocks): try receiveBlocks(blocks, from: sender)
            case .payloads(let ps):
                for p in ps { admit(p, local: false) }
                scheduleProposal()
            }
        } catch {
            counters.drop(error)
        }
    }

    func check(_ qc: QuorumCertificate) throws(DropReason) {
        guard qc.epoch == epoch else { throw .wrongEpoch }
        if verified.contains(qc) { return }
        try qc.verify(set: validators, genesis: genesis)
    }

    mutating func checkAndRemember(_ qc: QuorumCertificate) throws(DropReason) {
        try check(qc)
        verified.insert(qc)
        if verified.count > 4096 {
            let floor = tree.committed.round
            verified = verified.filter { $0.round >= floor || $0.round == 0 }
        }
    }

    func check(_ tc: TimeoutCertificate) throws(DropReason) {
        guard tc.epoch == epoch else { throw .wrongEpoch }
        try tc.verify(set: validators, genesis: genesis)
    }

    mutating func receiveProposal(_ p: Proposal, from sender: Int) throws(DropReason) {
        let b = p.block
        guard b.epoch == epoch else { throw .wrongEpoch }
        guard Int(b.proposer) == sender else { throw .senderMismatch }
        guard leader(of: b.round) == sender else { throw .wrongLeader }
        if proposalSeen[b.round] == b.hash, tree[b.hash] != nil { throw .duplicate }
        // The round must be justified: directly by the certificate of the round before, or by a
        // timeout certificate of the round before whose reported locks the certificate is at least.
        guard b.justify.round < b.round else { throw .invalidProposal }
        if b.round - 1 == b.justify.round {
            guard p.timeoutCertificate == nil else { throw .invalidProposal }
        } else {
            guard let tc = p.timeoutCertificate, tc.round == b.round - 1, b.justify.round >= tc.maxHighQCRound else {
                throw .invalidProposal
            }
        }
        guard Ed25519.verify(p.signature, message: proposalDigest(chainID: genesis.chainID, block: b.hash),
                             publicKey: validators.keys[sender].bytes) else { throw .badSignature }
        if let seen = proposalSeen[b.round], seen != b.hash, config.mutation != .voteTwiceInARound { throw .equivocatingProposal }
        guard b.payloads.count <= config.maxBatchCount, b.payloadBytes <= config.maxBatchBytes else { throw .oversized }
        try checkAndRemember(b.justify)
        if let tc = p.timeoutCertificate { try check(tc) }
        if b.round < round, tree[b.hash] == nil { sync(sender) }
        proposalSeen[b.round] = b.hash
        noteCertificate(b.justify, from: sender)
        if let tc = p.timeoutCertificate { noteTimeoutCertificate(tc) }
        guard tree[b.parent] != nil else {
            if b.justify.round > tree.committed.round, waitingCount < 256 {
                waiting[b.parent, default: []].append(p)
                waitingCount += 1
            }
            return
        }
        try accept(b)
    }

    /// This validator's wall clock in Unix milliseconds, when the driver gave one.
    var clockMillis: UInt64? {
        config.unixMillisAtZero.map { $0 &+ UInt64(max(0, now.nanoseconds) / 1_000_000) }
    }

    /// A proposal whose parent is known: check it against the chain, store it, vote if we may.
    mutating func accept(_ b: Block) throws(DropReason) {
        guard let parent = tree[b.parent] else { return }
        guard b.height == parent.height + 1, b.round > parent.round else { throw .invalidProposal }
        // Block time: never below the parent's, never far ahead of this validator's clock.
        guard b.time >= parent.block?.time ?? 0 else { throw .invalidProposal }
        if let clock = clockMillis, b.time > clock + UInt64(config.maxClockAhead.nanoseconds / 1_000_000) { throw .invalidProposal }
        guard let ancestors = tree.uncommittedPayloads(from: b.parent) else {
            // Extends a branch that does not include our committed block.
            if b.height > tree.committed.height { counters.conflictingChains += 1 }
            throw .invalidProposal
        }
        var ids = Set<PayloadID>()
        for payload in b.payloads {
            guard payload.count <= config.limits.maxPayloadBytes else { throw .oversized }
            let id = PayloadID(payload)
            guard ids.insert(id).inserted, !ancestors.contains(id), !mempool.isCommitted(id) else { throw .invalidProposal }
        }
        tree.insert(b)
        wanted[b.hash] = nil
        tryCommit(b.parent)
        vote(for: b)
        if let more = waiting.removeValue(forKey: b.hash) {
            waitingCount -= more.count
            for p in more { try? accept(p.block) }
        }
        scheduleProposal()
    }

    mutating func vote(for b: Block) {
        guard let me = index, b.round == round else { return }
        if config.mutation != .voteTwiceInARound {
            guard safety.lastVotedRound < b.round else { return }
        }
        safety.lastVotedRound = max(safety.lastVotedRound, b.round)
        let v = makeVote(b)
        let next = leader(of: b.round + 1)
        if next == me {
            let token = persist(then: [])
            ownPending.append((token, v, nil))
            myVote = (v, token)
        } else {
            myVote = (v, persist(then: [.send(to: validators.keys[next], bytes: ConsensusMessage.vote(v).encoded())]))
        }
        counters.votesSent += 1
    }

    mutating func receiveVote(_ v: Vote, from sender: Int) throws(DropReason) {
        guard v.epoch == epoch else { throw .wrongEpoch }
        guard Int(v.voter) == sender else { throw .senderMismatch }
        guard v.round <= round + config.maxRoundsAhead else { throw .farFutureRound }
        guard let me = index, leader(of: v.round + 1) == me else { throw .wrongLeader }
        guard v.round > safety.highQC.round, v.round + 1 >= round else { throw .staleRound }
        guard Ed25519.verify(v.signature, message: voteDigest(chainID: genesis.chainID, epoch: epoch, round: v.round, block: v.blockHash),
                             publicKey: validators.keys[sender].bytes) else { throw .badSignature }
        tallyVote(v, from: sender)
    }

    mutating func tallyVote(_ v: Vote, from voter: Int) {
        var t = tallies[v.round] ?? VoteTally()
        if let previous = t.choice[voter] {
            counters.drop(previous == v.blockHash ? .duplicate : .equivocatingVote)
            return
        }
        t.choice[voter] = v.blockHash
        t.signatures[v.blockHash, default: [:]][voter] = v.signature
        tallies[v.round] = t
        let sigs = t.signatures[v.blockHash]!
        guard sigs.count == validators.quorum, v.round > safety.highQC.round else { return }
        let signers = sigs.keys.sorted()
        let qc = QuorumCertificate(epoch: epoch, round: v.round, blockHash: v.blockHash,
                                   signers: SignerBitmap(count: validators.count, signers: signers),
                                   signatures: signers.map { sigs[$0]! })
        verified.insert(qc)
        counters.certificatesFormed += 1
        noteCertificate(qc, from: nil)
    }

    mutating func receiveTimeout(_ t: Timeout, from sender: Int) throws(DropReason) {
        guard t.epoch == epoch else { throw .wrongEpoch }
        guard Int(t.voter) == sender else { throw .senderMismatch }
        guard t.round <= round + config.maxRoundsAhead else { throw .farFutureRound }
        guard t.highQC.round < t.round else { throw .badCertificate }
        if t.round < round {
            sync(sender)
            throw .staleRound
        }
        guard Ed25519.verify(t.signature, message: timeoutDigest(chainID: genesis.chainID, epoch: epoch, round: t.round, highQCRound: t.highQC.round),
                             publicKey: validators.keys[sender].bytes) else { throw .badSignature }
        try checkAndRemember(t.highQC)
        noteCertificate(t.highQC, from: sender)
        tallyTimeout(t, from: sender)
    }

    mutating func tallyTimeout(_ t: Timeout, from voter: Int) {
        guard t.round >= round else { return }
        var forRound = timeouts[t.round] ?? [:]
        if forRound[voter] != nil { return counters.drop(.duplicate) }
        forRound[voter] = t
        timeouts[t.round] = forRound
        // f+1 timeouts: at least one honest validator gave up on this round; join it, so a
        // timeout certificate forms even when our own timer is later than theirs.
        if forRound.count >= validators.faultTolerance + 1, index != nil, myTimeout == nil || t.round > round {
            if t.round > round { enterRound(t.round, viaTimeout: true) }
            if myTimeout == nil { timeoutRound() }
        }
        guard let all = timeouts[t.round], all.count >= validators.quorum, (highTC?.round ?? 0) < t.round else { return }
        let signers = all.keys.sorted()
        let tc = TimeoutCertificate(epoch: epoch, round: t.round, signers: SignerBitmap(count: validators.count, signers: signers),
                                    highQCRounds: signers.map { all[$0]!.highQC.round },
                                    signatures: signers.map { all[$0]!.signature })
        counters.timeoutCertificatesFormed += 1
        noteTimeoutCertificate(tc)
    }

    // MARK: - Certificates, commits

    /// A checked certificate: remember it for its block, raise our high certificate, commit what
    /// it finalises, fetch its block if missing, and advance to the round after it.
    mutating func noteCertificate(_ qc: QuorumCertificate, from sender: Int?) {
        if qc.round > 0, certificates[qc.blockHash] == nil { certificates[qc.blockHash] = qc }
        if qc.round > safety.highQC.round { safety.highQC = qc }
        if tree[qc.blockHash] == nil {
            if qc.round > tree.committed.round { want(qc.blockHash, round: qc.round, from: sender) }
        } else {
            tryCommit(qc.blockHash)
        }
        if qc.round >= round { enterRound(qc.round + 1, viaTimeout: false) }
    }

    mutating func noteTimeoutCertificate(_ tc: TimeoutCertificate) {
        if tc.round > (highTC?.round ?? 0) { highTC = tc }
        if tc.round >= round { enterRound(tc.round + 1, viaTimeout: true) }
    }

    /// Two-chain rule: a certified block B whose parent P is from the round just before B's
    /// finalises P and all its ancestors. Looks down from `hash` for the highest such pair.
    mutating func tryCommit(_ hash: BlockHash) {
        guard let path = tree.pathFromCommitted(to: hash) else {
            if let n = tree[hash], n.height > tree.committed.height, conflictsWithCommitted(n) { counters.conflictingChains += 1 }
            return
        }
        var target: Int?
        for i in stride(from: path.count - 1, through: 0, by: -1) {
            let b = path[i]
            guard certificates[b.hash] != nil else { continue }
            let parentRound = i > 0 ? path[i - 1].round : tree.committed.round
            if parentRound + 1 == b.round, i > 0 {
                target = i - 1
                break
            }
        }
        guard let t = target else { return }
        let finalised = Array(path[...t])
        guard finalised.allSatisfy({ $0.block != nil && certificates[$0.hash] != nil }) else { return }
        for n in finalised {
            let b = n.block!, qc = certificates[n.hash]!
            out.append(.commit(CommittedBlock(height: b.height, epoch: b.epoch, round: b.round, hash: b.hash,
                                              payloads: b.payloads, certificate: qc, proposer: b.proposer, justify: b.justify, time: b.time)))
            counters.blocksCommitted += 1
            counters.payloadsCommitted += b.payloads.count
            for p in b.payloads { mempool.markCommitted(p) }
        }
        tree.commit(finalised)
        let floor = tree.committed.round
        // Keep certificates of blocks still to come (the certificate can arrive before its block).
        certificates = certificates.filter { $0.value.round > floor || tree[$0.key] != nil }
        wanted = wanted.filter { $0.value.round > floor }
        pendingFetched = pendingFetched.filter { $0.value.height > tree.committed.height }
        if waitingCount > 0 {
            waiting = waiting.compactMapValues { ps in
                let kept = ps.filter { $0.block.height > tree.committed.height }
                return kept.isEmpty ? nil : kept
            }
            waitingCount = waiting.values.reduce(0) { $0 + $1.count }
        }
    }

    /// Whether `n`'s ancestors are all known down to the committed height and end in another block
    /// than the committed one there (a true conflict, not a gap still being fetched).
    func conflictsWithCommitted(_ n: BlockTree.Node) -> Bool {
        var cursor: BlockTree.Node? = n
        while let c = cursor, c.height > tree.committed.height {
            guard let p = c.parent else { return false }
            cursor = tree[p]
        }
        guard let c = cursor else { return false }
        return c.height == tree.committed.height && c.hash != tree.committed.hash
    }

    // MARK: - Fetching blocks

    mutating func want(_ hash: BlockHash, round: UInt64, from sender: Int?) {
        guard wanted[hash] == nil else { return }
        request(hash, from: sender ?? randomPeer(), round: round)
    }

    mutating func request(_ hash: BlockHash, from peer: Int?, round: UInt64) {
        let asked = (wanted[hash]?.asked ?? 0) + 1
        wanted[hash] = Fetch(next: now + config.fetchRetry, round: round, asked: asked)
        guard let peer, peer != index else { return }
        counters.blockRequestsSent += 1
        out.append(.send(to: validators.keys[peer], bytes: ConsensusMessage.blockRequest(hash, count: 32).encoded()))
    }

    mutating func randomPeer() -> Int? {
        let others = (0..<validators.count).filter { $0 != index }
        guard !others.isEmpty else { return nil }
        return others[Int(rng.next() % UInt64(others.count))]
    }

    /// Answers a block request with the block and up to `count - 1` ancestors we hold, newest first.
    mutating func serve(_ hash: BlockHash, count: Int, to peer: Int) {
        var blocks: [Block] = []
        var bytes = 0
        var cursor = tree[hash]
        while let n = cursor, let b = n.block, blocks.count < min(count, config.limits.maxBlocksPerResponse) {
            bytes += b.payloadBytes + 300
            if !blocks.isEmpty, bytes > config.maxMessageBytes { break }
            blocks.append(b)
            cursor = n.parent.flatMap { tree[$0] }
        }
        guard !blocks.isEmpty else { return }
        out.append(.send(to: validators.keys[peer], bytes: ConsensusMessage.blockResponse(blocks).encoded()))
    }

    /// Blocks we asked for (newest first): each is authenticated by its hash, which a checked
    /// certificate named; its parent, named by its own certificate, may come in the same response.
    mutating func receiveBlocks(_ blocks: [Block], from sender: Int) throws(DropReason) {
        var inserted: [Block] = []
        for b in blocks {
            guard wanted[b.hash] != nil else {
                if tree[b.hash] != nil { counters.drop(.duplicate) } else { counters.drop(.unrequestedBlock) }
                continue
            }
            guard b.epoch == epoch, b.parent == b.justify.blockHash, b.justify.round < b.round else { throw .invalidProposal }
            try checkAndRemember(b.justify)
            wanted[b.hash] = nil
            if b.justify.round > 0, certificates[b.justify.blockHash] == nil { certificates[b.justify.blockHash] = b.justify }
            if b.justify.round > safety.highQC.round { safety.highQC = b.justify }
            if tree[b.parent] == nil, b.justify.round > tree.committed.round, b.height > tree.committed.height + 1 {
                wanted[b.parent] = Fetch(next: now + config.fetchRetry, round: b.justify.round, asked: 0)
            }
            inserted.append(b)
        }
        // Insert oldest first so each block finds its parent.
        for b in inserted.reversed() {
            if tree[b.parent] != nil {
                insertFetched(b)
            } else {
                pendingFetched[b.parent] = b
            }
        }
        for b in inserted where tree[b.hash] == nil && tree[b.parent] == nil && wanted[b.parent] != nil && wanted[b.parent]!.asked == 0 {
            request(b.parent, from: sender, round: b.justify.round)
        }
    }

    var pendingFetched: [BlockHash: Block] = [:]

    mutating func insertFetched(_ b: Block) {
        guard let parent = tree[b.parent], b.height == parent.height + 1 else { return }
        tree.insert(b)
        tryCommit(b.hash)
        if let child = pendingFetched.removeValue(forKey: b.hash) { insertFetched(child) }
        if let more = waiting.removeValue(forKey: b.hash) {
            waitingCount -= more.count
            for p in more { try? accept(p.block) }
        }
        if safety.highQC.round >= round { enterRound(safety.highQC.round + 1, viaTimeout: false) }
        scheduleProposal()
    }

    /// Tells a validator that is behind our highest certificates: once per round, and again a
    /// round timeout later while it still is. Once per round only was not enough: a `sync` lost
    /// (our datagrams dropped) left a validator that formed a timeout certificate alone in the next
    /// round, the others re-broadcasting timeouts for the round before it for good (consensus-4
    /// seed 155: our timeouts carry our high certificate, not the timeout certificate).
    mutating func sync(_ peer: Int) {
        guard peer != index else { return }
        if let last = syncedAt[peer], last.round == round, now < last.at + config.roundTimeout { return }
        syncedAt[peer] = (round, now)
        out.append(.send(to: validators.keys[peer], bytes: ConsensusMessage.sync(safety.highQC, highTC).encoded()))
    }

    // MARK: - Mempool

    mutating func submit(_ payload: [UInt8]) {
        guard admit(payload, local: true) else { return }
        if index != nil {
            submittedSinceForward += 1
            if submittedSinceForward >= config.limits.maxForwardCount {
                forwardToLeaders()
            } else if forwardAt == nil {
                forwardAt = now + config.forwardDelay
            }
        }
        // A leader waiting out its idle delay (or a batch that just filled) proposes sooner.
        scheduleProposal()
    }

    @discardableResult
    mutating func admit(_ payload: [UInt8], local: Bool) -> Bool {
        guard payload.count <= config.limits.maxPayloadBytes else { counters.drop(.payloadTooLarge); return false }
        switch mempool.add(payload, local: local) {
        case .added: return true
        case .duplicate: counters.drop(.duplicate); return false
        case .full: counters.drop(.mempoolFull); return false
        }
    }

    /// Hands our own pending payloads to the leaders of this round and the next.
    mutating func forwardToLeaders() {
        forwardAt = nil
        submittedSinceForward = 0
        guard index != nil else { return }
        forwardPayloads(to: leader(of: round))
        forwardPayloads(to: leader(of: round + 1))
    }

    /// Hands our own pending payloads to an upcoming leader.
    mutating func forwardPayloads(to leader: Int) {
        guard leader != index, mempool.count > 0 else { return }
        let excluded = tree.uncommittedPayloads(from: safety.highQC.blockHash) ?? []
        // Again after two full rotations: by then every leader had its turn and the payload is
        // still pending, so the forward (or the block that carried it) was lost.
        let ps = mempool.forward(to: leader, round: round, again: UInt64(2 * validators.count),
                                 maxCount: config.limits.maxForwardCount, maxBytes: config.maxBatchBytes, excluding: excluded)
        guard !ps.isEmpty else { return }
        counters.payloadsForwarded += ps.count
        out.append(.send(to: validators.keys[leader], bytes: ConsensusMessage.payloads(ps).encoded()))
    }
}
