import MeshCore
import Node

/// A node that misbehaves on the wire. The node core stays honest; its outgoing datagrams are
/// rewritten here before the network sees them, which is what a compromised device could do.
struct Byzantine {
    let behaviour: TimelineEvent.Behaviour
    let probability: Double
    let delay: Int64
    var rng: SeededGenerator
    /// Recent datagrams this node sent, replayed later by `replay`.
    private var recent: [(to: Int32, bytes: [UInt8])] = []
    private var recentNext = 0
    static let replayMemory = 32

    init(_ e: TimelineEvent, rng: SeededGenerator) {
        behaviour = e.behaviour
        probability = e.probability
        delay = Int64(e.delayMs * 1e6)
        self.rng = rng
    }

    /// What to send instead of one datagram: none, the same or altered bytes, extra delay, and
    /// possibly an older datagram replayed to an older destination.
    struct Action {
        var bytes: [UInt8]?
        var extraDelay: Int64 = 0
        var replay: (to: Int32, bytes: [UInt8])?
        var acted = false
    }

    mutating func act(to j: Int32, bytes: [UInt8], addresses: [UnderlayAddress]) -> Action {
        var a = Action(bytes: bytes)
        let hit = probability >= 1 || rng.unit() < probability
        switch behaviour {
        case .drop:
            if hit { a.bytes = nil; a.acted = true }
        case .delay:
            if hit { a.extraDelay = delay; a.acted = true }
        case .corrupt:
            if hit, !bytes.isEmpty {
                var b = bytes
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    b[Int(rng.next() % UInt64(b.count))] ^= UInt8(1 + rng.next() % 255)
                }
                a.bytes = b
                a.acted = true
            }
        case .replay:
            if hit, !recent.isEmpty {
                a.replay = recent[Int(rng.next() % UInt64(recent.count))]
                a.acted = true
            }
            if recent.count < Self.replayMemory { recent.append((j, bytes)) } else {
                recent[recentNext] = (j, bytes)
                recentNext = (recentNext + 1) % Self.replayMemory
            }
        case .equivocate, .conflictingProposals, .doubleVote:
            // Lies are told inside the encrypted session: see `Equivocator`, installed in the node,
            // and the services that read their node's `ServiceLie`.
            break
        }
        return a
    }
}

/// The byzantine behaviour a node's services should act out right now (nil: honest). One per
/// node for the whole run (a restarted node's new services read the same one); the timeline sets
/// it on the driver's thread between steps, services read it on their node's thread.
final class ServiceLie: @unchecked Sendable {
    var behaviour: TimelineEvent.Behaviour?
    /// Lies the node's services told (bumped on the node's thread, read between windows).
    var acts: UInt64 = 0
}

/// Tells each peer a different story: every member it vouches for (alive updates, join, shuffle
/// and neighbour samples) is claimed to live at the address of some random other node.
/// Installed as the node core's `GossipRewriter`.
struct Equivocator: GossipRewriter {
    let addresses: [UnderlayAddress]
    var rng: SeededGenerator
    let tally: Tally

    /// One per equivocator: it is bumped on the thread that runs its node's window group, and
    /// read by the driver only between windows.
    final class Tally { var lies: UInt64 = 0 }

    mutating func rewrite(_ message: GossipMessage, for peer: NodeID?) -> GossipMessage {
        switch message {
        case let .ping(seq, updates): return .ping(seq: seq, updates: lie(updates))
        case let .ack(seq, updates): return .ack(seq: seq, updates: lie(updates))
        case let .gossip(updates): return .gossip(updates: lie(updates))
        case let .joinReply(sample): return .joinReply(sample: lie(sample))
        case let .neighborReply(accepted, sample): return .neighborReply(accepted: accepted, sample: lie(sample))
        case let .shuffle(id, ttl, origin, sample): return .shuffle(id: id, ttl: ttl, origin: origin, sample: lie(sample))
        case let .shuffleReply(id, sample): return .shuffleReply(id: id, sample: lie(sample))
        default: return message
        }
    }

    private mutating func elsewhere() -> UnderlayAddress { addresses[Int(rng.next() % UInt64(addresses.count))] }

    private mutating func lie(_ sample: [PeerEntry]) -> [PeerEntry] {
        guard !sample.isEmpty else { return sample }
        tally.lies += 1
        var out = sample
        for k in out.indices { out[k].address = elsewhere() }
        return out
    }

    private mutating func lie(_ updates: [MemberUpdate]) -> [MemberUpdate] {
        var lied = false
        var out = updates
        for k in out.indices {
            if case let .alive(entry, inc, version) = out[k] {
                var e = entry
                e.address = elsewhere()
                out[k] = .alive(e, incarnation: inc, attributeVersion: version)
                lied = true
            }
        }
        if lied { tally.lies += 1 }
        return out
    }
}
