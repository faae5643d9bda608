import MeshCore
#if canImport(Glibc)
import Glibc
#endif

/// The foundation's datagram protocol: ping and pong with a sample of members.
/// Layout (big-endian), documented in Docs/encoding.md:
///   magic "iF" (2) | version (1) | type (1) | network id (16) | sender Ed25519 key (32) | seq (8)
///   pong only: count (1) | count × (Ed25519 key (32) | IPv6 (16) | port (2))
public enum PingWire {
    public static let magic: [UInt8] = [0x69, 0x46]
    public static let version: UInt8 = 1
    public static let headerLength = 2 + 1 + 1 + 16 + 32 + 8
    public static let sampleEntryLength = 32 + 16 + 2
    /// IPv6 minimum MTU minus IPv6 and UDP headers.
    public static let maxDatagram = 1232
    public static let maxSample = (maxDatagram - headerLength - 1) / sampleEntryLength

    public enum Kind: UInt8, Sendable { case ping = 1, pong = 2 }

    public struct SampleEntry: Sendable, Equatable {
        public var publicKey: [UInt8]
        public var address: UnderlayAddress
        public init(publicKey: [UInt8], address: UnderlayAddress) {
            self.publicKey = publicKey
            self.address = address
        }
    }

    public struct Message: Sendable, Equatable {
        public var kind: Kind
        public var network: NetworkID
        public var senderKey: [UInt8]
        public var seq: UInt64
        public var sample: [SampleEntry]

        public init(kind: Kind, network: NetworkID, senderKey: [UInt8], seq: UInt64, sample: [SampleEntry] = []) {
            self.kind = kind
            self.network = network
            self.senderKey = senderKey
            self.seq = seq
            self.sample = sample
        }
    }

    public static func encode(_ m: Message) -> [UInt8] {
        let entries = m.kind == .pong ? m.sample.prefix(maxSample) : []
        // From the fields' real sizes, so a malformed key (a simulated liar's) is written as given.
        var length = 4 + m.network.bytes.count + m.senderKey.count + 8
        if m.kind == .pong { length += 1 + entries.reduce(0) { $0 + $1.publicKey.count + 16 + 2 } }
        // Written straight into the array's storage: one allocation, no per-byte appends (this
        // runs for every ping and pong).
        return [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            let out = UnsafeMutableRawBufferPointer(buffer)
            var at = 0
            func put(_ bytes: [UInt8]) {
                bytes.withUnsafeBytes { out.baseAddress!.advanced(by: at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                at += bytes.count
            }
            func put<T: FixedWidthInteger>(_ v: T) {
                withUnsafeBytes(of: v.bigEndian) { out.baseAddress!.advanced(by: at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                at += MemoryLayout<T>.size
            }
            put(magic)
            put(version)
            put(m.kind.rawValue)
            put(m.network.bytes)
            put(m.senderKey)
            put(m.seq)
            if m.kind == .pong {
                put(UInt8(entries.count))
                for e in entries {
                    put(e.publicKey)
                    e.address.copyIP(to: UnsafeMutableRawBufferPointer(rebasing: out[at..<at + 16]))
                    at += 16
                    put(e.address.port)
                }
            }
            count = at
        }
    }

    /// Offset of the sequence number in the header.
    static let seqOffset = 2 + 1 + 1 + 16 + 32

    /// A ping or pong with no sample, as `NodeCore` sends them: the header (pong: and a zero count).
    /// The sequence number is written in place with `setSeq` before each send.
    static func bare(_ kind: Kind, network: NetworkID, senderKey: [UInt8]) -> [UInt8] {
        encode(Message(kind: kind, network: network, senderKey: senderKey, seq: 0))
    }

    static func setSeq(_ seq: UInt64, in bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: seq.bigEndian, toByteOffset: seqOffset, as: UInt64.self) }
    }

    /// The kind and sequence number of a sample-less ping or pong from `senderKey` in `network`,
    /// read in place without allocating; nil for anything else, which `decode` then judges
    /// (so every refusal still gets its reason). What it accepts, `decode` accepts with the same fields.
    static func decodeBare(_ bytes: [UInt8], network: NetworkID, senderKey: [UInt8]) -> (kind: Kind, seq: UInt64)? {
        guard bytes.count >= headerLength, bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == version,
              let kind = Kind(rawValue: bytes[3]) else { return nil }
        switch kind {
        case .ping: guard bytes.count == headerLength else { return nil }
        case .pong: guard bytes.count == headerLength + 1, bytes[headerLength] == 0 else { return nil }
        }
        guard network.bytes.count == NetworkID.length, senderKey.count == 32 else { return nil }
        return bytes.withUnsafeBytes { raw -> (kind: Kind, seq: UInt64)? in
            let sameNetwork = network.bytes.withUnsafeBytes { memcmp(raw.baseAddress! + 4, $0.baseAddress!, NetworkID.length) == 0 }
            let sameKey = senderKey.withUnsafeBytes { memcmp(raw.baseAddress! + 4 + NetworkID.length, $0.baseAddress!, 32) == 0 }
            guard sameNetwork, sameKey else { return nil }
            return (kind, UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: seqOffset, as: UInt64.self)))
        }
    }

    /// Decodes or names the reason for refusing; never traps on any input.
    public static func decode(_ bytes: [UInt8]) -> Result<Message, DropReason> {
        if bytes.count > maxDatagram { return .failure(.oversized) }
        if bytes.count < 4 { return .failure(.truncated) }
        if bytes[0] != magic[0] || bytes[1] != magic[1] { return .failure(.badMagic) }
        if bytes[2] != version { return .failure(.unsupportedVersion) }
        guard let kind = Kind(rawValue: bytes[3]) else { return .failure(.unknownType) }
        var r = ByteReader(bytes, offset: 4)
        do {
            let network = NetworkID(bytes: try r.raw(NetworkID.length))!
            let key = try r.raw(32)
            let seq = try r.u64()
            var sample: [SampleEntry] = []
            if kind == .pong {
                let count = Int(try r.u8())
                if count > maxSample { return .failure(.oversized) }
                sample.reserveCapacity(count)
                for _ in 0..<count {
                    let pk = try r.raw(32)
                    let ip = try r.raw(16)
                    let port = try r.u16()
                    sample.append(SampleEntry(publicKey: pk, address: UnderlayAddress(ip: ip, port: port)))
                }
            }
            if r.remaining != 0 { return .failure(.trailingBytes) }
            return .success(Message(kind: kind, network: network, senderKey: key, seq: seq, sample: sample))
        } catch {
            return .failure(.truncated)
        }
    }
}
