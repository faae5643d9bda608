import Consensus
import Contracts
import Ledger
import MeshCore
import Node
import NodeService
import Sessions
import Sodium
import Synchronization

/// What the node does with the ledger: `validator` executes what its own consensus service
/// commits and signs header votes; `replica` keeps a verified copy fetched from peers and
/// forwards its submissions to validators.
public enum LedgerRole: String, Sendable, Equatable, CaseIterable {
    case validator, replica
}

public struct LedgerServiceConfig: Sendable {
    public var role: LedgerRole
    public var genesis: LedgerGenesis
    /// A submission not committed this long after it was handed on is answered `timedOut`.
    public var submitTimeout: Duration = .seconds(10)
    /// How often the service looks at its submissions and (a replica) asks for blocks.
    public var tick: Duration = .milliseconds(100)
    /// A replica asks a peer for blocks this often when it is up to date.
    public var syncInterval: Duration = .milliseconds(200)
    /// A sync request not answered this long is given up (the next goes to another validator).
    public var syncTimeout: Duration = .seconds(2)
    /// A replica forwards a pending submission again, to the next validator, this often.
    public var forwardRetry: Duration = .seconds(2)
    /// Recent blocks kept in memory to serve peers that sync (and to certify).
    public var serveWindow = 1024
    /// At most this many blocks, and about this many bytes, in one sync response (under the
    /// reliable stream's 256 KiB).
    public var syncMaxBlocks = 64
    public var syncMaxBytes = 192 * 1024
    /// What one contract call may use: a ledger rule, the same on every node of a chain
    /// (`ContractLimits.standard`; a simulated chain may lower the fuel to keep runs short).
    public var contractLimits = ContractLimits.standard

    public init(role: LedgerRole, genesis: LedgerGenesis) {
        self.role = role
        self.genesis = genesis
    }
}

/// What the ledger service takes, in `NodeCommand.service(LedgerService.protocolID, …)`; it also
/// takes `ConsensusEvent.committed` there (the commit seam, `ConsensusService.commitSink`).
public enum LedgerRequest: Sendable, Equatable {
    /// Sign an invoke with the node's identity (next nonce) and submit it; `request` names the answer.
    case submit(request: UInt64, chaincode: String, function: String, args: [[UInt8]])
    /// Submit a transaction a client signed itself.
    case submitSigned(request: UInt64, transaction: [UInt8])
    /// `submit` on behalf of another service of this node: its answers (`accepted`, `committed`,
    /// `refused`, `timedOut`, each a `LedgerEvent`) go to that service as
    /// `NodeCommand.service(replyTo, …)` instead of out as events (the meter collector's anchors).
    case submitFor(replyTo: ProtocolID, request: UInt64, chaincode: String, function: String, args: [[UInt8]])
    /// Sign a deploy of a WebAssembly contract under `name` with the node's identity (next nonce)
    /// and submit it: a new contract owned by this node, or a new version (Docs/chaincode.md).
    case deploy(request: UInt64, name: String, module: [UInt8])
}

/// A block applied and durable on this node: what the simulator's checkers compare.
public struct AppliedBlock: Sendable, Equatable {
    public let height: UInt64
    public let headerHash: [UInt8]
    public let stateRoot: [UInt8]
    /// Transaction ids in block order (nil for a payload that does not decode) and whether each was ok.
    public let txIDs: [[UInt8]?]
    public let ok: [Bool]
}

/// What the ledger service reports, in `NodeEvent.service(LedgerService.protocolID, …)`.
public enum LedgerEvent: Sendable, Equatable {
    /// The submission was signed and handed on (to consensus, or forwarded to a validator).
    case accepted(request: UInt64, txID: [UInt8])
    /// The transaction is in a block that is durable on this node; its result (ok or refused).
    case committed(request: UInt64, txID: [UInt8], height: UInt64, result: TxResult)
    /// Refused before it was handed on: the reason says by whom and why.
    case refused(request: UInt64, txID: [UInt8]?, reason: String)
    /// Not committed within `submitTimeout` (it may still be, later).
    case timedOut(request: UInt64, txID: [UInt8])
    case applied(AppliedBlock)
    /// A quorum of validators signed this height's header (this node holds the certificate).
    case certified(height: UInt64, headerHash: [UInt8])
    /// The ledger stopped applying blocks (its store failed, or its stored state did not load).
    case halted(String)
}

/// One recent block as the service keeps it to serve peers and collect votes.
public struct ServedBlock: Sendable, Equatable {
    public let height: UInt64
    public let header: [UInt8]
    public let hash: [UInt8]
    public let payloads: [[UInt8]]
    public var certificate: HeaderCertificate?

    public init(height: UInt64, header: [UInt8], hash: [UInt8], payloads: [[UInt8]], certificate: HeaderCertificate?) {
        self.height = height
        self.header = header
        self.hash = hash
        self.payloads = payloads
        self.certificate = certificate
    }
}

/// The ledger as a node service (`iB`): executes committed blocks (`Ledger.apply`), keeps them
/// through `.persist` (one batch a block, `LedgerRows`), and
///
/// - as a validator, takes each block its own consensus service commits (the commit seam:
///   `ConsensusService.commitSink`), signs a header vote once the block's rows are durable (the
///   vote is in the persist's `then`), and gathers 2f+1 votes into a `HeaderCertificate`;
/// - as a replica, asks validators for the blocks above its height (sync request/response on the
///   reliable stream), re-checks each block's consensus certificate, executes it itself, and
///   keeps the header certificates that check against its own headers;
/// - on both, answers submissions: signs with the node's identity (or takes a client's signed
///   transaction), hands it to consensus (validator) or forwards it to a validator (replica),
///   and reports the result once the block holding it is durable here, or a timeout.
///
/// Sans-IO: no clock (time is `now`), no disk (rows are outputs, and come back as `.restored`
/// in the simulator or as a loaded `Ledger` from the runtime's `LedgerStore`).
public struct LedgerService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    /// "iB": the first two plaintext bytes of every ledger message (Docs/encoding.md).
    public static let protocolID = ProtocolID(0x69, 0x42)
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }
    static let maxDatagram = SessionManager.maxPlaintext
    /// The node's reliable stream takes messages up to 256 KiB (`NodeCore.reliableConfig`).
    static let maxReliable = 256 * 1024

    public struct Counters: Sendable, Equatable {
        public var blocksApplied = 0
        public var commitsAlreadyApplied = 0
        public var commitGaps = 0
        public var badBlocks = 0
        /// A served header whose roots differ from this node's execution of the same certified block.
        public var headerMismatches = 0
        public var votesSent = 0
        public var votesCounted = 0
        public var certificatesFormed = 0
        public var certificatesReceived = 0
        public var submitted = 0
        public var submitsRefused = 0
        public var submitsTimedOut = 0
        public var forwarded = 0
        public var forwardsTaken = 0
        public var syncRequests = 0
        public var syncServed = 0
        public var syncBlocksReceived = 0
        public var persistFailures = 0
        /// Blocks executed on the thread pool (they run contracts).
        public var blocksOffLoop = 0
        /// Drops by reason (malformed, not_validator, bad_signature, stale_vote, bad_certificate, no_route).
        public var drops: [String: Int] = [:]

        mutating func drop(_ reason: String) { drops[reason, default: 0] += 1 }
    }

    public let config: LedgerServiceConfig
    let identity: NodeIdentity
    let validatorIDs: [NodeID]
    let validatorKeys: [[UInt8]]
    /// This node's index in the validator set when it runs as a validator.
    public let validatorIndex: Int?
    public private(set) var ledger: Ledger
    /// The highest height whose rows are durable here.
    public private(set) var durableHeight: UInt64
    public private(set) var halted: String?
    public private(set) var counters = Counters()
    /// Set when every peer asked keeps only heights above ours: catching up needs a snapshot.
    public private(set) var farBehind: String?
    private(set) var recent: [UInt64: ServedBlock] = [:]
    private var votes: [UInt64: [[UInt8]: [Int: [UInt8]]]] = [:]
    private var pendingBlocks: [UInt64: AppliedBlock] = [:]
    private var pendingResults: [UInt64: [TxResult]] = [:]
    /// Commits waiting for their signature checks (`.offload` jobs, `SignatureCheck`), by height;
    /// applied in height order as their checks come back.
    private var executing: [UInt64: Executing] = [:]
    /// The highest height handed to `executing` (or applied): a re-emitted commit at or below it is skipped.
    private var queuedHeight: UInt64 = 0
    /// Signature-check jobs in flight: job sequence → (height, index of the slice's first payload).
    private var checkJobs: [UInt64: (height: UInt64, start: Int)] = [:]
    private var nextJob: UInt64 = 1
    /// Synced blocks (a replica) waiting to be executed, in height order: a block that runs a
    /// contract goes to the thread pool and those after it wait for it.
    private var syncQueue: [SyncedBlock] = []
    /// The block being executed on the thread pool (one that runs a contract), if any: nothing
    /// else is applied until it is back, so blocks stay in height order.
    private var blockJob: BlockJob?
    /// Client submissions whose signature is being checked off the loop, by job sequence.
    private var submitChecks: [UInt64: (request: UInt64, tx: Transaction)] = [:]
    private var submissions: [[UInt8]: Submission] = [:]
    private var nextTicket: UInt64 = 1
    private var lastNonce: UInt64 = 0
    private var tickAt: Instant?
    private var nextSync = Instant.zero
    private var syncUntil: Instant?
    private var syncCursor = 0
    private var lastSeen: [ProvenPeer?]

    struct Executing {
        var block: CommittedBlock
        var checked: [Bool]
        var jobsLeft: Int
    }

    /// A block a peer sent (a replica), its header as the peer executed it, and the header
    /// certificate that came with it (checked once the block is executed here).
    struct SyncedBlock {
        var block: CommittedBlock
        var header: LedgerHeader
        var certificate: HeaderCertificate?
    }

    /// A block executing on the thread pool over a copy of the ledger; `slot` carries the
    /// executed copy back (the job's outcome is only bytes). `synced`: a replica's block.
    struct BlockJob {
        var sequence: UInt64
        var height: UInt64
        var slot: ExecutionSlot
        var synced: SyncedBlock?
    }

    struct Submission {
        var request: UInt64
        var bytes: [UInt8]
        var deadline: Instant
        var nextForward: Instant
        /// The service the answers go to (`submitFor`); nil: out as events.
        var replyTo: ProtocolID? = nil
    }

    /// `ledger`: what the runtime loaded from its `LedgerStore` (nil: start from genesis, or from
    /// `.restored` rows); `recent`: the last blocks of that store, to serve peers.
    /// - Throws: `ConsensusServiceError.notAValidator` for a validator role with a key outside the set.
    public init(config: LedgerServiceConfig, identity: NodeIdentity, ledger: Ledger? = nil, recent: [ServedBlock] = []) throws {
        let set = config.genesis.consensus.validators
        self.config = config
        self.identity = identity
        validatorKeys = set.keys.map(\.bytes)
        validatorIDs = set.keys.map { NodeID(publicKey: $0.bytes) }
        if config.role == .validator {
            guard let key = ValidatorKey(identity.publicKey), let i = set.index(of: key) else {
                throw ConsensusServiceError.notAValidator(key: Hex.encode(identity.publicKey), validators: set.count)
            }
            validatorIndex = i
        } else {
            validatorIndex = nil
        }
        var l = ledger ?? Ledger(genesis: config.genesis)
        // A validator executes what its own core certified; a replica re-checks every block.
        l.checksCertificates = config.role == .replica
        if config.contractLimits != .standard { l.contracts = ContractRuntime(limits: config.contractLimits) }
        self.ledger = l
        durableHeight = l.height
        lastSeen = Array(repeating: nil, count: set.count)
        for b in recent { self.recent[b.height] = b }
    }

    public var deadline: Instant? { tickAt }

    public func takes(_ command: NodeCommand) -> Bool {
        guard case let .service(id, payload) = command, id == Self.protocolID else { return false }
        return payload.as(LedgerRequest.self) != nil || payload.as(ConsensusEvent.self) != nil
    }

    public func purpose(ofSent bytes: [UInt8]) -> String? { "ledger" }

    var quorum: Int { config.genesis.consensus.validators.quorum }
    var chainID: [UInt8] { config.genesis.chainID }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case let .restored(rows):
            return restore(rows)
        case .start:
            var out: [Output] = []
            if ledger.height == 0 {
                // The genesis rows (idempotent puts): the store then names its genesis for offline tools.
                out.append(.persist(PersistBatch(ticket: ticket(), ops: LedgerRows.genesisOps(config.genesis)), then: []))
            }
            if config.role == .replica { nextSync = now; tickAt = now }
            return out
        case .timer:
            return tick(now: now, members: members)
        case let .message(from, bytes, _):
            return receive(bytes, from: from, now: now, members: members)
        case let .command(.service(_, payload)):
            if case let .committed(block)? = payload.as(ConsensusEvent.self) { return commit(block, now: now, members: members) }
            if let r = payload.as(LedgerRequest.self) { return submit(r, now: now, members: members) }
            return []
        case let .persisted(t, outcome):
            guard t.service == Self.protocolID else { return [] }
            return persisted(t.sequence, outcome)
        case let .membership(.up(peer)):
            if let k = validatorIDs.firstIndex(of: peer.nodeID) { lastSeen[k] = peer }
            return []
        case let .offloaded(t, outcome):
            guard t.service == Self.protocolID else { return [] }
            if let out = admitChecked(t.sequence, outcome, now: now, members: members) { return out }
            if let out = executedOffLoop(t.sequence, outcome, members: members) { return out }
            return checked(t.sequence, outcome, members: members)
        case .command, .membership, .stop:
            return []
        }
    }

    private mutating func ticket() -> PersistTicket {
        defer { nextTicket += 1 }
        return PersistTicket(service: Self.protocolID, sequence: nextTicket)
    }

    // MARK: - Restore (the simulator's disk; the runtime hands a loaded `Ledger` instead)

    private mutating func restore(_ rows: [StoredRow]) -> [Output] {
        var headers: [UInt64: [UInt8]] = [:], certs: [UInt64: [UInt8]] = [:]
        var txs: [UInt64: [(UInt32, [UInt8])]] = [:]
        var state: [(key: [UInt8], value: [UInt8])] = []
        for r in rows {
            switch r.table {
            case LedgerRows.blocks: if let h = Self.height(r.key) { headers[h] = r.value }
            case LedgerRows.headerCertificates: if let h = Self.height(r.key) { certs[h] = r.value }
            case LedgerRows.state: state.append((key: r.key, value: r.value))
            case LedgerRows.txs:
                guard r.key.count == 12, let h = Self.height(Array(r.key[0..<8])) else { continue }
                var rd = ByteReader(r.key, offset: 8)
                if let i = try? rd.u32() { txs[h, default: []].append((i, r.value)) }
            default: continue
            }
        }
        guard let top = headers.keys.max() else { return [] }
        do {
            let head = try LedgerHeader.decode(headers[top]!)
            var l = try Ledger(genesis: config.genesis, head: head, rows: state)
            l.checksCertificates = config.role == .replica
            l.contracts = ledger.contracts
            ledger = l
            durableHeight = top
        } catch {
            return halt("the stored ledger does not load (\(error)); run `iotaf ledger verify` on the data directory")
        }
        let low = top > UInt64(config.serveWindow) ? top - UInt64(config.serveWindow) + 1 : 1
        for h in low...top {
            guard let hb = headers[h], let header = try? LedgerHeader.decode(hb) else { continue }
            let payloads = (txs[h] ?? []).sorted { $0.0 < $1.0 }.compactMap { try? LedgerRows.decodeTxValue($0.1).payload }
            let cert = certs[h].flatMap { try? HeaderCertificate.decode($0) }
            recent[h] = ServedBlock(height: h, header: hb, hash: header.hash(chainID: chainID), payloads: payloads, certificate: cert)
        }
        return []
    }

    static func height(_ key: [UInt8]) -> UInt64? {
        guard key.count == 8 else { return nil }
        var r = ByteReader(key)
        return try? r.u64()
    }

    private mutating func halt(_ why: String) -> [Output] {
        halted = why
        executing = [:]
        checkJobs = [:]
        syncQueue = []
        blockJob = nil
        return [.event(.service(Self.protocolID, ServicePayload(LedgerEvent.halted(why))))]
    }

    private func event(_ e: LedgerEvent) -> Output { .event(.service(Self.protocolID, ServicePayload(e))) }

    /// A submission's answer: to the service that asked (`submitFor`), else out as an event.
    private func answer(_ e: LedgerEvent, to replyTo: ProtocolID?) -> Output {
        guard let replyTo else { return event(e) }
        return .command(.service(replyTo, ServicePayload(e)))
    }

    // MARK: - Blocks

    /// A block the node's own consensus service committed (validators). Its signatures are
    /// checked off the loop first (one `.offload` job per `SignatureCheck.slice` payloads; a
    /// payload this node already checked at submission is skipped), then it is applied in
    /// height order (`checked`): the loop keeps ordering, voting and serving meanwhile.
    private mutating func commit(_ block: CommittedBlock, now: Instant, members: some MemberDirectory) -> [Output] {
        guard halted == nil else { return [] }
        let top = max(ledger.height, queuedHeight)
        guard block.height > top else { counters.commitsAlreadyApplied += 1; return [] }
        guard block.height == top + 1 else { counters.commitGaps += 1; return [] }
        queuedHeight = block.height
        let n = block.payloads.count
        let known = block.payloads.map { submissions[Blake2b.hash($0, outputLength: 32)] != nil }
        var out: [Output] = []
        var jobs = 0
        var start = 0
        while start < n {
            let end = min(n, start + SignatureCheck.slice)
            let payloads = block.payloads[start..<end], skip = known[start..<end], chainID = chainID
            let unchecked = skip.filter { !$0 }.count
            let seq = nextJob
            nextJob += 1
            checkJobs[seq] = (block.height, start)
            out.append(.offload(OffloadJob(ticket: JobTicket(service: Self.protocolID, sequence: seq),
                                           cost: SignatureCheck.costPerSignature * unchecked) {
                .bytes(SignatureCheck.run(payloads, skip: skip, chainID: chainID))
            }))
            jobs += 1
            start = end
        }
        executing[block.height] = Executing(block: block, checked: Array(repeating: false, count: n), jobsLeft: jobs)
        if jobs == 0 { applyReady(members: members, into: &out) }
        return out
    }

    /// A signature-check job came back: its answers go to the block, then every block whose checks
    /// are all in is applied, in height order. A failed job leaves its payloads unchecked (the
    /// executor checks them itself).
    private mutating func checked(_ sequence: UInt64, _ outcome: JobOutcome, members: some MemberDirectory) -> [Output] {
        guard let job = checkJobs.removeValue(forKey: sequence), executing[job.height] != nil else { return [] }
        if case let .bytes(answers) = outcome {
            for (k, a) in answers.enumerated() where job.start + k < executing[job.height]!.checked.count {
                executing[job.height]!.checked[job.start + k] = a == 1
            }
        }
        executing[job.height]!.jobsLeft -= 1
        var out: [Output] = []
        applyReady(members: members, into: &out)
        return out
    }

    private mutating func applyReady(members: some MemberDirectory, into out: inout [Output]) {
        while halted == nil, blockJob == nil, let e = executing[ledger.height + 1], e.jobsLeft == 0 {
            executing[ledger.height + 1] = nil
            if Self.runsContracts(e.block) {
                startBlockJob(e.block, signatureChecked: e.checked, synced: nil, into: &out)
                return
            }
            do {
                guard let executed = try ledger.apply(e.block, signatureChecked: e.checked) else { continue }
                kept(executed, certificate: nil, members: members, into: &out)
            } catch {
                counters.badBlocks += 1
                // Nothing above it can apply: let consensus hand it again (a restart re-emits).
                executing = executing.filter { $0.key <= ledger.height }
                queuedHeight = ledger.height
                return
            }
        }
    }

    /// Persists an executed block (then, on a validator, sends its header vote) and keeps it to serve.
    private mutating func kept(_ e: ExecutedBlock, certificate: HeaderCertificate?, members: some MemberDirectory, into out: inout [Output]) {
        let h = e.header.height
        counters.blocksApplied += 1
        var ops = LedgerRows.ops(for: e)
        if let certificate { ops += LedgerRows.ops(for: certificate) }
        var then: [Output] = []
        if let me = validatorIndex {
            let sig = identity.sign(HeaderCertificate.voteMessage(chainID: chainID, height: h, headerHash: e.hash))
            votes[h, default: [:]][e.hash, default: [:]][me] = sig
            let msg = LedgerWire.encode(.vote(height: h, headerHash: e.hash, signature: sig))
            for k in validatorIDs.indices where k != me {
                counters.votesSent += 1
                send(msg, toValidator: k, members: members, into: &then)
            }
        }
        let t = ticket()
        pendingBlocks[t.sequence] = AppliedBlock(height: h, headerHash: e.hash, stateRoot: e.header.stateRoot, txIDs: e.txIDs,
                                                 ok: e.results.map { r -> Bool in if case .ok = r { return true }; return false })
        pendingResults[t.sequence] = e.results
        out.append(.persist(PersistBatch(ticket: t, ops: ops), then: then))
        recent[h] = ServedBlock(height: h, header: e.header.encoded, hash: e.hash, payloads: e.payloads, certificate: certificate)
        if h > UInt64(config.serveWindow) {
            let old = h - UInt64(config.serveWindow)
            recent[old] = nil
            votes[old] = nil
        }
        certify(h, into: &out)
    }

    /// Forms the header certificate of height `h` once 2f+1 validators' votes name this node's header.
    private mutating func certify(_ h: UInt64, into out: inout [Output]) {
        guard let b = recent[h], b.certificate == nil, let vs = votes[h]?[b.hash], vs.count >= quorum else { return }
        let signers = vs.keys.sorted()
        let cert = HeaderCertificate(height: h, signers: SignerBitmap(count: validatorKeys.count, signers: signers), signatures: signers.map { vs[$0]! })
        recent[h]?.certificate = cert
        votes[h] = nil
        counters.certificatesFormed += 1
        out.append(.persist(PersistBatch(ticket: ticket(), ops: LedgerRows.ops(for: cert)), then: []))
        out.append(event(.certified(height: h, headerHash: b.hash)))
    }

    private mutating func persisted(_ sequence: UInt64, _ outcome: PersistOutcome) -> [Output] {
        let block = pendingBlocks.removeValue(forKey: sequence)
        let results = pendingResults.removeValue(forKey: sequence)
        switch outcome {
        case .failed(let why):
            counters.persistFailures += 1
            guard halted == nil else { return [] }
            // The executed state is ahead of the disk: applying more would leave a gap in the store.
            return halt("could not write the ledger\(block.map { " at height \($0.height)" } ?? ""): \(why); restart the node once the disk is writable (it resumes from the last durable block)")
        case .durable:
            guard let block, let results else { return [] }
            durableHeight = max(durableHeight, block.height)
            var out: [Output] = [event(.applied(block))]
            for (i, id) in block.txIDs.enumerated() {
                guard let id, let s = submissions.removeValue(forKey: id) else { continue }
                out.append(answer(.committed(request: s.request, txID: id, height: block.height, result: results[i]), to: s.replyTo))
            }
            return out
        }
    }

    // MARK: - Blocks that run contracts: executed on the thread pool

    /// Whether any transaction of `block` deploys or invokes a contract. Such a block is executed
    /// off the loop (a call may burn up to its fuel limit, `ContractLimits.fuel`); a block of
    /// built-ins only is applied on the loop as before.
    static func runsContracts(_ block: CommittedBlock) -> Bool {
        block.payloads.contains { p in
            guard let tx = try? Transaction.decode(p) else { return false }
            return tx.kind == .deploy || (tx.kind == .invoke && BuiltIns.named(tx.chaincode) == nil)
        }
    }

    /// Executes `block` on a copy of the ledger on the thread pool. Deterministic as on the loop:
    /// the same `Ledger.apply` over the same state, and nothing else is applied meanwhile (the
    /// next block waits for `executedOffLoop`), so blocks keep their order. Queries and
    /// submissions meanwhile see the ledger before the block, as before it was committed.
    private mutating func startBlockJob(_ block: CommittedBlock, signatureChecked: [Bool], synced: SyncedBlock?, into out: inout [Output]) {
        let seq = nextJob
        nextJob += 1
        let slot = ExecutionSlot()
        blockJob = BlockJob(sequence: seq, height: block.height, slot: slot, synced: synced)
        let snapshot = ledger
        counters.blocksOffLoop += 1
        out.append(.offload(OffloadJob(ticket: JobTicket(service: Self.protocolID, sequence: seq), cost: .zero) {
            var l = snapshot
            do {
                let executed = try l.apply(block, signatureChecked: signatureChecked)
                slot.put(l, executed)
                return .bytes([1])
            } catch {
                return .failed("\(error)")
            }
        }))
    }

    /// A block executed on the thread pool came back: its ledger becomes this node's, the block
    /// is kept like one applied on the loop, and the blocks waiting behind it go on. Nil when
    /// `sequence` is no block job.
    private mutating func executedOffLoop(_ sequence: UInt64, _ outcome: JobOutcome, members: some MemberDirectory) -> [Output]? {
        guard let job = blockJob, job.sequence == sequence else { return nil }
        blockJob = nil
        var out: [Output] = []
        guard halted == nil else { return out }
        let taken = job.slot.take()
        if case .bytes = outcome, case let (l, executed)? = taken, ledger.height + 1 == job.height {
            if let executed {
                ledger = l
                if let s = job.synced { keepSynced(executed, s, members: members, into: &out) } else {
                    kept(executed, certificate: nil, members: members, into: &out)
                }
            }
        } else {
            counters.badBlocks += 1
            if job.synced != nil {
                syncQueue = []
            } else {
                // Nothing above it can apply: let consensus hand it again (a restart re-emits).
                executing = executing.filter { $0.key <= ledger.height }
                queuedHeight = ledger.height
            }
        }
        if job.synced != nil { drainSync(members: members, into: &out) } else { applyReady(members: members, into: &out) }
        return out
    }

    /// The height a replica's next synced block must have: above the blocks queued or executing.
    var nextSyncHeight: UInt64 { (syncQueue.last?.block.height ?? blockJob?.height ?? ledger.height) + 1 }

    /// Executes the queued synced blocks in order: on the loop, until one that runs a contract
    /// (then on the thread pool; the rest wait for it).
    private mutating func drainSync(members: some MemberDirectory, into out: inout [Output]) {
        while halted == nil, blockJob == nil, !syncQueue.isEmpty {
            let s = syncQueue.removeFirst()
            guard s.block.height == ledger.height + 1 else { continue }
            if Self.runsContracts(s.block) {
                startBlockJob(s.block, signatureChecked: [], synced: s, into: &out)
                return
            }
            let executed: ExecutedBlock
            do {
                guard let e = try ledger.apply(s.block) else { continue }
                executed = e
            } catch {
                counters.badBlocks += 1
                syncQueue = []
                return
            }
            keepSynced(executed, s, members: members, into: &out)
        }
    }

    /// A synced block executed here: compared with the peer's header, its certificate checked
    /// against this node's header, then kept.
    private mutating func keepSynced(_ executed: ExecutedBlock, _ s: SyncedBlock, members: some MemberDirectory, into out: inout [Output]) {
        counters.syncBlocksReceived += 1
        if executed.header != s.header { counters.headerMismatches += 1 }
        var cert: HeaderCertificate?
        if let c = s.certificate {
            if (try? c.check(headerHash: executed.hash, height: c.height, genesis: config.genesis)) != nil {
                cert = c
                counters.certificatesReceived += 1
            } else {
                counters.drop("bad_certificate")
            }
        }
        kept(executed, certificate: cert, members: members, into: &out)
    }

    // MARK: - Messages

    private mutating func receive(_ bytes: [UInt8], from: ProvenPeer, now: Instant, members: some MemberDirectory) -> [Output] {
        let m: LedgerWire.Message
        do { m = try LedgerWire.decode(bytes) } catch { counters.drop("malformed"); return [] }
        let k = validatorIDs.firstIndex(of: from.nodeID)
        if let k { lastSeen[k] = from }
        switch m {
        case let .vote(height, hash, sig):
            guard let k, validatorIndex != nil else { counters.drop("not_validator"); return [] }
            guard halted == nil else { return [] }
            let low = ledger.height > UInt64(config.serveWindow) ? ledger.height - UInt64(config.serveWindow) : 0
            guard height > low, height <= ledger.height + 256 else { counters.drop("stale_vote"); return [] }
            if recent[height]?.certificate != nil { return [] }
            guard IdentityKey.verify(sig, message: HeaderCertificate.voteMessage(chainID: chainID, height: height, headerHash: hash),
                                     publicKey: validatorKeys[k]) else {
                counters.drop("bad_signature")
                return []
            }
            counters.votesCounted += 1
            votes[height, default: [:]][hash, default: [:]][k] = sig
            var out: [Output] = []
            certify(height, into: &out)
            return out
        case let .forward(tx):
            guard validatorIndex != nil else { counters.drop("not_validator"); return [] }
            guard (try? Transaction.decode(tx)) != nil else { counters.drop("malformed"); return [] }
            counters.forwardsTaken += 1
            return [.command(.service(ConsensusService.protocolID, ServicePayload(ConsensusRequest.submit(tx))))]
        case let .syncRequest(fromHeight, certFrom):
            return serve(from: fromHeight, certFrom: certFrom, to: from)
        case let .syncResponse(head, oldest, blocks, certs):
            return synced(head: head, oldest: oldest, blocks: blocks, certs: certs, now: now, members: members)
        }
    }

    /// Answers a sync request from the recent blocks: the blocks from `from` up, and the header
    /// certificates from `certFrom` up (for blocks the peer took before their certificate formed).
    private mutating func serve(from: UInt64, certFrom: UInt64, to peer: ProvenPeer) -> [Output] {
        counters.syncServed += 1
        var blocks: [LedgerWire.WireBlock] = [], certs: [[UInt8]] = []
        var size = 0
        var h = max(from, 1)
        while h <= ledger.height, blocks.count < config.syncMaxBlocks, let b = recent[h] {
            let bytes = b.header.count + b.payloads.reduce(8) { $0 + $1.count + 4 }
            if !blocks.isEmpty, size + bytes > config.syncMaxBytes { break }
            size += bytes
            blocks.append(LedgerWire.WireBlock(header: b.header, payloads: b.payloads))
            h += 1
        }
        var c = max(certFrom, 1)
        while c < h, certs.count < 256 {
            if let cert = recent[c]?.certificate { certs.append(cert.encoded) }
            c += 1
        }
        let oldest = recent.keys.min() ?? ledger.height + 1
        let msg = LedgerWire.encode(.syncResponse(head: ledger.height, oldest: oldest, blocks: blocks, certificates: certs))
        guard msg.count <= Self.maxReliable else { counters.drop("response_too_large"); return [] }
        return [.sendReliable(to: peer, bytes: msg)]
    }

    /// A replica's sync answer: each block re-checked (consensus certificate, link) and executed
    /// here; each header certificate checked against this node's own header of that height.
    private mutating func synced(head: UInt64, oldest: UInt64, blocks: [LedgerWire.WireBlock], certs: [[UInt8]], now: Instant,
                                 members: some MemberDirectory) -> [Output] {
        guard config.role == .replica, halted == nil else { return [] }
        syncUntil = nil
        var out: [Output] = []
        var pendingCerts: [UInt64: HeaderCertificate] = [:]
        for bytes in certs {
            guard let c = try? HeaderCertificate.decode(bytes) else { counters.drop("bad_certificate"); continue }
            pendingCerts[c.height] = c
        }
        for wb in blocks {
            guard let header = try? LedgerHeader.decode(wb.header) else { counters.drop("malformed"); break }
            guard header.height == nextSyncHeight else { continue }
            guard let block = header.committedBlock(payloads: wb.payloads) else { counters.drop("malformed"); break }
            syncQueue.append(SyncedBlock(block: block, header: header, certificate: pendingCerts.removeValue(forKey: header.height)))
        }
        drainSync(members: members, into: &out)
        // Certificates for blocks already here.
        for (h, c) in pendingCerts.sorted(by: { $0.key < $1.key }) {
            guard let b = recent[h], b.certificate == nil else { continue }
            guard (try? c.check(headerHash: b.hash, height: h, genesis: config.genesis)) != nil else { counters.drop("bad_certificate"); continue }
            recent[h]?.certificate = c
            counters.certificatesReceived += 1
            out.append(.persist(PersistBatch(ticket: ticket(), ops: LedgerRows.ops(for: c)), then: []))
        }
        if nextSyncHeight < oldest, head > ledger.height {
            farBehind = "peers keep blocks from height \(oldest) on and this replica is at \(ledger.height): it needs a snapshot (not built yet) or a peer with older blocks"
        } else {
            farBehind = nil
        }
        // Behind: ask again at once; else at the usual pace.
        nextSync = head >= nextSyncHeight && !blocks.isEmpty ? now : now + config.syncInterval
        tickAt = min(tickAt ?? nextSync, nextSync)
        return out
    }

    // MARK: - Submissions

    private mutating func submit(_ r: LedgerRequest, now: Instant, members: some MemberDirectory) -> [Output] {
        let request: UInt64
        let tx: Transaction
        var replyTo: ProtocolID?
        switch r {
        case let .submit(req, chaincode, function, args), let .submitFor(_, req, chaincode, function, args):
            if case let .submitFor(to, _, _, _, _) = r { replyTo = to }
            request = req
            switch signOwn(.invoke, chaincode, function, args) {
            case .success(let t): tx = t
            case .failure(let e): return [answer(.refused(request: req, txID: nil, reason: "refused by this node: \(e)"), to: replyTo)]
            }
            // Signed here, by this node's own key: nothing to check.
            return admit(tx, request: request, signatureOK: true, replyTo: replyTo, now: now, members: members)
        case let .deploy(req, name, module):
            request = req
            switch signOwn(.deploy, name, WasmChaincode.deployFunction, [module]) {
            case .success(let t): tx = t
            case .failure(let e): return [event(.refused(request: req, txID: nil, reason: "refused by this node: \(e)"))]
            }
            return admit(tx, request: request, signatureOK: true, now: now, members: members)
        case let .submitSigned(req, bytes):
            request = req
            do { tx = try Transaction.decode(bytes) } catch {
                counters.submitsRefused += 1
                return [event(.refused(request: req, txID: nil, reason: "refused by this node: \(error)"))]
            }
        }
        // A client's signature is checked off the loop (`admitChecked` goes on from there).
        let seq = nextJob
        nextJob += 1
        submitChecks[seq] = (request, tx)
        let chainID = chainID
        return [.offload(OffloadJob(ticket: JobTicket(service: Self.protocolID, sequence: seq), cost: SignatureCheck.costPerSignature) {
            .bytes([tx.signatureIsValid(chainID: chainID) ? 1 : 0])
        })]
    }

    /// A submitted transaction's signature check came back: the checks go on (state re-read now).
    private mutating func admitChecked(_ sequence: UInt64, _ outcome: JobOutcome, now: Instant, members: some MemberDirectory) -> [Output]? {
        guard let pending = submitChecks.removeValue(forKey: sequence) else { return nil }
        let tx = pending.tx
        let ok: Bool
        switch outcome {
        case let .bytes(answer): ok = answer == [1]
        case .failed: ok = tx.signatureIsValid(chainID: chainID)  // the job did not run: check here
        }
        return admit(tx, request: pending.request, signatureOK: ok, now: now, members: members)
    }

    private mutating func admit(_ tx: Transaction, request: UInt64, signatureOK: Bool, replyTo: ProtocolID? = nil, now: Instant, members: some MemberDirectory) -> [Output] {
        if let why = precheck(tx, signatureOK: signatureOK) {
            counters.submitsRefused += 1
            return [answer(.refused(request: request, txID: tx.id, reason: "refused by this node: \(why)"), to: replyTo)]
        }
        guard submissions[tx.id] == nil else {
            return [answer(.refused(request: request, txID: tx.id, reason: "refused by this node: this transaction is already pending"), to: replyTo)]
        }
        counters.submitted += 1
        submissions[tx.id] = Submission(request: request, bytes: tx.encoded, deadline: now + config.submitTimeout, nextForward: now + config.forwardRetry,
                                        replyTo: replyTo)
        tickAt = min(tickAt ?? now + config.tick, now + config.tick)
        var out: [Output] = [answer(.accepted(request: request, txID: tx.id), to: replyTo)]
        handOn(tx.encoded, members: members, into: &out)
        return out
    }

    /// A transaction signed with the node's identity, nonce one above both the last it used and
    /// the state's; the refusal (counted) when it cannot be encoded (too large, too many arguments).
    private mutating func signOwn(_ kind: TransactionKind, _ chaincode: String, _ function: String, _ args: [[UInt8]]) -> Result<Transaction, Refusal> {
        let stored = ledger.state[StateKey.nonce(identity.publicKey.bytes)].flatMap { b -> UInt64? in var rd = ByteReader(b); return try? rd.u64() } ?? 0
        let nonce = max(lastNonce, stored) + 1
        do {
            let tx = try Transaction.signed(kind: kind, chaincode: chaincode, function: function, args: args, nonce: nonce,
                                            publicKey: identity.publicKey.bytes, chainID: chainID, sign: identity.sign)
            lastNonce = nonce
            return .success(tx)
        } catch {
            counters.submitsRefused += 1
            return .failure(error)
        }
    }

    /// What the executor would refuse before any chaincode runs, said to the submitter at once.
    private func precheck(_ tx: Transaction, signatureOK: Bool) -> String? {
        if let halted { return "its ledger is halted: \(halted)" }
        guard signatureOK else { return "\(RefusalReason.badSignature): the signature is not the signer's over this chain's transaction" }
        if ledger.state[StateKey.culled(tx.signer)] != nil { return "\(RefusalReason.culledSigner): the signer was culled" }
        let last = ledger.state[StateKey.nonce(tx.signer)].flatMap { b -> UInt64? in var r = ByteReader(b); return try? r.u64() }
        if let last, tx.nonce <= last { return "\(RefusalReason.replayedNonce): nonce \(tx.nonce) is not above the signer's last, \(last)" }
        if tx.kind == .query { return "\(RefusalReason.queryInBlock): send a query with `iotaf ledger query`" }
        return nil
    }

    private mutating func handOn(_ bytes: [UInt8], members: some MemberDirectory, into out: inout [Output]) {
        if validatorIndex != nil {
            out.append(.command(.service(ConsensusService.protocolID, ServicePayload(ConsensusRequest.submit(bytes)))))
            return
        }
        // A replica: to the next validator it can reach.
        guard let next = nextValidator(members: members) else { counters.drop("no_route"); return }
        counters.forwarded += 1
        send(LedgerWire.encode(.forward(bytes)), toValidator: next.0, members: members, into: &out)
    }

    // MARK: - Timer

    private mutating func tick(now: Instant, members: some MemberDirectory) -> [Output] {
        guard let t = tickAt, now >= t else { return [] }
        tickAt = nil
        var out: [Output] = []
        if !submissions.isEmpty {
            var expired: [[UInt8]] = []
            var resend: [[UInt8]] = []
            for (id, s) in submissions {
                if now >= s.deadline { expired.append(id) } else if validatorIndex == nil, now >= s.nextForward { resend.append(id) }
            }
            for id in expired.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let s = submissions.removeValue(forKey: id)!
                counters.submitsTimedOut += 1
                out.append(answer(.timedOut(request: s.request, txID: id), to: s.replyTo))
            }
            for id in resend.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                submissions[id]!.nextForward = now + config.forwardRetry
                handOn(submissions[id]!.bytes, members: members, into: &out)
            }
        }
        if config.role == .replica, halted == nil {
            if let u = syncUntil, now >= u { syncUntil = nil }
            if syncUntil == nil, now >= nextSync { requestSync(now: now, members: members, into: &out) }
        }
        var next: Instant? = submissions.isEmpty ? nil : now + config.tick
        if config.role == .replica {
            let s = syncUntil ?? nextSync
            next = min(next ?? s, max(s, now + .milliseconds(1)))
        }
        tickAt = next
        return out
    }

    private mutating func requestSync(now: Instant, members: some MemberDirectory, into out: inout [Output]) {
        if let p = nextValidator(members: members)?.1 {
            counters.syncRequests += 1
            // Certificates still missing for recent heights (taken before their certificate formed).
            var certFrom = ledger.height + 1
            let low = ledger.height > 64 ? ledger.height - 64 : 1
            if ledger.height >= 1 {
                for h in low...ledger.height where recent[h] != nil && recent[h]!.certificate == nil { certFrom = h; break }
            }
            out.append(.send(.peer(p), bytes: LedgerWire.encode(.syncRequest(from: nextSyncHeight, certFrom: certFrom))))
            syncUntil = now + config.syncTimeout
            nextSync = now + config.syncInterval
            return
        }
        nextSync = now + config.syncInterval
    }

    // MARK: - Sending

    private func peer(_ k: Int, members: some MemberDirectory) -> ProvenPeer? {
        members.peer(validatorIDs[k]) ?? lastSeen[k]
    }

    /// The next validator to ask, in turn from `syncCursor`: one the membership says is reachable
    /// first, else any this node knows an address for.
    private mutating func nextValidator(members: some MemberDirectory) -> (Int, ProvenPeer)? {
        let n = validatorIDs.count
        for reachableOnly in [true, false] {
            for step in 0..<n {
                let k = (syncCursor + step) % n
                if k == validatorIndex { continue }
                if reachableOnly, !members.isReachable(validatorIDs[k]) { continue }
                guard let p = peer(k, members: members) else { continue }
                syncCursor = (k + 1) % n
                return (k, p)
            }
        }
        return nil
    }

    private mutating func send(_ msg: [UInt8], toValidator k: Int, members: some MemberDirectory, into out: inout [Output]) {
        guard let p = peer(k, members: members) else {
            if msg.count <= Self.maxDatagram { out.append(.send(.member(validatorIDs[k]), bytes: msg)) } else { counters.drop("no_route") }
            return
        }
        lastSeen[k] = p
        if msg.count <= Self.maxDatagram { out.append(.send(.peer(p), bytes: msg)) } else { out.append(.sendReliable(to: p, bytes: msg)) }
    }

    // MARK: - Reads

    /// The head's header certificate, when it has formed (or arrived).
    public var headCertificate: HeaderCertificate? { recent[ledger.height]?.certificate }

    /// The highest height whose header certificate this node holds.
    public var certifiedHeight: UInt64 {
        var h = ledger.height
        while h > 0, let b = recent[h] {
            if b.certificate != nil { return h }
            h -= 1
        }
        return 0
    }

    public var pendingSubmissions: Int { submissions.count }

    /// A proof of a query's answer against the head, or why there is none yet.
    public func prove(chaincode: String, function: String, args: [[UInt8]]) -> Result<QueryProof, LedgerError> {
        let answer = ledger.query(chaincode: chaincode, function: function, args: args)
        guard let cert = headCertificate else {
            return .failure(LedgerError("the header certificate of height \(ledger.height) (the head) has not formed here yet; retry in a moment"))
        }
        guard let p = ledger.prove(chaincode: chaincode, function: function, args: args, answer: answer, headerCertificate: cert) else {
            return .failure(LedgerError("no block yet: nothing to prove against"))
        }
        return .success(p)
    }
}

/// Carries a block executed on the thread pool back to the loop: the job puts the executed
/// ledger here, the service takes it when the job's `.offloaded` arrives (after the job ran).
final class ExecutionSlot: Sendable {
    private let value = Mutex<(Ledger, ExecutedBlock?)?>(nil)

    func put(_ ledger: Ledger, _ executed: ExecutedBlock?) { value.withLock { $0 = (ledger, executed) } }
    func take() -> (Ledger, ExecutedBlock?)? { value.withLock { v in defer { v = nil }; return v } }
}
