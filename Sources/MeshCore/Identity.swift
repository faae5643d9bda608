import Sodium

/// A private mesh's identifier: 16 bytes, written as 32 hex digits.
public struct NetworkID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public static let length = 16
    /// The network nodes use when none is configured.
    public static let defaultNetwork = NetworkID(unchecked: Blake2b.hash(Array("iotaf-default-network".utf8), outputLength: 16))

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == Self.length else { return nil }
        bytes = b
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public var description: String { Hex.encode(bytes) }
}

/// A node id: BLAKE2b-256 over a domain label and the canonical form of the Ed25519 public key
/// (``IdentityKey/pairForm(_:)``), so a key and its negated twin have one id. Stable across
/// addresses, so a node that moves is the same member.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The 32 bytes as four big-endian words, inline (no array): member tables compare and hash
    /// node ids on every datagram, and an id is copied with every peer entry, so four word
    /// compares and no reference counting (issue 26). `bytes` builds the array when asked.
    private let w0, w1, w2, w3: UInt64
    public static let length = 32

    /// The id's 32 bytes (a new array on every read).
    public var bytes: [UInt8] {
        withUnsafeBytes(of: (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)) { Array($0) }
    }

    /// The id of the identity `publicKey` belongs to. A key and its negation (which hold the same
    /// X25519 key, so the same secret) give the same id: a cull, a member row or a peer-store row
    /// naming one names both. Only canonical keys are accepted as identities (``PeerIdentity``),
    /// and for those this is the hash of the key itself.
    public init(publicKey: [UInt8]) {
        self.init(checked: Blake2b.hash(Array("iotaf/node-id/v1".utf8) + IdentityKey.pairForm(publicKey), outputLength: Self.length))
    }

    public init(publicKey: PublicKey) { self.init(publicKey: publicKey.bytes) }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.init(checked: bytes)
    }

    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == Self.length else { return nil }
        self.init(checked: b)
    }

    private init(checked bytes: [UInt8]) {
        (w0, w1, w2, w3) = bytes.withUnsafeBytes { b in
            (UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
             UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
             UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }
    }

    public var hex: String { Hex.encode(bytes) }
    /// The first 8 bytes as a big-endian word (uniform, since node ids are hash outputs): what
    /// compact tables hash and bucket by without reading the byte array.
    public var leadingWord: UInt64 { w0 }
    /// First 8 bytes in hex: enough to tell members apart in logs and tables.
    public var short: String { Hex.encode(bytes.prefix(8)) }
    public var description: String { hex }

    /// Byte-wise lexicographic order (the words are big-endian, so comparing them in turn agrees).
    public static func < (a: NodeID, b: NodeID) -> Bool {
        if a.w0 != b.w0 { return a.w0 < b.w0 }
        if a.w1 != b.w1 { return a.w1 < b.w1 }
        if a.w2 != b.w2 { return a.w2 < b.w2 }
        return a.w3 < b.w3
    }

    /// Node ids are BLAKE2b outputs, so 64 of their bits hash as well as all 256; member
    /// tables are looked up on every datagram.
    public func hash(into hasher: inout Hasher) { hasher.combine(w0) }

    public static func == (a: NodeID, b: NodeID) -> Bool {
        a.w0 == b.w0 && a.w1 == b.w1 && a.w2 == b.w2 && a.w3 == b.w3
    }
}

/// The node's overlay IPv6 address: fd00::/8 followed by 120 bits of
/// BLAKE2b(label || network id || node id). Only the holder of the key can claim it.
public struct OverlayAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(network: NetworkID, node: NodeID) {
        let digest = Blake2b.hash(Array("iotaf/overlay/v1".utf8) + network.bytes + node.bytes, outputLength: 16)
        bytes = [0xfd] + digest.prefix(15)
    }

    public var description: String { UnderlayAddress.formatIPv6(bytes) }
}

/// One key, one identity. An Ed25519 public key encodes a point as its y coordinate (255 bits,
/// little-endian) and the sign of its x coordinate in the top bit. A key A and its negation -A
/// differ only in that bit, and both convert to the same X25519 key (the Noise static key names
/// only u = (1 + y) / (1 - y)); so whoever holds a node's secret can present either, and sign
/// for either with the negated scalar. Exactly one of the two is an identity: the canonical one,
/// whose sign bit is clear and whose y is reduced below p = 2^255 - 19 (so that no other spelling
/// of the point exists either). Keys are generated canonical; sessions refuse the other form
/// (`non_canonical_key`), gossip's decoder refuses it in member records, and signatures by an
/// identity verify only against a canonical key. Docs/noise.md, "One key, one identity".
public enum IdentityKey {
    /// Whether `key` is the canonical one of its pair (32 bytes, sign bit clear, y < p). Whether it
    /// is a point of the prime-order subgroup at all is checked where the key is used (the X25519
    /// conversion in sessions, libsodium's verification for signatures).
    public static func isCanonical(_ key: [UInt8]) -> Bool {
        guard key.count == Ed25519.publicKeyLength, key[31] & 0x80 == 0 else { return false }
        return !encodesYAtLeastP(key)
    }

    /// The bytes a node id hashes: the key with its sign bit cleared, the same for a key and its
    /// twin. For a canonical key it is the key itself.
    public static func pairForm(_ key: [UInt8]) -> [UInt8] {
        guard key.count == Ed25519.publicKeyLength, key[31] & 0x80 != 0 else { return key }
        var k = key
        k[31] &= 0x7f
        return k
    }

    /// Verifies a signature made by an identity (an admin's cull, later attribute records,
    /// transactions, votes): only a canonical key verifies, so the negated twin of a key (same
    /// secret, other encoding) can never sign in its name or as a second signer.
    public static func verify(_ signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        isCanonical(publicKey) && Ed25519.verify(signature, message: message, publicKey: publicKey)
    }

    /// y (the low 255 bits) >= p: bits 0-254 of p are 0xed, then 30 bytes of 0xff, then 0x7f.
    private static func encodesYAtLeastP(_ key: [UInt8]) -> Bool {
        guard key[31] & 0x7f == 0x7f, key[0] >= 0xed else { return false }
        for i in 1..<31 where key[i] != 0xff { return false }
        return true
    }
}

/// Why a seed or key cannot be a node's identity.
public enum IdentityError: Error, Equatable, CustomStringConvertible {
    /// The seed's public key is the non-canonical one of its pair (``IdentityKey``): every node
    /// would refuse it.
    case nonCanonicalKey

    public var description: String {
        switch self {
        case .nonCanonicalKey:
            "this Ed25519 seed gives a non-canonical public key (sign bit set), which every node refuses "
                + "as the negated twin of another identity; generate a new key (`iotaf keygen`)"
        }
    }
}

/// The public side of a node: what every peer can know. Only a canonical key is one (the
/// negated twin of a key is no identity of its own); sessions build it once from the key a
/// handshake proved and hand it to the node with every message.
public struct PeerIdentity: Hashable, Sendable {
    public let publicKey: PublicKey
    public let nodeID: NodeID

    /// Nil unless `publicKey` is 32 bytes and canonical (``IdentityKey/isCanonical(_:)``).
    public init?(publicKey: [UInt8]) {
        guard let key = PublicKey(publicKey) else { return nil }
        self.init(unchecked: key)
    }

    /// Nil unless `publicKey` is canonical.
    public init?(publicKey: PublicKey) {
        guard publicKey.isCanonical else { return nil }
        self.init(unchecked: publicKey)
    }

    init(unchecked publicKey: PublicKey) {
        self.publicKey = publicKey
        nodeID = NodeID(publicKey: publicKey.bytes)
    }

    /// Equal identities have equal keys; the node id is the key's hash, so only the key is compared.
    public static func == (a: PeerIdentity, b: PeerIdentity) -> Bool { a.publicKey == b.publicKey }
    public func hash(into hasher: inout Hasher) { hasher.combine(nodeID) }
}

/// The node's long-term Ed25519 key. The seed is the only secret a node keeps.
public final class NodeIdentity: @unchecked Sendable {
    public let publicKey: PublicKey
    public let nodeID: NodeID
    private var seedBytes: [UInt8]
    private var secretKeyBytes: [UInt8]

    /// Throws `IdentityError.nonCanonicalKey` for the half of all seeds whose public key is the
    /// non-canonical one of its pair (``IdentityKey``), and `SodiumError` for a seed of the wrong length.
    public init(seed: [UInt8]) throws {
        var pair = try Ed25519.keyPair(seed: seed)
        guard IdentityKey.isCanonical(pair.publicKey) else {
            Sodium.zero(&pair.secretKey)
            throw IdentityError.nonCanonicalKey
        }
        seedBytes = seed
        secretKeyBytes = pair.secretKey
        publicKey = PublicKey(trusted: pair.publicKey)
        nodeID = NodeID(publicKey: pair.publicKey)
    }

    /// Modified software: this seed's secrets behind another public key, unchecked (an attacker
    /// presenting the negated twin of its own key). Signatures it makes are still the seed's. Only
    /// tests playing an attacker use it; nodes build their identity with `init(seed:)`.
    @_spi(Adversary)
    public init(seed: [UInt8], presenting publicKey: [UInt8]) throws {
        let pair = try Ed25519.keyPair(seed: seed)
        guard let presented = PublicKey(raw: publicKey) else {
            throw SodiumError.wrongLength(what: "Ed25519 public key", expected: PublicKey.length, got: publicKey.count)
        }
        seedBytes = seed
        secretKeyBytes = pair.secretKey
        self.publicKey = presented
        nodeID = NodeID(publicKey: publicKey)
    }

    /// A new random identity (seeds are drawn until the key is canonical: two draws on average).
    public static func generate() -> NodeIdentity {
        while true {
            var seed = Sodium.randomBytes(Ed25519.seedLength)
            defer { Sodium.zero(&seed) }
            if let id = try? NodeIdentity(seed: seed) { return id }
        }
    }

    /// A reproducible identity for simulations: the seed is a hash of the run seed and node index
    /// (and, when that seed's key is not canonical, of the first attempt number that gives one).
    public static func deterministic(runSeed: UInt64, index: Int) -> NodeIdentity {
        var attempt: UInt64 = 0
        while true {
            var w = ByteWriter()
            w.raw(Array("iotaf/sim-key/v1".utf8))
            w.u64(runSeed)
            w.u64(UInt64(index))
            if attempt > 0 { w.u64(attempt) }
            if let id = try? NodeIdentity(seed: Blake2b.hash(w.bytes, outputLength: 32)) { return id }
            attempt += 1
        }
    }

    public var peer: PeerIdentity { PeerIdentity(unchecked: publicKey) }
    public var seed: [UInt8] { seedBytes }
    public func overlayAddress(in network: NetworkID) -> OverlayAddress { OverlayAddress(network: network, node: nodeID) }

    public func sign(_ message: [UInt8]) -> [UInt8] { try! Ed25519.sign(message, secretKey: secretKeyBytes) }

    deinit {
        Sodium.zero(&seedBytes)
        Sodium.zero(&secretKeyBytes)
    }
}
