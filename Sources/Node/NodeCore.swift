import Channels
import Gossip
import MeshCore
import NodeService
import Sessions

/// The node state machine: a router around services. Sans-IO: it owns no socket and reads no
/// clock; each call takes an input and the current instant and returns what the driver must do,
/// in order. The libuv runtime and the simulator both drive exactly this type.
///
/// Every protocol is a `NodeService` (Sources/NodeService): gossip (`iG`, the membership protocol,
/// GossipService.swift), ping (`iF`, PingService.swift) and users' channels (0x01,
/// ChannelService.swift). The node keeps a table from protocol id (the first plaintext bytes,
/// Docs/encoding.md) to service, one path out to the Noise sessions, one reliable stream that any
/// service may send large messages on (prefix 0x02, ReliableStream.swift), and one wake: the
/// earliest deadline of the services, the sessions and the stream. Services never call each other:
/// they emit typed commands, which the node hands to the service that takes them, and the
/// membership service's changes (member up, down, culled), which the node tells every other service.
public struct NodeCore {
    public let identity: PeerIdentity
    public let network: NetworkID
    public let timing: NodeTiming
    /// The router's own counters; `counters` adds the services' to them.
    var own = NodeCounters()
    /// Every byte between nodes travels inside these sessions; the services see only
    /// authenticated plaintext and the peer identity the sessions proved.
    public let sessions: SessionManager
    /// The membership service (gossip): the directory the other services read, and the source
    /// of membership changes. It has its own slot (`membershipSlot`) rather than a table row so the
    /// others can read it while one of them runs.
    public internal(set) var membership: GossipService
    /// The other services, in the order they were added.
    var services: [any NodeService<NodeCommand, NodeEvent>] = []
    /// Each service's deadline as it was after its last input (a service changes only when it
    /// runs), so folding the wake reads this array instead of opening every service.
    private var serviceDeadlines: [Instant?] = []
    /// Protocol id → slot (`membershipSlot`, or an index into `services`), in the order added.
    private(set) var routes: [(id: ProtocolID, slot: Int)] = []
    /// The node's reliable stream (ReliableStream.swift): large messages of any service.
    public internal(set) var reliable: ChannelEndpoint<NodeID>
    var reliableWake: Instant?
    /// Counts the times `absorbReliable` set `reliableWake`, so an outer call sees a nested one's newer wake.
    var reliableWakeEpoch: UInt64 = 0
    /// When each reliable connection was last used, to close idle ones.
    var reliableUse: [NodeID: Instant] = [:]
    var nextReliableSweep = Instant.zero
    /// Peers we exchanged reliable messages with that are not (yet) members: where their frames
    /// go, and who a delivered message came from.
    var reliableRoutes: [NodeID: ProvenPeer] = [:]
    /// Each service's `reliableUse`, by slot (read once, when it is added).
    var reliableUses: [ReliableUse] = []
    /// Reliable messages of services told their outcomes, by the stream's message id: the
    /// sender's slot, the peer and the bytes (the stream holds the same buffer until acknowledged).
    var reliableTracked: [MessageID: (slot: Int, to: NodeID, bytes: [UInt8])] = [:]

    /// The session layer's next deadline, as it last reported it (it reports one with every call).
    private var sessionWake: Instant?
    /// The wake-up last asked of the driver, so it is asked again only when it changes.
    private var requestedWake: Instant?

    static let membershipSlot = -1
    /// Per slot of `services`: the service's frames leave as bulk (`NodeService.sendsBulk`,
    /// `NodeOutput.send`) and prove their sender alive to membership.
    private var bulkSlots: [Bool] = []

    /// Set by a driver whose disk makes a batch durable the moment it is handed over (the
    /// simulator's fault-free disk, test pumps): the node answers each `.persist` with
    /// `.persisted(.durable)` itself, in the same call, and the driver only stores the batch and
    /// carries out its `then`. A driver with a real or a faulty disk leaves it off and answers
    /// `.persisted` when the write completes.
    public var persistsCompleteAtOnce = false
    /// Set by a driver that runs heavy work on the node's own thread of time (the simulator): the
    /// node runs each `.offload` job at once, answers `.offloaded` in the same call, and adds the
    /// job's `cost` to `counters.offloadCost` for the driver to charge its virtual CPU.
    public var offloadsRunInline = false

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
        sessions = try SessionManager(identity: identity, networkKey: networkKey, timing: sessionTiming, rng: rng.derived(0x5e55))
        reliable = ChannelEndpoint(config: Self.reliableConfig, rng: rng.derived(0x6c4a))
        var gossip = GossipCore(me: PeerEntry(peer: identity.peer, address: address),
                                config: timing.gossipConfig(network: network, discovery: discovery), rng: rng.derived(0x6055),
                                identities: peerIdentities)
        if !discovery.attributes.pairs.isEmpty {
            _ = gossip.handle(.command(.setAttributes(discovery.attributes)), now: .zero)
        }
        membership = GossipService(core: gossip, joinRetryInterval: timing.joinRetryInterval, peerSnapshotInterval: timing.peerSnapshotInterval)
        routes = membership.protocolIDs.map { ($0, Self.membershipSlot) }
        try add(PingService(me: identity.peer, network: network))
        try add(ChannelService(me: identity.nodeID, config: channelConfig, rng: rng.derived(0xc4a7)))
    }

    /// Adds a service: its protocol ids join the routing table. Fails if one clashes with a
    /// service already there (equal, or one a prefix of the other) or with the reliable stream's.
    public mutating func add(_ service: some NodeService<NodeCommand, NodeEvent>) throws {
        for id in service.protocolIDs {
            let clash = id.first == Self.reliablePrefix
                || routes.contains { $0.id.first == id.first && ($0.id.second == nil || id.second == nil || $0.id.second == id.second) }
            if clash { throw ServiceClash(id: id) }
        }
        services.append(service)
        serviceDeadlines.append(service.deadline)
        bulkSlots.append(service.sendsBulk)
        reliableUses.append(service.reliableUse)
        for id in service.protocolIDs { routes.append((id, services.count - 1)) }
    }

    public var overlayAddress: OverlayAddress { OverlayAddress(network: network, node: identity.nodeID) }
    /// The gossip core (the membership service's state machine).
    public var gossip: GossipCore { _read { yield membership.core } }
    /// The member table (gossip's), by node id.
    public var members: MemberTable { membership.core.members }
    /// Members sorted by node id: the order tables and reports print in.
    public var sortedMembers: [Member] { membership.core.sortedMembers }
    public var unansweredSeeds: [UnderlayAddress] { membership.unansweredSeeds }
    /// Set only by the simulator, to play a byzantine node that lies about the mesh.
    public var gossipRewriter: (any GossipRewriter)? {
        get { membership.rewriter }
        set { membership.rewriter = newValue }
    }

    /// A service of this type, as it is now (a copy: for reading).
    public func service<S: NodeService>(_ type: S.Type) -> S? {
        for s in services { if let t = s as? S { return t } }
        return nil
    }

    public mutating func handle(_ input: consuming NodeInput, now: Instant) -> [NodeOutput] {
        var out: [NodeOutput] = []
        // A datagram usually yields a send and a wake-up or event: no regrowth on the common path.
        out.reserveCapacity(4)
        switch consume input {
        case let .datagram(from, bytes):
            own.datagramsIn += 1
            own.bytesIn += UInt64(bytes.count)
            absorb(sessions.receive(bytes, from: from, now: now), now: now, into: &out)
        case .timer:
            // The driver's timer is spent: whatever happens, ask for the next one. Driver clocks
            // may fire a little early; then the same instant is asked for again.
            requestedWake = nil
            if let w = sessionWake, now >= w {
                sessionWake = nil
                absorb(sessions.tick(now: now), now: now, into: &out)
            }
            for slot in services.indices where serviceDeadlines[slot].map({ now >= $0 }) ?? false {
                run(slot, .timer, now: now, into: &out)
            }
            if let w = reliableWake, now >= w {
                reliableWake = nil
                absorbReliable(reliable.tick(now: now), now: now, into: &out)
            }
            if let w = membership.deadline, now >= w {
                // Idle reliable connections are swept on gossip's own rounds.
                let round = membership.roundDue(now)
                run(Self.membershipSlot, .timer, now: now, into: &out)
                if round { closeIdleReliable(now: now, into: &out) }
            }
        case .start:
            run(Self.membershipSlot, .start, now: now, into: &out)
            for slot in services.indices { run(slot, .start, now: now, into: &out) }
        case let .command(command):
            self.command(command, from: nil, now: now, into: &out)
        case let .persisted(ticket, outcome):
            if let slot = slot(of: ticket.service) { run(slot, .persisted(ticket, outcome), now: now, into: &out) }
        case let .offloaded(ticket, outcome):
            if let slot = slot(of: ticket.service) { run(slot, .offloaded(ticket, outcome), now: now, into: &out) }
        case let .restored(rows):
            run(Self.membershipSlot, .restored(rows), now: now, into: &out)
            for slot in services.indices { run(slot, .restored(rows), now: now, into: &out) }
        case .stop:
            run(Self.membershipSlot, .stop, now: now, into: &out)
            for slot in services.indices { run(slot, .stop, now: now, into: &out) }
        }
        foldWake(into: &out)
        return out
    }

    /// Queues `bytes` for member `to` on `stream` (the users' channels). Returns the message's id,
    /// or why it was refused (nothing is queued then), and the outputs to carry out.
    /// `.messageDelivered` or `.messageFailed` follows for every accepted message.
    public mutating func sendMessage(_ bytes: [UInt8], stream: UInt16, to: NodeID, now: Instant) -> (Result<MessageID, MessageSendError>, [NodeOutput]) {
        var out: [NodeOutput] = []
        command(.sendMessage(to: to, stream: stream, bytes: bytes), from: nil, now: now, into: &out)
        // The channel service answers with `.messageQueued` or `.messageRefused`: here that is the
        // result, not an event.
        var result: Result<MessageID, MessageSendError> = .failure(.unknownPeer(to))
        if let i = out.lastIndex(where: {
            if case .event(.messageQueued(_, to, stream)) = $0 { return true }
            if case .event(.messageRefused(to, stream, _)) = $0 { return true }
            return false
        }) {
            switch out.remove(at: i) {
            case let .event(.messageQueued(id, _, _)): result = .success(id)
            case let .event(.messageRefused(_, _, error)): result = .failure(error)
            default: break
            }
        }
        foldWake(into: &out)
        return (result, out)
    }

    /// Largest message `sendMessage` accepts.
    public var maxMessage: Int { channels.config.maxMessage }
    /// The users' channel endpoint (ChannelService).
    public var channels: ChannelEndpoint<NodeID> { service(ChannelService.self)!.endpoint }
    public var pendingProbes: Int { service(PingService.self)?.pendingProbes ?? 0 }
    public static var defaultChannelConfig: ChannelConfig { ChannelService.defaultConfig }
    public static let maxChannelFrame = ChannelService.maxFrame

    /// The node's counters: the router's, with the ping and channel services' added.
    public var counters: NodeCounters {
        var c = own
        if let p = service(PingService.self) {
            c.probesSent = p.counters.sent
            c.probesAnswered = p.counters.answered
            c.probesMissed = p.counters.missed
            for (r, n) in p.counters.drops { c.drops[r, default: 0] += n }
        }
        if let ch = service(ChannelService.self) {
            c.channelResetsAfterTimeout = ch.counters.resetsAfterTimeout
            for (r, n) in ch.counters.drops { c.drops[r, default: 0] += n }
        }
        return c
    }

    // MARK: - Routing

    /// The slot of the service whose protocol id begins `bytes`.
    @inline(__always)
    private func slot(for bytes: [UInt8]) -> Int? {
        for r in routes where r.id.matches(bytes) { return r.slot }
        return nil
    }

    private func slot(of id: ProtocolID) -> Int? {
        routes.first { $0.id == id }?.slot
    }

    /// Hands one input to one service and carries out what it returns.
    mutating func run(_ slot: Int, _ input: consuming ServiceInput<NodeCommand>, now: Instant, into out: inout [NodeOutput]) {
        let outputs: [ServiceOutput<NodeCommand, NodeEvent>]
        if slot == Self.membershipSlot {
            outputs = membership.handle(consume input, now: now, members: NoMembers())
        } else {
            (outputs, serviceDeadlines[slot]) = Self.handle(&services[slot], consume input, now: now, members: membership)
        }
        if !outputs.isEmpty { carry(outputs, from: slot, now: now, into: &out) }
    }

    /// Runs one service on its opened type: the service is mutated where it is stored and its
    /// deadline read there, where calls on the existential would copy the whole service.
    private static func handle<S: NodeService<NodeCommand, NodeEvent>>(_ service: inout S, _ input: ServiceInput<NodeCommand>,
                                                                       now: Instant, members: GossipService) -> ([ServiceOutput<NodeCommand, NodeEvent>], Instant?) {
        let outputs = service.handle(input, now: now, members: members)
        return (outputs, service.deadline)
    }

    /// Tells one service what became of one of its reliable messages and carries out its answer.
    mutating func runOutcome(_ slot: Int, _ outcome: ReliableOutcome, now: Instant, into out: inout [NodeOutput]) {
        guard services.indices.contains(slot) else { return }
        let outputs: [ServiceOutput<NodeCommand, NodeEvent>]
        (outputs, serviceDeadlines[slot]) = Self.outcome(&services[slot], outcome, now: now, members: membership)
        if !outputs.isEmpty { carry(outputs, from: slot, now: now, into: &out) }
    }

    private static func outcome<S: NodeService<NodeCommand, NodeEvent>>(_ service: inout S, _ outcome: ReliableOutcome,
                                                                        now: Instant, members: GossipService) -> ([ServiceOutput<NodeCommand, NodeEvent>], Instant?) {
        let outputs = service.reliableOutcome(outcome, now: now, members: members)
        return (outputs, service.deadline)
    }

    private static func takes<S: NodeService<NodeCommand, NodeEvent>>(_ service: borrowing S, _ command: NodeCommand) -> Bool {
        service.takes(command)
    }

    /// A command for the first service that takes it (never back to its sender); one nobody
    /// takes is counted.
    mutating func command(_ command: consuming NodeCommand, from sender: Int?, now: Instant, into out: inout [NodeOutput]) {
        if sender != Self.membershipSlot, membership.takes(command) {
            run(Self.membershipSlot, .command(command), now: now, into: &out)
            return
        }
        for slot in services.indices where slot != sender && Self.takes(services[slot], command) {
            run(slot, .command(command), now: now, into: &out)
            return
        }
        own.drop(.unclaimedCommand)
    }

    func purpose(of slot: Int, _ bytes: [UInt8]) -> String? {
        slot == Self.membershipSlot ? membership.purpose(ofSent: bytes) : services[slot].purpose(ofSent: bytes)
    }

    /// Carries out a service's outputs, in order.
    mutating func carry(_ outputs: consuming [ServiceOutput<NodeCommand, NodeEvent>], from slot: Int, now: Instant, into out: inout [NodeOutput]) {
        for o in consume outputs {
            switch consume o {
            case let .send(destination, bytes):
                let opened = sessionsStarted
                let bulk = slot >= 0 && bulkSlots[slot]
                switch destination {
                case let .peer(p):
                    absorb(sessions.send(bytes, to: p.address, peer: p.identity, now: now), now: now, bulk: bulk, into: &out)
                case let .member(id):
                    guard let p = route(id) else { own.drop(.channelNoRoute); continue }
                    absorb(sessions.send(bytes, to: p.address, peer: p.identity, now: now), now: now, bulk: bulk, into: &out)
                case let .address(a):
                    absorb(sessions.send(bytes, to: a, peer: nil, now: now), now: now, bulk: bulk, into: &out)
                }
                noteSessionOpened(since: opened, slot, bytes)
            case let .sendReliable(to, bytes):
                let opened = sessionsStarted
                sendReliable(bytes, to: to, from: slot, now: now, into: &out)
                noteSessionOpened(since: opened, slot, bytes)
            case let .persist(batch, then):
                // The sends after a persist are sealed now (their session counters taken in
                // order) and leave when the driver has made the batch durable.
                var after: [NodeOutput] = []
                carry(then, from: slot, now: now, into: &after)
                out.append(.persist(batch, then: after))
                if persistsCompleteAtOnce { run(slot, .persisted(batch.ticket, .durable), now: now, into: &out) }
            case let .offload(job):
                if offloadsRunInline {
                    own.offloadCost += job.cost
                    run(slot, .offloaded(job.ticket, job.work()), now: now, into: &out)
                } else {
                    out.append(.offload(job))
                }
            case let .event(e):
                out.append(.event(e))
            case let .command(c):
                command(c, from: slot, now: now, into: &out)
            case let .membership(change):
                membershipChanged(change, from: slot, now: now, into: &out)
            }
        }
    }

    /// A member went down or was culled: its session ends (a restarted peer has lost our keys;
    /// a culled key's plaintext is refused from now on) and its reliable connection closes. Then
    /// every other service hears of the change.
    private mutating func membershipChanged(_ change: MembershipChange, from sender: Int, now: Instant, into out: inout [NodeOutput]) {
        var gone: NodeID?
        switch change {
        case let .down(peer), let .culled(peer):
            sessions.forget(peerKey: peer.publicKey)
            gone = peer.nodeID
        case .up:
            break
        }
        if sender != Self.membershipSlot { run(Self.membershipSlot, .membership(change), now: now, into: &out) }
        for slot in services.indices where slot != sender { run(slot, .membership(change), now: now, into: &out) }
        if let gone { closeReliable(gone, now: now, into: &out) }
    }

    /// Where a peer's frames go: its member row, else where it last reached us from.
    func route(_ id: NodeID) -> ProvenPeer? {
        membership.peer(id) ?? reliableRoutes[id]
    }

    mutating func rememberRoute(_ peer: ProvenPeer) {
        // Bounded: routes are only for peers outside the table, briefly.
        if reliableRoutes.count >= 4096 { reliableRoutes.removeAll(keepingCapacity: true) }
        reliableRoutes[peer.nodeID] = peer
    }

    /// Asks the driver for the earliest deadline of the services, the sessions and the reliable stream, once per change.
    mutating func foldWake(into out: inout [NodeOutput]) {
        // Runs once per datagram: no temporary arrays.
        var wake = membership.deadline
        if let w = sessionWake, wake.map({ w < $0 }) ?? true { wake = w }
        if let w = reliableWake, wake.map({ w < $0 }) ?? true { wake = w }
        for d in serviceDeadlines { if let w = d, wake.map({ w < $0 }) ?? true { wake = w } }
        if let wake, wake != requestedWake {
            requestedWake = wake
            out.append(.wake(at: wake))
        }
    }

    // MARK: - Sessions

    /// Carries out what the session layer asked for and hands authenticated plaintext to the
    /// services. `bulk`: the datagrams sent are channel frames (a handshake the session layer
    /// starts for them is sent as bulk too; it is one datagram before the first frame).
    mutating func absorb(_ outputs: consuming [SessionOutput], now: Instant, bulk: Bool = false, into out: inout [NodeOutput]) {
        for o in consume outputs {
            switch consume o {
            case let .send(to, bytes):
                own.datagramsOut += 1
                own.bytesOut += UInt64(bytes.count)
                out.append(.send(to: to, bytes: bytes, bulk: bulk))
            case let .deliver(from, peer, plaintext):
                receive(from: ProvenPeer(identity: peer, address: from), bytes: plaintext, now: now, into: &out)
            case let .established(peer, address):
                out.append(.event(.sessionEstablished(peer.nodeID, address)))
            case let .failed(address, reason):
                if reason == "from_self" {
                    // A seed that points at ourselves: stop asking it.
                    own.drop(.fromSelf)
                    membership.forgetSeed(address)
                } else {
                    out.append(.event(.sessionFailed(address, reason: reason)))
                }
            case let .wake(at):
                sessionWake = at // folded into the node's single wake-up at the end of `handle`
            }
        }
    }

    /// Counts the handshake a send just started, under the message's purpose (a rekey of an
    /// existing session is not a new session). Two integer compares when none started.
    private var sessionsStarted: UInt64 { sessions.counters.handshakesInitiated &- sessions.counters.rekeys }

    private mutating func noteSessionOpened(since initiated: UInt64, _ slot: Int, _ bytes: [UInt8]) {
        guard sessionsStarted != initiated, let purpose = purpose(of: slot, bytes) else { return }
        own.sessionsOpened[purpose, default: 0] += 1
    }

    private mutating func receive(from peer: ProvenPeer, bytes: [UInt8], now: Instant, into out: inout [NodeOutput]) {
        // A culled node is refused whatever it sends: its session is not kept either.
        if membership.isCulled(peer.nodeID) {
            own.drop(.culled)
            carry(membership.culledSenderSpoke(peer, now: now), from: Self.membershipSlot, now: now, into: &out)
            sessions.forget(peerKey: peer.identity.publicKey)
            return
        }
        // The first plaintext bytes name the protocol (Docs/encoding.md).
        if bytes.first == Self.reliablePrefix {
            // Bulk on the way out, but not proof of life here: it carries gossip's own deltas,
            // which gossip hears when they are delivered.
            receiveReliableFrame(bytes, from: peer, now: now, into: &out)
            return
        }
        guard let slot = slot(for: bytes) else { own.drop(.unknownProtocol); return }
        if slot >= 0 && bulkSlots[slot] { trafficHeard(from: peer, now: now, into: &out) }
        run(slot, .message(from: peer, bytes: bytes, reliable: false), now: now, into: &out)
    }

    /// A frame of a `sendsBulk` service (channels, file transfer) from `peer` proves it alive to membership: a probe lost
    /// during a transfer is not a suspicion (Docs/channels.md, "Membership beside a transfer").
    private mutating func trafficHeard(from peer: ProvenPeer, now: Instant, into out: inout [NodeOutput]) {
        let outputs = membership.trafficHeard(from: peer, now: now)
        if !outputs.isEmpty { carry(outputs, from: Self.membershipSlot, now: now, into: &out) }
    }

    /// Hands a whole message from the reliable stream to the service that owns its first bytes.
    mutating func deliverReliable(_ message: [UInt8], from peer: ProvenPeer, now: Instant, into out: inout [NodeOutput]) {
        guard let slot = slot(for: message) else { own.drop(.unknownProtocol); return }
        run(slot, .message(from: peer, bytes: message, reliable: true), now: now, into: &out)
    }
}

/// A service's protocol id clashes with one already routed.
public struct ServiceClash: Error, CustomStringConvertible {
    public let id: ProtocolID
    public var description: String { "protocol id \(id) is already routed to another service (or overlaps one); pick another prefix in Docs/encoding.md" }
}
