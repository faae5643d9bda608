import MeshCore

/// The channel frame: one per session datagram. Layout in Docs/channels.md; the decoder accepts
/// only the canonical form, so every accepted frame re-encodes to the same bytes.
public enum ChannelWire {
    public static let version: UInt8 = 1
    /// version, flags, source id, destination id, packet number.
    public static let headerSize = 1 + 1 + 8 + 8 + 8
    /// type, stream, seq, total, offset, length.
    public static let dataRecordHeader = 1 + 2 + 4 + 4 + 4 + 2
    /// type, largest, delay, maxData, firstRange, count.
    public static let ackRecordBase = 1 + 8 + 4 + 8 + 4 + 1
    public static let maxAckRanges = 32
    public static let maxAckRecordSize = ackRecordBase + 8 * maxAckRanges

    public static let flagReset: UInt8 = 0x01
    /// Packet numbers and acknowledged numbers stay below 2^62, so `n + 1` never overflows.
    public static let maxPacketNumber: UInt64 = (1 << 62) - 1

    enum RecordType: UInt8 { case ack = 1, ping = 2, data = 3 }

    public struct Ack: Equatable, Sendable {
        /// Acknowledged packet numbers, highest range first, disjoint and not adjacent.
        public var ranges: [ClosedRange<UInt64>]
        public var delayMicros: UInt32
        /// Flow-control credit: the receiver accepts messages while the sum of their lengths
        /// (over the connection's life) stays at or below this.
        public var maxData: UInt64
        public init(ranges: [ClosedRange<UInt64>], delayMicros: UInt32, maxData: UInt64) {
            self.ranges = ranges; self.delayMicros = delayMicros; self.maxData = maxData
        }
        var encodedSize: Int { ChannelWire.ackRecordBase + 8 * (ranges.count - 1) }
    }

    public struct Data: Equatable, Sendable {
        public var stream: UInt16
        public var seq: UInt32
        public var total: UInt32
        public var offset: UInt32
        public var bytes: [UInt8]
        public init(stream: UInt16, seq: UInt32, total: UInt32, offset: UInt32, bytes: [UInt8]) {
            self.stream = stream; self.seq = seq; self.total = total; self.offset = offset; self.bytes = bytes
        }
    }

    public struct Packet: Equatable, Sendable {
        public var reset: Bool
        public var source: UInt64
        public var destination: UInt64
        public var number: UInt64
        public var ack: Ack?
        public var ping: Bool
        public var data: [Data]
        public init(reset: Bool = false, source: UInt64, destination: UInt64, number: UInt64, ack: Ack? = nil, ping: Bool = false, data: [Data] = []) {
            self.reset = reset; self.source = source; self.destination = destination; self.number = number
            self.ack = ack; self.ping = ping; self.data = data
        }
        /// Packets that carry data or a ping must be acknowledged.
        public var ackEliciting: Bool { ping || !data.isEmpty }
    }

    public static func encode(_ p: Packet) -> [UInt8] {
        var w = ByteWriter(capacity: 1200)
        w.u8(version)
        w.u8(p.reset ? flagReset : 0)
        w.u64(p.source)
        w.u64(p.destination)
        w.u64(p.number)
        if let a = p.ack {
            w.u8(RecordType.ack.rawValue)
            let first = a.ranges[0]
            w.u64(first.upperBound)
            w.u32(a.delayMicros)
            w.u64(a.maxData)
            w.u32(UInt32(first.upperBound - first.lowerBound))
            w.u8(UInt8(a.ranges.count - 1))
            var prevLow = first.lowerBound
            for r in a.ranges.dropFirst() {
                w.u32(UInt32(prevLow - r.upperBound - 2))
                w.u32(UInt32(r.upperBound - r.lowerBound))
                prevLow = r.lowerBound
            }
        }
        if p.ping { w.u8(RecordType.ping.rawValue) }
        for d in p.data {
            w.u8(RecordType.data.rawValue)
            w.u16(d.stream)
            w.u32(d.seq)
            w.u32(d.total)
            w.u32(d.offset)
            w.u16(UInt16(d.bytes.count))
            w.raw(d.bytes)
        }
        return w.bytes
    }

    /// Decodes one frame, or names why it is dropped. Never traps, never allocates more than the
    /// frame's own size.
    public static func decode(_ bytes: [UInt8], maxFrame: Int, maxMessage: Int) -> Result<Packet, ChannelDropReason> {
        if bytes.count > maxFrame { return .failure(.oversized) }
        var r = ByteReader(bytes)
        do {
            guard try r.u8() == version else { return .failure(.badVersion) }
            let flags = try r.u8()
            guard flags & ~flagReset == 0 else { return .failure(.badFlags) }
            let src = try r.u64()
            let dst = try r.u64()
            let number = try r.u64()
            guard src != 0 else { return .failure(.badRecord) }
            var packet = Packet(reset: flags & flagReset != 0, source: src, destination: dst, number: number)
            if packet.reset {
                // A reset names the connection it kills and carries nothing else.
                guard number == 0, dst != 0, r.remaining == 0 else { return .failure(.badRecord) }
                return .success(packet)
            }
            guard number != 0, number <= maxPacketNumber, r.remaining > 0 else { return .failure(.badRecord) }
            // Canonical record order: at most one ACK, then at most one PING, then DATA records.
            var stage = 0
            while r.remaining > 0 {
                guard let type = RecordType(rawValue: try r.u8()) else { return .failure(.unknownRecord) }
                switch type {
                case .ack:
                    guard stage < 1 else { return .failure(.badRecord) }
                    stage = 1
                    let largest = try r.u64()
                    let delay = try r.u32()
                    let maxData = try r.u64()
                    let first = UInt64(try r.u32())
                    let count = Int(try r.u8())
                    guard count < maxAckRanges, first <= largest, largest <= maxPacketNumber else { return .failure(.badAck) }
                    var ranges = [ClosedRange<UInt64>]()
                    ranges.reserveCapacity(count + 1)
                    ranges.append((largest - first)...largest)
                    var low = largest - first
                    for _ in 0..<count {
                        let gap = UInt64(try r.u32())
                        let length = UInt64(try r.u32())
                        guard low >= gap + 2 else { return .failure(.badAck) }
                        let high = low - gap - 2
                        guard high >= length else { return .failure(.badAck) }
                        low = high - length
                        ranges.append(low...high)
                    }
                    packet.ack = Ack(ranges: ranges, delayMicros: delay, maxData: maxData)
                case .ping:
                    guard stage < 2 else { return .failure(.badRecord) }
                    stage = 2
                    packet.ping = true
                case .data:
                    stage = 3
                    let stream = try r.u16()
                    let seq = try r.u32()
                    let total = try r.u32()
                    let offset = try r.u32()
                    let length = Int(try r.u16())
                    guard Int(total) <= maxMessage else { return .failure(.messageTooLarge) }
                    guard UInt64(offset) + UInt64(length) <= UInt64(total),
                          length > 0 || (total == 0 && offset == 0) else { return .failure(.badRecord) }
                    let payload = try r.raw(length)
                    packet.data.append(Data(stream: stream, seq: seq, total: total, offset: offset, bytes: payload))
                }
            }
            return .success(packet)
        } catch {
            return .failure(.truncated)
        }
    }
}
