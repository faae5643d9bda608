import MeshCore

/// The meter relay service's datagrams (protocol id "iM", Docs/meters.md "Wire"). Every message:
/// magic "iM" (2) · version (1) · type (1) · body; integers big-endian. At most
/// `maxDatagram` bytes, so a message fits one session datagram.
public enum MeterMessage: Hashable, Sendable {
    /// "Who are you and how far is your collector?" A neighbour answers with an advert echoing the
    /// token; the asker's clock between the two is the RTT it ranks the neighbour by.
    case solicit(token: UInt64)
    /// The sender's rank (0: a collector; `MeterRank.infinite`: no route) and its preferred
    /// parent (all zeros: none), so a neighbour never picks a node that routes through it.
    case advert(token: UInt64, rank: UInt16, parent: NodeID?)
    /// Reads in custody transfer: the receiver acknowledges `batch` once they are durable with it.
    case reads(batch: UInt64, [MeterRead])
    /// The receiver's answer to `reads`.
    case ack(batch: UInt64, status: AckStatus)
    /// An operator's command on its way down to a meter; `origin` is the node that sent it (where
    /// the acknowledgement goes).
    case command(origin: NodeID, OperatorCommand)
    /// A meter's acknowledgement on its way back up to `origin`.
    case commandAck(origin: NodeID, CommandAck)

    public enum AckStatus: UInt8, Sendable {
        /// Durable here: the sender may forget them.
        case taken = 0
        /// Refused: the receiver's route goes through the sender (a loop); pick another parent.
        case loop = 1
        /// Refused: the receiver has no route to a collector now.
        case noRoute = 2
        /// Refused: the receiver cannot store more now (quota or a failed write).
        case full = 3
    }

    public static let magic: [UInt8] = [0x69, 0x4D]
    public static let version: UInt8 = 1
    /// The session plaintext limit (SessionManager.maxPlaintext).
    public static let maxDatagram = 1184
    static let readsHeader = 2 + 1 + 1 + 8 + 1

    /// Whether `reads` fit one message.
    public static func fits(_ reads: [MeterRead]) -> Bool {
        reads.count <= 255 && readsHeader + reads.reduce(0) { $0 + 2 + $1.encodedLength } <= maxDatagram
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.raw(Self.magic)
        w.u8(Self.version)
        switch self {
        case let .solicit(token):
            w.u8(1); w.u64(token)
        case let .advert(token, rank, parent):
            w.u8(2); w.u64(token); w.u16(rank); w.raw(parent?.bytes ?? [UInt8](repeating: 0, count: 32))
        case let .reads(batch, reads):
            w.u8(3); w.u64(batch); w.u8(UInt8(reads.count))
            for r in reads { let b = r.encode(); w.u16(UInt16(b.count)); w.raw(b) }
        case let .ack(batch, status):
            w.u8(4); w.u64(batch); w.u8(status.rawValue)
        case let .command(origin, c):
            w.u8(5); w.raw(origin.bytes); w.raw(c.encode())
        case let .commandAck(origin, a):
            w.u8(6); w.raw(origin.bytes); w.raw(a.encode())
        }
        return w.bytes
    }

    /// Decodes one message; reads and commands have their signatures checked here, so whatever
    /// decodes is authentic. Refuses with the counted reason.
    public static func decode(_ bytes: [UInt8]) throws(MeterError) -> MeterMessage {
        guard bytes.count <= maxDatagram else { throw .oversized }
        var r = ByteReader(bytes)
        let m: MeterMessage
        do {
            guard try r.raw(2) == magic else { throw MeterError.badType }
            guard try r.u8() == version else { throw MeterError.badVersion }
            switch try r.u8() {
            case 1:
                m = .solicit(token: try r.u64())
            case 2:
                let token = try r.u64(), rank = try r.u16(), p = try r.raw(32)
                m = .advert(token: token, rank: rank, parent: p.allSatisfy { $0 == 0 } ? nil : NodeID(bytes: p))
            case 3:
                let batch = try r.u64()
                let n = Int(try r.u8())
                guard n > 0 else { throw MeterError.badRegisterCount }
                var reads: [MeterRead] = []
                for _ in 0..<n {
                    let len = Int(try r.u16())
                    var inner = ByteReader(try r.raw(len))
                    reads.append(try MeterRead.decode(from: &inner))
                    guard inner.remaining == 0 else { throw MeterError.trailingBytes }
                }
                m = .reads(batch: batch, reads)
            case 4:
                let batch = try r.u64()
                guard let status = AckStatus(rawValue: try r.u8()) else { throw MeterError.badType }
                m = .ack(batch: batch, status: status)
            case 5:
                guard let origin = NodeID(bytes: try r.raw(32)) else { throw MeterError.truncated }
                m = .command(origin: origin, try OperatorCommand.decode(from: &r))
            case 6:
                guard let origin = NodeID(bytes: try r.raw(32)) else { throw MeterError.truncated }
                m = .commandAck(origin: origin, try CommandAck.decode(from: &r))
            default:
                throw MeterError.badType
            }
        } catch let e as MeterError {
            throw e
        } catch {
            throw .truncated
        }
        guard r.remaining == 0 else { throw .trailingBytes }
        return m
    }
}

/// RPL-style ranks (RFC 6550 §3.5): a collector is 0; a node's rank is its parent's plus the cost
/// of the link to it, so lower is closer to a collector; `infinite` means no route.
public enum MeterRank {
    public static let collector: UInt16 = 0
    public static let infinite: UInt16 = 0xFFFF
    /// RPL's MinHopRankIncrease: what one hop costs at least, so a rank also bounds the hop count.
    public static let minHopIncrease: UInt16 = 256

    /// A link's cost from its measured round trip: one hop, plus one hop's worth per 50 ms of RTT
    /// (a slow radio link counts like extra hops), capped.
    public static func linkCost(rtt: Duration) -> UInt16 {
        let ms = max(0, rtt.milliseconds)
        let extra = min(8 * Double(minHopIncrease), ms / 50 * Double(minHopIncrease))
        return minHopIncrease + UInt16(extra)
    }

    /// `parentRank + cost`, saturating at `infinite`.
    public static func through(parentRank: UInt16, cost: UInt16) -> UInt16 {
        let (sum, over) = parentRank.addingReportingOverflow(cost)
        return over || sum >= infinite ? infinite : sum
    }
}
