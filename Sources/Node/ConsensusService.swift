import Consensus
import MeshCore
import NodeService
import Sessions

/// What the consensus service takes, in `NodeCommand.service(ConsensusService.protocolID, …)`.
public enum ConsensusRequest: Sendable, Equatable {
    /// A payload to order (a batch of transaction bytes, opaque here).
    case submit([UInt8])
}

/// What the consensus service reports, in `NodeEvent.service(ConsensusService.protocolID, …)`.
public enum ConsensusEvent: Sendable, Equatable {
    /// A block is final (heights consecutive from 1 within one life of the service).
    case committed(CommittedBlock)
    /// The validator refuses to run (its safety state on disk is unreadable): it must not sign
    /// with an empty state, so it stays silent until an operator acts.
    case halted(String)
}

/// Why a node cannot run as a validator; said at start, before anything is sent.
public enum ConsensusServiceError: Error, Equatable, CustomStringConvertible {
    case notAValidator(key: String, validators: Int)

    public var description: String {
        switch self {
        case let .notAValidator(key, n):
            "this node's key \(key) is not one of the \(n) validators in the genesis file; run it without [consensus] role = \"validator\", or list its key (`iotaf keygen` prints it) in `iotaf network init --validators`"
        }
    }
}

/// Sees a validator's inputs and rewrites its core's outputs before the service sends them. Set
/// only by the simulator: to play a byzantine validator (it signs with the validator's own key, so
/// only the protocol can refuse its lies) and to record what an honest one signs for checkers.
public protocol ConsensusRewriter {
    mutating func rewrite(_ outputs: [ConsensusOutput], after input: ConsensusInput, core: ConsensusCore) -> [ConsensusOutput]
}

/// The consensus core (Sources/Consensus, chained HotStuff) as a node service: the adapter that
/// Docs/consensus.md "Wiring into the node" describes, one to one.
///
/// - Messages are the core's, prefixed with this service's protocol id (`iC`) so the node can
///   route them; the sender's key is the session's proven one, never a claimed one.
/// - The safety state goes out as `.persist` (table `consensus.safety`) with the votes, timeouts
///   and proposals it allows in `then`: nothing leaves before it is durable. Two rows (keys
///   `0x00` and `0x01`): every write goes to the row not holding the last state known durable,
///   so a write torn by a crash (whose sends never left) leaves that state readable.
/// - A restarted validator gets its state back as `.restored` (the later of the rows that
///   decode); one with rows but none that decodes refuses to run (`halted`) rather than sign
///   with an empty state.
/// - Sends up to a datagram's plaintext travel as datagrams; larger ones (proposals with big
///   batches, block responses) on the node's reliable stream.
public struct ConsensusService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    /// "iC": the first two plaintext bytes of every consensus message (Docs/encoding.md).
    public static let protocolID = ProtocolID(0x69, 0x43)
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }
    /// Where the safety state is kept: two rows, keys `[0]` and `[1]`, each a `SafetyState.encoded`.
    public static let safetyTable = "consensus.safety"
    static let safetyKeys: [[UInt8]] = [[0], [1]]
    static let prefix: [UInt8] = [0x69, 0x43]
    /// The largest framed message sent as one datagram.
    static let maxDatagram = SessionManager.maxPlaintext

    public struct Counters: Sendable, Equatable {
        public var submitted = 0
        /// Submits refused because the core is not running (halted or not started).
        public var submitsRefused = 0
        public var datagramsSent = 0
        public var reliableSent = 0
        /// Reliable sends to a validator the membership does not know (yet): dropped.
        public var unreachable = 0
        public var persistFailures = 0
        /// Restarts whose newer safety row did not decode (a write torn by the crash: its sends
        /// never left) and that resumed from the other row, the last state known durable.
        public var tornSafetyRowsSkipped = 0
        /// Messages from a key outside the validator set, dropped before decoding.
        public var notValidator = 0
        /// Messages too short to carry a consensus message.
        public var malformed = 0
    }

    public let config: ConsensusConfig
    let identity: NodeIdentity
    let myKey: ValidatorKey
    /// The node id of each validator, in set order.
    let validatorIDs: [NodeID]
    /// The running core; nil before `.start` and while halted.
    public private(set) var core: ConsensusCore?
    public private(set) var counters = Counters()
    /// Why the validator refuses to run, when it does.
    public private(set) var halted: String?
    private var restoring: SafetyState?
    /// The safety row (index into `safetyKeys`) holding the last state known durable; writes go
    /// to the other one, so a torn write can never destroy it.
    private var durableSlot = 0
    /// The row each persist in flight writes, by token.
    private var slotOfToken: [UInt64: Int] = [:]
    /// Where each validator was last seen (membership, or the session of its last message): a
    /// validator the membership lost (declared dead, or a restarted node with no seeds and no
    /// peer store) is still tried at its last address, so validators never depend on gossip to
    /// find each other again.
    private var lastSeen: [ProvenPeer?]
    /// Hashes of the last `recentCommitsKept` heights committed in this life (for `iotaf consensus
    /// status --height`: two validators' hashes at one height can be compared).
    public private(set) var recentCommits: [UInt64: BlockHash] = [:]
    public static let recentCommitsKept: UInt64 = 4096
    public private(set) var payloadsCommitted = 0
    /// The commit seam: when set, every commit is also handed, in order, to the service at this
    /// protocol id as a typed command (`.service(sink, ConsensusEvent.committed(block))`), before
    /// the event. The ledger service on the same node sets it (Docs/ledger.md, "The ledger service").
    public var commitSink: ProtocolID?
    private var rng: SeededGenerator
    /// Set only by the simulator (see `ConsensusRewriter`).
    public var rewriter: (any ConsensusRewriter)?

    /// - Throws: `ConsensusServiceError.notAValidator` when `identity` is not in the genesis set.
    public init(config: ConsensusConfig, identity: NodeIdentity, rng: SeededGenerator) throws {
        let validators = config.genesis.validators
        guard let key = ValidatorKey(identity.publicKey), validators.index(of: key) != nil else {
            throw ConsensusServiceError.notAValidator(key: Hex.encode(identity.publicKey), validators: validators.count)
        }
        self.config = config
        self.identity = identity
        myKey = key
        validatorIDs = validators.keys.map { NodeID(publicKey: $0.bytes) }
        lastSeen = Array(repeating: nil, count: validators.count)
        self.rng = rng
    }

    public var deadline: Instant? { core?.deadline }

    public func takes(_ command: NodeCommand) -> Bool {
        if case let .service(id, payload) = command, id == Self.protocolID, payload.as(ConsensusRequest.self) != nil { return true }
        return false
    }

    public func purpose(ofSent bytes: [UInt8]) -> String? { "consensus" }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case let .restored(rows):
            return restore(rows, now: now)
        case .start:
            guard halted == nil, core == nil else { return [] }
            core = ConsensusCore(config: config, identity: identity, restoring: restoring, rng: rng.derived(0xc0de))
            return run(.start, now: now, members: members)
        case .timer:
            return run(.timer, now: now, members: members)
        case let .message(from, bytes, _):
            guard bytes.count > Self.prefix.count else { counters.malformed += 1; return [] }
            guard let key = ValidatorKey(from.identity.publicKey), let k = config.genesis.validators.index(of: key) else {
                counters.notValidator += 1
                return []
            }
            lastSeen[k] = from
            return run(.message(from: key, bytes: Array(bytes[Self.prefix.count...])), now: now, members: members)
        case let .command(.service(_, payload)):
            guard case let .submit(bytes)? = payload.as(ConsensusRequest.self) else { return [] }
            guard core != nil else { counters.submitsRefused += 1; return [] }
            counters.submitted += 1
            return run(.submit(bytes), now: now, members: members)
        case let .persisted(ticket, outcome):
            guard ticket.service == Self.protocolID else { return [] }
            let slot = slotOfToken.removeValue(forKey: ticket.sequence)
            switch outcome {
            case .durable:
                if let slot { durableSlot = slot }
                return run(.persisted(token: ticket.sequence), now: now, members: members)
            case .failed:
                // The vote (or timeout, proposal) did not leave; the round goes on without it.
                counters.persistFailures += 1
                return []
            }
        case let .membership(.up(peer)):
            if let key = ValidatorKey(peer.identity.publicKey), let k = config.genesis.validators.index(of: key) { lastSeen[k] = peer }
            return []
        case .command, .membership, .offloaded, .stop:
            return []
        }
    }

    /// The safety state of the last life: the later of the two rows that decode (states only grow:
    /// last voted round and high QC never go back). A row that does not decode beside one that
    /// does was a write torn by the crash: not durable, so nothing it allowed was sent, and the
    /// other row holds at least every state whose sends left. Rows present and none decoding:
    /// halt. (Data directories from before the second row have key `0x00` only.)
    private mutating func restore(_ rows: [StoredRow], now: Instant) -> [Output] {
        var best: (state: SafetyState, slot: Int)?
        var unreadable: [String] = []
        for (slot, key) in Self.safetyKeys.enumerated() {
            guard let row = rows.last(where: { $0.table == Self.safetyTable && $0.key == key }) else { continue }
            do {
                let state = try SafetyState.decode(row.value)
                if best.map({ (state.lastVotedRound, state.highQC.round) > ($0.state.lastVotedRound, $0.state.highQC.round) }) ?? true {
                    best = (state, slot)
                }
            } catch {
                unreadable.append("row \(Hex.encode(key)): \(error)")
            }
        }
        guard let best else {
            if unreadable.isEmpty { return [] }
            return halt("the safety state in \(Self.safetyTable) does not decode (\(unreadable.joined(separator: "; "))); a validator must not vote with its state lost, so it stays silent: restore the data directory, or retire this key", now: now)
        }
        if !unreadable.isEmpty { counters.tornSafetyRowsSkipped += 1 }
        restoring = best.state
        durableSlot = best.slot
        return []
    }

    private mutating func halt(_ why: String, now: Instant) -> [Output] {
        halted = why
        core = nil
        return [.event(.service(Self.protocolID, ServicePayload(ConsensusEvent.halted(why))))]
    }

    private mutating func run(_ input: ConsensusInput, now: Instant, members: some MemberDirectory) -> [Output] {
        guard core != nil else { return [] }
        var outs = core!.handle(input, now: now)
        if rewriter != nil { outs = rewriter!.rewrite(outs, after: input, core: core!) }
        var mapped: [Output] = []
        mapped.reserveCapacity(outs.count)
        for o in outs { map(o, members: members, into: &mapped) }
        return mapped
    }

    private mutating func map(_ o: ConsensusOutput, members: some MemberDirectory, into out: inout [Output]) {
        switch o {
        case let .send(to, bytes):
            if let i = config.genesis.validators.index(of: to) { send(Self.prefix + bytes, to: i, members: members, into: &out) }
        case let .broadcast(bytes):
            let framed = Self.prefix + bytes
            for i in validatorIDs.indices where config.genesis.validators.keys[i] != myKey {
                send(framed, to: i, members: members, into: &out)
            }
        case let .persist(state, token, then):
            var sends: [Output] = []
            for t in then { map(t, members: members, into: &sends) }
            let slot = 1 - durableSlot
            slotOfToken[token] = slot
            let batch = PersistBatch(ticket: PersistTicket(service: Self.protocolID, sequence: token),
                                     ops: [.put(table: Self.safetyTable, key: Self.safetyKeys[slot], value: state.encoded)])
            out.append(.persist(batch, then: sends))
        case let .commit(block):
            recentCommits[block.height] = block.hash
            if block.height > Self.recentCommitsKept { recentCommits[block.height - Self.recentCommitsKept] = nil }
            payloadsCommitted += block.payloads.count
            if let commitSink { out.append(.command(.service(commitSink, ServicePayload(ConsensusEvent.committed(block))))) }
            out.append(.event(.service(Self.protocolID, ServicePayload(ConsensusEvent.committed(block)))))
        }
    }

    private mutating func send(_ framed: [UInt8], to i: Int, members: some MemberDirectory, into out: inout [Output]) {
        let id = validatorIDs[i]
        if let p = members.peer(id) { lastSeen[i] = p }
        guard let peer = lastSeen[i] else {
            // Never seen: the membership may still learn it (a datagram to the member, or nothing).
            if framed.count <= Self.maxDatagram { counters.datagramsSent += 1; out.append(.send(.member(id), bytes: framed)) } else { counters.unreachable += 1 }
            return
        }
        if framed.count <= Self.maxDatagram {
            counters.datagramsSent += 1
            out.append(.send(.peer(peer), bytes: framed))
        } else {
            counters.reliableSent += 1
            out.append(.sendReliable(to: peer, bytes: framed))
        }
    }

    /// What `iotaf consensus status` shows.
    public var status: ConsensusStatus {
        let n = config.genesis.validators.count
        var s = ConsensusStatus(validators: n, quorum: config.genesis.validators.quorum,
                                index: config.genesis.validators.index(of: myKey) ?? -1, halted: halted, service: counters)
        if let core {
            s.height = core.committedHeight
            s.round = core.round
            s.leader = core.leader(of: core.round)
            s.lastVotedRound = core.safety.lastVotedRound
            s.highQCRound = core.safety.highQC.round
            s.mempool = core.mempoolCount
            s.core = core.counters
        }
        return s
    }
}

/// A validator's state as `iotaf consensus status` prints it.
public struct ConsensusStatus: Sendable, Equatable {
    public var validators: Int
    public var quorum: Int
    /// This validator's index in the set (its slot in leader rotation).
    public var index: Int
    public var halted: String?
    public var service: ConsensusService.Counters
    public var height: UInt64 = 0
    public var round: UInt64 = 0
    public var leader = 0
    public var lastVotedRound: UInt64 = 0
    public var highQCRound: UInt64 = 0
    public var mempool = 0
    /// The core's counters (drops by reason); nil while the core is not running.
    public var core: ConsensusCounters?
}
