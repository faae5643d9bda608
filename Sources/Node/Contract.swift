import Channels
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
    /// Queue a message for a member over its channel (see `NodeCore.sendMessage`, which also
    /// returns the result); answered with `.messageQueued` or `.messageRefused`.
    case sendMessage(to: NodeID, stream: UInt16, bytes: [UInt8])
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
    /// `.sendMessage` accepted the message under this id.
    case messageQueued(MessageID, to: NodeID, stream: UInt16)
    /// `.sendMessage` refused the message; nothing was queued.
    case messageRefused(to: NodeID, stream: UInt16, error: MessageSendError)
    /// A whole message from a member, exactly once and in order within its stream.
    case messageReceived(from: NodeID, stream: UInt16, bytes: [UInt8])
    /// The peer acknowledged this message (and every earlier one on its stream).
    case messageDelivered(MessageID, to: NodeID)
    /// This message will not be delivered: the peer stopped answering, restarted, or died.
    case messageFailed(MessageID, to: NodeID, reason: ChannelFailure)
    /// Sending to this member may succeed again after a `.backpressure` refusal.
    case channelWritable(NodeID)
}

/// Why the node refused to queue a message. Nothing was allocated for it.
public enum MessageSendError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a member: the node has no address or key to reach it.
    case unknownPeer(NodeID)
    /// The member is dead; wait until it answers probes again.
    case peerDead(NodeID)
    /// Larger than the channel's maximum message: split it.
    case messageTooLarge(size: Int, max: Int)
    /// The send buffer towards this peer (or the node's) is full: retry after `.channelWritable`.
    case backpressure
    /// The channel endpoint tracks as many peers as it may.
    case tooManyConnections

    public var description: String {
        switch self {
        case let .unknownPeer(id): return "node \(id.short) is not a member of this node; check `iotaf members`"
        case let .peerDead(id): return "member \(id.short) is dead; wait until it answers probes again"
        case let .messageTooLarge(size, max): return "message of \(size) bytes exceeds the channel maximum of \(max) bytes"
        case .backpressure: return "send buffer full; retry when the channel is writable"
        case .tooManyConnections: return "too many channel connections"
        }
    }
}
