import Channels
import MeshCore
import Sessions

/// The node state machine. Sans-IO: it owns no socket and reads no clock; each call takes an
/// input and the current instant and returns what the driver must do, in order. The libuv
/// runtime and the simulator both drive exactly this type.
public struct NodeCore {
    public let identity: PeerIdentity
    public let network: NetworkID
    public let timing: NodeTiming
    public internal(set) var counters = NodeCounters()
    public private(set) var members: [NodeID: Member] = [:]
    /// Seeds not yet resolved to a member, with the next instant to try them.
    public private(set) var seeds: [UnderlayAddress: Instant] = [:]

    private var rng: SeededGenerator
    private var nextSeq: UInt64 = 1
    private var pending: [UInt64: PendingProbe] = [:]
    private var roundRobin: [NodeID] = []
    private var roundRobinIndex = 0
    private var nextTick: Instant?
    private var configuredSeeds: Set<UnderlayAddress> = []
    /// Node ids of keys seen recently: a node id costs a BLAKE2b, a lookup costs a SipHash.
    private var identityCache: [KeyBytes: PeerIdentity] = [:]
    private var lastIdentity: PeerIdentity?
    /// Every byte between nodes travels inside these sessions; the node protocol sees only
    /// authenticated plaintext and the peer's verified key.
    public internal(set) var sessions: SessionManager
    /// Members added but never probed, oldest first: confirmed before round-robin probing.
    private var unprobed: [NodeID] = []
    /// How many members are suspect or dead, so steady-state rounds skip the scans for them.
    private var suspectCount = 0
    private var deadCount = 0
    private var nextForgetCheck = Instant.zero
    /// `timing.probeTimeout` in nanoseconds, for the per-probe arithmetic.
    private let probeTimeoutNanos: Int64
    /// Set only by the simulator, to play a byzantine node that lies about the mesh.
    public var sampleRewriter: (any SampleRewriter)?
    /// The session layer's next deadline, as it last reported it (it reports one with every call).
    private var sessionWake: Instant?
    /// The wake-up last asked of the driver, so it is asked again only when it changes.
    private var requestedWake: Instant?
    /// Reliable, ordered messages to members, carried as session plaintext (NodeChannels.swift).
    public internal(set) var channels: ChannelEndpoint<NodeID>
    /// The channel endpoint's next deadline, as it last reported it.
    var channelWake: Instant?

    struct PendingProbe: Sendable {
        var target: NodeID?
        var address: UnderlayAddress
        var sentAt: Instant
        /// When the probe counts as missed: the configured timeout, stretched for slow links
        /// (three smoothed round trips) and for a handshake that must complete first.
        var deadline: Instant
        /// Already counted as missed; kept a while so a late answer still proves the peer alive.
        var missed = false
    }

    /// How long a missed probe is remembered for a late answer.
    static let lateAnswerWindow: Duration = .seconds(30)
    /// When a node that contacted us last joined the member table; see `learn`.
    private var lastJoinedByContact = Instant.zero
    /// How long a half-full table waits for contacts before filling up from samples.
    static let samplePatience: Duration = .seconds(5)

    /// Fails only if the identity cannot serve as a Noise static key or the network key is not 32 bytes.
    public init(identity: NodeIdentity, network: NetworkID, networkKey: [UInt8], timing: NodeTiming = NodeTiming(),
                sessionTiming: SessionTiming = SessionTiming(), channelConfig: ChannelConfig = NodeCore.defaultChannelConfig,
                rng: SeededGenerator) throws {
        self.identity = identity.peer
        self.network = network
        self.timing = timing
        probeTimeoutNanos = timing.probeTimeout.nanoseconds
        self.rng = rng
        sessions = try SessionManager(identity: identity, networkKey: networkKey, timing: sessionTiming, rng: rng.derived(0x5e55))
        var channelConfig = channelConfig
        channelConfig.maxFrame = min(channelConfig.maxFrame, Self.maxChannelFrame)
        channels = ChannelEndpoint(config: channelConfig, rng: rng.derived(0xc4a7))
    }

    public var overlayAddress: OverlayAddress { OverlayAddress(network: network, node: identity.nodeID) }
    public var pendingProbes: Int { pending.count }

    /// Members sorted by node id: the order tables and reports print in.
    public var sortedMembers: [Member] { members.values.sorted { $0.nodeID < $1.nodeID } }

    public mutating func handle(_ input: NodeInput, now: Instant) -> [NodeOutput] {
        var out: [NodeOutput] = []
        // A datagram usually yields a send and a wake-up or event: no regrowth on the common path.
        out.reserveCapacity(4)
        switch input {
        case .start:
            runRound(now: now, into: &out)
        case .timer:
            // The driver's timer is spent: whatever happens, ask for the next one. Driver clocks
            // may fire a little early; then the same instant is asked for again.
            requestedWake = nil
            if let w = sessionWake, now >= w {
                sessionWake = nil
                absorb(sessions.tick(now: now), now: now, into: &out)
            }
            if let w = channelWake, now >= w {
                channelWake = nil
                absorb(channels.tick(now: now), now: now, into: &out)
            }
            if let t = nextTick, now >= t { runRound(now: now, into: &out) }
        case let .datagram(from, bytes):
            counters.datagramsIn += 1
            counters.bytesIn += UInt64(bytes.count)
            absorb(sessions.receive(bytes, from: from, now: now), now: now, into: &out)
        case let .command(command):
            apply(command, now: now, into: &out)
        }
        foldWake(into: &out)
        return out
    }

    /// Asks the driver for the earliest of the round, session and channel deadlines, once per change.
    mutating func foldWake(into out: inout [NodeOutput]) {
        // Runs once per datagram: no temporary arrays.
        var wake = nextTick
        if let w = sessionWake, wake.map({ w < $0 }) ?? true { wake = w }
        if let w = channelWake, wake.map({ w < $0 }) ?? true { wake = w }
        if let wake, wake != requestedWake {
            requestedWake = wake
            out.append(.wake(at: wake))
        }
    }

    /// Carries out what the session layer asked for and hands authenticated plaintext to the protocol.
    mutating func absorb(_ outputs: [SessionOutput], now: Instant, into out: inout [NodeOutput]) {
        for o in outputs {
            switch o {
            case let .send(to, bytes):
                counters.datagramsOut += 1
                counters.bytesOut += UInt64(bytes.count)
                out.append(.send(to: to, bytes: bytes))
            case let .deliver(from, peerKey, plaintext):
                receive(from: from, peerKey: peerKey, bytes: plaintext, now: now, into: &out)
            case let .established(peerKey, address):
                if let peer = cachedIdentity(peerKey) { out.append(.event(.sessionEstablished(peer.nodeID, address))) }
            case let .failed(address, reason):
                if reason == "from_self" {
                    // A seed that points at ourselves: stop pinging it.
                    counters.drop(.fromSelf)
                    seeds.removeValue(forKey: address)
                } else {
                    out.append(.event(.sessionFailed(address, reason: reason)))
                }
            case let .wake(at):
                sessionWake = at // folded into the node's single wake-up at the end of `handle`
            }
        }
    }

    // MARK: - Commands

    private mutating func apply(_ command: NodeCommand, now: Instant, into out: inout [NodeOutput]) {
        switch command {
        case let .addSeed(address):
            configuredSeeds.insert(address)
            if let id = roundRobin.first(where: { members[$0]?.address == address }) {
                members[id]?.configured = true
            } else {
                seeds[address] = now
            }
        case let .rememberPeer(peer, address):
            if peer.nodeID != identity.nodeID, members[peer.nodeID] == nil {
                addMember(peer, address: address, now: now, into: &out)
            }
        case let .probe(id):
            if let i = members.index(forKey: id) { sendProbe(to: members.values[i].address, target: id, now: now, into: &out) }
        case let .sendMessage(to, stream, bytes):
            switch queueMessage(bytes, stream: stream, to: to, now: now, into: &out) {
            case let .success(id): out.append(.event(.messageQueued(id, to: to, stream: stream)))
            case let .failure(error): out.append(.event(.messageRefused(to: to, stream: stream, error: error)))
            }
        }
    }

    // MARK: - Rounds

    private mutating func runRound(now: Instant, into out: inout [NodeOutput]) {
        expireProbes(now: now, into: &out)
        advanceSuspicions(now: now, into: &out)

        // Dictionaries iterate in a per-instance order; anything that decides what is sent walks a
        // sorted or explicitly ordered collection instead, so simulator runs repeat.
        for (address, due) in seeds.sorted(by: { $0.key < $1.key }) where due <= now {
            seeds[address] = now + timing.seedRetryInterval
            sendProbe(to: address, target: nil, now: now, into: &out)
        }

        // Members heard of but not yet heard from: confirm them first.
        var unconfirmed = 0
        while unconfirmed < timing.unconfirmedProbesPerTick, !unprobed.isEmpty {
            let id = unprobed.removeFirst()
            guard let m = members[id], m.state == .unknown, m.lastProbe == nil else { continue }
            sendProbe(to: m.address, target: m.nodeID, now: now, into: &out)
            unconfirmed += 1
        }

        // Suspects are probed every round, so a member that merely lost a few packets can answer
        // before its suspicion runs out.
        for id in roundRobin where suspectCount > 0 {
            guard let m = members[id], m.state == .suspect else { continue }
            if let last = m.lastProbe, now - last < timing.probeTimeout { continue }
            sendProbe(to: m.address, target: m.nodeID, now: now, into: &out)
        }

        probeRoundRobin(now: now, into: &out)

        nextTick = now + timing.tickInterval
    }

    private mutating func probeRoundRobin(now: Instant, into out: inout [NodeOutput]) {
        var sent = 0
        var examined = 0
        while sent < timing.probesPerTick, examined < roundRobin.count {
            if roundRobinIndex >= roundRobin.count {
                roundRobin.shuffle(using: &rng)
                roundRobinIndex = 0
            }
            let id = roundRobin[roundRobinIndex]
            roundRobinIndex += 1
            examined += 1
            guard let m = members[id] else { continue }
            if let last = m.lastProbe, now - last < timing.probeTimeout { continue }
            if m.state == .dead, let last = m.lastProbe, now - last < timing.deadRetryInterval { continue }
            sendProbe(to: m.address, target: id, now: now, into: &out)
            sent += 1
        }
    }

    private mutating func expireProbes(now: Instant, into out: inout [NodeOutput]) {
        let due = pending.filter { !$0.value.missed && now >= $0.value.deadline || now - $0.value.sentAt >= Self.lateAnswerWindow }
        for (seq, probe) in due.sorted(by: { $0.key < $1.key }) {
            if now - probe.sentAt >= Self.lateAnswerWindow {
                pending.removeValue(forKey: seq)
                if probe.missed { continue }
            } else {
                pending[seq]?.missed = true
            }
            counters.probesMissed += 1
            guard let id = probe.target, var m = members[id] else { continue }
            m.missedProbes += 1
            members[id] = m
            if m.state == .alive, m.missedProbes >= timing.suspectAfterMisses {
                setState(id, .suspect, now: now, into: &out)
            } else if m.state == .unknown, m.missedProbes >= timing.suspectAfterMisses {
                setState(id, .suspect, now: now, into: &out)
            }
        }
    }

    private mutating func advanceSuspicions(now: Instant, into out: inout [NodeOutput]) {
        let forgetting = deadCount > 0 && now >= nextForgetCheck
        if forgetting { nextForgetCheck = now + .seconds(60) }
        guard suspectCount > 0 || forgetting else { return }
        for id in roundRobin {
            guard let m = members[id] else { continue }
            switch m.state {
            case .suspect where now - m.stateSince >= timing.suspicionTimeout:
                setState(m.nodeID, .dead, now: now, into: &out)
            case .dead where !m.configured && now - m.stateSince >= timing.forgetDeadAfter:
                forget(m.nodeID, into: &out)
            default:
                break
            }
        }
    }

    private mutating func sendProbe(to address: UnderlayAddress, target: NodeID?, now: Instant, into out: inout [NodeOutput]) {
        let seq = nextSeq
        nextSeq &+= 1
        // Nanoseconds throughout: Duration arithmetic is 128-bit, and this runs for every probe.
        var waitNanos = probeTimeoutNanos
        var peerKey: [UInt8]?
        // One lookup, the row changed in place.
        if let target, let i = members.index(forKey: target) {
            let (key, rtt) = members.values[i].probed(at: now)
            peerKey = key
            // Three smoothed round trips, for slow links.
            if let rtt { waitNanos = max(waitNanos, rtt.nanoseconds &* 3) }
        }
        if peerKey.map({ !sessions.isEstablished(peerKey: $0, now: now) }) ?? true { waitNanos += probeTimeoutNanos }
        pending[seq] = PendingProbe(target: target, address: address, sentAt: now,
                                    deadline: Instant(nanoseconds: now.nanoseconds + waitNanos))
        counters.probesSent += 1
        send(PingWire.Message(kind: .ping, network: network, senderKey: identity.publicKey, seq: seq),
             to: address, peerKey: peerKey, now: now, into: &out)
    }

    /// Sends through the session layer: IK when the peer's key is known, XX for a bare address.
    private mutating func send(_ message: PingWire.Message, to address: UnderlayAddress, peerKey: [UInt8]?, now: Instant,
                               into out: inout [NodeOutput]) {
        absorb(sessions.send(PingWire.encode(message), to: address, peerKey: peerKey, now: now), now: now, into: &out)
    }

    // MARK: - Receiving

    private mutating func receive(from: UnderlayAddress, peerKey: [UInt8], bytes: [UInt8], now: Instant, into out: inout [NodeOutput]) {
        // The first plaintext byte names the protocol (Docs/encoding.md).
        switch bytes.first {
        case PingWire.magic[0]: break
        case ChannelWire.version:
            receiveChannelFrame(bytes, from: from, peerKey: peerKey, now: now, into: &out)
            return
        default:
            counters.drop(.unknownProtocol)
            return
        }
        let message: PingWire.Message
        switch PingWire.decode(bytes) {
        case let .failure(reason): counters.drop(reason); return
        case let .success(m): message = m
        }
        guard message.network == network else { counters.drop(.wrongNetwork); return }
        // The session proved who sent this; a message claiming another key is refused.
        guard message.senderKey == peerKey else { counters.drop(.keyMismatch); return }
        guard let sender = cachedIdentity(peerKey) else { counters.drop(.badKey); return }
        if sender.nodeID == identity.nodeID {
            // A seed that points at ourselves: stop pinging it.
            counters.drop(.fromSelf)
            seeds.removeValue(forKey: from)
            return
        }

        switch message.kind {
        case .ping:
            heardFrom(sender, at: from, now: now, into: &out)
            let reply = PingWire.Message(kind: .pong, network: network, senderKey: identity.publicKey,
                                         seq: message.seq, sample: sample(excluding: sender.nodeID))
            send(reply, to: from, peerKey: peerKey, now: now, into: &out)
        case .pong:
            guard let probe = pending.removeValue(forKey: message.seq),
                  probe.target == nil || probe.target == sender.nodeID else {
                counters.drop(.unexpectedPong)
                return
            }
            if probe.missed { counters.lateAnswers += 1 } else { counters.probesAnswered += 1 }
            if probe.target == nil { seeds.removeValue(forKey: probe.address) }
            let sampleNanos = now.nanoseconds - probe.sentAt.nanoseconds
            let sampleRTT = Duration.nanoseconds(sampleNanos)
            if let i = heardFrom(sender, at: from, now: now, into: &out) {
                let configured = !configuredSeeds.isEmpty && configuredSeeds.contains(probe.address)
                members.values[i].answered(after: sampleRTT, sampleNanos: sampleNanos, configured: configured)
            }
            out.append(.event(.probeAnswered(sender.nodeID, rtt: sampleRTT)))
            for entry in message.sample { learn(entry, now: now, into: &out) }
        }
    }

    mutating func cachedIdentity(_ key: [UInt8]) -> PeerIdentity? {
        // Most datagrams come from the peer of the one before; the session layer hands out the
        // same key array each time, so this compare is usually a pointer compare.
        if let last = lastIdentity, last.publicKey == key { return last }
        let k = KeyBytes(key)
        defer { lastIdentity = identityCache[k] }
        if let known = identityCache[k] { return known }
        guard let peer = PeerIdentity(publicKey: key) else { return nil }
        if identityCache.count >= 4 * timing.maxMembers + 64 { identityCache.removeAll(keepingCapacity: true) }
        identityCache[k] = peer
        return peer
    }

    /// Returns the member's index in the table (still valid after: only values change), nil
    /// when the table had no room for a new member.
    @discardableResult
    mutating func heardFrom(_ peer: PeerIdentity, at address: UnderlayAddress, now: Instant,
                            into out: inout [NodeOutput]) -> Dictionary<NodeID, Member>.Index? {
        let id = peer.nodeID
        var index = members.index(forKey: id)
        if index == nil {
            guard addMember(peer, address: address, now: now, into: &out) else { return nil }
            lastJoinedByContact = now
            index = members.index(forKey: id)
        }
        guard let i = index else { return nil }
        let (moved, wasAlive) = members.values[i].heard(from: address, at: now)
        if moved { out.append(.event(.memberAddressChanged(id, address))) }
        guard !wasAlive else { return i }
        setState(id, .alive, now: now, into: &out)
        return members.index(forKey: id)
    }

    private mutating func learn(_ entry: PingWire.SampleEntry, now: Instant, into out: inout [NodeOutput]) {
        // A full table learns nothing from samples: checked first, since a node id costs a BLAKE2b.
        guard members.count < timing.maxMembers else { return }
        // Samples fill half the table; the rest waits for nodes that contact us, so probing is
        // mostly mutual and one session (one handshake) serves both directions. Once no new node
        // has contacted us for a while, samples fill the rest.
        if members.count >= (timing.maxMembers + 1) / 2, now - lastJoinedByContact < Self.samplePatience { return }
        guard let peer = PeerIdentity(publicKey: entry.publicKey), peer.nodeID != identity.nodeID,
              members[peer.nodeID] == nil, !entry.address.isUnspecified, entry.address.port != 0 else { return }
        _ = addMember(peer, address: entry.address, now: now, into: &out)
    }

    @discardableResult
    private mutating func addMember(_ peer: PeerIdentity, address: UnderlayAddress, now: Instant, into out: inout [NodeOutput]) -> Bool {
        guard members.count < timing.maxMembers else {
            counters.membersRefusedTableFull += 1
            return false
        }
        members[peer.nodeID] = Member(identity: peer, address: address, state: .unknown, rtt: nil, lastHeard: nil,
                                      stateSince: now, configured: configuredSeeds.contains(address))
        roundRobin.insert(peer.nodeID, at: Int(rng.next() % UInt64(roundRobin.count + 1)))
        unprobed.append(peer.nodeID)
        out.append(.event(.memberAdded(peer.nodeID, address)))
        return true
    }

    private mutating func forget(_ id: NodeID, into out: inout [NodeOutput]) {
        if let old = members.removeValue(forKey: id) { count(old.state, by: -1) }
        if let i = roundRobin.firstIndex(of: id) {
            roundRobin.remove(at: i)
            if i < roundRobinIndex { roundRobinIndex -= 1 }
        }
        out.append(.event(.memberForgotten(id)))
    }

    private mutating func setState(_ id: NodeID, _ state: MemberState, now: Instant, into out: inout [NodeOutput]) {
        guard var m = members[id], m.state != state else { return }
        let old = m.state
        count(old, by: -1)
        count(state, by: 1)
        m.state = state
        m.stateSince = now
        members[id] = m
        // A member that stopped answering may hold no keys for our session any more (it
        // restarted, or the two sides' key rotation went astray): its next probe starts a
        // fresh handshake instead of talking into a session nobody holds.
        if state == .suspect || state == .dead { sessions.forget(peerKey: m.identity.publicKey) }
        out.append(.event(.memberStateChanged(id, from: old, to: state)))
        // A dead member's pending messages fail now rather than after the channel's own timeout.
        if state == .dead { resetChannel(id, now: now, into: &out) }
    }

    private mutating func count(_ state: MemberState, by delta: Int) {
        switch state {
        case .suspect: suspectCount += delta
        case .dead: deadCount += delta
        case .unknown, .alive: break
        }
    }

    /// A random sample of alive members, so peers learn peers of peers: a random starting point
    /// in the (shuffled) round-robin order, then the next alive ones.
    private mutating func sample(excluding excluded: NodeID) -> [PingWire.SampleEntry] {
        let limit = min(timing.sampleSize, PingWire.maxSample)
        let n = roundRobin.count
        guard limit > 0, n > 0 else { return [] }
        var picked: [PingWire.SampleEntry] = []
        let start = Int(rng.next() % UInt64(n))
        // Look at a bounded window, so a table of mostly dead members costs no more than a few lookups.
        for k in 0..<min(n, limit * 4) {
            let id = roundRobin[(start + k) % n]
            guard id != excluded, let m = members[id], m.state == .alive else { continue }
            picked.append(PingWire.SampleEntry(publicKey: m.identity.publicKey, address: m.address))
            if picked.count == limit { break }
        }
        if var liar = sampleRewriter {
            picked = liar.rewrite(picked, for: excluded)
            sampleRewriter = liar
        }
        return picked
    }
}

/// A seam for simulating byzantine nodes: a compromised node holds its own keys, so its lies
/// must be told before encryption. It rewrites the member sample a node tells one peer.
/// Real nodes never have one.
public protocol SampleRewriter {
    mutating func rewrite(_ sample: [PingWire.SampleEntry], for peer: NodeID) -> [PingWire.SampleEntry]
}

/// A public key as a dictionary key, hashed by its first 8 bytes: keys are uniformly random
/// points, and SipHash over all 32 bytes a byte at a time costs more than the rest of the lookup.
struct KeyBytes: Hashable {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func == (a: KeyBytes, b: KeyBytes) -> Bool { a.bytes == b.bytes }

    func hash(into hasher: inout Hasher) {
        guard bytes.count >= 8 else { hasher.combine(bytes); return }
        hasher.combine(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }
}
