/// The node protocol's knobs. Defaults suit a LAN or a small WAN mesh.
public struct NodeTiming: Sendable, Equatable {
    /// How often a round runs: probes go out, timeouts are checked.
    public var tickInterval: Duration = .milliseconds(500)
    /// Members probed per round, round-robin, so per-node traffic stays flat as the mesh grows.
    /// One per 500 ms tick visits each of 8 members every 4 s (SWIM's one probe per period);
    /// a crashed member is declared dead within about 14 s.
    public var probesPerTick: Int = 1
    /// Members heard of but never heard from are probed first, up to this many per round.
    public var unconfirmedProbesPerTick: Int = 8
    /// A probe with no answer after this long counts as missed.
    public var probeTimeout: Duration = .seconds(1)
    /// Consecutive missed probes before an alive member becomes suspect.
    public var suspectAfterMisses: Int = 2
    /// A suspect member not heard from for this long is declared dead.
    public var suspicionTimeout: Duration = .seconds(4)
    /// Dead members are still probed this often, so a restarted node comes back.
    public var deadRetryInterval: Duration = .seconds(5)
    /// Seeds that never answered are retried this often.
    public var seedRetryInterval: Duration = .seconds(2)
    /// Dead members that were not configured are dropped after this long.
    public var forgetDeadAfter: Duration = .seconds(3600)
    /// The member table never grows beyond this; gossip's partial views replace it later.
    /// Every member is probed directly, so every member costs a Noise session, a handshake
    /// (about 0.5 ms of X25519 on both sides together) and another one at each rekey (120 s).
    /// Eight keeps that cost per node flat (about 8 sessions, ~0.07 handshakes/s) while a random
    /// graph of degree 8 stays connected; 256 made each node handshake with 256 peers every two
    /// minutes, more CPU than the rest of the protocol together.
    public var maxMembers: Int = 8
    /// Members described in each pong, so peers learn peers of peers.
    public var sampleSize: Int = 4

    public init() {}
}
