import Lacero
import MeshCore
import Node
import NodeService

/// Lacero's large messages (stores and blocks) paced by the node's reliable stream: a message
/// leaves for a peer only while the bytes Lacero handed the stream towards that peer and not yet
/// acknowledged stay within `peerWindowBytes`, and those towards all peers within
/// `nodeWindowBytes`; the others wait in a per-peer outbox, oldest first, and go when an
/// acknowledgement (`ReliableOutcome.delivered`) frees room. So a sharding node pushing ~100 MB
/// never holds more than a few hundred kilobytes per peer (and `nodeWindowBytes` in all) in the
/// stream's buffers, the sockets' queues and the peers' receive buffers, where membership's
/// probes would wait behind them; and the stream's own buffer (1 MiB per peer) always has room
/// for other services' messages.
///
/// Nothing is dropped silently: a message the stream refused (`.refused`) goes back to the head of
/// its outbox and is tried again at `refusedRetry` or at the next acknowledgement; a message whose
/// connection failed (`.failed`: timeout, reset, the peer declared dead) is routed again, a store
/// through another hop (`rerouted`), a block left to the fetcher's retry.
struct Pacing: Sendable {
    struct Outgoing: Sendable {
        var to: ProvenPeer
        var bytes: [UInt8]
        /// The sequence of the write that must be durable before it leaves (a relay's keep).
        var afterPersist: UInt64?
    }

    /// Bytes handed to the stream and not yet acknowledged, by peer and in all.
    var inFlight: [NodeID: Int] = [:]
    var inFlightTotal = 0
    /// Messages waiting for room, by peer, oldest first.
    var outbox: [NodeID: [Outgoing]] = [:]
    /// Writes this service asked for and has not heard back about.
    var notDurable: Set<UInt64> = []
    /// When messages the stream refused are tried again.
    var retryAt: Instant?

    func waiting(for peer: NodeID) -> Int { outbox[peer]?.count ?? 0 }
    var queued: Int { outbox.values.reduce(0) { $0 + $1.count } }
}

extension LaceroService {
    /// How long a refused message waits before it is tried again (when no acknowledgement from its
    /// peer comes first).
    public static let refusedRetry: Duration = .milliseconds(200)

    /// Whether `size` more bytes may go to `peer` now: the first message to an idle peer always may.
    private func fits(_ size: Int, to peer: NodeID) -> Bool {
        let mine = pacing.inFlight[peer, default: 0]
        guard mine == 0 || mine + size <= config.peerWindowBytes else { return false }
        return pacing.inFlightTotal == 0 || pacing.inFlightTotal + size <= config.nodeWindowBytes
    }

    /// Whether `peer` can take a new store now (nothing waiting for it, room in its window).
    func hasRoom(_ peer: NodeID, for size: Int) -> Bool {
        pacing.waiting(for: peer) == 0 && pacing.inFlight[peer, default: 0] + size <= config.peerWindowBytes
    }

    /// Sends `bytes` on the reliable stream now if the windows allow and nothing older waits for
    /// the same peer; otherwise queues it. A message that must follow a write (`afterPersist`)
    /// and goes now is returned for the caller to put in that write's `then`.
    mutating func sendPaced(_ bytes: [UInt8], to peer: ProvenPeer, afterPersist: UInt64? = nil, now: Instant) -> [Output] {
        if pacing.waiting(for: peer.nodeID) == 0, fits(bytes.count, to: peer.nodeID) {
            account(bytes.count, to: peer.nodeID)
            return [.sendReliable(to: peer, bytes: bytes)]
        }
        pacing.outbox[peer.nodeID, default: []].append(Pacing.Outgoing(to: peer, bytes: bytes, afterPersist: afterPersist))
        counters.paced += 1
        return []
    }

    private mutating func account(_ size: Int, to peer: NodeID) {
        pacing.inFlight[peer, default: 0] += size
        pacing.inFlightTotal += size
    }

    private mutating func settle(_ size: Int, to peer: NodeID) {
        let left = pacing.inFlight[peer, default: 0] - size
        pacing.inFlight[peer] = left > 0 ? left : nil
        pacing.inFlightTotal = max(0, pacing.inFlightTotal - size)
    }

    /// Sends what waits, peer by peer in id order, while the windows allow.
    mutating func pumpOutbox(now: Instant) -> [Output] {
        guard !pacing.outbox.isEmpty else { return [] }
        var out: [Output] = []
        for peer in pacing.outbox.keys.sorted() {
            while let next = pacing.outbox[peer]?.first {
                if let w = next.afterPersist, pacing.notDurable.contains(w) { break }
                guard fits(next.bytes.count, to: peer) else { break }
                pacing.outbox[peer]!.removeFirst()
                account(next.bytes.count, to: peer)
                // A store of this node's own waits for its keep-ack from the moment it leaves.
                if let token = Self.storeToken(next.bytes), var p = pending[token], p.hop == peer {
                    p.due = now + config.ackTimeout
                    pending[token] = p
                }
                out.append(.sendReliable(to: next.to, bytes: next.bytes))
            }
            if pacing.outbox[peer]?.isEmpty == true { pacing.outbox[peer] = nil }
        }
        return out
    }

    /// A store message's return token, read in place (kind 1: magic, kind, id, register,
    /// threshold, hops, then the token).
    public static func storeToken(_ bytes: [UInt8]) -> [UInt8]? {
        let at = 2 + 1 + LaceroMessage.idLength + 3
        guard bytes.count >= at + LaceroMessage.tokenLength, bytes[2] == 1 else { return nil }
        return Array(bytes[at..<(at + LaceroMessage.tokenLength)])
    }

    /// What the node's reliable stream did with one of this service's messages.
    public mutating func reliableOutcome(_ outcome: ReliableOutcome, now: Instant, members dir: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        let size = outcome.bytes.count
        switch outcome.result {
        case .delivered:
            settle(size, to: outcome.to)
            return pumpOutbox(now: now)
        case .refused:
            // Nothing of it left: it goes back to the head of its peer's queue.
            settle(size, to: outcome.to)
            drop("reliable_refused")
            if let peer = dir.peer(outcome.to) {
                pacing.outbox[outcome.to, default: []].insert(Pacing.Outgoing(to: peer, bytes: outcome.bytes, afterPersist: nil), at: 0)
                let retry = now + Self.refusedRetry
                if pacing.retryAt.map({ retry < $0 }) ?? true { pacing.retryAt = retry }
                return []
            }
            return rerouteFailed(outcome.bytes, from: outcome.to, now: now, dir) + pumpOutbox(now: now)
        case .failed:
            settle(size, to: outcome.to)
            drop("reliable_failed")
            return rerouteFailed(outcome.bytes, from: outcome.to, now: now, dir) + pumpOutbox(now: now)
        }
    }

    /// A member went down: what waited for it is routed elsewhere (what was in flight comes back
    /// as `.failed` outcomes when the node closes the connection).
    mutating func peerGone(_ peer: NodeID, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard let waiting = pacing.outbox.removeValue(forKey: peer) else { return [] }
        var out: [Output] = []
        for m in waiting { out += rerouteFailed(m.bytes, from: peer, now: now, dir) }
        return out
    }

    /// A message that will not reach `from`: a store goes through another hop (this node's own
    /// from its first hop on, a relayed one onward from here, or back with its register when no
    /// member is left); a block is left to the fetcher, which asks again or asks another holder.
    mutating func rerouteFailed(_ bytes: [UInt8], from: NodeID, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard bytes.count > 2, bytes[2] == 1, case let .store(s)? = try? LaceroMessage.decode(bytes) else { return [] }
        if let p = pending[s.token], p.hop == from, p.message.id == s.id {
            counters.rerouted += 1
            return sendPending(s.token, now: now, avoiding: from, dir)
        }
        guard let back = routeBack[s.token] else { return [] }
        var onward = s
        if onward.visited.count < LaceroMessage.maxVisited { onward.visited.append(from.leadingWord) }
        if let next = randomHop(excluding: onward.visited, avoiding: from, dir) {
            counters.rerouted += 1
            return sendPaced(LaceroMessage.store(onward).encode(), to: next, now: now)
        }
        routeBack[s.token] = nil
        return [.send(.peer(back.to), bytes: LaceroMessage.keepAck(token: s.token, id: s.id, kept: s.register >= s.threshold, register: s.register).encode())]
    }

    /// A write this service asked for is durable (or failed): what waited for it may go; on a
    /// failure it is dropped (the sharding node's retry places the fragment elsewhere).
    mutating func persisted(_ ticket: PersistTicket, _ outcome: PersistOutcome, now: Instant) -> [Output] {
        guard pacing.notDurable.remove(ticket.sequence) != nil else { return [] }
        if case .failed = outcome {
            for peer in pacing.outbox.keys.sorted() {
                let before = pacing.outbox[peer]!.count
                pacing.outbox[peer]!.removeAll { $0.afterPersist == ticket.sequence }
                for _ in pacing.outbox[peer]!.count..<before { drop("write_failed") }
                if pacing.outbox[peer]!.isEmpty { pacing.outbox[peer] = nil }
            }
        }
        return pumpOutbox(now: now)
    }

    /// The refused messages' retry is due.
    mutating func pacingTimer(now: Instant) -> [Output] {
        guard let r = pacing.retryAt, r <= now else { return [] }
        pacing.retryAt = nil
        return pumpOutbox(now: now)
    }
}
