import Meters
import MeshCore
import Node
import NodeService
import Sodium

/// Meter relays on the node service seam (protocol id "iM", Docs/meters.md). Sans-IO: inputs in,
/// outputs out; reads, anchors and nonces kept as `.persist` rows.
///
/// - Custody hop by hop: a node that takes reads (recorded here, submitted, or received) writes
///   them to `meter.custody` before it acknowledges them, forwards them to its preferred parent,
///   and deletes them only when the parent acknowledged them as durable there. A read the parent
///   does not acknowledge in `ackTimeout` is sent again (to whichever parent is preferred then);
///   a read a node already holds or has forwarded is acknowledged and not kept twice.
/// - Parent choice (RPL-like, RFC 6550): each node asks its neighbours (`solicit`) on a Trickle
///   timer; each answers with an `advert` of its rank (0 at a collector) and its parent. The RTT
///   of that exchange gives the link's cost; the node's rank is the least of neighbour rank plus
///   link cost over neighbours that do not route through it, and the neighbour giving it is the
///   parent. A parent that dies (membership `.down`), refuses (`loop`, `no_route`) or times out
///   three times is replaced at once; with none left the node advertises an infinite rank and
///   holds down one Trickle period before it picks again (so its children move first).
/// - A collector checks every read's chain (`MeterChain`), stores accepted reads in
///   `meter.reads`, and at `anchorGrace` after each interval's end closes a batch per interval:
///   a Merkle tree over the reads accepted for it since the last batch, kept in `meter.anchors`
///   and handed to its `Anchorer`. Late reads go into a later batch of the same interval.
/// - Operators' commands go down the way the meter's reads came (the child each meter's reads
///   last arrived from); the hosting node checks the operator's signature and the nonce, persists
///   the nonce, and the signed acknowledgement goes back hop by hop the way the command came.
public struct MeterService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    public static let protocolID = ProtocolID(MeterMessage.magic[0], MeterMessage.magic[1])
    /// Members beyond the overlay neighbours asked per round while a node has no parent.
    static let extraSolicits = 8
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }

    public enum Table {
        public static let custody = "meter.custody"
        public static let reads = "meter.reads"
        public static let anchors = "meter.anchors"
        public static let chain = "meter.chain"
        public static let nonces = "meter.nonces"
        /// Collector: anchors the ledger holds (object id → the height of the block).
        public static let onLedger = "meter.onledger"
    }

    public struct Config: Sendable {
        public var role: MeterRole
        /// The interval reads are produced for (15 minutes, a DLMS load profile's capture period).
        public var intervalSeconds: UInt32 = 900
        /// How long after an interval's end a collector waits for its reads before anchoring them.
        public var anchorGrace: Duration = .seconds(60)
        /// Unix seconds at the driver's instant 0: the one fact about wall time the core is given
        /// (the runtime passes its start time, the simulator a fixed epoch).
        public var unixAtZero: UInt64 = 0
        /// Trickle bounds of the solicit timer (RFC 6206): reset to the least when the parent is lost.
        public var solicitMin: Duration = .seconds(2)
        public var solicitMax: Duration = .seconds(60)
        /// How long a batch of reads may go unacknowledged before it is sent again.
        public var ackTimeout: Duration = .seconds(5)
        /// Batches in flight to the parent at once.
        public var window = 2
        /// The collectors' node ids (`[meter] collectors`): each meter's reads are anchored by one of
        /// them (`home(of:)`). Empty: every collector anchors what reaches it.
        public var collectors: [NodeID] = []
        /// Operator keys whose commands hosted meters obey.
        public var operatorKeys: [PublicKey] = []
        /// Reads a node keeps in custody at most; more are refused (`full`) until some are forwarded.
        public var maxHeld = 200_000
        /// How many forwarded read hashes are remembered to acknowledge a retransmission without
        /// keeping it again.
        public var recentCapacity = 50_000
        /// An anchor the ledger refused or did not commit in time is submitted again this much later.
        public var anchorRetry: Duration = .seconds(5)
        /// An anchor submitted and not answered at all this long (no ledger service on this node
        /// takes it) is submitted again.
        public var anchorAnswerTimeout: Duration = .seconds(30)

        public init(role: MeterRole) { self.role = role }
    }

    public struct Counters: Sendable, Equatable {
        public var recorded: UInt64 = 0
        public var received: UInt64 = 0
        /// Reads a parent acknowledged (custody passed on).
        public var forwarded: UInt64 = 0
        public var duplicates: UInt64 = 0
        public var accepted: UInt64 = 0
        public var batchesSent: UInt64 = 0
        public var retransmissions: UInt64 = 0
        public var parentChanges: UInt64 = 0
        public var anchors: UInt64 = 0
        /// Anchors the anchorer confirmed on the ledger, submissions to it, and those that had to be retried.
        public var anchorsOnLedger: UInt64 = 0
        public var anchorSubmissions: UInt64 = 0
        public var anchorRetries: UInt64 = 0
        public var commandsForwarded: UInt64 = 0
        /// Counted drops and refusals by reason (decoder reasons, `fork`, `broken_link`, `no_route_down`, …).
        public var drops: [String: UInt64] = [:]
    }

    struct Neighbour: Sendable {
        var peer: ProvenPeer
        var rank: UInt16
        var parent: NodeID?
        var rtt: Duration?
        var heardAt: Instant
        var failures: Int = 0
    }

    struct Flight: Sendable {
        var to: NodeID
        var hashes: [[UInt8]]
        var due: Instant
    }

    public let config: Config
    public let anchorer: any Anchorer
    let identity: NodeIdentity
    var me: NodeID { identity.nodeID }
    var rng: SeededGenerator
    public private(set) var counters = Counters()

    // Routing.
    private var members: Set<NodeID> = []
    private var neighbours: [NodeID: Neighbour] = [:]
    public private(set) var parent: NodeID?
    public private(set) var rank: UInt16
    /// The rank last told to the neighbours unasked.
    private var announcedRank: UInt16 = MeterRank.infinite
    private var holdDownUntil: Instant?
    private var solicitInterval: Duration
    private var nextSolicit: Instant?
    private var solicits: [UInt64: (to: NodeID, at: Instant)] = [:]

    // Custody.
    private var held: [[UInt8]: MeterRead] = [:]
    private var queue: [[UInt8]] = []
    private var flights: [UInt64: Flight] = [:]
    private var nextBatch: UInt64 = 1
    /// Hashes recently passed on, with the node each came from (a retransmission from the same
    /// node is acknowledged; the same read from another node is a loop, refused).
    private var recent: [[UInt8]: NodeID?] = [:]
    private var recentOrder: [[UInt8]] = []
    private var recentHead = 0
    /// The node each read in custody came from (none for reads recorded or submitted here).
    private var origins: [[UInt8]: NodeID] = [:]
    /// Custody rows of reads the next hop acknowledged: deleted with the next write, or after
    /// `deleteDelay` (a row deleted late costs at most a resend the next hop acknowledges as a
    /// duplicate; deleting at once would cost a second disk commit per batch).
    private var pendingDeletes: [StorageOp] = []
    private var deleteFlushAt: Instant?
    static let deleteDelay: Duration = .seconds(1)

    // Meters hosted here: their keys, last reads, operators' nonces.
    private var hosted: [PublicKey: NodeIdentity] = [:]
    private var lastRead: [PublicKey: (sequence: UInt64, hash: [UInt8])] = [:]
    private var nonces: [[UInt8]: UInt64] = [:]

    // Collector.
    private var chains: [PublicKey: MeterChain] = [:]
    private var stored: [[UInt8]: MeterRead] = [:]
    /// Accepted reads not yet in a batch, by interval start.
    private var pending: [UInt64: [[UInt8]]] = [:]
    public private(set) var anchors: [MeterAnchor] = []
    private var anchorLeaves: [[[UInt8]]] = []
    private var anchorOf: [[UInt8]: Int] = [:]
    private var nextBatchNumber: [UInt64: UInt32] = [:]
    private var nextAnchorTick: Instant?
    /// Anchors on the ledger (object id → block height), and those not yet: their index in
    /// `anchors`, the request in flight, and when to submit (again).
    private var onLedger: [String: UInt64] = [:]
    private var unconfirmed: [String: (index: Int, request: UInt64?, due: Instant?)] = [:]
    private var anchorRequests: [UInt64: String] = [:]
    private var nextAnchorRequest: UInt64 = 1
    /// Persist tickets of anchor rows: once durable here, the anchor goes to the anchorer (so the
    /// ledger never holds a root whose leaves this collector could lose).
    private var anchorTickets: [UInt64: String] = [:]
    /// Why the last anchor submission was retried.
    public private(set) var lastAnchorRetry: String?

    // Commands: the child each meter's reads came from, and where each command's ack goes back.
    private var downRoute: [NodeID: NodeID] = [:]
    private var ackRoute: [[UInt8]: NodeID] = [:]
    private var persistSequence: UInt64 = 0

    public init(identity: NodeIdentity, config: Config, anchorer: any Anchorer = RecordingAnchorer(), rng: SeededGenerator) {
        self.identity = identity
        self.config = config
        self.anchorer = anchorer
        self.rng = rng
        rank = config.role == .collector ? MeterRank.collector : MeterRank.infinite
        solicitInterval = config.solicitMin
        if config.role == .meter { hosted[identity.publicKey] = identity }
    }

    // MARK: reads of state

    /// Reads in custody here (not yet acknowledged by the next hop).
    public var heldCount: Int { held.count }
    public var inFlightCount: Int { flights.values.reduce(0) { $0 + $1.hashes.count } }
    public func holds(_ hash: [UInt8]) -> Bool { held[hash] != nil }
    /// Collector: every read accepted, by hash.
    public func storedRead(_ hash: [UInt8]) -> MeterRead? { stored[hash] }
    public var storedCount: Int { stored.count }
    /// Collector: the read a meter numbered `sequence`, if accepted here.
    public func storedRead(meter: PublicKey, sequence: UInt64) -> MeterRead? {
        chains[meter]?.links[sequence].flatMap { stored[$0.hash] }
    }
    public var pendingCount: Int { pending.values.reduce(0) { $0 + $1.count } }
    /// Collector: the block height of an anchor the anchorer confirmed on the ledger.
    public func ledgerHeight(of objectID: String) -> UInt64? { onLedger[objectID] }
    public var anchorsOnLedgerCount: Int { onLedger.count }
    /// Collector: anchors closed and not (yet) confirmed by an anchorer that confirms.
    public var anchorsUnconfirmedCount: Int { unconfirmed.count }
    /// Collector: the anchors closed, as a book proofs are checked against.
    public var anchorBook: AnchorBook { AnchorBook(anchors) }
    /// Collector: the leaves of anchor `i` (`anchors[i]`).
    public func leaves(ofAnchor i: Int) -> [[UInt8]] { anchorLeaves[i] }
    /// Collector: missing sequence numbers per meter (at most `limit` each).
    public func missing(limit: Int = 16) -> [(meter: PublicKey, missing: [UInt64])] {
        chains.keys.sorted().compactMap { k in
            let m = chains[k]!.missing(limit: limit)
            return m.isEmpty ? nil : (meter: k, missing: m)
        }
    }
    public var hostedMeters: [PublicKey] { hosted.keys.sorted() }
    /// The read the last `record` command signed (`recorded` is told once it is durable).
    public private(set) var lastRecorded: MeterRead?

    /// Collector: the proof of an anchored read (its path, and its predecessor's).
    public func proof(of hash: [UInt8]) -> MeterProof? {
        guard let read = stored[hash], let inc = inclusion(of: hash) else { return nil }
        if read.sequence == 0 { return MeterProof(read: read, inclusion: inc, predecessor: nil) }
        guard let p = inclusion(of: read.previous) else { return nil }
        return MeterProof(read: read, inclusion: inc, predecessor: p)
    }

    private func inclusion(of hash: [UInt8]) -> MeterInclusion? {
        guard let a = anchorOf[hash] else { return nil }
        let tree = MeterMerkleTree(readHashes: anchorLeaves[a])
        guard let i = tree.index(of: hash) else { return nil }
        return MeterInclusion(anchor: anchors[a], index: UInt32(i), path: tree.path(i))
    }

    // MARK: the seam

    public var deadline: Instant? {
        var d: Instant?
        func take(_ i: Instant?) { if let i, d == nil || i < d! { d = i } }
        take(nextSolicit)
        take(holdDownUntil)
        take(nextAnchorTick)
        take(deleteFlushAt)
        for f in flights.values { take(f.due) }
        for u in unconfirmed.values { take(u.due) }
        return d
    }

    public func takes(_ command: NodeCommand) -> Bool {
        if case let .service(id, _) = command { return id == Self.protocolID }
        return false
    }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members dir: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case .start:
            // A collector only answers: its rank is 0 whatever it hears.
            if config.role == .collector { nextAnchorTick = anchorTick(after: now) } else { nextSolicit = now }
            return pump(now: now, dir)
        case .timer:
            return timer(now: now, dir)
        case let .message(from, bytes, _):
            return receive(bytes, from: from, now: now, dir)
        case let .command(.service(_, payload)):
            if let c = payload.as(MeterCommand.self) { return command(c, now: now, dir) }
            if let a = anchorer.answer(payload) { return answered(a, now: now) }
            drop("unknown_command")
            return []
        case let .membership(.up(peer)):
            members.insert(peer.nodeID)
            return []
        case let .membership(.down(identity)), let .membership(.culled(identity)):
            members.remove(identity.nodeID)
            neighbours[identity.nodeID] = nil
            var out: [Output] = []
            for (b, f) in flights.sorted(by: { $0.key < $1.key }) where f.to == identity.nodeID {
                flights[b] = nil
                queue.insert(contentsOf: f.hashes, at: 0)
            }
            if parent == identity.nodeID { out += choose(now: now, dir) }
            return out + pump(now: now, dir)
        case let .restored(rows):
            restore(rows)
            return []
        case .persisted(_, .failed(let why)):
            drop("persist_failed")
            _ = why
            return []
        case let .persisted(t, .durable):
            guard let id = anchorTickets.removeValue(forKey: t.sequence) else { return [] }
            return submitAnchor(id, now: now)
        case .stop:
            return flushDeletes()
        case .command, .persisted, .offloaded:
            return []
        }
    }

    private mutating func flushDeletes() -> [Output] {
        deleteFlushAt = nil
        guard !pendingDeletes.isEmpty else { return [] }
        let ops = pendingDeletes
        pendingDeletes = []
        return [.persist(PersistBatch(ticket: ticket(), ops: ops), then: [])]
    }

    private mutating func drop(_ reason: String) { counters.drops[reason, default: 0] += 1 }

    private mutating func ticket() -> PersistTicket {
        persistSequence += 1
        return PersistTicket(service: Self.protocolID, sequence: persistSequence)
    }

    private func event(_ e: MeterEvent) -> Output { .event(.service(Self.protocolID, ServicePayload(e))) }

    // MARK: commands

    private mutating func command(_ c: MeterCommand, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        switch c {
        case let .host(seeds):
            for s in seeds {
                guard let id = try? NodeIdentity(seed: s) else { drop("bad_meter_seed"); continue }
                hosted[id.publicKey] = id
            }
            return []
        case let .record(meter, start, duration, registers):
            guard let id = hosted[meter ?? identity.publicKey] else { drop("not_hosted"); return [] }
            let last = lastRead[id.publicKey]
            let read: MeterRead
            do {
                read = try MeterRead(meter: id, sequence: last.map { $0.sequence + 1 } ?? 0, intervalStart: start,
                                     durationSeconds: duration, previous: last?.hash ?? MeterRead.noPrevious, registers: registers)
            } catch {
                drop(error.rawValue)
                return []
            }
            lastRead[id.publicKey] = (read.sequence, read.hash)
            counters.recorded += 1
            var w = ByteWriter(); w.u64(read.sequence); w.raw(read.hash)
            let chainRow = StorageOp.put(table: Table.chain, key: id.publicKey.bytes, value: w.bytes)
            lastRecorded = read
            // `recorded` is told, and the read leaves, once it and the chain row are durable.
            let taken = take([read], from: nil, extraOps: [chainRow], ack: [event(.recorded(read))], now: now, dir)
            return afterDurable(taken, pump(now: now, dir))
        case let .submit(reads):
            return afterDurable(take(reads, from: nil, extraOps: [], ack: [], now: now, dir), pump(now: now, dir))
        case let .operatorCommand(cmd):
            return routeDown(cmd, origin: me, from: nil, now: now, dir)
        }
    }

    // MARK: custody

    /// Takes reads into custody (or, at a collector, into its store): persists the new ones, then
    /// sends `ack`. Duplicates are acknowledged and not kept again.
    private mutating func take(_ reads: [MeterRead], from: NodeID?, extraOps: [StorageOp], ack: [Output],
                               now: Instant, _ dir: some MemberDirectory) -> [Output] {
        var ops = extraOps
        var events: [Output] = []
        for r in reads {
            if let from { downRoute[r.meterID] = from }
            if config.role == .collector, home(of: r.meterID) == me {
                var chain = chains[r.meter] ?? MeterChain()
                switch chain.add(r) {
                case .accepted:
                    chains[r.meter] = chain
                    stored[r.hash] = r
                    pending[r.intervalStart, default: []].append(r.hash)
                    counters.accepted += 1
                    ops.append(.put(table: Table.reads, key: r.hash, value: r.encode()))
                    events.append(event(.accepted(r)))
                case .duplicate:
                    counters.duplicates += 1
                case let refused:
                    drop(refused.rawValue)
                }
                continue
            }
            if held[r.hash] != nil || recent[r.hash] != nil || stored[r.hash] != nil { counters.duplicates += 1; continue }
            held[r.hash] = r
            if let from { origins[r.hash] = from }
            queue.append(r.hash)
            ops.append(.put(table: Table.custody, key: r.hash, value: r.encode()))
        }
        if ops.isEmpty { return ack + events }
        // Deletes waiting for a write go first (a read taken again after its delete is kept).
        ops = pendingDeletes + ops
        pendingDeletes = []
        deleteFlushAt = nil
        return [.persist(PersistBatch(ticket: ticket(), ops: ops), then: ack)] + events
    }

    /// `outputs` with `later` carried out once their write is durable (appended to the last
    /// persist's `then`): a read leaves a node only when the node has it on disk.
    private func afterDurable(_ outputs: [Output], _ later: [Output]) -> [Output] {
        guard !later.isEmpty, let i = outputs.lastIndex(where: { if case .persist = $0 { true } else { false } }),
              case let .persist(batch, then) = outputs[i] else { return outputs + later }
        var out = outputs
        out[i] = .persist(batch, then: then + later)
        return out
    }

    private mutating func remember(_ hash: [UInt8], from: NodeID?) {
        if recent[hash] != nil { return }
        if recentOrder.count < config.recentCapacity {
            recentOrder.append(hash)
        } else {
            recent[recentOrder[recentHead]] = nil
            recentOrder[recentHead] = hash
            recentHead = (recentHead + 1) % recentOrder.count
        }
        recent[hash] = .some(from)
    }

    /// Where a read in custody here goes next: the parent, or (at a collector) the read's home
    /// collector; nil when it stays (a collector's own reads are accepted, never queued).
    private func destination(of r: MeterRead) -> NodeID? {
        config.role == .collector ? home(of: r.meterID) : parent
    }

    /// The collector that anchors a meter's reads: of the configured collectors, the one with the
    /// highest BLAKE2b(meter id ‖ collector id) (rendezvous hashing), so every collector agrees
    /// without talking and a read reaching another collector is passed on, never anchored twice.
    /// Without a configured list every collector anchors what it receives.
    func home(of meter: NodeID) -> NodeID {
        guard !config.collectors.isEmpty else { return me }
        var best = config.collectors[0], bestScore: [UInt8] = []
        for c in config.collectors {
            let score = Blake2b.hash(meter.bytes + c.bytes, outputLength: 16)
            if bestScore.isEmpty || bestScore.lexicographicallyPrecedes(score) { best = c; bestScore = score }
        }
        return best
    }

    /// Sends queued reads to their next hop while each hop's window allows; reads whose hop is
    /// busy or unreachable keep their place in the queue.
    private mutating func pump(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard !queue.isEmpty else { return [] }
        if config.role != .collector {
            guard let parent, dir.isReachable(parent), flights.count < config.window else { return [] }
        }
        var inFlight: [NodeID: Int] = [:]
        for f in flights.values { inFlight[f.to, default: 0] += 1 }
        var building: [NodeID: [MeterRead]] = [:]
        var order: [NodeID] = []
        var kept: [[UInt8]] = []
        var out: [Output] = []
        func emit(_ to: NodeID, _ batch: [MeterRead]) {
            let b = nextBatch
            nextBatch += 1
            flights[b] = Flight(to: to, hashes: batch.map(\.hash), due: now + config.ackTimeout)
            inFlight[to, default: 0] += 1
            counters.batchesSent += 1
            out.append(.send(.member(to), bytes: MeterMessage.reads(batch: b, batch).encode()))
        }
        var i = 0
        while i < queue.count {
            let h = queue[i]
            i += 1
            guard let r = held[h] else { continue }
            guard let to = destination(of: r), to != me, dir.isReachable(to), inFlight[to, default: 0] < config.window else {
                kept.append(h)
                // A relay has one hop: once its window is full, the rest of the queue waits as it is.
                if config.role != .collector, inFlight[parent!, default: 0] >= config.window {
                    kept.append(contentsOf: queue[i...])
                    i = queue.count
                }
                continue
            }
            var batch = building[to] ?? []
            if !batch.isEmpty, !MeterMessage.fits(batch + [r]) {
                emit(to, batch)
                batch = []
                if inFlight[to, default: 0] >= config.window { building[to] = nil; kept.append(h); continue }
            }
            if building[to] == nil { order.append(to) }
            batch.append(r)
            building[to] = batch
        }
        for to in order { if let batch = building[to], !batch.isEmpty { emit(to, batch) } }
        queue = kept
        return out
    }

    // MARK: messages

    private mutating func receive(_ bytes: [UInt8], from peer: ProvenPeer, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        let message: MeterMessage
        do { message = try MeterMessage.decode(bytes) } catch { drop(error.rawValue); return [] }
        let from = peer.nodeID
        switch message {
        case let .solicit(token):
            return [.send(.peer(peer), bytes: MeterMessage.advert(token: token, rank: advertisedRank(now), parent: parent).encode())]
        case let .advert(token, r, p):
            var n = neighbours[from] ?? Neighbour(peer: peer, rank: r, parent: p, heardAt: now)
            n.peer = peer
            n.rank = r
            n.parent = p
            n.heardAt = now
            n.failures = 0
            if token != 0, let s = solicits.removeValue(forKey: token), s.to == from {
                let sample = now - s.at
                n.rtt = n.rtt.map { ($0 * 7 + sample) / 8 } ?? sample
            }
            neighbours[from] = n
            return choose(now: now, dir) + pump(now: now, dir)
        case let .reads(batch, reads):
            counters.received += UInt64(reads.count)
            let status: MeterMessage.AckStatus
            if config.role == .collector {
                status = .taken
            } else if parent == nil {
                status = .noRoute
            } else if parent == from || reads.contains(where: { recent[$0.hash].map { $0 != from } ?? false }) {
                // Reads from my own parent, or reads I passed on that come back from someone else: a loop.
                status = .loop
            } else if held.count + reads.count > config.maxHeld {
                status = .full
            } else {
                status = .taken
            }
            let ack: [Output] = [.send(.peer(peer), bytes: MeterMessage.ack(batch: batch, status: status).encode())]
            guard status == .taken else { drop("refused_\(status)"); return ack }
            return afterDurable(take(reads, from: from, extraOps: [], ack: ack, now: now, dir), pump(now: now, dir))
        case let .ack(batch, status):
            guard let f = flights[batch], f.to == from else { drop("unexpected_ack"); return [] }
            flights[batch] = nil
            if status == .taken {
                neighbours[from]?.failures = 0
                for h in f.hashes where held.removeValue(forKey: h) != nil {
                    remember(h, from: origins.removeValue(forKey: h))
                    counters.forwarded += 1
                    pendingDeletes.append(.delete(table: Table.custody, key: h))
                }
                if !pendingDeletes.isEmpty, deleteFlushAt == nil { deleteFlushAt = now + Self.deleteDelay }
                return pump(now: now, dir)
            }
            queue.insert(contentsOf: f.hashes, at: 0)
            if var n = neighbours[from] {
                switch status {
                case .loop: n.parent = me
                case .noRoute: n.rank = MeterRank.infinite
                default: n.failures += 1
                }
                neighbours[from] = n
            }
            return choose(now: now, dir) + pump(now: now, dir)
        case let .command(origin, cmd):
            return routeDown(cmd, origin: origin, from: peer, now: now, dir)
        case let .commandAck(origin, ack):
            return routeUp(ack, origin: origin, now: now)
        }
    }

    // MARK: commands down, acknowledgements up

    private mutating func routeDown(_ cmd: OperatorCommand, origin: NodeID, from: ProvenPeer?, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        if let from { ackRoute[cmd.hash] = from.nodeID }
        if let meter = hosted[cmd.meter] { return act(on: cmd, meter: meter, origin: origin, now: now) }
        let target = NodeID(publicKey: cmd.meter)
        guard let child = downRoute[target], dir.isReachable(child) else { drop("no_route_down"); return [] }
        counters.commandsForwarded += 1
        return [.send(.member(child), bytes: MeterMessage.command(origin: origin, cmd).encode())]
    }

    private mutating func act(on cmd: OperatorCommand, meter: NodeIdentity, origin: NodeID, now: Instant) -> [Output] {
        let key = cmd.meter.bytes + cmd.operatorKey.bytes
        let status: CommandAck.Status
        if !config.operatorKeys.contains(cmd.operatorKey) {
            status = .untrustedOperator
        } else if let last = nonces[key], cmd.nonce <= last {
            status = .replayed
        } else {
            status = .done
        }
        let ack = CommandAck(meter: meter, commandHash: cmd.hash, status: status)
        let back = routeUp(ack, origin: origin, now: now)
        let handled = event(.commandHandled(cmd, status))
        guard status == .done else { return [handled] + back }
        nonces[key] = cmd.nonce
        var w = ByteWriter(); w.u64(cmd.nonce)
        // The nonce is durable before the device acts and before the acknowledgement leaves.
        return [.persist(PersistBatch(ticket: ticket(), ops: [.put(table: Table.nonces, key: key, value: w.bytes)]), then: back), handled]
    }

    private mutating func routeUp(_ ack: CommandAck, origin: NodeID, now: Instant) -> [Output] {
        if origin == me, ackRoute[ack.commandHash] == nil { return [event(.commandAcknowledged(ack))] }
        guard let back = ackRoute.removeValue(forKey: ack.commandHash) else {
            if origin == me { return [event(.commandAcknowledged(ack))] }
            drop("no_route_up")
            return []
        }
        return [.send(.member(back), bytes: MeterMessage.commandAck(origin: origin, ack).encode())]
    }

    // MARK: parent choice

    /// Infinite while held down (poisoning the routes through this node).
    private func advertisedRank(_ now: Instant) -> UInt16 {
        if let h = holdDownUntil, now < h { return MeterRank.infinite }
        return rank
    }

    /// Picks the parent with the least rank through it; announces a change to the neighbours.
    private mutating func choose(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard config.role != .collector else { return [] }
        if let h = holdDownUntil, now < h { return [] }
        let stale = config.solicitMax * 3
        var best: (id: NodeID, rank: UInt16)?
        for (id, n) in neighbours.sorted(by: { $0.key < $1.key }) {
            guard n.rank != MeterRank.infinite, n.parent != me, n.failures < 3, now - n.heardAt <= stale, dir.isReachable(id) else { continue }
            let r = MeterRank.through(parentRank: n.rank, cost: MeterRank.linkCost(rtt: n.rtt ?? config.solicitMax))
            guard r != MeterRank.infinite else { continue }
            if best == nil || r < best!.rank { best = (id, r) }
        }
        let old = (parent, rank)
        if let best {
            // Hysteresis: keep a working parent unless another is better by half a hop.
            if let p = parent, p != best.id, let n = neighbours[p], n.rank != MeterRank.infinite, n.parent != me, n.failures < 3,
               dir.isReachable(p) {
                let current = MeterRank.through(parentRank: n.rank, cost: MeterRank.linkCost(rtt: n.rtt ?? config.solicitMax))
                if current <= best.rank &+ MeterRank.minHopIncrease / 2 { rank = current; return announce(old, now: now) }
            }
            parent = best.id
            rank = best.rank
        } else {
            // No route: poison, and wait a period before taking any (the children move first).
            let hadRoute = parent != nil
            parent = nil
            rank = MeterRank.infinite
            if hadRoute { holdDownUntil = now + config.solicitMin }
        }
        return announce(old, now: now)
    }

    private mutating func announce(_ old: (NodeID?, UInt16), now: Instant) -> [Output] {
        // Every RTT sample moves the rank a little; only a new parent or a move of half a hop is
        // news worth a datagram to every neighbour (else each sample would ripple through the mesh).
        let moved = rank > announcedRank ? rank - announcedRank : announcedRank - rank
        guard old.0 != parent || moved >= MeterRank.minHopIncrease / 2 || (rank == MeterRank.infinite) != (announcedRank == MeterRank.infinite) else { return [] }
        announcedRank = rank
        var out: [Output] = []
        if old.0 != parent {
            counters.parentChanges += 1
            out.append(event(.parentChanged(parent, rank: rank)))
            // Batches to the old parent go again to the new one.
            for (b, f) in flights.sorted(by: { $0.key < $1.key }) where f.to != parent {
                flights[b] = nil
                queue.insert(contentsOf: f.hashes, at: 0)
            }
        }
        if parent == nil {
            solicitInterval = config.solicitMin
            nextSolicit = now
        }
        // Tell the neighbours at once (an unsolicited advert, token 0) so children re-rank.
        let advert = MeterMessage.advert(token: 0, rank: advertisedRank(now), parent: parent).encode()
        for id in neighbours.keys.sorted() { out.append(.send(.member(id), bytes: advert)) }
        return out
    }

    // MARK: timers

    private mutating func timer(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        var out: [Output] = []
        if let h = holdDownUntil, now >= h {
            holdDownUntil = nil
            out += choose(now: now, dir)
        }
        for (b, f) in flights.sorted(by: { $0.key < $1.key }) where f.due <= now {
            flights[b] = nil
            counters.retransmissions += 1
            queue.insert(contentsOf: f.hashes, at: 0)
            if var n = neighbours[f.to] { n.failures += 1; neighbours[f.to] = n }
            if f.to == parent, (neighbours[f.to]?.failures ?? 3) >= 3 { out += choose(now: now, dir) }
        }
        if let d = deleteFlushAt, now >= d { out += flushDeletes() }
        if let s = nextSolicit, now >= s { out += solicit(now: now, dir) }
        if let t = nextAnchorTick, now >= t {
            out += closeBatches(now: now)
            nextAnchorTick = anchorTick(after: now)
        }
        for (id, u) in unconfirmed.sorted(by: { $0.value.index < $1.value.index }) where u.due.map({ $0 <= now }) ?? false {
            if u.request != nil { counters.anchorRetries += 1; lastAnchorRetry = "no answer from the ledger service" }
            out += submitAnchor(id, now: now)
        }
        return out + pump(now: now, dir)
    }

    /// Asks every neighbour (or, with none, every reachable member) for its rank; Trickle doubles
    /// the period while the parent holds, up to `solicitMax`.
    private mutating func solicit(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        solicits = solicits.filter { now - $0.value.at < config.solicitMax }
        var targets = members.filter { dir.isNeighbour($0) && dir.isReachable($0) }.sorted()
        if parent == nil {
            // No route through the neighbours: ask a few other members too (drawn, so that a node
            // whose overlay neighbours are all cut off still finds a way).
            var others = members.filter { !dir.isNeighbour($0) && dir.isReachable($0) }.sorted()
            for _ in 0..<min(Self.extraSolicits, others.count) {
                targets.append(others.remove(at: Int(rng.next() % UInt64(others.count))))
            }
        }
        var out: [Output] = []
        for id in targets {
            var token = rng.next()
            if token == 0 { token = 1 }
            solicits[token] = (id, now)
            out.append(.send(.member(id), bytes: MeterMessage.solicit(token: token).encode()))
        }
        // Without a parent the period doubles too, but only to a few times the least: finding a
        // route matters more than quiet, and a lossy link may need several asks.
        let cap = parent != nil ? config.solicitMax : min(config.solicitMax, config.solicitMin * 4)
        solicitInterval = min(cap, solicitInterval * 2)
        // Half to the whole period, drawn (Trickle's t in [I/2, I)), so neighbours do not align.
        let half = solicitInterval / 2
        nextSolicit = now + half + .nanoseconds(Int64(rng.next() % UInt64(max(1, half.nanoseconds))))
        return out
    }

    // MARK: anchoring (collector)

    private func unix(_ now: Instant) -> UInt64 { config.unixAtZero + UInt64(max(0, now.nanoseconds / 1_000_000_000)) }

    /// The next instant after `now` at an interval boundary plus the grace.
    private func anchorTick(after now: Instant) -> Instant {
        let interval = UInt64(config.intervalSeconds)
        let grace = UInt64(max(0, config.anchorGrace.nanoseconds / 1_000_000_000))
        let u = unix(now)
        var next = (u / interval) * interval + grace
        while next <= u { next += interval }
        let delta = Int64(next - u)
        return Instant(nanoseconds: (now.nanoseconds / 1_000_000_000 + delta) * 1_000_000_000)
    }

    /// Closes a batch for every interval whose reads have had their grace: a Merkle tree over the
    /// reads accepted for it since its last batch, persisted, then handed to the anchorer.
    private mutating func closeBatches(now: Instant) -> [Output] {
        let u = unix(now)
        let grace = UInt64(max(0, config.anchorGrace.nanoseconds / 1_000_000_000))
        var out: [Output] = []
        for start in pending.keys.sorted() {
            let hashes = pending[start]!
            let ends = hashes.compactMap { stored[$0].map { $0.intervalStart + UInt64($0.durationSeconds) } }.max() ?? start
            guard ends + grace <= u else { continue }
            pending[start] = nil
            let tree = MeterMerkleTree(readHashes: hashes)
            let batch = nextBatchNumber[start, default: 0]
            nextBatchNumber[start] = batch + 1
            let anchor = MeterAnchor(collector: identity.publicKey, intervalStart: start, batch: batch, count: UInt32(tree.count), root: tree.root)
            let index = anchors.count
            anchors.append(anchor)
            anchorLeaves.append(tree.leaves)
            for h in tree.leaves { anchorOf[h] = index }
            counters.anchors += 1
            var w = ByteWriter(capacity: 100 + 32 * tree.count)
            w.raw(anchor.collector.bytes); w.u64(anchor.intervalStart); w.u32(anchor.batch); w.u32(anchor.count); w.raw(anchor.root)
            for h in tree.leaves { w.raw(h) }
            let t = ticket()
            if anchorer.confirms {
                unconfirmed[anchor.objectID] = (index: index, request: nil, due: nil)
                anchorTickets[t.sequence] = anchor.objectID
            } else {
                out += anchorer.anchor(anchor, request: 0, now: now)
            }
            out.append(.persist(PersistBatch(ticket: t, ops: [.put(table: Table.anchors, key: Array(anchor.objectID.utf8), value: w.bytes)]), then: []))
            out.append(event(.anchored(anchor, leaves: tree.leaves)))
        }
        return out
    }

    /// Hands a closed anchor (its row durable here) to the anchorer, naming the answer.
    private mutating func submitAnchor(_ id: String, now: Instant) -> [Output] {
        guard var u = unconfirmed[id] else { return [] }
        if let old = u.request { anchorRequests[old] = nil }
        let request = nextAnchorRequest
        nextAnchorRequest += 1
        anchorRequests[request] = id
        u.request = request
        u.due = now + config.anchorAnswerTimeout
        unconfirmed[id] = u
        counters.anchorSubmissions += 1
        return anchorer.anchor(anchors[u.index], request: request, now: now)
    }

    private mutating func answered(_ a: AnchorAnswer, now: Instant) -> [Output] {
        switch a {
        case let .onLedger(request, height):
            guard let id = anchorRequests.removeValue(forKey: request), let u = unconfirmed.removeValue(forKey: id) else { return [] }
            onLedger[id] = height
            counters.anchorsOnLedger += 1
            var w = ByteWriter(); w.u64(height)
            return [.persist(PersistBatch(ticket: ticket(), ops: [.put(table: Table.onLedger, key: Array(id.utf8), value: w.bytes)]), then: []),
                    event(.anchorOnLedger(anchors[u.index], height: height))]
        case let .retry(request, reason):
            guard let id = anchorRequests.removeValue(forKey: request), unconfirmed[id] != nil else { return [] }
            counters.anchorRetries += 1
            lastAnchorRetry = reason
            unconfirmed[id]!.request = nil
            unconfirmed[id]!.due = now + config.anchorRetry
            return []
        case .noted:
            return []
        }
    }

    // MARK: restore

    private mutating func restore(_ rows: [StoredRow]) {
        var anchorRows: [StoredRow] = []
        for row in rows {
            switch row.table {
            case Table.custody:
                guard let r = try? MeterRead.decode(row.value), r.hash == row.key else { drop("bad_row"); continue }
                if held[r.hash] == nil { held[r.hash] = r; queue.append(r.hash) }
            case Table.reads:
                guard let r = try? MeterRead.decode(row.value), r.hash == row.key else { drop("bad_row"); continue }
                var chain = chains[r.meter] ?? MeterChain()
                guard chain.add(r) == .accepted else { continue }
                chains[r.meter] = chain
                stored[r.hash] = r
            case Table.anchors:
                anchorRows.append(row)
            case Table.chain:
                guard let key = PublicKey(row.key), row.value.count == 40 else { drop("bad_row"); continue }
                var rd = ByteReader(row.value)
                guard let seq = try? rd.u64(), let hash = try? rd.raw(32) else { continue }
                lastRead[key] = (seq, hash)
            case Table.nonces:
                guard row.key.count == 64, row.value.count == 8 else { drop("bad_row"); continue }
                var rd = ByteReader(row.value)
                nonces[row.key] = try? rd.u64()
            case Table.onLedger:
                guard let id = String(validating: row.key, as: UTF8.self), row.value.count == 8 else { drop("bad_row"); continue }
                var rd = ByteReader(row.value)
                onLedger[id] = try? rd.u64()
            default:
                continue
            }
        }
        // Anchors in interval and batch order, then every stored read not in one is pending again.
        var decoded: [(MeterAnchor, [[UInt8]])] = []
        for row in anchorRows {
            var rd = ByteReader(row.value)
            guard let key = try? rd.raw(32), let collector = PublicKey(key), let start = try? rd.u64(), let batch = try? rd.u32(),
                  let count = try? rd.u32(), let root = try? rd.raw(32), rd.remaining == Int(count) * 32 else { drop("bad_row"); continue }
            var leaves: [[UInt8]] = []
            for _ in 0..<count { if let h = try? rd.raw(32) { leaves.append(h) } }
            let anchor = MeterAnchor(collector: collector, intervalStart: start, batch: batch, count: count, root: root)
            guard MeterMerkleTree(readHashes: leaves).root == root, Array(anchor.objectID.utf8) == row.key else { drop("bad_row"); continue }
            decoded.append((anchor, leaves))
        }
        decoded.sort { ($0.0.intervalStart, $0.0.batch) < ($1.0.intervalStart, $1.0.batch) }
        for (a, leaves) in decoded {
            let index = anchors.count
            anchors.append(a)
            anchorLeaves.append(leaves)
            for h in leaves { anchorOf[h] = index }
            nextBatchNumber[a.intervalStart] = max(nextBatchNumber[a.intervalStart, default: 0], a.batch + 1)
            // Not on the ledger yet (or not known to be): submitted again at the first timer; an
            // earlier submission that did commit is answered `already_exists`, which confirms it.
            if anchorer.confirms, onLedger[a.objectID] == nil { unconfirmed[a.objectID] = (index: index, request: nil, due: Instant.zero) }
        }
        for (h, r) in stored.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) where anchorOf[h] == nil {
            pending[r.intervalStart, default: []].append(h)
        }
    }
}
