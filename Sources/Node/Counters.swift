/// Why a datagram was dropped. Raw values are what `iotaf status` prints.
public enum DropReason: String, Sendable, CaseIterable, Codable, Error {
    case truncated
    case badMagic = "bad_magic"
    case unsupportedVersion = "unsupported_version"
    case wrongNetwork = "wrong_network"
    case unknownType = "unknown_type"
    case fromSelf = "from_self"
    case trailingBytes = "trailing_bytes"
    case unexpectedPong = "unexpected_pong"
    case oversized
    /// The message named a key other than the one its session authenticated.
    case keyMismatch = "key_mismatch"
    /// Session plaintext whose first byte names no protocol (see Docs/encoding.md).
    case unknownProtocol = "unknown_protocol"
    /// A channel frame for a peer that is no longer a member (no address to send it to).
    case channelNoRoute = "channel_no_route"
    /// Plaintext from a culled node (its session is dropped too).
    case culled
    /// The reliable stream refused a service's message (backpressure or too many peers); gossip
    /// retries its exchanges on its own timers.
    case reliableRefused = "reliable_refused"
    /// A command no service takes.
    case unclaimedCommand = "unclaimed_command"
}

/// The node core's counters; drivers add their own (send errors) beside them.
public struct NodeCounters: Sendable, Equatable {
    public var datagramsIn: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var datagramsOut: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var probesSent: UInt64 = 0
    public var probesAnswered: UInt64 = 0
    public var probesMissed: UInt64 = 0
    /// Answers that came after their probe was counted as missed (a slow link, not a dead peer).
    public var lateAnswers: UInt64 = 0
    /// Services' reliable messages (gossip's anti-entropy deltas, attributes) handed to and
    /// received from the node's reliable stream, and those it gave up on.
    public var reliableOut: UInt64 = 0
    public var reliableIn: UInt64 = 0
    public var reliableFailed: UInt64 = 0
    /// Users' channel connections reset because a message timed out (see `NodeChannels`).
    public var channelResetsAfterTimeout: UInt64 = 0
    /// Virtual CPU of the offload jobs run inline (`NodeCore.offloadsRunInline`, the simulator).
    public var offloadCost: Duration = .zero
    public var drops: [DropReason: UInt64] = [:]
    /// Handshakes this node started, by what it was sending when no session existed: a gossip
    /// purpose (`GossipSendPurpose`'s raw values) or `node_probe`. Handshakes the session layer
    /// starts on its own (rekeys, a peer that went quiet) and users' channel traffic are not here:
    /// they are the rest of `SessionCounters.handshakesInitiated`.
    public var sessionsOpened: [String: UInt64] = [:]

    public var totalDrops: UInt64 { drops.values.reduce(0, +) }

    mutating func drop(_ reason: DropReason) { drops[reason, default: 0] += 1 }
}
