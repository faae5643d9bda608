import Channels
import MeshCore
@_exported import NodeService

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
    /// A `.persist` the node asked for is durable (or failed); its `then` outputs were carried out
    /// (only if durable).
    case persisted(PersistTicket, PersistOutcome)
    /// An `.offload` the node asked for has finished.
    case offloaded(JobTicket, JobOutcome)
    /// What the node's services persisted in an earlier life, read by the driver at start, before `.start`.
    case restored([StoredRow])
    /// The driver is about to stop: the services persist what should outlive this life (the
    /// driver carries out those persists before it exits).
    case stop
}

public enum NodeCommand: Sendable, Equatable {
    /// Join the mesh through this address (a master or a known peer); retried until the node has
    /// a neighbour (gossip `join`).
    case addSeed(UnderlayAddress)
    /// A member known from an earlier run (the peer store): tried as a join target like a seed.
    case rememberPeer(PeerIdentity, UnderlayAddress)
    /// Ping one member now over the ping protocol (not gossip): answered with `.probeAnswered`.
    /// What `bench loop` measures; membership does not depend on it.
    case probe(NodeID)
    /// Anything the gossip core accepts: join, leave, attributes, culls, queries.
    case membership(GossipCommand)
    /// A link-local multicast beacon was heard from this address (mode `nearest`): the runtime's
    /// `MulticastBeacon` (or the simulator's virtual LAN) reports it; an unauthenticated hint, the
    /// session handshake proves who answers there.
    case beaconHeard(UnderlayAddress)
    /// Queue a message for a member over its channel (see `NodeCore.sendMessage`, which also
    /// returns the result); answered with `.messageQueued` or `.messageRefused`.
    case sendMessage(to: NodeID, stream: UInt16, bytes: [UInt8])
    /// A round-trip time measured outside gossip (the ping service's), for gossip's nearest mode.
    case rttSample(NodeID, Duration)
    /// A command for the service that owns this protocol id, in that service's own type.
    case service(ProtocolID, ServicePayload)
}

/// What the core asks its driver to do, in order.
public enum NodeOutput: Sendable, Equatable {
    /// A sealed datagram. `bulk` marks a channel or reliable-stream frame: the runtime's socket
    /// lets every other datagram (membership, probes, handshakes) overtake frames that wait for
    /// the kernel, so failure detection keeps its pace during a transfer (Docs/channels.md,
    /// "Membership beside a transfer"). The simulator's links carry both alike.
    case send(to: UnderlayAddress, bytes: [UInt8], bulk: Bool = false)
    /// Call back with `.timer` at this instant. A later `.wake` replaces an earlier one.
    case wake(at: Instant)
    case event(NodeEvent)
    /// Make `batch` durable, then carry out `then` (datagrams already sealed by the sessions), then
    /// hand back `.persisted(batch.ticket, …)`. Nothing in `then` may leave before the batch is
    /// durable; on failure `then` is dropped and the outcome says why.
    indirect case persist(PersistBatch, then: [NodeOutput])
    /// Run `job.work` off the loop (the runtime: libuv's thread pool; the simulator: inline,
    /// charging `job.cost` of virtual CPU) and hand back `.offloaded(job.ticket, result)`.
    indirect case offload(OffloadJob)
}

/// Things worth telling a person or a test about.
public enum NodeEvent: Sendable, Equatable {
    case memberAdded(NodeID, UnderlayAddress)
    case memberStateChanged(NodeID, from: MemberState, to: MemberState, incarnation: UInt32)
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
    /// The other gossip events: neighbours, joined, refutations, attributes, query answers.
    case membership(GossipEvent)
    /// An event of the service that owns this protocol id, in that service's own type.
    case service(ProtocolID, ServicePayload)
}

/// Why the node refused to queue a message. Nothing was allocated for it.
public enum MessageSendError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a member: the node has no address or key to reach it.
    case unknownPeer(NodeID)
    /// The member is dead, left or culled.
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
        case let .peerDead(id): return "member \(id.short) is not alive (dead, left or culled); wait until it is alive again"
        case let .messageTooLarge(size, max): return "message of \(size) bytes exceeds the channel maximum of \(max) bytes"
        case .backpressure: return "send buffer full; retry when the channel is writable"
        case .tooManyConnections: return "too many channel connections"
        }
    }
}
