import Foundation
import MeshCore
import Node

/// A simulation scenario, read from TOML. Simulations/README.md documents the format.
public struct Scenario: Sendable {
    public var name = "unnamed"
    public var nodes = 10
    public var durationSeconds = 60.0
    public var network = NetworkModel()
    /// How each node is seeded: "first" (every node knows node 0), "ring" (node i knows i-1), "random:K".
    public var seeding = "first"
    public var timing = NodeTiming()
    /// Gossip discovery modes every node runs ([gossip] modes).
    public var modes: [DiscoveryMode] = [.master]
    /// Nodes that run as masters (is_master); the seeding decides who joins through whom.
    public var masters: [Int] = []
    /// `[gossip] admin = true`: an admin key, derived from the seed, that every node obeys; `cull` events sign with it.
    public var adminKey = false
    /// Mode `nearest`: every node multicasts a beacon this often (0: no beacons), heard by the
    /// live nodes of its LAN in the same partition group, after the LAN's latency.
    public var beaconEverySeconds = 0.0
    /// Nodes per LAN, in contiguous blocks (node i is on LAN i / lan_size); 0: a LAN is a region
    /// (or the whole mesh without regions).
    public var lanSize = 0
    /// `[gossip] uplink_kbps`: every node is told this uplink (its membership paces to a quarter).
    public var uplinkKbps = 0
    public var checks: [CheckSpec] = []
    /// What drives the protocols from outside the nodes (`[[workloads]]`; kinds from the registry).
    public var workloads: [WorkloadSpec] = []
    /// Seconds between membership samples for convergence tracking and plots.
    public var sampleEverySeconds = 1.0
    /// Faults and lifecycle changes, in file order (ties at one instant apply in this order).
    public var timeline: [TimelineEvent] = []
    /// The simulated disk syncs the peer store this often; a crash loses what was learned since.
    public var storageSyncSeconds = 30.0
    /// `start = "converged"`: the nodes up at 0 s already know each other alive (a mesh that
    /// formed earlier), so a run studies the steady state without paying for the join storm,
    /// whose every join reaches every node (N² member updates, each sent several times).
    public var startConverged = false

    public init() {}

    public struct NetworkModel: Sendable {
        public var latencyMs = 10.0
        public var jitterMs = 0.0
        public var loss = 0.0
        /// Probability that a datagram is delivered twice (the copy takes its own latency).
        public var duplicate = 0.0
        /// Probability that a datagram is held back up to `reorderMs`, so later ones overtake it.
        public var reorder = 0.0
        public var reorderMs = 50.0
        /// Uplink of every node in kbit/s; 0 means unlimited. Datagrams queue behind each other.
        public var bandwidthKbps = 0.0
        /// A datagram that would wait longer than this in the uplink queue is dropped (tail drop).
        public var queueLimitMs = 1000.0
        /// Regions, with nodes assigned to them; when set, the matrix gives one-way latency per region pair.
        public var regions: [String] = []
        public var regionLatencyMs: [[Double]] = []
        /// "blocks" (contiguous equal shares) or "round_robin" (node i in region i mod R).
        public var regionAssign = "blocks"
        /// Per-link overrides, keyed by (from, to) node index, in both directions when `symmetric`.
        public var links: [LinkKey: LinkModel] = [:]
        public init() {}

        public func region(of node: Int, nodes: Int) -> Int {
            let r = regions.count
            guard r > 1 else { return 0 }
            return regionAssign == "round_robin" ? node % r : min(r - 1, node * r / max(1, nodes))
        }
    }

    public struct LinkKey: Hashable, Sendable { public var from: Int; public var to: Int }
    public struct LinkModel: Sendable, Equatable {
        public var latencyMs: Double; public var jitterMs: Double; public var loss: Double
        public init(latencyMs: Double, jitterMs: Double, loss: Double) {
            self.latencyMs = latencyMs; self.jitterMs = jitterMs; self.loss = loss
        }
    }

    public struct CheckSpec: Sendable, Equatable {
        public var kind: String
        public var withinSeconds: Double?
        /// `disseminated_within`: the limit in gossip rounds (gossip intervals).
        public var withinRounds: Double?
        /// `traffic_within`: bytes per second per node; `datagram_fits`: bytes per datagram.
        public var maxBytes: Double?
        /// `discovered_within`: the share of the live mesh every live node must know.
        public var fraction: Double?
        /// `traffic_within`: the steady-state window starts here (default: half the run).
        public var fromSeconds: Double?
        /// Any other numeric key a checker kind declares, by key.
        public var params: [String: Double] = [:]
        public init(kind: String, withinSeconds: Double?, withinRounds: Double? = nil, maxBytes: Double? = nil,
                    fraction: Double? = nil, fromSeconds: Double? = nil) {
            self.kind = kind; self.withinSeconds = withinSeconds; self.withinRounds = withinRounds
            self.maxBytes = maxBytes; self.fraction = fraction; self.fromSeconds = fromSeconds
        }
    }

    /// One `[[workloads]]` entry: its kind and its numeric settings, checked against the kind's keys.
    public struct WorkloadSpec: Sendable, Equatable {
        public var kind: String
        public var params: [String: Double]
        public init(kind: String, params: [String: Double] = [:]) { self.kind = kind; self.params = params }
    }

    /// The check kinds a scenario may name (the standard registry's).
    public static var checkKinds: [String] { SimulationRegistry.standard.checkKinds }

    /// The LAN a node is on (mode `nearest` beacons reach only the same LAN).
    public func lan(of node: Int) -> Int {
        lanSize > 0 ? node / lanSize : network.region(of: node, nodes: nodes)
    }
}

/// Which nodes a timeline event touches. Random picks are drawn when the event fires, from the
/// nodes it can apply to, with a generator of the event's own.
public enum NodeSelector: Sendable, Equatable {
    case list([Int])
    case all
    /// Every node that is down at that moment (crashed or left).
    case crashed
    case count(Int)
    case fraction(Double)
}

public struct TimelineEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case join, leave, crash, restart, partition, heal, degrade, restore, byzantine, honest
        /// An admin-signed cull of the picked nodes, handed to one live node (`via`); the culled nodes stop.
        case cull
        /// CPU starvation: every datagram the picked nodes receive is handled `delay_ms`…`max_delay_ms` late.
        case starve
        /// Ends starvation.
        case feed
        /// Arms a fault on the picked nodes' simulated disks (`mode`): lose_unsynced, tear_last_write, io_error.
        case disk
    }
    /// `drop` … `equivocate` act on the node's datagrams and gossip; `conflicting_proposals` and
    /// `double_vote` are lies told by a service that proposes or votes (consensus), which reads
    /// them from its node's `ServiceLie`.
    public enum Behaviour: String, Sendable, CaseIterable {
        case drop, delay, corrupt, replay, equivocate
        case conflictingProposals = "conflicting_proposals"
        case doubleVote = "double_vote"
    }

    public var kind: Kind
    public var atSeconds: Double
    /// Fire again every this many seconds, up to `untilSeconds`.
    public var everySeconds: Double?
    public var untilSeconds: Double?
    /// Undo after this long: crash → restart, partition → heal, degrade → restore, byzantine → honest.
    public var forSeconds: Double?
    public var nodes: NodeSelector = .list([])
    public var exclude: [Int] = []
    /// Partition: explicit groups; nodes in none form one more group. Empty: the selected nodes vs the rest.
    public var groups: [[Int]] = []
    /// Degrade/restore one link instead of whole nodes.
    public var link: Scenario.LinkKey?
    public var symmetric = true
    public var model: Scenario.LinkModel?
    public var rememberPeers = true
    public var behaviour: Behaviour = .drop
    public var probability = 1.0
    public var delayMs = 500.0
    /// Starve: the upper end of each node's input delay (each starved node draws one in delay_ms…max_delay_ms).
    public var maxDelayMs: Double?
    /// Cull: the live node the admin hands the signed cull to (default: the lowest live node not culled).
    public var via: Int?
    /// Disk: the fault to arm (undone after `for_s`).
    public var diskFault: FaultyDisk.Fault = .loseUnsynced

    public init(kind: Kind, atSeconds: Double) {
        self.kind = kind
        self.atSeconds = atSeconds
    }

    /// Keys each kind accepts beyond the common ones, so a typo is an error naming the key.
    static let commonKeys = ["kind", "at_s", "every_s", "until_s", "for_s", "nodes", "count", "fraction", "exclude"]
    static func extraKeys(_ k: Kind) -> [String] {
        switch k {
        case .partition: return ["groups"]
        case .degrade: return ["from", "to", "symmetric", "latency_ms", "jitter_ms", "loss"]
        case .restore: return ["from", "to", "symmetric"]
        case .restart: return ["remember_peers"]
        case .byzantine: return ["behaviour", "probability", "delay_ms"]
        case .starve: return ["delay_ms", "max_delay_ms"]
        case .cull: return ["via"]
        case .disk: return ["mode"]
        default: return []
        }
    }
}

public struct ScenarioError: Error, CustomStringConvertible {
    public let description: String
}
