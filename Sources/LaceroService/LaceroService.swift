import Lacero
import MeshCore
import Node
import NodeService

/// Lacero on the node service seam (protocol id "iL", Docs/lacero.md): the status-register relay
/// that places fragments, the storage node's side (keep, serve, delete, leases), and fetch by id.
/// Sans-IO: inputs in, outputs out; randomness from the generator it was given; fragments kept as
/// `.persist` rows of table `lacero_fragments`.
///
/// A sharding node hands it fragments with `LaceroCommand.store`; each leaves on the reliable
/// stream to a random member, walks the overlay (each hop keeps it or not, raises the register if
/// it did, and passes it to a member not yet visited) until the register reaches the threshold or
/// the hop budget runs out, and the keep-ack comes back hop by hop: `LaceroEvent.stored` says
/// whether the threshold was reached, never where. An unanswered store is retried through another
/// first hop, at most `maxAttempts` times.
public struct LaceroService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    public static let protocolID = ProtocolID(LaceroMessage.magic[0], LaceroMessage.magic[1])
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }
    public static let table = "lacero_fragments"

    public struct Config: Sendable, Equatable {
        /// Whether this node keeps fragments at all (`[lacero] store`).
        public var store = true
        public var quotaBytes = 256 << 20
        /// Chance that this node keeps a fragment it is offered (when quota and load allow).
        public var keepProbability = 0.5
        /// How long a store may go unanswered before it is retried.
        public var ackTimeout: Duration = .seconds(10)
        public var maxAttempts = 3
        /// How long a fetch waits for a first `have` before the fragment is reported missing.
        public var fetchTimeout: Duration = .seconds(10)
        /// Status-register threshold of the fragments this node's operations place (nodes that keep each).
        public var threshold: UInt8 = 1
        /// Relay hop budget of the fragments this node's operations place.
        public var hops: UInt8 = 16
        /// Lease of a placed fragment, and what `check` renews it to.
        public var leaseSeconds: UInt32 = 30 * 24 * 3600
        /// Stores of one operation in flight at once: the node's reliable stream holds at most
        /// 1 MiB per peer and 16 MiB in all, and refuses (drops) a message beyond that.
        public var storeWindow = 16
        /// Bytes of stores and blocks handed to the reliable stream towards one peer and not yet
        /// acknowledged, at most (LaceroPacing.swift); one message to an idle peer always goes.
        public var peerWindowBytes = 256 << 10
        /// The same over all peers.
        public var nodeWindowBytes = 2 << 20
        /// How long `check` waits for `have` answers.
        public var checkWait: Duration = .seconds(3)
        /// Chance that a holder is gone by the next check, each on its own: the model behind
        /// `check`'s loss probability (LaceroOperations.swift).
        public var holderLoss = 0.05
        /// Largest object (or metadata file) an operation reads into memory.
        public var maxObjectBytes: UInt64 = 4 << 30
        public init() {}
    }

    public struct Counters: Sendable, Equatable {
        public var kept: UInt64 = 0
        public var passedOn: UInt64 = 0
        public var refusedSameSegment: UInt64 = 0
        public var refusedQuota: UInt64 = 0
        public var served: UInt64 = 0
        public var deleted: UInt64 = 0
        public var expired: UInt64 = 0
        public var retries: UInt64 = 0
        public var renewed: UInt64 = 0
        /// Messages that waited in an outbox for room in the stream's window (LaceroPacing.swift).
        public var paced: UInt64 = 0
        /// Stores sent through another hop because the stream failed (or refused) the first.
        public var rerouted: UInt64 = 0
        public var drops: [String: UInt64] = [:]
    }

    struct Held: Sendable, Equatable {
        var segmentTag: [UInt8]
        var deleteCheck: [UInt8]
        var leaseUntil: Instant
        var bytes: [UInt8]
    }

    /// A store this node started and waits to hear about.
    struct Pending: Sendable {
        var message: LaceroMessage.Store
        var attempts: Int
        var due: Instant
        /// The operation that placed it (put, repair); nil for a bare `.store` command.
        var op: UInt64? = nil
        /// The first hop it went to last.
        var hop: NodeID? = nil
    }

    /// Unanswered stores one node sends to one first hop: the reliable stream holds at most 1 MiB
    /// per peer and drops what does not fit, so a few large fragments fill it.
    static let storesPerHop = 3

    /// A fetch this node started: who was asked, who said it has the fragment, when the request
    /// to the current haver is given up for the next, and when the whole fetch gives up.
    struct Fetch: Sendable {
        var id: [UInt8]
        var asked: Set<NodeID>
        var havers: [ProvenPeer] = []
        /// The haver asked for the block now, and until when it may take.
        var requestedFrom: NodeID?
        var requestDue: Instant?
        /// Requests to the current haver that timed out (it is asked again while it is the only one).
        var tries = 0
        /// Until when the fetch waits for a first `have` (it counts only while no one said so).
        var due: Instant
        /// Whether a `have` leads to a block request; an operation's spare shares are asked
        /// about only, until it activates them (`activateFetch`).
        var active = true
    }

    /// How long a fetch waits for one haver's block before asking the next (or, when it is the
    /// only haver, asking it again: a slow holder's block is still taken when it comes).
    static let blockTimeout: Duration = .seconds(5)
    /// Times the only haver of a fragment is asked before the fetch gives up on it.
    static let blockTries = 3
    /// Block requests in flight to one holder: a holder answers on its reliable stream, which
    /// holds at most 1 MiB per peer and drops what does not fit; three of the largest fragments
    /// (`maxFragmentBytes`) fit.
    static let blocksPerPeer = 3
    /// Block requests in flight over all holders: what a fetching node lets its peers push at it
    /// at once (its receive buffers and its loop hold them).
    static let maxBlockRequests = 16

    public internal(set) var counters = Counters()
    public let config: Config
    let me: NodeID
    var rng: SeededGenerator
    /// Members alive, sorted (membership changes keep it), to pick random hops from.
    private(set) var members: [NodeID] = []
    var held: [[UInt8]: Held] = [:]
    private var heldTags: Set<[UInt8]> = []
    public private(set) var bytesHeld = 0
    var pending: [[UInt8]: Pending] = [:]          // by token
    var routeBack: [[UInt8]: (to: ProvenPeer, until: Instant)] = [:]  // by token
    /// Stores and blocks waiting for room in the reliable stream's window (LaceroPacing.swift).
    var pacing = Pacing()
    var fetches: [[UInt8]: Fetch] = [:]            // by id
    /// Block requests in flight, by holder (at most `blocksPerPeer` each, `maxBlockRequests` in all).
    var blockRequests: [NodeID: Int] = [:]
    var blockRequestsTotal = 0
    /// Fetches that know a haver but wait for a free request slot, oldest first.
    var waitingForSlot: [[UInt8]] = []
    var sequence: UInt64 = 0
    /// Where operations read and write files and seal metadata (LaceroHost.swift); nil: no operations.
    public let host: (any LaceroHost)?
    /// put, get, check, repair, delete (LaceroOperations.swift).
    var operations = Operations()

    public init(me: NodeID, config: Config = Config(), rng: SeededGenerator, host: (any LaceroHost)? = nil) {
        self.me = me
        self.config = config
        self.rng = rng
        self.host = host
    }

    public var fragmentsHeld: Int { held.count }
    public func holds(_ id: [UInt8]) -> Bool { held[id] != nil }

    public var deadline: Instant? {
        var d: Instant?
        func take(_ i: Instant) { if d == nil || i < d! { d = i } }
        for p in pending.values { take(p.due) }
        for f in fetches.values {
            if let r = f.requestDue { take(r) } else if f.havers.isEmpty { take(f.due) }
        }
        for h in held.values { take(h.leaseUntil) }
        for r in routeBack.values { take(r.until) }
        if let o = operations.deadline { take(o) }
        if let r = pacing.retryAt { take(r) }
        return d
    }

    /// Fragments are bulk on the node's reliable stream (other services' messages go first), and
    /// their acknowledgements pace what this service sends (LaceroPacing.swift).
    public var reliableUse: ReliableUse { ReliableUse(bulk: true, outcomes: true) }

    public func takes(_ command: NodeCommand) -> Bool {
        if case let .service(id, _) = command { return id == Self.protocolID }
        return false
    }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members dir: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case let .message(from, bytes, _):
            return receive(bytes, from: from, now: now, dir)
        case let .command(.service(_, payload)):
            guard let c = payload.as(LaceroCommand.self) else { return [] }
            return command(c, now: now, dir)
        case let .offloaded(ticket, outcome):
            return jobFinished(ticket, outcome, now: now, dir)
        case let .membership(.up(peer)):
            insertMember(peer.nodeID)
            return []
        case let .membership(.down(identity)), let .membership(.culled(identity)):
            if let i = members.firstIndex(of: identity.nodeID) { members.remove(at: i) }
            return peerGone(identity.nodeID, now: now, dir)
        case let .restored(rows):
            restore(rows, now: now)
            return []
        case .timer:
            return timer(now: now, dir)
        case let .persisted(ticket, outcome):
            return persisted(ticket, outcome, now: now)
        case .start, .command, .stop:
            return []
        }
    }

    private mutating func insertMember(_ id: NodeID) {
        guard id != me else { return }
        var lo = 0, hi = members.count
        while lo < hi { let mid = (lo + hi) / 2; if members[mid] < id { lo = mid + 1 } else { hi = mid } }
        let i = lo
        if i < members.count, members[i] == id { return }
        members.insert(id, at: i)
    }

    mutating func drop(_ reason: String) { counters.drops[reason, default: 0] += 1 }

    private func mark(_ id: NodeID) -> UInt64 { id.leadingWord }

    /// A random reachable member whose mark is not in `visited` (and that is not `avoiding`).
    mutating func randomHop(excluding visited: [UInt64], avoiding: NodeID? = nil, busy: [NodeID: Int] = [:], _ dir: some MemberDirectory) -> ProvenPeer? {
        var candidates = members.filter { !visited.contains(mark($0)) && $0 != avoiding && dir.isReachable($0) }
        // Hops with room on the reliable stream first; a busy one only when no other is left.
        let free = candidates.filter { busy[$0, default: 0] < Self.storesPerHop }
        if !free.isEmpty { candidates = free }
        guard !candidates.isEmpty else { return nil }
        return dir.peer(candidates[Int(rng.next() % UInt64(candidates.count))])
    }

    mutating func nextTicket() -> PersistTicket {
        sequence += 1
        return PersistTicket(service: Self.protocolID, sequence: sequence)
    }

    // MARK: commands

    mutating func command(_ c: LaceroCommand, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        switch c {
        case let .store(fragments, threshold, hops, leaseSeconds):
            var out: [Output] = []
            for f in fragments {
                var token = [UInt8](repeating: 0, count: LaceroMessage.tokenLength)
                for i in token.indices { token[i] = UInt8(truncatingIfNeeded: rng.next()) }
                let s = LaceroMessage.Store(id: f.id, register: 0, threshold: threshold, hops: hops, token: token,
                                            segmentTag: f.segmentTag, deleteCheck: f.deleteCheck, leaseSeconds: leaseSeconds,
                                            visited: [mark(me)], bytes: f.bytes)
                pending[token] = Pending(message: s, attempts: 0, due: now)
                out += sendPending(token, now: now, dir)
            }
            return out
        case let .fetch(ids, from):
            return startFetch(ids, from: from, now: now, dir)
        case let .delete(proofs, from):
            var out: [Output] = []
            let ask = from.isEmpty ? members : from
            for (id, proof) in proofs {
                // A fragment this node holds itself is deleted here, with the same proof check.
                if let h = held[id], LaceroMetadata.deleteCheck(proof: proof) == h.deleteCheck {
                    counters.deleted += 1
                    out += forget(id)
                }
                let bytes = LaceroMessage.delete(id: id, proof: proof).encode()
                for node in ask where dir.isReachable(node) { out.append(.send(.member(node), bytes: bytes)) }
            }
            return out
        case let .operation(request):
            return startOperation(request, now: now, dir)
        }
    }

    /// Asks `from` (every member when empty) which of `ids` they hold; what this node holds
    /// itself is `fetched` at once.
    mutating func startFetch(_ ids: [[UInt8]], from: [NodeID], active: Bool = true, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        var out: [Output] = []
        let ask = from.isEmpty ? members : from
        var wanted: [[UInt8]] = []
        for id in ids {
            if let h = held[id] {
                out += fetchResult(id, bytes: h.bytes, now: now, dir)
                continue
            }
            if fetches[id] != nil { continue }  // already being fetched: one result for both
            fetches[id] = Fetch(id: id, asked: Set(ask), due: now + config.fetchTimeout, active: active)
            wanted.append(id)
        }
        for chunkStart in stride(from: 0, to: wanted.count, by: LaceroMessage.maxIDs) {
            let want = LaceroMessage.want(Array(wanted[chunkStart..<min(wanted.count, chunkStart + LaceroMessage.maxIDs)])).encode()
            for node in ask where dir.isReachable(node) { out.append(.send(.member(node), bytes: want)) }
        }
        return out
    }

    /// A fetch ended: with the verified bytes, or nil (missing). An operation's fetch goes to the
    /// operation; any other is reported as an event.
    mutating func fetchResult(_ id: [UInt8], bytes: [UInt8]?, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        if let op = operations.fetchOwner(id) { return operationFetched(op, id: id, bytes: bytes, now: now, dir) }
        let event = bytes.map { LaceroEvent.fetched(id: id, bytes: $0) } ?? .missing(id: id)
        return [.event(.service(Self.protocolID, ServicePayload(event)))]
    }

    /// An operation needs a fragment it only asked about: request the block from a haver (now,
    /// or when a slot frees; if no one has said so yet, at the first `have`).
    mutating func activateFetch(_ id: [UInt8], now: Instant) -> [Output] {
        guard var f = fetches[id], !f.active else { return [] }
        f.active = true
        fetches[id] = f
        guard f.requestDue == nil, !f.havers.isEmpty else { return [] }
        if let o = requestBlock(id, now: now) { return o }
        if !waitingForSlot.contains(id) { waitingForSlot.append(id) }
        return []
    }

    /// Ends a fetch no one needs any more (its block request's slot returns).
    mutating func cancelFetch(_ id: [UInt8]) {
        operations.fetchOwners[id] = nil
        guard let f = fetches.removeValue(forKey: id) else { return }
        releaseSlot(f.requestedFrom)
    }

    /// Asks a haver of `id` with a free slot for the block; false when every haver is busy.
    private mutating func requestBlock(_ id: [UInt8], now: Instant) -> [Output]? {
        guard var f = fetches[id], f.active, f.requestDue == nil, blockRequestsTotal < Self.maxBlockRequests,
              let haver = f.havers.first(where: { blockRequests[$0.nodeID, default: 0] < Self.blocksPerPeer }) else { return nil }
        blockRequests[haver.nodeID, default: 0] += 1
        blockRequestsTotal += 1
        f.requestedFrom = haver.nodeID
        f.requestDue = now + Self.blockTimeout
        fetches[id] = f
        return [.send(.peer(haver), bytes: LaceroMessage.fetch(id: id).encode())]
    }

    mutating func releaseSlot(_ peer: NodeID?) {
        guard let peer, let n = blockRequests[peer] else { return }
        if n <= 1 { blockRequests[peer] = nil } else { blockRequests[peer] = n - 1 }
        blockRequestsTotal = max(0, blockRequestsTotal - 1)
    }

    /// Requests the blocks that waited for a slot, oldest first.
    private mutating func pumpBlocks(now: Instant) -> [Output] {
        var out: [Output] = []
        var still: [[UInt8]] = []
        for id in waitingForSlot {
            guard let f = fetches[id], f.active, f.requestDue == nil, !f.havers.isEmpty else { continue }
            if let o = requestBlock(id, now: now) { out += o } else { still.append(id) }
        }
        waitingForSlot = still
        return out
    }

    /// (Re)sends a pending store through a random first hop (not `avoiding`: a hop whose
    /// connection just failed); gives up after `maxAttempts`.
    mutating func sendPending(_ token: [UInt8], now: Instant, avoiding: NodeID? = nil, _ dir: some MemberDirectory) -> [Output] {
        guard var p = pending[token] else { return [] }
        // A retry of a store still waiting in the last hop's outbox takes it out (one walk at a time).
        if let h = p.hop, var waiting = pacing.outbox[h] {
            waiting.removeAll { Self.storeToken($0.bytes) == token }
            pacing.outbox[h] = waiting.isEmpty ? nil : waiting
        }
        // An operation's stores spread over first hops with room: fewer than `storesPerHop`
        // unanswered and nothing waiting for the stream's window (a bare `.store` draws as before).
        var busy: [NodeID: Int] = [:]
        if p.op != nil {
            for q in pending.values where q.op != nil { if let h = q.hop { busy[h, default: 0] += 1 } }
            if let h = p.hop { busy[h, default: 0] -= 1 }
            for m in members where !hasRoom(m, for: p.message.bytes.count) { busy[m] = Self.storesPerHop }
        }
        guard p.attempts < config.maxAttempts, let hop = randomHop(excluding: p.message.visited, avoiding: avoiding, busy: busy, dir) else {
            pending[token] = nil
            if let op = p.op { return operationStored(op, id: p.message.id, reached: false, register: 0, now: now, dir) }
            return [.event(.service(Self.protocolID, ServicePayload(LaceroEvent.storeFailed(id: p.message.id))))]
        }
        if p.attempts > 0 { counters.retries += 1 }
        p.attempts += 1
        p.due = now + config.ackTimeout
        p.hop = hop.nodeID
        pending[token] = p
        return sendPaced(LaceroMessage.store(p.message).encode(), to: hop, now: now)
    }

    // MARK: messages

    private mutating func receive(_ bytes: [UInt8], from peer: ProvenPeer, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        let from = peer.nodeID
        let message: LaceroMessage
        do { message = try LaceroMessage.decode(bytes) } catch { drop(error.reason); return [] }
        switch message {
        case let .store(s):
            return relay(s, from: peer, now: now, dir)
        case let .keepAck(token, id, kept, register):
            if let back = routeBack.removeValue(forKey: token) {
                return [.send(.peer(back.to), bytes: bytes)]
            }
            guard let p = pending[token], p.message.id == id else { drop("unexpected_ack"); return [] }
            pending[token] = nil
            if let op = p.op { return operationStored(op, id: id, reached: kept, register: register, now: now, dir) }
            return [.event(.service(Self.protocolID, ServicePayload(LaceroEvent.stored(id: id, reachedThreshold: kept, register: register))))]
        case let .want(ids):
            return [.send(.peer(peer), bytes: LaceroMessage.have(ids.filter { held[$0] != nil }).encode())]
        case let .have(ids):
            var out: [Output] = []
            operations.heard(have: ids, from: from)
            for id in ids {
                guard var f = fetches[id], f.asked.contains(from), !f.havers.contains(peer) else { continue }
                f.havers.append(peer)
                fetches[id] = f
                if !f.active {
                    if f.havers.count == 1, let op = operations.fetchOwner(id) { out += shareHeard(op, id: id, now: now) }
                } else if f.requestDue == nil {
                    if let o = requestBlock(id, now: now) { out += o } else if !waitingForSlot.contains(id) { waitingForSlot.append(id) }
                }
            }
            return out + checksAnswered(now: now, dir)
        case let .fetch(id):
            guard let h = held[id] else { drop("fetch_unknown"); return [] }
            counters.served += 1
            return sendPaced(LaceroMessage.block(id: id, bytes: h.bytes).encode(), to: peer, now: now)
        case let .block(id, fragment):
            guard let f = fetches[id] else { drop("unexpected_block"); return [] }
            guard FragmentHash.hash(fragment) == id else {
                // A wrong fragment: ask the next haver.
                drop("hash_mismatch")
                return nextHaver(id, failed: from, now: now)
            }
            fetches[id] = nil
            releaseSlot(f.requestedFrom)
            return fetchResult(id, bytes: fragment, now: now, dir) + pumpBlocks(now: now)
        case let .delete(id, proof):
            guard let h = held[id], LaceroMetadata.deleteCheck(proof: proof) == h.deleteCheck else { drop("delete_refused"); return [] }
            counters.deleted += 1
            return forget(id)
        case let .renew(id, proof, seconds):
            guard var h = held[id], LaceroMetadata.deleteCheck(proof: proof) == h.deleteCheck else { drop("renew_refused"); return [] }
            h.leaseUntil = max(h.leaseUntil, now + .seconds(Int64(seconds)))
            held[id] = h
            counters.renewed += 1
            // The new lease outlives a restart: the row is written again.
            return [.persist(PersistBatch(ticket: nextTicket(), ops: [.put(table: Self.table, key: id, value: Self.row(h, now: now))]), then: [])]
        }
    }

    /// The current haver of `id` did not deliver (or delivered wrong bytes): ask the next one.
    private mutating func nextHaver(_ id: [UInt8], failed: NodeID, now: Instant) -> [Output] {
        guard var f = fetches[id] else { return [] }
        f.havers.removeAll { $0.nodeID == failed }
        f.asked.remove(failed)
        if f.requestedFrom == failed {
            releaseSlot(failed)
            f.requestedFrom = nil
            f.requestDue = nil
            f.tries = 0
        }
        fetches[id] = f
        var out: [Output] = []
        if f.active, f.requestDue == nil, !f.havers.isEmpty {
            if let o = requestBlock(id, now: now) { out += o } else if !waitingForSlot.contains(id) { waitingForSlot.append(id) }
        }
        return out + pumpBlocks(now: now)
    }

    /// One hop of the status-register relay.
    private mutating func relay(_ incoming: LaceroMessage.Store, from: ProvenPeer, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard FragmentHash.hash(incoming.bytes) == incoming.id else { drop("hash_mismatch"); return [] }
        var s = incoming
        var out: [Output] = []
        var persisted: PersistBatch?
        if held[s.id] == nil, config.store {
            if heldTags.contains(s.segmentTag) {
                counters.refusedSameSegment += 1
            } else if bytesHeld + s.bytes.count > config.quotaBytes {
                counters.refusedQuota += 1
            } else if Double(rng.next() >> 11) / Double(1 << 53) < config.keepProbability || lastHop(s, dir) {
                let h = Held(segmentTag: s.segmentTag, deleteCheck: s.deleteCheck,
                             leaseUntil: now + .seconds(Int64(s.leaseSeconds)), bytes: s.bytes)
                held[s.id] = h
                heldTags.insert(s.segmentTag)
                bytesHeld += s.bytes.count
                counters.kept += 1
                s.register += 1
                persisted = PersistBatch(ticket: nextTicket(), ops: [.put(table: Self.table, key: s.id, value: Self.row(h, now: now))])
            }
        }
        if !s.visited.contains(mark(me)), s.visited.count < LaceroMessage.maxVisited { s.visited.append(mark(me)) }
        let reached = s.register >= s.threshold
        var sends: [Output]
        if !reached, s.hops > 0, let next = randomHop(excluding: s.visited, dir) {
            s.hops -= 1
            counters.passedOn += 1
            routeBack[s.token] = (from, now + config.ackTimeout * 2)
            // Paced like the node's own stores; one that waits leaves only once the keep is durable.
            if let batch = persisted { pacing.notDurable.insert(batch.ticket.sequence) }
            sends = sendPaced(LaceroMessage.store(s).encode(), to: next, afterPersist: persisted?.ticket.sequence, now: now)
        } else {
            sends = [.send(.peer(from), bytes: LaceroMessage.keepAck(token: s.token, id: s.id, kept: reached, register: s.register).encode())]
        }
        // What this node keeps is durable before anyone hears of it.
        if let batch = persisted { out.append(.persist(batch, then: sends)) } else { out += sends }
        return out
    }

    /// Whether the walk ends here with no keeper unless this node keeps it (no hop budget left, or
    /// no member left to visit): the last hop keeps whatever its coin says, so a fragment is not
    /// lost to coin flips on a small or nearly full mesh.
    private func lastHop(_ s: LaceroMessage.Store, _ dir: some MemberDirectory) -> Bool {
        guard s.register == 0 else { return false }
        if s.hops == 0 { return true }
        let marks = s.visited + [mark(me)]
        return !members.contains { !marks.contains(mark($0)) && dir.isReachable($0) }
    }

    mutating func forget(_ id: [UInt8]) -> [Output] {
        guard let h = held.removeValue(forKey: id) else { return [] }
        heldTags.remove(h.segmentTag)
        bytesHeld -= h.bytes.count
        return [.persist(PersistBatch(ticket: nextTicket(), ops: [.delete(table: Self.table, key: id)]), then: [])]
    }

    private mutating func timer(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        var out: [Output] = []
        for token in pending.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) where pending[token]!.due <= now {
            out += sendPending(token, now: now, dir)
        }
        for id in fetches.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let f = fetches[id] else { continue }
            if let r = f.requestDue {
                if r <= now, let current = f.requestedFrom {
                    counters.retries += 1
                    if f.havers.count == 1, f.tries + 1 < Self.blockTries, let haver = f.havers.first, haver.nodeID == current {
                        var g = f
                        g.tries += 1
                        g.requestDue = now + Self.blockTimeout
                        fetches[id] = g
                        out.append(.send(.peer(haver), bytes: LaceroMessage.fetch(id: id).encode()))
                    } else {
                        out += nextHaver(id, failed: current, now: now)
                    }
                }
            } else if f.havers.isEmpty, f.due <= now {
                fetches[id] = nil
                out += fetchResult(id, bytes: nil, now: now, dir)
            }
        }
        out += operationsTimer(now: now, dir)
        // Slots freed by fetches that ended here (missing, cancelled with their operation).
        out += pumpBlocks(now: now)
        out += pacingTimer(now: now)
        for id in held.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) where held[id]!.leaseUntil <= now {
            counters.expired += 1
            out += forget(id)
        }
        for token in routeBack.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) where routeBack[token]!.until <= now {
            routeBack[token] = nil
        }
        return out
    }

    // MARK: storage rows

    /// Row value: segment tag (16) · delete check (32) · lease end (u64 ns of the node's clock
    /// when kept, stored as remaining nanoseconds) · fragment bytes. Docs/lacero.md, "Storage rows".
    static func row(_ h: Held, now: Instant) -> [UInt8] {
        var w = ByteWriter(capacity: 56 + h.bytes.count)
        w.raw(h.segmentTag); w.raw(h.deleteCheck)
        w.u64(UInt64(max(0, (h.leaseUntil - now).nanoseconds)))
        w.raw(h.bytes)
        return w.bytes
    }

    private mutating func restore(_ rows: [StoredRow], now: Instant) {
        for row in rows where row.table == Self.table {
            var r = ByteReader(row.value)
            guard row.key.count == 32, let tag = try? r.raw(16), let check = try? r.raw(32), let remaining = try? r.u64(),
                  let bytes = try? r.raw(r.remaining), !bytes.isEmpty, FragmentHash.hash(bytes) == row.key else {
                drop("bad_row"); continue
            }
            // A lease goes on from its restored remainder, counted from this life's start (the
            // runtime's clock does not start at zero, nor carry over a restart).
            let rest = Duration.nanoseconds(Int64(min(remaining, UInt64(Int64.max / 2))))
            held[row.key] = Held(segmentTag: tag, deleteCheck: check, leaseUntil: now + rest, bytes: bytes)
            heldTags.insert(tag)
            bytesHeld += bytes.count
        }
    }
}

/// What a node asks its Lacero service (inside `NodeCommand.service("iL", …)`).
public enum LaceroCommand: Sendable, Equatable {
    public struct Fragment: Sendable, Equatable {
        public var id: [UInt8]
        public var bytes: [UInt8]
        public var segmentTag: [UInt8]
        public var deleteCheck: [UInt8]
        public init(id: [UInt8], bytes: [UInt8], segmentTag: [UInt8], deleteCheck: [UInt8]) {
            self.id = id; self.bytes = bytes; self.segmentTag = segmentTag; self.deleteCheck = deleteCheck
        }
    }
    /// Relay these fragments into the mesh with a status register each.
    case store([Fragment], threshold: UInt8, hops: UInt8, leaseSeconds: UInt32)
    /// Find these fragments by id (asking `from`, or every member when empty).
    case fetch([[UInt8]], from: [NodeID])
    /// Delete these fragments (id, proof) wherever they are held.
    case delete([(id: [UInt8], proof: [UInt8])], from: [NodeID])
    /// put, get, check, repair or delete a whole object (LaceroOperations.swift); its report is
    /// `LaceroService.report(op:)` while it runs and `LaceroEvent.finished` when it ends.
    case operation(LaceroRequest)

    public static func == (a: LaceroCommand, b: LaceroCommand) -> Bool {
        switch (a, b) {
        case let (.store(f1, t1, h1, l1), .store(f2, t2, h2, l2)): f1 == f2 && t1 == t2 && h1 == h2 && l1 == l2
        case let (.fetch(i1, f1), .fetch(i2, f2)): i1 == i2 && f1 == f2
        case let (.delete(p1, f1), .delete(p2, f2)): p1.map(\.id) == p2.map(\.id) && p1.map(\.proof) == p2.map(\.proof) && f1 == f2
        case let (.operation(a), .operation(b)): a == b
        default: false
        }
    }
}

/// What the Lacero service reports (inside `NodeEvent.service("iL", …)`).
public enum LaceroEvent: Sendable, Equatable {
    /// The keep-ack of a fragment this node stored: whether its register reached the threshold.
    case stored(id: [UInt8], reachedThreshold: Bool, register: UInt8)
    /// No first hop answered within `maxAttempts`, or no member was there to ask.
    case storeFailed(id: [UInt8])
    /// A fragment fetched, its bytes checked against its id.
    case fetched(id: [UInt8], bytes: [UInt8])
    /// No member answered with the fragment before the fetch timed out.
    case missing(id: [UInt8])
    /// An operation ended (done or failed): its final report.
    case finished(LaceroReport)
}
