import MeshCore
import Sodium

/// The session layer's datagram formats. Every datagram starts with a type byte and three zero
/// bytes; integers are big-endian, as everywhere on iotaf's wire. Lengths are exact for the five
/// handshake messages, so a decoder never guesses. Byte-by-byte layouts are in Docs/noise.md.
public enum SessionWire {
    /// The IPv6 minimum MTU (1280) less the IPv6 (40) and UDP (8) headers.
    public static let maxDatagram = 1232
    public static let macLength = 16
    /// type, reserved, receiver index, counter.
    public static let transportHeaderLength = 16
    public static let tagLength = 16
    /// What one transport packet adds to its plaintext.
    public static let transportOverhead = transportHeaderLength + tagLength
    public static let maxPlaintext = maxDatagram - transportOverhead

    /// Noise message lengths, fixed by the patterns and payloads (the payload of IK message 1 and
    /// XX messages 2 and 3 is the sender's 32-byte Ed25519 public key, the others are empty).
    static let ikInitiationNoise = 32 + 48 + 48   // e, s(enc), payload(enc)
    static let ikResponseNoise = 32 + 16           // e, empty payload(enc)
    static let xx1Noise = 32 + 16                  // e, empty payload (encrypted under a key mixed from e)
    static let xx2Noise = 32 + 48 + 48             // e, s(enc), payload(enc)
    static let xx3Noise = 48 + 48                  // s(enc), payload(enc)
    static let cookieNonceLength = 12
    static let cookieLength = 16

    public enum PacketType: UInt8, Sendable, CaseIterable {
        case ikInitiation = 1
        case ikResponse = 2
        case xxInitiation = 3
        case xxResponse = 4
        case xxFinal = 5
        case cookieReply = 6
        case transport = 7

        var hasSender: Bool { self == .ikInitiation || self == .ikResponse || self == .xxInitiation || self == .xxResponse }
        var hasReceiver: Bool { self != .ikInitiation && self != .xxInitiation }
        /// Bytes of Noise message in a handshake packet.
        var noiseLength: Int? {
            switch self {
            case .ikInitiation: return SessionWire.ikInitiationNoise
            case .ikResponse: return SessionWire.ikResponseNoise
            case .xxInitiation: return SessionWire.xx1Noise
            case .xxResponse: return SessionWire.xx2Noise
            case .xxFinal: return SessionWire.xx3Noise
            case .cookieReply, .transport: return nil
            }
        }

        /// The whole datagram length of a handshake packet.
        var handshakeLength: Int? {
            guard let noise = noiseLength else { return nil }
            return 4 + (hasSender ? 4 : 0) + (hasReceiver ? 4 : 0) + noise + 2 * SessionWire.macLength
        }
    }

    /// A handshake message: header, Noise message, mac1, mac2.
    public struct Handshake: Equatable, Sendable {
        public var type: PacketType
        public var sender: UInt32
        public var receiver: UInt32
        public var noise: [UInt8]
        public var mac1: [UInt8]
        public var mac2: [UInt8]

        public init(type: PacketType, sender: UInt32, receiver: UInt32, noise: [UInt8], mac1: [UInt8], mac2: [UInt8]) {
            self.type = type
            self.sender = sender
            self.receiver = receiver
            self.noise = noise
            self.mac1 = mac1
            self.mac2 = mac2
        }

        /// The bytes mac1 covers (everything before it); mac2 covers these plus mac1.
        public var macCovered: [UInt8] {
            var w = ByteWriter(capacity: 4 + 8 + noise.count)
            w.u8(type.rawValue); w.u8(0); w.u8(0); w.u8(0)
            if type.hasSender { w.u32(sender) }
            if type.hasReceiver { w.u32(receiver) }
            w.raw(noise)
            return w.bytes
        }

        public func encoded() -> [UInt8] { macCovered + mac1 + mac2 }
    }

    public struct CookieReply: Equatable, Sendable {
        public var receiver: UInt32
        public var nonce: [UInt8]
        public var sealedCookie: [UInt8]

        public func encoded() -> [UInt8] {
            var w = ByteWriter(capacity: 52)
            w.u8(PacketType.cookieReply.rawValue); w.u8(0); w.u8(0); w.u8(0)
            w.u32(receiver)
            w.raw(nonce)
            w.raw(sealedCookie)
            return w.bytes
        }
    }

    public struct Transport: Equatable, Sendable {
        public var receiver: UInt32
        public var counter: UInt64
        public var ciphertext: [UInt8]

        /// The AEAD's associated data: the header, so type, index and counter cannot be altered.
        public static func header(receiver: UInt32, counter: UInt64) -> [UInt8] {
            // Written byte by byte: this runs twice per packet on the hot path.
            var h = [UInt8](repeating: 0, count: SessionWire.transportHeaderLength)
            h[0] = PacketType.transport.rawValue
            for i in 0..<4 { h[4 + i] = UInt8(truncatingIfNeeded: receiver >> UInt32(24 - 8 * i)) }
            for i in 0..<8 { h[8 + i] = UInt8(truncatingIfNeeded: counter >> UInt64(56 - 8 * i)) }
            return h
        }

        public func encoded() -> [UInt8] { Self.header(receiver: receiver, counter: counter) + ciphertext }
    }

    /// Writes a transport header into the first 16 bytes of `buffer` (the same bytes as
    /// ``Transport/header(receiver:counter:)``), for building a datagram in place.
    @inline(__always)
    static func writeTransportHeader(receiver: UInt32, counter: UInt64, into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= transportHeaderLength)
        buffer[0] = PacketType.transport.rawValue
        buffer[1] = 0; buffer[2] = 0; buffer[3] = 0
        buffer.storeBytes(of: receiver.bigEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: counter.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// The receiver index and counter of a transport datagram (type 7), with every check
    /// ``decode(_:)`` makes and in the same order, but nothing copied: the per-packet path.
    public static func decodeTransportHeader(_ bytes: [UInt8]) -> Result<(receiver: UInt32, counter: UInt64), SessionDropReason> {
        guard !bytes.isEmpty else { return .failure(.empty) }
        guard bytes.count <= maxDatagram else { return .failure(.oversized) }
        guard bytes[0] == PacketType.transport.rawValue else { return .failure(.unknownType) }
        guard bytes.count >= 4 else { return .failure(.badLength) }
        guard bytes[1] == 0, bytes[2] == 0, bytes[3] == 0 else { return .failure(.badHeader) }
        guard bytes.count >= transportHeaderLength + tagLength else { return .failure(.badLength) }
        return bytes.withUnsafeBytes { raw in
            .success((UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                      UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))))
        }
    }

    public enum Packet: Equatable, Sendable {
        case handshake(Handshake)
        case cookieReply(CookieReply)
        case transport(Transport)

        public func encoded() -> [UInt8] {
            switch self {
            case let .handshake(h): return h.encoded()
            case let .cookieReply(c): return c.encoded()
            case let .transport(t): return t.encoded()
            }
        }
    }

    /// Parses a datagram's framing. Checks lengths and the header only: no keys, no crypto, so it
    /// is cheap, total (never traps) and what the fuzzer hammers.
    public static func decode(_ bytes: [UInt8]) -> Result<Packet, SessionDropReason> {
        guard !bytes.isEmpty else { return .failure(.empty) }
        guard bytes.count <= maxDatagram else { return .failure(.oversized) }
        guard let type = PacketType(rawValue: bytes[0]) else { return .failure(.unknownType) }
        guard bytes.count >= 4 else { return .failure(.badLength) }
        guard bytes[1] == 0, bytes[2] == 0, bytes[3] == 0 else { return .failure(.badHeader) }
        var r = ByteReader(bytes, offset: 4)
        do {
            switch type {
            case .transport:
                switch decodeTransportHeader(bytes) {
                case let .failure(reason): return .failure(reason)
                case let .success((receiver, counter)):
                    return .success(.transport(Transport(receiver: receiver, counter: counter,
                                                         ciphertext: Array(bytes[transportHeaderLength...]))))
                }
            case .cookieReply:
                guard bytes.count == 8 + cookieNonceLength + cookieLength + tagLength else { return .failure(.badLength) }
                let receiver = try r.u32()
                let nonce = try r.raw(cookieNonceLength)
                return .success(.cookieReply(CookieReply(receiver: receiver, nonce: nonce, sealedCookie: try r.raw(r.remaining))))
            default:
                guard bytes.count == type.handshakeLength else { return .failure(.badLength) }
                let sender = type.hasSender ? try r.u32() : 0
                let receiver = type.hasReceiver ? try r.u32() : 0
                let noise = try r.raw(type.noiseLength ?? 0)
                let mac1 = try r.raw(macLength)
                let mac2 = try r.raw(macLength)
                return .success(.handshake(Handshake(type: type, sender: sender, receiver: receiver,
                                                     noise: noise, mac1: mac1, mac2: mac2)))
            }
        } catch {
            return .failure(.badLength)
        }
    }

    /// mac1/mac2: keyed BLAKE2b-128. Cheap enough to run on every datagram before any DH.
    public static func mac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Blake2b.hash(data, outputLength: macLength, key: key)
    }
}
