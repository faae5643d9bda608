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
    public let bytes: [UInt8]

    /// An identity key: nil unless `bytes` is 32 bytes and the canonical key of its pair.
    public init?(_ bytes: [UInt8]) {
        guard IdentityKey.isCanonical(bytes) else { return nil }
        self.bytes = bytes
    }

    /// Any 32 bytes: nil only for another length. Whether it is canonical is ``isCanonical``.
    public init?(raw bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.bytes = bytes
    }

    /// For callers that already know the length (a fixed-size field of a decoded message).
    init(trusted bytes: [UInt8]) { self.bytes = bytes }

    /// A key as an identity key: `key` itself when canonical, nil for a negated twin. (What
    /// `ValidatorKey(identity.publicKey)` means, so code written against bytes reads the same.)
    public init?(_ key: PublicKey) {
        guard key.isCanonical else { return nil }
        self = key
    }

    /// Whether this is the canonical key of its pair (sign bit clear, y reduced), the only form
    /// that is an identity. Always true for keys made with `init(_:)`.
    public var isCanonical: Bool { IdentityKey.isCanonical(bytes) }

    /// The key as an identity key: itself when canonical, nil for a negated twin.
    public var canonical: PublicKey? { isCanonical ? self : nil }

    public var hex: String { Hex.encode(bytes) }
    /// First 8 bytes in hex: enough to tell keys apart in logs.
    public var short: String { Hex.encode(bytes.prefix(8)) }
    public var description: String { hex }

    /// Compared in full (an array compare, which is a pointer compare when both share storage).
    public static func == (a: PublicKey, b: PublicKey) -> Bool { a.bytes == b.bytes }

    /// Hashed by the first 8 bytes: public keys are uniformly random points, and SipHash over all
    /// 32 bytes one at a time costs more than the rest of a table lookup. `Hasher` is seeded per
    /// process, so chosen keys cannot aim at one bucket.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }

    /// Byte-wise lexicographic order: the tie-break sessions use for simultaneous handshakes and
    /// the order validator sets are listed in.
    public static func < (a: PublicKey, b: PublicKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

extension Hex {
    public static func encode(_ key: PublicKey) -> String { key.hex }
}
