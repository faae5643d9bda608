import Sodium

/// A 32-byte public key: a node's Ed25519 identity key (what sessions prove, gossip names and
/// validators vote with), or an X25519 key inside a handshake. One type for every table keyed by
/// a key, so that each of them hashes and orders keys the same way.
///
/// `PublicKey(_:)` takes an identity key and refuses the non-canonical one of a pair
/// (``IdentityKey``, Docs/noise.md "One key, one identity"); `PublicKey(raw:)` takes any 32 bytes
/// (X25519 statics and ephemerals, or a key as a peer presented it, before it is judged).
/// ``PeerIdentity`` is the proven form: a canonical key with its node id.
public struct PublicKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let length = 32
    /// The 32 bytes, held inline as four words in memory order (not an array): a key is copied
    /// with every peer entry, member update and table key, and an inline key costs no reference
    /// counting, no allocation when decoded, and compares as four words (a simulator holds
    /// thousands of nodes' tables of them; issue 26).
    private let w0, w1, w2, w3: UInt64

    /// The key's bytes (a new array on every read: hot paths use ``withUnsafeBytes(_:)``).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// An identity key: nil unless `bytes` is 32 bytes and the canonical key of its pair.
    public init?(_ bytes: [UInt8]) {
        guard IdentityKey.isCanonical(bytes) else { return nil }
        self.init(trusted: bytes)
    }

    /// Any 32 bytes: nil only for another length. Whether it is canonical is ``isCanonical``.
    public init?(raw bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.init(trusted: bytes)
    }

    /// Any 32 bytes read in place (a decoder's buffer): nil only for another length.
    public init?(raw bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.length else { return nil }
        w0 = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        w1 = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        w2 = bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        w3 = bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
    }

    /// For callers that already know the length (a fixed-size field of a decoded message).
    init(trusted bytes: [UInt8]) {
        precondition(bytes.count == Self.length, "a public key is 32 bytes")
        (w0, w1, w2, w3) = bytes.withUnsafeBytes { b in
            (b.loadUnaligned(fromByteOffset: 0, as: UInt64.self), b.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
             b.loadUnaligned(fromByteOffset: 16, as: UInt64.self), b.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        }
    }

    /// A key as an identity key: `key` itself when canonical, nil for a negated twin. (What
    /// `ValidatorKey(identity.publicKey)` means, so code written against bytes reads the same.)
    public init?(_ key: PublicKey) {
        guard key.isCanonical else { return nil }
        self = key
    }

    /// The key's 32 bytes in place, without building an array.
    @inline(__always)
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: (w0, w1, w2, w3)) { try body($0) }
    }

    /// Whether this is the canonical key of its pair (sign bit clear, y reduced), the only form
    /// that is an identity. Always true for keys made with `init(_:)`.
    public var isCanonical: Bool {
        // Byte 31 decides unless it is 0x7f (then y may still be p or more: the full check).
        let last = UInt8(truncatingIfNeeded: w3.littleEndian >> 56)
        if last & 0x80 != 0 { return false }
        if last != 0x7f { return true }
        return IdentityKey.isCanonical(bytes)
    }

    /// The key as an identity key: itself when canonical, nil for a negated twin.
    public var canonical: PublicKey? { isCanonical ? self : nil }

    public var hex: String { withUnsafeBytes { Hex.encode($0) } }
    /// First 8 bytes in hex: enough to tell keys apart in logs.
    public var short: String { withUnsafeBytes { Hex.encode($0.prefix(8)) } }
    public var description: String { hex }

    /// Compared in full: four words.
    public static func == (a: PublicKey, b: PublicKey) -> Bool {
        a.w0 == b.w0 && a.w1 == b.w1 && a.w2 == b.w2 && a.w3 == b.w3
    }

    /// Hashed by the first 8 bytes: public keys are uniformly random points, and SipHash over all
    /// 32 bytes one at a time costs more than the rest of a table lookup. `Hasher` is seeded per
    /// process, so chosen keys cannot aim at one bucket.
    public func hash(into hasher: inout Hasher) { hasher.combine(w0) }

    /// Byte-wise lexicographic order: the tie-break sessions use for simultaneous handshakes and
    /// the order validator sets are listed in. (Each word read big-endian orders as its bytes do.)
    public static func < (a: PublicKey, b: PublicKey) -> Bool {
        let a0 = UInt64(bigEndian: a.w0), b0 = UInt64(bigEndian: b.w0)
        if a0 != b0 { return a0 < b0 }
        let a1 = UInt64(bigEndian: a.w1), b1 = UInt64(bigEndian: b.w1)
        if a1 != b1 { return a1 < b1 }
        let a2 = UInt64(bigEndian: a.w2), b2 = UInt64(bigEndian: b.w2)
        if a2 != b2 { return a2 < b2 }
        return UInt64(bigEndian: a.w3) < UInt64(bigEndian: b.w3)
    }
}

extension Hex {
    public static func encode(_ key: PublicKey) -> String { key.hex }
}

extension ByteWriter {
    /// Appends a key's 32 bytes without building an array.
    public mutating func raw(_ key: PublicKey) { key.withUnsafeBytes { raw($0) } }
}

extension ByteReader {
    /// Reads 32 bytes as a key (any key: whether it is canonical is the caller's question),
    /// without building an array.
    public mutating func publicKey() throws -> PublicKey {
        try inPlace(PublicKey.length) { PublicKey(raw: $0)! }
    }
}
