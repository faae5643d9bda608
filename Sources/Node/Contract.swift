import MeshCore

/// What a driver hands the node core. Together with `now`, this is all the core ever learns
/// about the outside world.
public enum NodeInput: Sendable {
    /// The driver is ready: schedule the first round.
    case start
    /// A datagram arrived on the node's UDP socket.
    case datagram(from: UnderlayAddress, bytes: [UInt8])
    /// The wake-up the core asked for is due (a driver may also call early; the core checks).
    case timer
    case command(NodeCommand)
}

public enum NodeCommand: Sendable, Equatable {
    /// Ping this address until it answers, then keep its node as a member.
    case addSeed(UnderlayAddress)
    /// A member known from an earlier run (the peer store): probed as if just learned.
    case rememberPeer(PeerIdentity, UnderlayAddress)
    /// Probe one member now, outside the periodic round (used by benchmarks and `iotaf ping`).
    case probe(NodeID)
}

/// What the core asks its driver to do, in order.
public enum NodeOutput: Sendable, Equatable {
    case send(to: UnderlayAddress, bytes: [UInt8])
    /// Call back with `.timer` at this instant. A later `.wake` replaces an earlier one.
    case wake(at: Instant)
    case event(NodeEvent)
}

/// Things worth telling a person or a test about.
public enum NodeEvent: Sendable, Equatable {
    case memberAdded(NodeID, UnderlayAddress)
    case memberStateChanged(NodeID, from: MemberState, to: MemberState)
    case memberAddressChanged(NodeID, UnderlayAddress)
    case probeAnswered(NodeID, rtt: Duration)
    case memberForgotten(NodeID)
    case sessionEstablished(NodeID, UnderlayAddress)
    /// A handshake gave up (no answer, wrong network key, or refused); probes to it will miss.
    case sessionFailed(UnderlayAddress, reason: String)
}
