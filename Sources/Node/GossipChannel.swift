import Channels
import Gossip
import MeshCore
import Sessions

/// Gossip's reliable messages (anti-entropy deltas, full attributes) travel on their own
/// `ChannelEndpoint`, not the users' one. Its frames are session plaintext prefixed with one byte,
/// `gossipChannelPrefix` (Docs/encoding.md).
///
/// Why a second endpoint: a channel connection's receive grant grows to its per-peer buffer with
/// its first acknowledgement and is never given back while the connection lives; the users'
/// endpoint grants 20 MiB per peer out of 64 MiB, so after three peers had sent anything, every
/// later peer's messages were refused for flow control, forever. Gossip talks reliably to many
/// peers (every anti-entropy partner, every neighbour whose attributes it fetches) with messages
/// of at most `GossipWire.maxReliable` bytes: its endpoint grants 512 KiB per peer, and
/// connections to peers outside the active view are closed after `gossipChannelIdle`, which
/// returns their grant. Gossip's messages are idempotent and its exchanges retried, so a closed
/// connection costs at most one exchange.
extension NodeCore {
    public static let gossipChannelPrefix: UInt8 = 0x02
    /// Connections to peers outside the active view are closed after this long unused.
    static let gossipChannelIdle: Duration = .seconds(10)

    public static var gossipChannelConfig: ChannelConfig {
        var c = ChannelConfig()
        c.maxFrame = SessionManager.maxPlaintext - 1
        c.maxMessage = GossipWire.maxReliable
        c.perPeerSendBuffer = 1 << 20
        c.nodeSendBuffer = 16 << 20
        c.perPeerReceiveBuffer = 512 << 10
        c.nodeReceiveBuffer = 32 << 20
        c.maxCongestionWindow = 1 << 20
        return c
    }

    mutating func sendGossipReliable(_ bytes: [UInt8], to entry: PeerEntry, now: Instant, into out: inout [NodeOutput]) {
        if gossip.members[entry.nodeID] == nil { rememberRoute(entry) }
        gossipChannelUse[entry.nodeID] = now
        let (result, outputs) = gossipChannels.send(bytes, stream: 0, to: entry.nodeID, now: now)
        absorbGossipChannel(outputs, now: now, into: &out)
        if case .failure = result { counters.drop(.gossipReliableRefused) } else { counters.gossipReliableOut += 1 }
    }

    mutating func receiveGossipChannelFrame(_ bytes: [UInt8], from: UnderlayAddress, sender: PeerIdentity, now: Instant, into out: inout [NodeOutput]) {
        guard sender.nodeID != identity.nodeID else { counters.drop(.fromSelf); return }
        if gossip.members[sender.nodeID] == nil { rememberRoute(PeerEntry(peer: sender, address: from)) }
        gossipChannelUse[sender.nodeID] = now
        absorbGossipChannel(gossipChannels.receive(frame: Array(bytes.dropFirst()), from: sender.nodeID, now: now), now: now, into: &out)
    }

    /// Carries out what gossip's channel endpoint asked for.
    mutating func absorbGossipChannel(_ outputs: [ChannelOutput<NodeID>], now: Instant, into out: inout [NodeOutput]) {
        var sawWake = false
        var broken: [NodeID] = []
        for o in outputs {
            switch o {
            case let .frame(to, bytes):
                guard let e = route(to) else { counters.drop(.channelNoRoute); continue }
                var framed = [UInt8]()
                framed.reserveCapacity(bytes.count + 1)
                framed.append(Self.gossipChannelPrefix)
                framed.append(contentsOf: bytes)
                absorb(sessions.send(framed, to: e.address, peerKey: e.peer.publicKey, now: now), now: now, into: &out)
            case let .delivered(from, _, message):
                guard let e = route(from) else { counters.drop(.channelNoRoute); continue }
                counters.gossipReliableIn += 1
                absorb(gossip.handle(.reliableReceived(from: e, bytes: message), now: now), now: now, into: &out)
            case let .failed(_, to, reason):
                counters.gossipReliableFailed += 1
                if reason == .timeout { broken.append(to) }
            case .sent, .writable:
                break
            case let .wake(at):
                sawWake = true
                gossipChannelWake = at
            }
        }
        if !sawWake { gossipChannelWake = nil }
        for peer in broken { closeGossipChannel(peer, now: now, into: &out) }
    }

    mutating func closeGossipChannel(_ peer: NodeID, now: Instant, into out: inout [NodeOutput]) {
        gossipChannelUse.removeValue(forKey: peer)
        absorbGossipChannel(gossipChannels.reset(peer: peer, now: now), now: now, into: &out)
    }

    /// Closes connections to peers outside the active view that were not used for a while.
    mutating func closeIdleGossipChannels(now: Instant, into out: inout [NodeOutput]) {
        guard now >= nextGossipChannelSweep else { return }
        nextGossipChannelSweep = now + Self.gossipChannelIdle
        var idle: [NodeID] = []
        for (peer, used) in gossipChannelUse where now - used >= Self.gossipChannelIdle {
            if !gossip.activeView.contains(where: { $0.nodeID == peer }) { idle.append(peer) }
        }
        // Sorted: what is sent must not depend on dictionary order (simulator determinism).
        for peer in idle.sorted() { closeGossipChannel(peer, now: now, into: &out) }
    }
}
