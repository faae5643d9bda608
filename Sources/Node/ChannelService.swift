import Channels
import MeshCore
import NodeService
import Sessions

/// Users' channels as a node service: reliable, ordered messages of any size to members
/// (`NodeCommand.sendMessage`, `NodeCore.sendMessage`), one `ChannelEndpoint` keyed by node id.
/// Its frames travel as session plaintext to the member's current address, told apart from the
/// other protocols by their first byte (`ChannelWire.version`, Docs/encoding.md); whole messages
/// come out as `.messageReceived` events.
public struct ChannelService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    public static let protocolID = ProtocolID(ChannelWire.version)
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }
    public var sendsBulk: Bool { true }

    /// A frame must fit the session's plaintext exactly: no demux byte is added, the channel
    /// frame's own version byte is the demux.
    public static let maxFrame = SessionManager.maxPlaintext

    public static var defaultConfig: ChannelConfig {
        var c = ChannelConfig()
        c.maxFrame = maxFrame
        // The controller forgives isolated loss (radio links); a window larger than the kernel
        // socket buffer (4 MiB asked by the runtime) would overflow it every round without ever
        // counting as congestion. 2 MiB still fills 40 MB/s at 50 ms RTT.
        c.maxCongestionWindow = 2 << 20
        // One ACK per 8 frames instead of 2: a third fewer datagrams in a bulk transfer.
        c.ackEveryPackets = 16
        return c
    }

    public struct Counters: Sendable, Equatable {
        /// Connections reset because a message timed out.
        public var resetsAfterTimeout: UInt64 = 0
        public var drops: [DropReason: UInt64] = [:]
    }

    public internal(set) var endpoint: ChannelEndpoint<NodeID>
    public private(set) var counters = Counters()
    public private(set) var deadline: Instant?
    let me: NodeID

    public init(me: NodeID, config: ChannelConfig, rng: SeededGenerator) {
        self.me = me
        var config = config
        config.maxFrame = min(config.maxFrame, Self.maxFrame)
        endpoint = ChannelEndpoint(config: config, rng: rng)
    }

    public func takes(_ command: NodeCommand) -> Bool {
        if case .sendMessage = command { return true }
        return false
    }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        var out: [Output] = []
        switch input {
        case let .message(from, bytes, _):
            // Liveness is gossip's business.
            guard from.nodeID != me else { counters.drops[.fromSelf, default: 0] += 1; return [] }
            absorb(endpoint.receive(frame: bytes, from: from.nodeID, now: now), now: now, into: &out)
        case let .command(.sendMessage(to, stream, bytes)):
            switch queue(bytes, stream: stream, to: to, now: now, members: members, into: &out) {
            case let .success(id): out.append(.event(.messageQueued(id, to: to, stream: stream)))
            case let .failure(error): out.append(.event(.messageRefused(to: to, stream: stream, error: error)))
            }
        case .timer:
            if let d = deadline, now >= d {
                deadline = nil
                absorb(endpoint.tick(now: now), now: now, into: &out)
            }
        case let .membership(.down(peer)), let .membership(.culled(peer)):
            // Pending messages to a member that is gone fail now rather than after the channel's
            // own timeout, and a member that comes back starts clean.
            absorb(endpoint.reset(peer: peer.nodeID, now: now), now: now, into: &out)
        case .start, .command, .membership, .persisted, .offloaded, .restored, .stop:
            break
        }
        return out
    }

    private mutating func queue(_ bytes: [UInt8], stream: UInt16, to: NodeID, now: Instant, members: some MemberDirectory,
                                into out: inout [Output]) -> Result<MessageID, MessageSendError> {
        guard members.peer(to) != nil else { return .failure(.unknownPeer(to)) }
        guard members.isReachable(to) else { return .failure(.peerDead(to)) }
        let (result, outputs) = endpoint.send(bytes, stream: stream, to: to, now: now)
        absorb(outputs, now: now, into: &out)
        switch result {
        case let .success(id): return .success(id)
        case let .failure(.messageTooLarge(size, max)): return .failure(.messageTooLarge(size: size, max: max))
        case .failure(.backpressure): return .failure(.backpressure)
        case .failure(.tooManyConnections): return .failure(.tooManyConnections)
        }
    }

    /// The endpoint's outputs in the service contract.
    private mutating func absorb(_ outputs: [ChannelOutput<NodeID>], now: Instant, into out: inout [Output]) {
        var sawWake = false
        var broken: [NodeID] = []
        for o in outputs {
            switch o {
            case let .frame(to, bytes):
                out.append(.send(.member(to), bytes: bytes))
            case let .delivered(from, stream, message):
                out.append(.event(.messageReceived(from: from, stream: stream, bytes: message)))
            case let .sent(id, to):
                out.append(.event(.messageDelivered(id, to: to)))
            case let .failed(id, to, reason):
                out.append(.event(.messageFailed(id, to: to, reason: reason)))
                // Nothing acknowledged for the channel's failure timeout: the connection is
                // broken, and the receiver may hold later messages of the stream waiting for
                // this one forever (they count against its flow-control window, so everything
                // from this peer would stall). Start both sides clean: the peer sees a new
                // connection id and drops its half.
                if reason == .timeout { broken.append(to) }
            case let .writable(peer):
                out.append(.event(.channelWritable(peer)))
            case let .wake(at):
                sawWake = true
                deadline = at
            }
        }
        // The endpoint reports its earliest deadline with every call; none means no timer runs.
        if !sawWake { deadline = nil }
        while let peer = broken.popLast() {
            counters.resetsAfterTimeout += 1
            absorb(endpoint.reset(peer: peer, now: now), now: now, into: &out)
        }
    }
}
