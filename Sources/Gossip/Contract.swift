import MeshCore

/// What a driver (the node) hands the gossip core. The node owns the sessions: it decrypts, then
/// hands over the plaintext with the peer's proven key and the address it came from.
public enum GossipInput: Sendable {
    /// Announce ourselves and contact the configured introducers.
    case start
    /// The wake-up asked for is due (early calls are harmless).
    case timer
    /// A datagram's plaintext from an authenticated peer.
    case received(from: PeerEntry, bytes: [UInt8])
    /// A message delivered by a reliable channel (answers to `.sendReliable`).
    case reliableReceived(from: PeerEntry, bytes: [UInt8])
    /// A round-trip time the node measured outside gossip (e.g. a session handshake).
    case rttSample(NodeID, Duration)
    /// The runtime heard a link-local multicast beacon from this address (mode `nearest`).
    case beaconHeard(UnderlayAddress)
    case command(GossipCommand)
}

public enum GossipCommand: Sendable, Equatable {
    /// Join the mesh through these addresses (introducers or a single known peer); retried until
    /// the node has a neighbour.
    case join([UnderlayAddress])
    /// Graceful leave: the mesh learns the node left (state `left`) rather than failed.
    case leave
    case setAttributes(Attributes)
    /// An admin-signed cull (see `CullRecord.signedBytes`).
    case cull(CullRecord)
    /// Ask the mesh for nodes whose attributes match; answers come back as `.queryAnswer` events.
    case query(id: UInt64, AttributeQuery, mode: DiscoveryMode, hopLimit: UInt8)
    /// Fetch a member's full attributes over a reliable channel.
    case fetchAttributes(NodeID)
    /// A restarted node goes on above the incarnation and attribute version its last life
    /// announced (kept on disk): its first `alive` then beats the mesh's `dead` about that life,
    /// and its start attributes beat the ones it announced before, with no refutation round.
    case resume(incarnation: UInt32, attributeVersion: UInt32)
    /// Members known alive (incarnation 0) from a snapshot of a mesh that already formed: the
    /// simulator's `start = "converged"`, which skips the join storm (every join reaching every
    /// node) to study a large mesh in steady state. Added quietly: no news, no events; culled,
    /// known and excess members are skipped. The views still form through joins, sent to random
    /// restored members as well as the seeds (as the runtime joins through remembered peers).
    case restoreMembers([PeerEntry])
}

/// Where a datagram goes: a known peer (the node can use Noise IK with its key) or a bare address
/// (a seed or a beacon: the node must use XX and learns the key in the handshake).
public enum GossipDestination: Sendable, Equatable, Hashable {
    case peer(PeerEntry)
    case address(UnderlayAddress)
}

public enum GossipOutput: Sendable, Equatable {
    /// One datagram's plaintext, at most `GossipWire.maxDatagram` bytes.
    case send(GossipDestination, bytes: [UInt8])
    /// A message too large for a datagram (anti-entropy deltas, full attributes): the node carries it
    /// over a reliable channel and hands it to the peer's core as `.reliableReceived`.
    case sendReliable(PeerEntry, bytes: [UInt8])
    /// Call back with `.timer` at this instant; a later `.wake` replaces an earlier one.
    case wake(at: Instant)
    case event(GossipEvent)
}

public enum GossipEvent: Sendable, Equatable {
    case memberJoined(NodeID, UnderlayAddress)
    case memberStateChanged(NodeID, from: MemberState, to: MemberState, incarnation: UInt32)
    case memberAddressChanged(NodeID, UnderlayAddress)
    case attributesChanged(NodeID, Attributes)
    case memberForgotten(NodeID)
    /// Active view changes: the node keeps sessions open to these peers.
    case neighbourAdded(NodeID)
    case neighbourRemoved(NodeID)
    /// The node has its first neighbour.
    case joined
    /// Someone suspected or declared us dead; we answered with a higher incarnation.
    case refuted(incarnation: UInt32)
    case queryAnswer(id: UInt64, from: NodeID, address: UnderlayAddress, hops: UInt8, pairs: [AttributePair])
    /// A probe's first ping was answered by its target after this round trip (one per probe
    /// round at most; what the runtime's probe-RTT histogram records, Docs/operations.md).
    case probeRoundTrip(NodeID, Duration)
}

/// The protocol's knobs. Defaults are tuned for a LAN-like mesh of up to 10,000 nodes; see
/// Docs/gossip.md for why each value is what it is.
public struct GossipConfig: Sendable, Equatable {
    public var network: NetworkID
    /// Introducers (mode `master`) or the one known peer (mode `walk`).
    public var seeds: [UnderlayAddress] = []
    public var modes: [DiscoveryMode] = [.master]
    /// A master keeps a larger passive view, so its join replies carry a richer sample.
    public var isMaster = false
    /// Ed25519 keys whose culls are obeyed.
    public var adminKeys: [PublicKey] = []

    /// The uplink this node has, in bytes per second (0: unknown, no limit), and the share of it
    /// membership may use: periods and timeouts stretch to fit (Pacing.swift, RFC 6206 Trickle).
    public var uplinkBytesPerSecond = 0
    public var uplinkShare = 0.25

    // Dissemination.
    public var gossipInterval: Duration = .milliseconds(200)
    public var gossipFanout = 3
    /// Each update is sent at most `retransmitMultiplier × ⌈log10(n + 1)⌉` times by each node.
    public var retransmitMultiplier = 2
    public var maxQueuedUpdates = 8192
    /// News pushed at once per `gossipInterval` (a new member, a raised incarnation), each to every
    /// active neighbour but the sender; what does not fit waits for the gossip rounds.
    public var newsPushBudget = 4

    // Failure detection (SWIM + Lifeguard).
    public var probeInterval: Duration = .milliseconds(500)
    public var probeTimeout: Duration = .milliseconds(300)
    public var indirectChecks = 3
    /// Local health multiplier ceiling: probe timeouts and intervals stretch up to this factor.
    public var maxAwareness = 8
    public var suspicionMin: Duration = .milliseconds(1500)
    public var suspicionMax: Duration = .seconds(4)
    /// Independent suspicions that shrink the timeout from max to min.
    public var suspicionConfirmations = 3
    public var deadRetryInterval: Duration = .seconds(10)
    /// One probe round in this period targets a random member outside the active view, so a crashed
    /// member whose neighbours all crashed too is still found (zero, the default: never; see
    /// Docs/gossip.md for why it is off).
    public var wideProbeInterval: Duration = .zero
    public var forgetAfter: Duration = .seconds(3600)
    public var maxMembers = 65536
    /// Culls a node holds at most (each 136 bytes, held for good and persisted): a cull past it is
    /// refused, counted `cullTableFull`, and the control socket's `cull` says why. Docs/gossip.md.
    public var maxCulls = 4096

    // Partial views (HyParView).
    public var activeViewSize = 5
    public var passiveViewSize = 30
    public var activeWalkLength: UInt8 = 6
    public var passiveWalkLength: UInt8 = 3
    public var shuffleInterval: Duration = .seconds(10)
    public var shuffleActive = 3
    public var shufflePassive = 4
    public var joinRetryInterval: Duration = .seconds(2)
    public var neighbourRequestTimeout: Duration = .seconds(1)

    // Anti-entropy.
    public var antiEntropyInterval: Duration = .seconds(20)
    /// Exchanges a node has open, and exchanges it serves per `exchangeServeWindow`.
    public var maxConcurrentExchanges = 2
    public var exchangeServeWindow: Duration = .seconds(1)
    public var exchangeTimeout: Duration = .seconds(3)

    // Queries and attributes.
    public var nearestFanout = 2
    public var queryCacheSize = 4096
    /// Fetch attributes of active and passive neighbours automatically (others on demand).
    public var fetchNeighbourAttributes = true
    /// Attributes of other alive members fetched per gossip round when ours are older than what
    /// they announce (a newcomer learns every member's attributes this way; 0: only neighbours'
    /// and on demand). Bound: a newcomer holds the attributes of N such members about
    /// ⌈N / attributeFetchesPerRound⌉ rounds after it learned of them (Docs/gossip.md).
    public var attributeFetchesPerRound = 2
    /// A fetch not answered within this long is asked again (by the rounds above).
    public var attributeFetchRetry: Duration = .seconds(5)

    public init(network: NetworkID) { self.network = network }
}

/// One row of the member table. Kept small, since every node holds one per member (a simulator
/// holds one per member per node): fields are ordered to pack, optional times are stored as
/// nanoseconds with a sentinel (an `Optional` adds a tag byte and its padding to every row), a
/// suspicion lives in `GossipCore.suspicions` (few members are suspect at a time), and the
/// identity's arrays are shared through `PeerIdentities` when the driver provides one.
public struct GossipMember: Sendable, Equatable {
    public internal(set) var entry: PeerEntry
    public internal(set) var state: MemberState
    public internal(set) var incarnation: UInt32
    public internal(set) var attributeVersion: UInt32
    /// The version of `attributes` (may lag `attributeVersion`).
    public internal(set) var heldAttributeVersion: UInt32 = 0
    var requestedAttributeVersion: UInt32 = 0
    /// Fetched attributes (active and passive neighbours, and members fetched on demand).
    public internal(set) var attributes: Attributes?
    public internal(set) var stateSince: Instant
    var rttNanos = Int64.min
    var lastHeardNanos = Int64.min
    var lastToldNanos = Int64.min

    init(entry: PeerEntry, state: MemberState, incarnation: UInt32, attributeVersion: UInt32, stateSince: Instant) {
        self.entry = entry
        self.state = state
        self.incarnation = incarnation
        self.attributeVersion = attributeVersion
        self.stateSince = stateSince
    }

    public internal(set) var rtt: Duration? {
        get { rttNanos == .min ? nil : .nanoseconds(rttNanos) }
        set { rttNanos = newValue?.nanoseconds ?? .min }
    }
    public internal(set) var lastHeard: Instant? {
        get { lastHeardNanos == .min ? nil : Instant(nanoseconds: lastHeardNanos) }
        set { lastHeardNanos = newValue?.nanoseconds ?? .min }
    }
    /// When we last told this member what we believe of it (at most once a second).
    var lastToldState: Instant? {
        get { lastToldNanos == .min ? nil : Instant(nanoseconds: lastToldNanos) }
        set { lastToldNanos = newValue?.nanoseconds ?? .min }
    }

    public var nodeID: NodeID { entry.nodeID }
}

struct Suspicion: Sendable, Equatable {
    var start: Instant
    var accusers: [UInt64]
    var deadline: Instant
    /// Lifeguard: an accuser in poor local health waits once more before declaring.
    var extended = false
    /// Evidence of life counts from here: the suspect heard from directly after this instant is
    /// not declared dead by us (see `expireSuspicions`). Nil: from `start`.
    var evidenceFrom: Instant?
    /// Our own `suspect` messages to the suspect itself (the buddy message, each extension's
    /// question): each one it did not answer is a chance to refute it missed (LinkHealth.swift).
    var asked = 0
}

/// Counted drops and traffic, for `iotaf members --json` and simulator reports.
public struct GossipCounters: Sendable, Equatable {
    public var drops = [UInt64](repeating: 0, count: GossipDropReason.allCases.count)
    public var messagesIn: UInt64 = 0
    public var messagesOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var reliableOut: UInt64 = 0
    public var reliableBytesOut: UInt64 = 0
    public var probes: UInt64 = 0
    public var indirectProbes: UInt64 = 0
    public var suspicionsRaised: UInt64 = 0
    public var refutations: UInt64 = 0
    /// Suspicions whose expiry found the suspect had spoken to us since: not declared dead.
    public var deathsAverted: UInt64 = 0
    /// News pushed at once (`pushNews`), and wide probes (members outside the active view).
    public var newsPushed: UInt64 = 0
    public var wideProbes: UInt64 = 0
    /// Answers too late to be round trips (`noteRTT`): not taken into any RTT.
    public var roundTripsDiscarded: UInt64 = 0
    /// Suspicions kept open past their timeout because too few questions had gone unanswered for
    /// our measured loss (LinkHealth.swift), and direct re-pings of a probe's target.
    public var suspicionsProlonged: UInt64 = 0
    public var rePings: UInt64 = 0
    /// Failed probes that raised no suspicion because the target's other traffic (channel frames)
    /// reached us while we waited (LinkHealth.swift, `noteTraffic`).
    public var probesExcusedByTraffic: UInt64 = 0
    /// Anti-entropy exchanges with a member outside the active view, and links asked of a peer
    /// whose delta showed a part of the mesh we did not know (AntiEntropy.swift, islands).
    public var strangerExchanges: UInt64 = 0
    public var bridges: UInt64 = 0
    public var exchanges: UInt64 = 0

    public subscript(reason: GossipDropReason) -> UInt64 {
        drops[GossipDropReason.allCases.firstIndex(of: reason)!]
    }
    public var totalDrops: UInt64 { drops.reduce(0, +) }
    mutating func drop(_ r: GossipDropReason) { drops[GossipDropReason.allCases.firstIndex(of: r)!] += 1 }
}
