import Channels
import Gossip
import MeshCore
import Sessions

/// Channels inside the node: one `ChannelEndpoint` keyed by node id. Its frames travel as session
/// plaintext to the member's current address, told apart from gossip and ping by their first
/// byte (`ChannelWire.version`, Docs/encoding.md); its timers fold into the node's single wake-up.
extension NodeCore {
    /// A frame must fit the session's plaintext exactly: no demux byte is added, the channel
    /// frame's own version byte is the demux.
    public static let maxChannelFrame = SessionManager.maxPlaintext

    public static var defaultChannelConfig: ChannelConfig {
        var c = ChannelConfig()
        c.maxFrame = maxChannelFrame
        // The controller forgives isolated loss (radio links); a window larger than the kernel
        // socket buffer (4 MiB asked by the runtime) would overflow it every round without ever
        // counting as congestion. 2 MiB still fills 40 MB/s at 50 ms RTT.
        c.maxCongestionWindow = 2 << 20
        // One ACK per 8 frames instead of 2: a third fewer datagrams in a bulk transfer.
        c.ackEveryPackets = 16
        return c
    }

    /// Largest message `sendMessage` accepts.
    public var maxMessage: Int { channels.config.maxMessage }

    /// Queues `bytes` for member `to` on `stream`. Returns the message's id, or why it was refused
    /// (nothing is queued then), and the outputs to carry out. `.messageDelivered` or
    /// `.messageFailed` follows for every accepted message.
    public mutating func sendMessage(_ bytes: [UInt8], stream: UInt16, to: NodeID, now: Instant) -> (Result<MessageID, MessageSendError>, [NodeOutput]) {
        var out: [NodeOutput] = []
        let result = queueMessage(bytes, stream: stream, to: to, now: now, into: &out)
        foldWake(into: &out)
        return (result, out)
    }

    mutating func queueMessage(_ bytes: [UInt8], stream: UInt16, to: NodeID, now: Instant, into out: inout [NodeOutput]) -> Result<MessageID, MessageSendError> {
        guard let member = gossip.members[to] else { return .failure(.unknownPeer(to)) }
        guard member.state == .alive || member.state == .suspect else { return .failure(.peerDead(to)) }
        let (result, outputs) = channels.send(bytes, stream: stream, to: to, now: now)
        absorb(outputs, now: now, into: &out)
        switch result {
        case let .success(id): return .success(id)
        case let .failure(.messageTooLarge(size, max)): return .failure(.messageTooLarge(size: size, max: max))
        case .failure(.backpressure): return .failure(.backpressure)
        case .failure(.tooManyConnections): return .failure(.tooManyConnections)
        }
    }

    /// An authenticated channel frame. Liveness is gossip's business.
    mutating func receiveChannelFrame(_ bytes: [UInt8], from: UnderlayAddress, sender: PeerIdentity, now: Instant, into out: inout [NodeOutput]) {
        guard sender.nodeID != identity.nodeID else { counters.drop(.fromSelf); return }
        absorb(channels.receive(frame: bytes, from: sender.nodeID, now: now), now: now, into: &out)
    }

    /// Fails the pending messages to `id` and forgets its channel state (member dead), so a
    /// member that comes back starts clean.
    mutating func resetChannel(_ id: NodeID, now: Instant, into out: inout [NodeOutput]) {
        absorb(channels.reset(peer: id, now: now), now: now, into: &out)
    }

    /// Where a peer's channel frames go: its member row, else where it last reached us from.
    func route(_ id: NodeID) -> PeerEntry? {
        gossip.members[id]?.entry ?? reliableRoutes[id]
    }

    /// Carries out what the channel endpoint asked for.
    mutating func absorb(_ outputs: [ChannelOutput<NodeID>], now: Instant, into out: inout [NodeOutput]) {
        var sawWake = false
        for o in outputs {
            switch o {
            case let .frame(to, bytes):
                guard let e = route(to) else { counters.drop(.channelNoRoute); continue }
                absorb(sessions.send(bytes, to: e.address, peerKey: e.peer.publicKey, now: now), now: now, into: &out)
            case let .delivered(from, stream, message):
                out.append(.event(.messageReceived(from: from, stream: stream, bytes: message)))
            case let .sent(id, to):
                out.append(.event(.messageDelivered(id, to: to)))
            case let .failed(id, to, reason):
                out.append(.event(.messageFailed(id, to: to, reason: reason)))
                // Nothing acknowledged for the channel's failure timeout: the connection is
                // broken, and the receiver may hold later messages of the stream waiting for
                // this one forever (they count against its flow-control window, so everything
                // from this peer would stall, gossip's anti-entropy included). Start both sides
                // clean: the peer sees a new connection id and drops its half.
                if reason == .timeout { connectionsToReset.append(to) }
            case let .writable(peer):
                out.append(.event(.channelWritable(peer)))
            case let .wake(at):
                sawWake = true
                channelWake = at // folded into the node's single wake-up at the end of `handle`
            }
        }
        // The endpoint reports its earliest deadline with every call; none means no timer runs.
        if !sawWake { channelWake = nil }
        while let peer = connectionsToReset.popLast() {
            counters.channelResetsAfterTimeout += 1
            absorb(channels.reset(peer: peer, now: now), now: now, into: &out)
        }
    }
}

