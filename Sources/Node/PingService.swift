import MeshCore
import NodeService

/// The ping protocol (`iF`, PingWire) as a node service: `NodeCommand.probe` sends one ping to a
/// member, its pong comes back as `.probeAnswered` with the round-trip time, which is also handed
/// to the membership service (`NodeCommand.rttSample`). It is what `bench loop` measures; membership
/// does not depend on it.
public struct PingService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    public static let protocolID = ProtocolID(PingWire.magic[0], PingWire.magic[1])
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }

    struct PendingProbe: Sendable {
        var target: NodeID
        var sentAt: Instant
    }

    public struct Counters: Sendable, Equatable {
        public var sent: UInt64 = 0
        public var answered: UInt64 = 0
        public var missed: UInt64 = 0
        public var drops: [DropReason: UInt64] = [:]
    }

    /// How long an unanswered probe is remembered.
    static let probeMemory: Duration = .seconds(30)

    public private(set) var counters = Counters()
    let me: NodeID
    let network: NetworkID
    private var nextSeq: UInt64 = 1
    /// Probes in flight, by sequence number.
    private var pending: [UInt64: PendingProbe] = [:]
    /// When the oldest probe in flight is forgotten.
    public private(set) var deadline: Instant?
    /// This node's ping and pong as sent (PingWire.bare): only the sequence number changes, so
    /// each send rewrites it in place instead of encoding a new message.
    private var pingBytes: [UInt8]
    private var pongBytes: [UInt8]

    public init(me: PeerIdentity, network: NetworkID) {
        self.me = me.nodeID
        self.network = network
        pingBytes = PingWire.bare(.ping, network: network, senderKey: me.publicKey.bytes)
        pongBytes = PingWire.bare(.pong, network: network, senderKey: me.publicKey.bytes)
    }

    public var pendingProbes: Int { pending.count }

    public func takes(_ command: NodeCommand) -> Bool {
        if case .probe = command { return true }
        return false
    }

    public func purpose(ofSent bytes: [UInt8]) -> String? {
        bytes.count > 3 && bytes[3] == PingWire.Kind.ping.rawValue ? "node_probe" : nil
    }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case let .message(from, bytes, _):
            return receive(bytes, from: from, now: now)
        case let .command(.probe(id)):
            guard let peer = members.peer(id) else { return [] }
            let seq = nextSeq
            nextSeq &+= 1
            pending[seq] = PendingProbe(target: id, sentAt: now)
            if deadline == nil { deadline = now + Self.probeMemory }
            counters.sent += 1
            PingWire.setSeq(seq, in: &pingBytes)
            return [.send(.peer(peer), bytes: pingBytes)]
        case .timer:
            expire(now: now)
            return []
        case .start, .command, .membership, .persisted, .offloaded, .restored, .stop:
            return []
        }
    }

    private mutating func receive(_ bytes: [UInt8], from: ProvenPeer, now: Instant) -> [Output] {
        let kind: PingWire.Kind, seq: UInt64
        let sender = from.identity
        // The session proved who sent this; a message claiming another key is refused.
        if let bare = PingWire.decodeBare(bytes, network: network, senderKey: sender.publicKey.bytes) {
            (kind, seq) = bare // what nodes send, checked in place
        } else {
            let message: PingWire.Message
            switch PingWire.decode(bytes) {
            case let .failure(reason): drop(reason); return []
            case let .success(m): message = m
            }
            guard message.network == network else { drop(.wrongNetwork); return [] }
            guard message.senderKey == sender.publicKey.bytes else { drop(.keyMismatch); return [] }
            (kind, seq) = (message.kind, message.seq)
        }
        if sender.nodeID == me { drop(.fromSelf); return [] }
        switch kind {
        case .ping:
            PingWire.setSeq(seq, in: &pongBytes)
            return [.send(.peer(from), bytes: pongBytes)]
        case .pong:
            guard let probe = pending.removeValue(forKey: seq), probe.target == sender.nodeID else {
                drop(.unexpectedPong)
                return []
            }
            counters.answered += 1
            if pending.isEmpty { deadline = nil }
            let rtt = now - probe.sentAt
            return [.command(.rttSample(sender.nodeID, rtt)), .event(.probeAnswered(sender.nodeID, rtt: rtt))]
        }
    }

    private mutating func expire(now: Instant) {
        deadline = nil
        var oldest: Instant?
        for (seq, p) in pending.sorted(by: { $0.key < $1.key }) {
            if now - p.sentAt >= Self.probeMemory {
                pending.removeValue(forKey: seq)
                counters.missed += 1
            } else if oldest.map({ p.sentAt < $0 }) ?? true {
                oldest = p.sentAt
            }
        }
        if let oldest { deadline = oldest + Self.probeMemory }
    }

    private mutating func drop(_ reason: DropReason) { counters.drops[reason, default: 0] += 1 }
}
