import Gossip
import MeshCore

/// The membership knobs a config file or scenario may set. They are the gossip protocol's
/// (Sources/Gossip, Docs/gossip.md), with the same defaults: `GossipConfig` is the one place
/// those are chosen. `gossipConfig` turns them into the core's configuration.
public struct NodeTiming: Sendable, Equatable {
    /// A member of the active view is probed every interval (stretched by Lifeguard's awareness).
    public var probeInterval: Duration
    /// A direct probe with no ack after this long goes indirect; also how long `iotaf`-issued
    /// ping probes (`NodeCommand.probe`, what `bench loop` measures) wait before counting as missed.
    public var probeTimeout: Duration
    /// Piggybacked updates go out to `gossipFanout` neighbours every interval.
    public var gossipInterval: Duration
    /// A suspicion confirmed by many accusers expires after `suspicionMin`, an unconfirmed one after `suspicionMax`.
    public var suspicionMin: Duration
    public var suspicionMax: Duration
    /// Dead members' addresses are retried this often, so long partitions heal.
    public var deadRetryInterval: Duration
    /// Join targets (masters, seeds, remembered peers) are retried this often until the node has a neighbour.
    public var joinRetryInterval: Duration
    /// Dead and left members are forgotten after this long; culls never are.
    public var forgetDeadAfter: Duration
    /// The member table never grows beyond this.
    public var maxMembers: Int
    /// Gossip persists the members it heard from this often (and when the node stops), so a
    /// restart reconnects without its seeds; nil: never (the simulator keeps its own model of
    /// what a crashed node remembered).
    public var peerSnapshotInterval: Duration? = .seconds(30)

    public init() {
        let d = GossipConfig(network: .defaultNetwork)
        probeInterval = d.probeInterval
        probeTimeout = d.probeTimeout
        gossipInterval = d.gossipInterval
        suspicionMin = d.suspicionMin
        suspicionMax = d.suspicionMax
        deadRetryInterval = d.deadRetryInterval
        joinRetryInterval = d.joinRetryInterval
        forgetDeadAfter = d.forgetAfter
        maxMembers = d.maxMembers
    }

    /// The gossip core's configuration for `network`, with these knobs and the discovery settings.
    public func gossipConfig(network: NetworkID, discovery: Discovery) -> GossipConfig {
        var c = GossipConfig(network: network)
        c.probeInterval = probeInterval
        c.probeTimeout = probeTimeout
        c.gossipInterval = gossipInterval
        c.suspicionMin = min(suspicionMin, suspicionMax)
        c.suspicionMax = suspicionMax
        c.deadRetryInterval = deadRetryInterval
        c.joinRetryInterval = joinRetryInterval
        c.forgetAfter = forgetDeadAfter
        c.maxMembers = maxMembers
        c.seeds = discovery.masters
        c.modes = discovery.modes
        c.isMaster = discovery.isMaster
        c.adminKeys = discovery.adminKeys
        c.uplinkBytesPerSecond = discovery.uplinkKbps * 1000 / 8
        return c
    }
}

/// How a node finds the mesh (the config's `[gossip]` section).
public struct Discovery: Sendable, Equatable {
    public var modes: [DiscoveryMode] = [.master]
    /// Introducers (mode `master`) or the one known peer (mode `walk`); joined at start.
    public var masters: [UnderlayAddress] = []
    public var isMaster = false
    /// Ed25519 public keys whose signed culls this node obeys.
    public var adminKeys: [PublicKey] = []
    /// This node's attributes, told to the mesh at start.
    public var attributes = Attributes()
    /// The node's uplink in kbit/s (`[gossip] uplink_kbps`; 0: unknown, no limit): membership keeps
    /// its traffic within a quarter of it (Docs/gossip.md, "Narrowband uplinks").
    public var uplinkKbps = 0

    public init() {}
}
