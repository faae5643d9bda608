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

    /// The channel stream of bulk messages (`ReliableUse.bulk`): the channel sends lower stream
    /// ids first, so every other service's messages (stream 0) go ahead of bulk ones.
    static let bulkStream: UInt16 = 1

    mutating func sendReliable(_ bytes: [UInt8], to peer: ProvenPeer, from slot: Int, now: Instant, into out: inout [NodeOutput]) {
        if !membership.isMember(peer.nodeID) { rememberRoute(peer) }
        reliableUse[peer.nodeID] = now
        let use = reliableUses.indices.contains(slot) ? reliableUses[slot] : ReliableUse()
        let (result, outputs) = reliable.send(bytes, stream: use.bulk ? Self.bulkStream : 0, to: peer.nodeID, now: now)
        switch result {
        case let .success(id):
            own.reliableOut += 1
            if use.outcomes { reliableTracked[id] = (slot, peer.nodeID, bytes) }
            absorbReliable(outputs, now: now, into: &out)
        case .failure:
            own.drop(.reliableRefused)
            absorbReliable(outputs, now: now, into: &out)
            // Never silently: a service that asked is told, and may send it again later.
            if use.outcomes { runOutcome(slot, ReliableOutcome(to: peer.nodeID, bytes: bytes, result: .refused), now: now, into: &out) }
        }
    }

    mutating func receiveReliableFrame(_ bytes: [UInt8], from peer: ProvenPeer, now: Instant, into out: inout [NodeOutput]) {
        guard peer.nodeID != identity.nodeID else { own.drop(.fromSelf); return }
        if !membership.isMember(peer.nodeID) { rememberRoute(peer) }
        reliableUse[peer.nodeID] = now
        absorbReliable(reliable.receive(frame: Array(bytes.dropFirst()), from: peer.nodeID, now: now), now: now, into: &out)
    }

    /// Carries out what the reliable stream's endpoint asked for.
    ///
    /// The wake: a message delivered here may make its service send on the stream at once (a
    /// nested call of this function, which sets the wake from the endpoint's newer reckoning);
    /// the `.wake` at the end of `outputs` was reckoned before that, so it is kept only when no
    /// nested call set one (it used to overwrite it, and a pacing or retransmission deadline of
    /// the nested send could be lost until the next frame). Outcomes go to their services after
    /// the loop, for the same reason.
    mutating func absorbReliable(_ outputs: [ChannelOutput<NodeID>], now: Instant, into out: inout [NodeOutput]) {
        var wake: Instant?
        let epoch = reliableWakeEpoch
        var broken: [NodeID] = []
        var outcomes: [(slot: Int, outcome: ReliableOutcome)] = []
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
            case let .failed(id, to, reason):
                own.reliableFailed += 1
                if reason == .timeout { broken.append(to) }
                if let t = reliableTracked.removeValue(forKey: id) {
                    outcomes.append((t.slot, ReliableOutcome(to: to, bytes: t.bytes, result: .failed)))
                }
            case let .sent(id, to):
                if let t = reliableTracked.removeValue(forKey: id) {
                    outcomes.append((t.slot, ReliableOutcome(to: to, bytes: t.bytes, result: .delivered)))
                }
            case .writable:
                break
            case let .wake(at):
                wake = at
            }
        }
        if reliableWakeEpoch == epoch { reliableWake = wake }
        reliableWakeEpoch &+= 1
        for (slot, outcome) in outcomes { runOutcome(slot, outcome, now: now, into: &out) }
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
