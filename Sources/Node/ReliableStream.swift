import Channels
import Gossip
import MeshCore
import NodeService
import Sessions

/// The node's reliable stream: services' `.sendReliable` messages (gossip's anti-entropy deltas
/// and full attributes today) travel on one `ChannelEndpoint` of the node's own, separate from
/// the users' channels. Its frames are session plaintext prefixed with one byte, `reliablePrefix`
/// (Docs/encoding.md); a delivered message goes to the service that owns its first bytes, as
/// `.message(reliable: true)`.
///
/// Why its own endpoint: a channel connection's receive grant grows to its per-peer buffer with
/// its first acknowledgement and is never given back while the connection lives; the users'
/// endpoint grants 20 MiB per peer out of 64 MiB, so after three peers had sent anything, every
/// later peer's messages were refused for flow control, forever. Services talk reliably to many
/// peers (every anti-entropy partner, every neighbour whose attributes gossip fetches) with
/// messages of at most `GossipWire.maxReliable` bytes: this endpoint grants 512 KiB per peer, and
/// connections to peers that are not neighbours are closed after `reliableIdle`, which returns
/// their grant. Services' reliable messages must tolerate a closed connection (gossip's are
/// idempotent and its exchanges retried, so one costs at most one exchange).
extension NodeCore {
    public static let reliablePrefix: UInt8 = 0x02
    /// Connections to peers that are not neighbours are closed after this long unused.
    static let reliableIdle: Duration = .seconds(10)

    public static var reliableConfig: ChannelConfig {
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

    mutating func sendReliable(_ bytes: [UInt8], to peer: ProvenPeer, now: Instant, into out: inout [NodeOutput]) {
        if !membership.isMember(peer.nodeID) { rememberRoute(peer) }
        reliableUse[peer.nodeID] = now
        let (result, outputs) = reliable.send(bytes, stream: 0, to: peer.nodeID, now: now)
        absorbReliable(outputs, now: now, into: &out)
        if case .failure = result { own.drop(.reliableRefused) } else { own.reliableOut += 1 }
    }

    mutating func receiveReliableFrame(_ bytes: [UInt8], from peer: ProvenPeer, now: Instant, into out: inout [NodeOutput]) {
        guard peer.nodeID != identity.nodeID else { own.drop(.fromSelf); return }
        if !membership.isMember(peer.nodeID) { rememberRoute(peer) }
        reliableUse[peer.nodeID] = now
        absorbReliable(reliable.receive(frame: Array(bytes.dropFirst()), from: peer.nodeID, now: now), now: now, into: &out)
    }

    /// Carries out what the reliable stream's endpoint asked for.
    mutating func absorbReliable(_ outputs: [ChannelOutput<NodeID>], now: Instant, into out: inout [NodeOutput]) {
        var sawWake = false
        var broken: [NodeID] = []
        for o in outputs {
            switch o {
            case let .frame(to, bytes):
                guard let p = route(to) else { own.drop(.channelNoRoute); continue }
                var framed = [UInt8]()
                framed.reserveCapacity(bytes.count + 1)
                framed.append(Self.reliablePrefix)
                framed.append(contentsOf: bytes)
                absorb(sessions.send(framed, to: p.address, peer: p.identity, now: now), now: now, bulk: true, into: &out)
            case let .delivered(from, _, message):
                guard let p = route(from) else { own.drop(.channelNoRoute); continue }
                own.reliableIn += 1
                deliverReliable(message, from: p, now: now, into: &out)
            case let .failed(_, to, reason):
                own.reliableFailed += 1
                if reason == .timeout { broken.append(to) }
            case .sent, .writable:
                break
            case let .wake(at):
                sawWake = true
                reliableWake = at
            }
        }
        if !sawWake { reliableWake = nil }
        for peer in broken { closeReliable(peer, now: now, into: &out) }
    }

    mutating func closeReliable(_ peer: NodeID, now: Instant, into out: inout [NodeOutput]) {
        reliableUse.removeValue(forKey: peer)
        absorbReliable(reliable.reset(peer: peer, now: now), now: now, into: &out)
    }

    /// Closes connections to peers that are not neighbours and were not used for a while.
    mutating func closeIdleReliable(now: Instant, into out: inout [NodeOutput]) {
        guard now >= nextReliableSweep else { return }
        nextReliableSweep = now + Self.reliableIdle
        var idle: [NodeID] = []
        for (peer, used) in reliableUse where now - used >= Self.reliableIdle {
            if !membership.isNeighbour(peer) { idle.append(peer) }
        }
        // Sorted: what is sent must not depend on dictionary order (simulator determinism).
        for peer in idle.sorted() { closeReliable(peer, now: now, into: &out) }
    }
}
