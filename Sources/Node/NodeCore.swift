import Channels
import Gossip
import MeshCore
import Sessions

/// The node state machine. Sans-IO: it owns no socket and reads no clock; each call takes an
/// input and the current instant and returns what the driver must do, in order. The libuv
/// runtime and the simulator both drive exactly this type.
///
/// Four protocols share the node's Noise sessions, told apart by their first plaintext bytes
/// (Docs/encoding.md): gossip (`iG`, the membership protocol: Sources/Gossip), channels (0x01,
/// users' reliable messages: NodeChannels.swift), gossip's own channel (0x02, its large messages:
/// GossipChannel.swift) and ping (`iF`, a bare request/answer that `bench loop`
/// and `NodeCommand.probe` use; membership does not depend on it).
public struct NodeCore {
    public let identity: PeerIdentity
    public let network: NetworkID
    public let timing: NodeTiming
    public internal(set) var counters = NodeCounters()
    /// Membership, failure detection and discovery. The node carries its datagrams over sessions
    /// and its large messages over a channel stream; the core never sees an address it must trust.
    public internal(set) var gossip: GossipCore
    /// Every byte between nodes travels inside these sessions; the protocols see only
    /// authenticated plaintext and the peer's verified key.
    public internal(set) var sessions: SessionManager
    /// Reliable, ordered messages to members, carried as session plaintext (NodeChannels.swift).
    public internal(set) var channels: ChannelEndpoint<NodeID>
    /// Gossip's own reliable messages, on a separate endpoint (GossipChannel.swift).
    public internal(set) var gossipChannels: ChannelEndpoint<NodeID>
    var gossipChannelWake: Instant?
    /// When each gossip channel connection was last used, to close idle ones.
    var gossipChannelUse: [NodeID: Instant] = [:]
    var nextGossipChannelSweep = Instant.zero
    /// Set only by the simulator, to play a byzantine node that lies about the mesh.
    public var gossipRewriter: (any GossipRewriter)?

    /// Node ids of keys seen recently: a node id costs a BLAKE2b, a lookup costs a SipHash.
    private var identityCache: [KeyBytes: PeerIdentity] = [:]
    private var lastIdentity: PeerIdentity?
    private var nextSeq: UInt64 = 1
    /// Ping probes in flight (`NodeCommand.probe`), by sequence number.
    private var pending: [UInt64: PendingProbe] = [:]
    private var started = false
    /// This node's ping and pong as sent (PingWire.bare): only the sequence number changes, so
    /// each send rewrites it in place instead of encoding a new message.
    private var pingBytes: [UInt8]
    private var pongBytes: [UInt8]
    /// The session layer's next deadline, as it last reported it (it reports one with every call).
    private var sessionWake: Instant?
    /// The gossip core's next deadline.
    private var gossipWake: Instant?
    /// The channel endpoint's next deadline, as it last reported it.
    var channelWake: Instant?
    /// The wake-up last asked of the driver, so it is asked again only when it changes.
    private var requestedWake: Instant?
    /// Peers that sent us gossip over a channel or that gossip sent to over one, when they are
    /// not (yet) members: where their channel frames go, and who a delivered message came from.
    var reliableRoutes: [NodeID: PeerEntry] = [:]
    /// Configured seeds (masters, `--peer`) with no alive member at their address yet, in order.
    /// Gossip stops retrying its join once it has any neighbour, and a node that others joined
    /// first would then never reach its own seed (a join lost to the handshake race leaves the
    /// mesh in pieces); the node asks again until each seed has answered.
    public private(set) var unansweredSeeds: [UnderlayAddress] = []
    private var seedRetryAt: Instant?
    /// When a culled sender was last sent its cull (`cullNoticeInterval`).
    private var lastCullNotice: Instant?
    /// Peers whose channel timed out, reset once the endpoint's outputs are carried out.
    var connectionsToReset: [NodeID] = []

    struct PendingProbe: Sendable {
        var target: NodeID
        var sentAt: Instant
    }

    /// How long an unanswered ping probe is remembered.
    static let probeMemory: Duration = .seconds(30)
    static let cullNoticeInterval: Duration = .seconds(1)

    /// `address` is where others reach this node (its bound address); gossip tells it to members
    /// that have not heard from us directly. Fails only if the identity cannot serve as a Noise
    /// static key or the network key is not 32 bytes. `peerIdentities`: a table shared by all the
    /// cores of one simulation (see `PeerIdentities`); nil for a real node.
    public init(identity: NodeIdentity, network: NetworkID, networkKey: [UInt8], address: UnderlayAddress,
                timing: NodeTiming = NodeTiming(), discovery: Discovery = Discovery(),
                sessionTiming: SessionTiming = SessionTiming(), channelConfig: ChannelConfig = NodeCore.defaultChannelConfig,
                peerIdentities: PeerIdentities? = nil, rng: SeededGenerator) throws {
        self.identity = identity.peer
        self.network = network
        self.timing = timing
        pingBytes = PingWire.bare(.ping, network: network, senderKey: identity.peer.publicKey)
        pongBytes = PingWire.bare(.pong, network: network, senderKey: identity.peer.publicKey)
        sessions = try SessionManager(identity: identity, networkKey: networkKey, timing: sessionTiming, rng: rng.derived(0x5e55))
        var channelConfig = channelConfig
        channelConfig.maxFrame = min(channelConfig.maxFrame, Self.maxChannelFrame)
        channels = ChannelEndpoint(config: channelConfig, rng: rng.derived(0xc4a7))
        gossipChannels = ChannelEndpoint(config: Self.gossipChannelConfig, rng: rng.derived(0x6c4a))
        gossip = GossipCore(me: PeerEntry(peer: identity.peer, address: address),
                            config: timing.gossipConfig(network: network, discovery: discovery), rng: rng.derived(0x6055),
                            identities: peerIdentities)
        if !discovery.attributes.pairs.isEmpty {
            _ = gossip.handle(.command(.setAttributes(discovery.attributes)), now: .zero)
        }
    }

    public var overlayAddress: OverlayAddress { OverlayAddress(network: network, node: identity.nodeID) }
    public var pendingProbes: Int { pending.count }
    /// The member table (gossip's), by node id.
    public var members: MemberTable { gossip.members }
    /// Members sorted by node id: the order tables and reports print in.
    public var sortedMembers: [Member] { gossip.sortedMembers }

    public mutating func handle(_ input: NodeInput, now: Instant) -> [NodeOutput] {
        var out: [NodeOutput] = []
        // A datagram usually yields a send and a wake-up or event: no regrowth on the common path.
        out.reserveCapacity(4)
        switch input {
        case .start:
            started = true
            absorb(gossip.handle(.start, now: now), now: now, into: &out)
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
            if let w = gossipChannelWake, now >= w {
                gossipChannelWake = nil
                absorbGossipChannel(gossipChannels.tick(now: now), now: now, into: &out)
            }
            if let w = gossipWake, now >= w {
                gossipWake = nil
                absorb(gossip.handle(.timer, now: now), now: now, into: &out)
                expireProbes(now: now, into: &out)
                closeIdleGossipChannels(now: now, into: &out)
            }
            if let w = seedRetryAt, now >= w { retrySeeds(now: now, into: &out) }
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

    /// Asks the driver for the earliest of the gossip, session and channel deadlines, once per change.
    mutating func foldWake(into out: inout [NodeOutput]) {
        // Runs once per datagram: no temporary arrays.
        var wake = gossipWake
        if let w = seedRetryAt, wake.map({ w < $0 }) ?? true { wake = w }
        if let w = sessionWake, wake.map({ w < $0 }) ?? true { wake = w }
        if let w = channelWake, wake.map({ w < $0 }) ?? true { wake = w }
        if let w = gossipChannelWake, wake.map({ w < $0 }) ?? true { wake = w }
        if let wake, wake != requestedWake {
            requestedWake = wake
            out.append(.wake(at: wake))
        }
    }

    /// Carries out what the session layer asked for and hands authenticated plaintext to the protocols.
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
                    // A seed that points at ourselves: stop asking it.
                    counters.drop(.fromSelf)
                    unansweredSeeds.removeAll { $0 == address }
                } else {
                    out.append(.event(.sessionFailed(address, reason: reason)))
                }
            case let .wake(at):
                sessionWake = at // folded into the node's single wake-up at the end of `handle`
            }
        }
    }

    /// Carries out what the gossip core asked for: datagrams over sessions (IK to a known peer's
    /// key, XX to a bare address), large messages over the gossip channel stream, events mapped.
    mutating func absorb(_ outputs: [GossipOutput], now: Instant, into out: inout [NodeOutput]) {
        for o in outputs {
            switch o {
            case let .send(.peer(entry), bytes):
                let b = rewritten(bytes, for: entry.nodeID)
                let opened = sessionsStarted
                absorb(sessions.send(b, to: entry.address, peerKey: entry.peer.publicKey, now: now), now: now, into: &out)
                noteSessionOpened(since: opened, bytes)
            case let .send(.address(address), bytes):
                let b = rewritten(bytes, for: nil)
                let opened = sessionsStarted
                absorb(sessions.send(b, to: address, peerKey: nil, now: now), now: now, into: &out)
                noteSessionOpened(since: opened, bytes)
            case let .sendReliable(entry, bytes):
                let opened = sessionsStarted
                sendGossipReliable(bytes, to: entry, now: now, into: &out)
                noteSessionOpened(since: opened, bytes)
            case let .wake(at):
                gossipWake = at // folded into the node's single wake-up at the end of `handle`
            case let .event(event):
                report(event, now: now, into: &out)
            }
        }
    }

    /// Counts the handshake a gossip send just started, under the message's purpose (a rekey of
    /// an existing session is not a new session). Two integer compares when none started.
    private var sessionsStarted: UInt64 { sessions.counters.handshakesInitiated &- sessions.counters.rekeys }

    private mutating func noteSessionOpened(since initiated: UInt64, _ bytes: [UInt8]) {
        guard sessionsStarted != initiated else { return }
        counters.sessionsOpened[gossip.purpose(ofSent: bytes).rawValue, default: 0] += 1
    }

    private mutating func report(_ event: GossipEvent, now: Instant, into out: inout [NodeOutput]) {
        switch event {
        case let .memberJoined(id, address):
            out.append(.event(.memberAdded(id, address)))
        case let .memberStateChanged(id, from, to, incarnation):
            if to == .dead || to == .left || to == .culled, let key = gossip.members[id]?.entry.peer.publicKey {
                // A member declared dead may hold no keys for our session any more (it restarted,
                // or the two sides' key rotation went astray): the next message starts a fresh
                // handshake instead of talking into a session nobody holds. A culled key's session
                // ends here and its plaintext is refused from now on. Not on `suspect`: suspicions
                // are hearsay about members we may be talking to fine, and under loss they are
                // frequent; forgetting the session on one side only made the other side's
                // datagrams undecodable (`unknown_index`), which raised more suspicions (at 1,000
                // nodes with 10 % loss the simulator saw 66,000 false deaths and 26 KB/s a node).
                sessions.forget(peerKey: key)
            }
            out.append(.event(.memberStateChanged(id, from: from, to: to, incarnation: incarnation)))
            // Pending messages to a member that is gone fail now rather than after the channel's own timeout.
            if to == .dead || to == .left || to == .culled {
                resetChannel(id, now: now, into: &out)
                closeGossipChannel(id, now: now, into: &out)
            }
        case let .memberAddressChanged(id, address):
            out.append(.event(.memberAddressChanged(id, address)))
        case let .memberForgotten(id):
            out.append(.event(.memberForgotten(id)))
        default:
            out.append(.event(.membership(event)))
        }
    }

    private mutating func rewritten(_ bytes: [UInt8], for peer: NodeID?) -> [UInt8] {
        guard var liar = gossipRewriter, case let .success(m) = GossipWire.decode(bytes) else { return bytes }
        let lie = liar.rewrite(m, for: peer)
        gossipRewriter = liar
        return GossipWire.encode(lie)
    }

    mutating func rememberRoute(_ entry: PeerEntry) {
        // Bounded: routes are only for peers outside the table, briefly.
        if reliableRoutes.count >= 4096 { reliableRoutes.removeAll(keepingCapacity: true) }
        reliableRoutes[entry.nodeID] = entry
    }

    // MARK: - Commands

    private mutating func apply(_ command: NodeCommand, now: Instant, into out: inout [NodeOutput]) {
        switch command {
        case let .addSeed(address):
            if address != gossip.me.address, !unansweredSeeds.contains(address) {
                unansweredSeeds.append(address)
                if seedRetryAt == nil { seedRetryAt = now + timing.joinRetryInterval }
            }
            absorb(gossip.handle(.command(.join([address])), now: now), now: now, into: &out)
        case let .rememberPeer(peer, address):
            if peer.nodeID != identity.nodeID {
                absorb(gossip.handle(.command(.join([address])), now: now), now: now, into: &out)
            }
        case let .probe(id):
            guard let m = gossip.members[id] else { return }
            let seq = nextSeq
            nextSeq &+= 1
            pending[seq] = PendingProbe(target: id, sentAt: now)
            counters.probesSent += 1
            PingWire.setSeq(seq, in: &pingBytes)
            let opened = sessionsStarted
            absorb(sessions.send(pingBytes, to: m.entry.address, peerKey: m.entry.peer.publicKey, now: now), now: now, into: &out)
            if sessionsStarted != opened { counters.sessionsOpened["node_probe", default: 0] += 1 }
        case let .membership(command):
            absorb(gossip.handle(.command(command), now: now), now: now, into: &out)
        case let .beaconHeard(address):
            absorb(gossip.handle(.beaconHeard(address), now: now), now: now, into: &out)
        case let .sendMessage(to, stream, bytes):
            switch queueMessage(bytes, stream: stream, to: to, now: now, into: &out) {
            case let .success(id): out.append(.event(.messageQueued(id, to: to, stream: stream)))
            case let .failure(error): out.append(.event(.messageRefused(to: to, stream: stream, error: error)))
            }
        }
    }

    /// Joins again through seeds that no alive member answers from yet; stops once all have.
    private mutating func retrySeeds(now: Instant, into out: inout [NodeOutput]) {
        seedRetryAt = nil
        guard started, !gossip.hasLeft else { return }
        var answered: [UnderlayAddress] = []
        for m in gossip.members.values where m.state == .alive && unansweredSeeds.contains(m.entry.address) {
            answered.append(m.entry.address)
        }
        unansweredSeeds.removeAll { answered.contains($0) }
        guard !unansweredSeeds.isEmpty else { return }
        absorb(gossip.handle(.command(.join(unansweredSeeds)), now: now), now: now, into: &out)
        seedRetryAt = now + timing.joinRetryInterval
    }

    private mutating func expireProbes(now: Instant, into out: inout [NodeOutput]) {
        guard !pending.isEmpty else { return }
        for (seq, p) in pending.sorted(by: { $0.key < $1.key }) where now - p.sentAt >= Self.probeMemory {
            pending.removeValue(forKey: seq)
            counters.probesMissed += 1
        }
    }

    // MARK: - Receiving

    private mutating func receive(from: UnderlayAddress, peerKey: [UInt8], bytes: [UInt8], now: Instant, into out: inout [NodeOutput]) {
        guard let sender = cachedIdentity(peerKey) else { counters.drop(.badKey); return }
        // A culled node is refused whatever it sends: its session is not kept either.
        if gossip.culls[sender.nodeID] != nil {
            counters.drop(.culled)
            // Tell it why over the session it just used (its last use), at most once per interval
            // across all culled senders (bounded work).
            if lastCullNotice.map({ now - $0 >= Self.cullNoticeInterval }) ?? true {
                lastCullNotice = now
                absorb(gossip.tellCulled(PeerEntry(peer: sender, address: from)), now: now, into: &out)
            }
            sessions.forget(peerKey: peerKey)
            return
        }
        // The first plaintext bytes name the protocol (Docs/encoding.md).
        switch bytes.first {
        case ChannelWire.version:
            receiveChannelFrame(bytes, from: from, sender: sender, now: now, into: &out)
        case Self.gossipChannelPrefix:
            receiveGossipChannelFrame(bytes, from: from, sender: sender, now: now, into: &out)
        case GossipWire.magic[0] where bytes.count >= 2 && bytes[1] == GossipWire.magic[1]:
            absorb(gossip.handle(.received(from: PeerEntry(peer: sender, address: from), bytes: bytes), now: now), now: now, into: &out)
        case PingWire.magic[0]:
            receivePing(bytes, from: from, sender: sender, now: now, into: &out)
        default:
            counters.drop(.unknownProtocol)
        }
    }

    private mutating func receivePing(_ bytes: [UInt8], from: UnderlayAddress, sender: PeerIdentity, now: Instant, into out: inout [NodeOutput]) {
        let kind: PingWire.Kind, seq: UInt64
        // The session proved who sent this; a message claiming another key is refused.
        if let bare = PingWire.decodeBare(bytes, network: network, senderKey: sender.publicKey) {
            (kind, seq) = bare // what nodes send, checked in place
        } else {
            let message: PingWire.Message
            switch PingWire.decode(bytes) {
            case let .failure(reason): counters.drop(reason); return
            case let .success(m): message = m
            }
            guard message.network == network else { counters.drop(.wrongNetwork); return }
            guard message.senderKey == sender.publicKey else { counters.drop(.keyMismatch); return }
            (kind, seq) = (message.kind, message.seq)
        }
        if sender.nodeID == identity.nodeID { counters.drop(.fromSelf); return }
        switch kind {
        case .ping:
            PingWire.setSeq(seq, in: &pongBytes)
            absorb(sessions.send(pongBytes, to: from, peerKey: sender.publicKey, now: now), now: now, into: &out)
        case .pong:
            guard let probe = pending.removeValue(forKey: seq), probe.target == sender.nodeID else {
                counters.drop(.unexpectedPong)
                return
            }
            counters.probesAnswered += 1
            let rtt = now - probe.sentAt
            absorb(gossip.handle(.rttSample(sender.nodeID, rtt), now: now), now: now, into: &out)
            out.append(.event(.probeAnswered(sender.nodeID, rtt: rtt)))
        }
    }

    mutating func cachedIdentity(_ key: [UInt8]) -> PeerIdentity? {
        // Most datagrams come from the peer of the one before; the session layer hands out the
        // same key array each time, so this compare is usually a pointer compare.
        if let last = lastIdentity, last.publicKey == key { return last }
        let k = KeyBytes(key)
        if let known = identityCache[k] {
            lastIdentity = known
            return known
        }
        guard let peer = PeerIdentity(publicKey: key) else { lastIdentity = nil; return nil }
        if identityCache.count >= 65536 { identityCache.removeAll(keepingCapacity: true) }
        identityCache[k] = peer
        lastIdentity = peer
        return peer
    }
}

/// A seam for simulating byzantine nodes: a compromised node holds its own keys, so its lies
/// must be told before encryption. It rewrites the gossip messages a node sends (to `peer`, or
/// to a bare address when nil). Real nodes never have one.
public protocol GossipRewriter {
    mutating func rewrite(_ message: GossipMessage, for peer: NodeID?) -> GossipMessage
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
