import Foundation
import MeshCore

/// The gossip state machine: SWIM failure detection with Lifeguard's local health, piggybacked
/// dissemination, HyParView partial views, attribute queries, signed culls and anti-entropy.
/// Sans-IO: every call takes `now` and returns what the node must send, when to wake, and what
/// happened. All randomness comes from the injected generator, and everything that decides what is
/// sent walks arrays, never dictionaries, so two cores fed the same inputs give the same outputs.
public struct GossipCore {
    public let me: PeerEntry
    public let config: GossipConfig
    public internal(set) var counters = GossipCounters()
    public internal(set) var incarnation: UInt32 = 0
    public internal(set) var attributes = Attributes()
    public internal(set) var attributeVersion: UInt32 = 0
    /// Every member we know of, in the order first learned (see `MemberTable`).
    public internal(set) var members: MemberTable
    public internal(set) var activeView: [PeerEntry] = []
    public internal(set) var passiveView: [PeerEntry] = []
    public internal(set) var culls: [NodeID: CullRecord] = [:]
    /// Culled node ids in the order their culls were first applied; only ever appended to (a cull
    /// is for good), so a driver persists the culls past the count it last saw (GossipService).
    public internal(set) var cullOrder: [NodeID] = []
    /// Where the next anti-entropy delta's slice of culls starts (see `sendDelta`).
    var cullDeltaCursor = 0
    /// Lifeguard's local health score: 0 is healthy; each step stretches probe timing.
    public internal(set) var awareness = 0
    /// Smoothed fraction of our direct round trips that were lost (LinkHealth.swift): how many
    /// unanswered questions a suspicion needs before we declare.
    public internal(set) var roundTripLoss = 0.0
    /// Members whose direct probes went unanswered, and how many attempts, until they prove alive.
    var unprovenFailures: [NodeID: UInt8] = [:]
    /// When each member was last heard through another service's traffic (channel frames: see
    /// `noteTraffic`), bounded: a probe that fails while its target's frames arrive was lost.
    var heardOutside: [NodeID: Instant] = [:]
    public internal(set) var hasLeft = false

    var rng: SeededGenerator
    let myTag: UInt64
    var queue: BroadcastQueue
    var nextSeq: UInt32 = 1
    /// Off while a delta is applied: see `pushVerdict`.
    var pushesVerdicts = true
    /// On while a catch-up delta is applied: see `applyDelta`.
    var catchingUp = false
    /// News pushes left in this gossip interval (see `pushNews`).
    var newsBudget = 0
    /// News taken in during the current input, sent together when it is handled (`flushNews`).
    var pendingNews: [(update: MemberUpdate, except: NodeID?)] = []
    var started = false

    // Probing.
    struct Probe: Sendable {
        var target: PeerEntry
        var seq: UInt32
        var sentAt: Instant
        var indirectAt: Instant
        var endAt: Instant
        /// Where the period would end without the peer's round trip stretching it (`gotAck`).
        var pacedEnd: Instant
        var indirectSent = false
        var expectedNacks = 0
        var nacks = 0
        var acked = false
        /// The helpers that nacked (accuser tags): each is an independent confirmation.
        var nackers: [UInt64] = []
        /// A wide probe (a member outside the active view): see `wideProbeTarget`.
        var wide = false
    }
    var probe: Probe?
    /// When we last probed each neighbour (`nextProbeTarget`); pruned, so it stays view-sized.
    var probedAt: [NodeID: Int64] = [:]
    var priorityProbes: [NodeID] = []
    /// Members that probed us lately though we do not hold them in our active view (`notePing`).
    var pingedBy: [(peer: NodeID, at: Instant)] = []
    /// The newcomers we admitted as their join contact, newest last (`handleJoin`).
    var admitted: [(peer: NodeID, at: Instant)] = []
    /// When a probe round may next target a member outside the active view (`wideProbeInterval`).
    var nextWideProbe: Instant?
    /// A member whose wide probe failed once: probed again next period before it is accused.
    var wideRetry: NodeID?
    var nextProbe: Instant?
    /// An indirect probe we make for another node. The nack goes at `deadline`; the relay stays
    /// open until `forgetAt`, so a target that answers late (its session to us was still being
    /// set up: a handshake costs a round trip) still clears the requester's probe.
    struct Relay: Sendable { var requester: PeerEntry; var seq: UInt32; var deadline: Instant; var forgetAt: Instant; var nacked = false }
    var relays: [UInt32: Relay] = [:]
    var relayOrder: [UInt32] = []
    /// Pings for RTT measurement and dead-member retries.
    var sidePings: [UInt32: (target: NodeID?, sentAt: Instant, deadRetry: Bool)] = [:]
    var sidePingOrder: [UInt32] = []
    var nextDeadRetry: Instant?
    var deadRetryIndex = 0
    /// Dead members in the order they died: what `retryDead` cycles through, so a table of
    /// thousands of live members is not walked to find the few dead ones.
    var deadMembers: [NodeID] = []
    /// Suspect members in the order they became suspect (the order expiry walks).
    var suspects: [NodeID] = []
    /// Open suspicions, beside the table rather than in every row.
    var suspicions: [NodeID: Suspicion] = [:]

    // Views and joining.
    var contacts: [UnderlayAddress] = []
    var contactIndex = 0
    var nextJoin: Instant?
    var pendingNeighbours: [(peer: NodeID, since: Instant)] = []
    /// Neighbour-request bookkeeping that spares handshakes (Views.swift, "Repair"): peers that
    /// refused us lately, peers we refused lately (they look for a neighbour: our referrals), the
    /// peer a refusal referred us to, and the back-off of further requests while refusals continue.
    var neighbourRefusers: [(peer: NodeID, until: Instant)] = []
    /// Peers that dropped us while we did not hold them: their reply to an earlier request or join
    /// may still be in flight, behind (or overtaken by) the disconnect. See `acceptLink`.
    var recentDisconnects: [(peer: NodeID, until: Instant)] = []
    var neighbourSeekers: [(entry: PeerEntry, until: Instant)] = []
    var neighbourReferral: (entry: PeerEntry, until: Instant)?
    var neighbourBackoffUntil: Instant?
    var refusalStreak = 0
    var nextShuffle: Instant?
    var pendingShuffle: (id: UInt32, sent: [PeerEntry])?
    /// Shuffles this node forwarded, by id: the hop each came from, so the reply travels back
    /// along the walk over sessions that exist rather than opening one to the origin. Bounded.
    var shuffleReturns: [UInt32: (back: PeerEntry, until: Instant)] = [:]
    var shuffleReturnOrder: [UInt32] = []
    var nextGossip: Instant?
    var gossipCursor = 0
    /// Where the next round's search for members with lagging attributes starts (a row number),
    /// and when each background fetch in flight went out (Attributes.swift, `fetchLaggingAttributes`).
    var attributeCursor = 0
    var attributeFetchesSent: [NodeID: Instant] = [:]
    var everJoined = false
    /// Set by `restoreMembers`: the restored members are join contacts (see `tryJoin`).
    var joinThroughRestored = false
    /// Addresses heard by LAN beacon (mode `nearest`), oldest first, at most 512: the "near" peers
    /// that `longLink` is not.
    var lanAddresses: [UnderlayAddress] = []
    /// Join attempts since the active view was last non-empty (for the retry back-off).
    var joinAttempts = 0

    // Queries.
    var seenQueries: Set<[UInt8]> = []
    var seenQueryOrder: [[UInt8]] = []
    var myQueries: [UInt64] = []

    // Anti-entropy.
    var nextExchange: Instant?
    var outgoingExchanges: [(id: UInt32, peer: NodeID, since: Instant)] = []
    var servedExchanges: [(peer: NodeID, since: Instant)] = []
    /// Set by the first delta received: until then a newcomer exchanges every second.
    var synced = false
    /// Exchanges started, and when we started: see `strangerExchangeEvery`.
    var exchangeRounds = 0
    var startedAt: Instant?

    var nextHousekeeping: Instant?

    // Uplink pacing (Pacing.swift): the token bucket in bytes, the pace, and its window.
    public internal(set) var pace = 1.0
    var tokens = 0.0
    var lastRefill: Instant?
    var paceWindowStart: Instant?
    var windowBytes = 0.0
    var requestedWake: Instant?

    /// `identities`: a table shared with other cores in the same process and thread (a simulator),
    /// so each peer entry is stored once for all of them; nil for a node's single core (it gets
    /// its own).
    public init(me: PeerEntry, config: GossipConfig, rng: SeededGenerator, identities: PeerIdentities? = nil) {
        self.me = me
        self.config = config
        self.rng = rng
        let table = identities ?? PeerIdentities()
        members = MemberTable(identities: table)
        myTag = Self.accuserTag(me.nodeID)
        queue = BroadcastQueue(capacity: config.maxQueuedUpdates, identities: table)
        contacts = config.seeds
    }

    /// Members sorted by node id, for tables and reports.
    public var sortedMembers: [GossipMember] { members.values.sorted { $0.nodeID < $1.nodeID } }
    public var queuedUpdates: Int { queue.count }

    public mutating func handle(_ input: GossipInput, now: Instant) -> [GossipOutput] {
        var out: [GossipOutput] = []
        switch input {
        case .start:
            start(now: now, into: &out)
        case .timer:
            requestedWake = nil
            runDue(now: now, into: &out)
        case let .received(from, bytes):
            counters.messagesIn += 1
            counters.bytesIn += UInt64(bytes.count)
            switch GossipWire.decode(bytes, transport: .datagram, known: members.identities) {
            case let .failure(reason): counters.drop(reason)
            case let .success(m): receive(m, from: from, now: now, into: &out)
            }
        case let .reliableReceived(from, bytes):
            counters.messagesIn += 1
            counters.bytesIn += UInt64(bytes.count)
            switch GossipWire.decode(bytes, transport: .reliable, known: members.identities) {
            case let .failure(reason): counters.drop(reason)
            case let .success(m): receive(m, from: from, now: now, into: &out)
            }
        case let .rttSample(id, rtt):
            noteRTT(id, rtt)
        case let .beaconHeard(address):
            beaconHeard(address, now: now, into: &out)
        case let .command(c):
            apply(c, now: now, into: &out)
        }
        flushNews(into: &out)
        if started, let wake = nextDue(), wake != requestedWake {
            requestedWake = wake
            out.append(.wake(at: wake))
        }
        return out
    }

    // MARK: - Start and timers

    mutating func start(now: Instant, into out: inout [GossipOutput]) {
        guard !started else { return }
        started = true
        startedAt = now
        queue.enqueue(selfAlive)
        refillUplink(now: now)
        nextGossip = now + paced(config.gossipInterval)
        newsBudget = config.newsPushBudget
        if config.wideProbeInterval > .zero { nextWideProbe = now + config.wideProbeInterval + jitter(config.wideProbeInterval) }
        nextProbe = now + jitter(paced(config.probeInterval))
        nextShuffle = now + jitter(paced(config.shuffleInterval))
        nextExchange = now + jitter(paced(config.antiEntropyInterval))
        nextDeadRetry = now + paced(config.deadRetryInterval)
        nextHousekeeping = now + .seconds(60)
        if !contacts.isEmpty { tryJoin(now: now, into: &out) }
    }

    /// A random instant within the first interval, so nodes started together do not beat in step.
    mutating func jitter(_ d: Duration) -> Duration {
        .nanoseconds(Int64(Double(d.nanoseconds) * (0.5 + rng.unit())))
    }

    /// Runs after every input: folded in place, with no temporary array.
    func nextDue() -> Instant? {
        var best: Instant?
        @inline(__always) func consider(_ t: Instant?) {
            if let t, best.map({ t < $0 }) ?? true { best = t }
        }
        consider(nextGossip)
        consider(nextProbe)
        consider(nextShuffle)
        consider(nextExchange)
        consider(nextDeadRetry)
        consider(nextHousekeeping)
        if !everJoined || activeView.isEmpty { consider(nextJoin) }
        if let p = probe, !p.acked, !p.indirectSent { consider(p.indirectAt) }
        for p in pendingNeighbours { consider(p.since + config.neighbourRequestTimeout) }
        for id in suspects { consider(suspicions[id]?.deadline) }
        for s in relayOrder { if let r = relays[s] { consider(r.nacked ? r.forgetAt : r.deadline) } }
        return best
    }

    mutating func runDue(now: Instant, into out: inout [GossipOutput]) {
        guard started else { return }
        refillUplink(now: now)
        if let p = probe, !p.acked, !p.indirectSent, now >= p.indirectAt { sendIndirectProbes(now: now, into: &out) }
        if let t = nextProbe, now >= t { probeRound(now: now, into: &out) }
        expireRelays(now: now, into: &out)
        expireSuspicions(now: now, into: &out)
        if let t = nextGossip, now >= t {
            nextGossip = now + paced(config.gossipInterval)
            newsBudget = config.newsPushBudget
            if mayChatter { gossipRound(now: now, into: &out) }
            maintainViews(now: now, into: &out)
            fetchLaggingAttributes(now: now, into: &out)
        }
        if !pendingNeighbours.isEmpty {
            // No answer: the candidate is gone; HyParView drops it from the passive view.
            for p in pendingNeighbours where now >= p.since + config.neighbourRequestTimeout {
                passiveView.removeAll { $0.nodeID == p.peer }
            }
            pendingNeighbours.removeAll { now >= $0.since + config.neighbourRequestTimeout }
        }
        if let t = nextJoin, now >= t, activeView.isEmpty { tryJoin(now: now, into: &out) }
        if let t = nextShuffle, now >= t {
            nextShuffle = now + paced(config.shuffleInterval)
            if mayChatter { shuffle(now: now, into: &out) }
        }
        if let t = nextExchange, now >= t {
            nextExchange = synced ? now + jitter(paced(config.antiEntropyInterval)) : now + paced(.seconds(1))
            if mayChatter { startExchange(now: now, into: &out) }
        }
        if let t = nextDeadRetry, now >= t {
            nextDeadRetry = now + paced(config.deadRetryInterval)
            retryDead(now: now, into: &out)
        }
        if let t = nextHousekeeping, now >= t {
            nextHousekeeping = now + .seconds(60)
            housekeeping(now: now, into: &out)
        }
    }

    // MARK: - Sending

    mutating func send(_ m: GossipMessage, to dest: GossipDestination, into out: inout [GossipOutput]) {
        sendEncoded(GossipWire.encode(m), to: dest, into: &out)
    }

    /// `send` of a message already encoded (`GossipWire.encode` or its splicing twin).
    mutating func sendEncoded(_ bytes: [UInt8], to dest: GossipDestination, into out: inout [GossipOutput]) {
        precondition(bytes.count <= GossipWire.maxDatagram, "a gossip datagram grew past its budget")
        counters.messagesOut += 1
        counters.bytesOut += UInt64(bytes.count)
        chargeUplink(bytes.count)
        out.append(.send(dest, bytes: bytes))
    }

    mutating func sendReliable(_ m: GossipMessage, to peer: PeerEntry, into out: inout [GossipOutput]) {
        let bytes = GossipWire.encode(m)
        counters.reliableOut += 1
        counters.reliableBytesOut += UInt64(bytes.count)
        chargeUplink(bytes.count + bytes.count / 1000 * Self.framingBytes)
        out.append(.sendReliable(peer, bytes: bytes))
    }

    /// How many times each node sends one update: memberlist's `mult × ⌈log10(n + 1)⌉`.
    var retransmitLimit: Int {
        let n = Double(members.count + 1)
        return config.retransmitMultiplier * max(1, Int(ceil(log10(n + 1))))
    }

    mutating func piggyback(spare: Int) -> [MemberUpdate] {
        guard !queue.isEmpty else { return [] }
        let allowed = piggybackAllowance(spare)
        guard allowed > 0 else { return [] }
        return queue.take(budget: allowed, limit: retransmitLimit)
    }

    mutating func gossipRound(now: Instant, into out: inout [GossipOutput]) {
        guard !queue.isEmpty, !activeView.isEmpty else { return }
        // Round-robin over the active view, so an update's few sends reach every neighbour. The
        // cursor moves past all `fanout` targets even when the queue runs dry before the last.
        let count = activeView.count
        let fanout = min(config.gossipFanout, count)
        let first = gossipCursor >= count ? 0 : gossipCursor
        if fanout > 0 { gossipCursor = (first + fanout - 1) % count + 1 }
        for k in 0..<fanout {
            let updates = piggyback(spare: GossipWire.maxDatagram - GossipWire.headerLength - 1)
            if updates.isEmpty { break }
            send(.gossip(updates: updates), to: .peer(activeView[(first + k) % count]), into: &out)
        }
    }

    mutating func randomSample<T>(_ xs: [T], count: Int) -> [T] {
        var copy = xs
        var out: [T] = []
        while out.count < count, !copy.isEmpty {
            let i = Int(rng.next() % UInt64(copy.count))
            out.append(copy.remove(at: i))
        }
        return out
    }

    var selfAlive: MemberUpdate { .alive(me, incarnation: incarnation, attributeVersion: attributeVersion) }

    // MARK: - Receiving

    mutating func receive(_ m: GossipMessage, from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        if from.nodeID == me.nodeID { counters.drop(.fromSelf); return }
        if culls[from.nodeID] != nil {
            counters.drop(.fromCulled)
            // Tell it, once in a while, so a culled node stops trying.
            if case .join = m, let c = culls[from.nodeID] { send(.gossip(updates: [.cull(c)]), to: .peer(from), into: &out) }
            return
        }
        if hasLeft { counters.drop(.afterLeave); return }
        heardFrom(from, now: now, into: &out)
        proveAlive(from.nodeID)
        switch m {
        case let .ping(seq, updates):
            notePing(from: from.nodeID, now: now)
            applyAll(updates, from: from, now: now, into: &out)
            let spare = GossipWire.maxDatagram - GossipWire.headerLength - 4 - 1
            send(.ack(seq: seq, updates: piggyback(spare: spare)), to: .peer(from), into: &out)
            keepLinkSymmetric(with: from, now: now, into: &out)
        case let .ack(seq, updates):
            applyAll(updates, from: from, now: now, into: &out)
            gotAck(seq, from: from, now: now, into: &out)
        case let .pingRequest(seq, target):
            relayProbe(seq: seq, target: target, requester: from, now: now, into: &out)
        case let .nack(seq):
            gotNack(seq, from: from)
        case let .gossip(updates):
            applyAll(updates, from: from, now: now, into: &out)
        case let .join(inc):
            handleJoin(from: from, incarnation: inc, now: now, into: &out)
        case let .joinReply(sample):
            addToActive(from, now: now, into: &out)
            integratePassive(sample, replacing: [])
        case let .forwardJoin(ttl, joiner):
            handleForwardJoin(ttl: ttl, joiner: joiner, from: from, now: now, into: &out)
        case let .neighbor(priority):
            handleNeighbour(from: from, priority: priority, now: now, into: &out)
        case let .neighborReply(accepted, sample):
            handleNeighbourReply(from: from, accepted: accepted, sample: sample, now: now, into: &out)
        case .disconnect:
            // It no longer holds us: no longer probed back either (`notePing`).
            pingedBy.removeAll { $0.peer == from.nodeID }
            if removeFromActive(from.nodeID, into: &out) {
                integratePassive([from], replacing: [])
            } else {
                recentDisconnects.removeAll { now >= $0.until || $0.peer == from.nodeID }
                recentDisconnects.append((from.nodeID, now + Self.disconnectMemory))
                if recentDisconnects.count > 16 { recentDisconnects.removeFirst() }
            }
        case let .shuffle(id, ttl, origin, sample):
            handleShuffle(id: id, ttl: ttl, origin: origin, sample: sample, from: from, now: now, into: &out)
        case let .shuffleReply(id, sample):
            if let p = pendingShuffle, p.id == id {
                pendingShuffle = nil
                integratePassive(sample, replacing: p.sent)
            } else if let r = shuffleReturns.removeValue(forKey: id) {
                shuffleReturnOrder.removeAll { $0 == id }
                if now < r.until { send(.shuffleReply(id: id, sample: sample), to: .peer(r.back), into: &out) }
            } else {
                counters.drop(.staleShuffle)
            }
        case let .query(q):
            handleQuery(q, from: from, now: now, into: &out)
        case let .queryAnswer(id, hops, pairs):
            if myQueries.contains(id) {
                out.append(.event(.queryAnswer(id: id, from: from.nodeID, address: from.address, hops: hops, pairs: pairs)))
            } else {
                counters.drop(.unknownSequence)
            }
        case let .digest(ex, buckets, cullCount, cullHash):
            handleDigest(exchange: ex, buckets: buckets, cullCount: cullCount, cullHash: cullHash, from: from, now: now, into: &out)
        case let .digestReply(ex, differing, cullsDiffer, busy):
            handleDigestReply(exchange: ex, differing: differing, cullsDiffer: cullsDiffer, busy: busy, from: from, now: now, into: &out)
        case .attributesRequest:
            sendReliable(.attributes(version: attributeVersion, attributes), to: from, into: &out)
        case let .delta(_, records, culls):
            // A big delta means we were far behind (a newcomer, a healed partition) and more may
            // follow: exchange again in a second rather than in `antiEntropyInterval`.
            synced = records.count < GossipWire.maxDeltaRecords / 2
            if !synced, let t = nextExchange, t > now + .seconds(1) { nextExchange = now + .seconds(1) }
            applyDelta(records: records, culls: culls, from: from, now: now, into: &out)
        case let .attributes(version, attrs):
            if var m = members[from.nodeID], version > m.heldAttributeVersion {
                m.attributes = attrs
                m.heldAttributeVersion = version
                if version > m.attributeVersion { m.attributeVersion = version }
                members[from.nodeID] = m
                out.append(.event(.attributesChanged(from.nodeID, attrs)))
            }
        }
    }

    /// Direct contact: refresh what we know of the sender's address and tell a sender we believe
    /// failed what we believe, so it refutes with a higher incarnation and the mesh heals.
    mutating func heardFrom(_ from: PeerEntry, now: Instant, into out: inout [GossipOutput]) {
        // The common case (an alive member at its known address) changes only `lastHeard`.
        if members.noteHeardAlive(from.nodeID, address: from.address, nanos: now.nanoseconds) { return }
        guard var m = members[from.nodeID] else { return }
        m.lastHeard = now
        if m.entry.address != from.address {
            m.entry.address = from.address
            out.append(.event(.memberAddressChanged(from.nodeID, from.address)))
        }
        var tell: MemberUpdate?
        if m.state != .alive, m.lastToldState.map({ now - $0 >= .seconds(1) }) ?? true {
            switch m.state {
            case .suspect: tell = .suspect(m.entry.peer, incarnation: m.incarnation, accuser: myTag)
            case .dead: tell = .dead(m.entry.peer, incarnation: m.incarnation)
            case .left: tell = .left(m.entry.peer, incarnation: m.incarnation)
            default: break
            }
            if tell != nil { m.lastToldState = now }
        }
        members[from.nodeID] = m
        if let tell { send(.gossip(updates: [tell]), to: .peer(from), into: &out) }
    }

    /// Smooths a round-trip sample into the member's RTT, which stretches our probe timeout for it
    /// (`probeTimeout(for:)`). Two kinds of sample are not round trips. An answer later than
    /// `longestRoundTrip` waited for something else: a ping to a member that had crashed waits in
    /// the session layer for the handshake, and is answered after the member restarts (in
    /// `gossip-churn` at 200 nodes, 10–18 s "round trips" made probe timeouts of 30–53 s and probe
    /// periods of a minute, during which the prober probed nobody; the member's next crash was
    /// then confirmed by none of its neighbours and declared after 8–20 s). It is dropped. And a
    /// sample under an eighth of the estimate shows the estimate is stale (a restart, starvation
    /// that ended): it replaces it rather than being averaged in at 1/8.
    mutating func noteRTT(_ id: NodeID, _ rtt: Duration) {
        let sample = rtt.nanoseconds
        guard sample <= longestRoundTrip else { counters.roundTripsDiscarded += 1; return }
        // Int64.min: no round trip measured yet.
        guard let old = members.rttNanos(of: id) else { return }
        members.setRTTNanos(id, old != .min && sample * 8 >= old ? (old * 7 + sample) / 8 : sample)
    }

    // MARK: - Commands

    mutating func apply(_ c: GossipCommand, now: Instant, into out: inout [GossipOutput]) {
        switch c {
        case let .join(addresses):
            for a in addresses where !contacts.contains(a) { contacts.append(a) }
            if started { tryJoin(now: now, into: &out) }
        case .leave:
            leave(now: now, into: &out)
        case let .setAttributes(a):
            guard !hasLeft else { return }
            attributes = a
            attributeVersion &+= 1
            queue.enqueue(selfAlive)
        case let .cull(record):
            _ = applyUpdate(.cull(record), from: nil, now: now, into: &out)
        case let .query(id, q, mode, hopLimit):
            startQuery(id: id, query: q, mode: mode, hopLimit: hopLimit, now: now, into: &out)
        case let .fetchAttributes(id):
            if var m = members[id], m.state == .alive || m.state == .suspect {
                m.requestedAttributeVersion = m.attributeVersion
                members[id] = m
                send(.attributesRequest(version: m.attributeVersion), to: .peer(m.entry), into: &out)
            }
        case let .resume(inc, version):
            guard !hasLeft else { return }
            // Saturating: a stored u32 maximum must not wrap to 0 and lose to every claim.
            let nextInc = inc == .max ? inc : inc + 1
            let nextVersion = version == .max ? version : version + 1
            guard nextInc > incarnation || nextVersion > attributeVersion else { return }
            incarnation = max(incarnation, nextInc)
            attributeVersion = max(attributeVersion, nextVersion)
            if started { queue.enqueue(selfAlive) }
        case let .restoreMembers(entries):
            joinThroughRestored = true
            for e in entries where e.nodeID != me.nodeID && culls[e.nodeID] == nil && !members.contains(e.nodeID) {
                guard members.count < config.maxMembers else { counters.drop(.tableFull); break }
                members[e.nodeID] = GossipMember(entry: e, state: .alive, incarnation: 0, attributeVersion: 0, stateSince: now)
            }
        }
    }

    mutating func leave(now: Instant, into out: inout [GossipOutput]) {
        guard !hasLeft else { return }
        let update = MemberUpdate.left(me.peer, incarnation: incarnation)
        // Tell the neighbours directly, then let the queue carry it further for a few rounds.
        queue.enqueue(update)
        for p in activeView + passiveView.prefix(config.gossipFanout) {
            send(.gossip(updates: [update]), to: .peer(p), into: &out)
        }
        for p in activeView { send(.disconnect, to: .peer(p), into: &out) }
        hasLeft = true
        probe = nil
        nextProbe = nil
        nextShuffle = nil
        nextExchange = nil
        nextDeadRetry = nil
        nextJoin = nil
    }
}
