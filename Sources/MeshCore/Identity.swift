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

/// A node id: BLAKE2b-256 over a domain label and the Ed25519 public key. Stable across
/// addresses, so a node that moves is the same member.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    /// The same 32 bytes as four big-endian words: member tables compare and hash node ids on
    /// every datagram, and four word compares cost less than a byte-array compare.
    private let w0, w1, w2, w3: UInt64
    public static let length = 32

    public init(publicKey: [UInt8]) {
        self.init(checked: Blake2b.hash(Array("iotaf/node-id/v1".utf8) + publicKey, outputLength: Self.length))
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.init(checked: bytes)
    }

    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == Self.length else { return nil }
        self.init(checked: b)
    }

    private init(checked bytes: [UInt8]) {
        self.bytes = bytes
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

/// The public side of a node: what every peer can know.
public struct PeerIdentity: Hashable, Sendable {
    public let publicKey: [UInt8]
    public let nodeID: NodeID

    public init?(publicKey: [UInt8]) {
        guard publicKey.count == Ed25519.publicKeyLength else { return nil }
        self.publicKey = publicKey
        nodeID = NodeID(publicKey: publicKey)
    }
}

/// The node's long-term Ed25519 key. The seed is the only secret a node keeps.
public final class NodeIdentity: @unchecked Sendable {
    public let publicKey: [UInt8]
    public let nodeID: NodeID
    private var seedBytes: [UInt8]
    private var secretKeyBytes: [UInt8]

    public init(seed: [UInt8]) throws {
        let pair = try Ed25519.keyPair(seed: seed)
        seedBytes = seed
        secretKeyBytes = pair.secretKey
        publicKey = pair.publicKey
        nodeID = NodeID(publicKey: pair.publicKey)
    }

    /// A new random identity.
    public static func generate() -> NodeIdentity {
        var seed = Sodium.randomBytes(Ed25519.seedLength)
        defer { Sodium.zero(&seed) }
        return try! NodeIdentity(seed: seed)
    }

    /// A reproducible identity for simulations: the seed is a hash of the run seed and node index.
    public static func deterministic(runSeed: UInt64, index: Int) -> NodeIdentity {
        var w = ByteWriter()
        w.raw(Array("iotaf/sim-key/v1".utf8))
        w.u64(runSeed)
        w.u64(UInt64(index))
        return try! NodeIdentity(seed: Blake2b.hash(w.bytes, outputLength: 32))
    }

    public var peer: PeerIdentity { PeerIdentity(publicKey: publicKey)! }
    public var seed: [UInt8] { seedBytes }
    public func overlayAddress(in network: NetworkID) -> OverlayAddress { OverlayAddress(network: network, node: nodeID) }

    public func sign(_ message: [UInt8]) -> [UInt8] { try! Ed25519.sign(message, secretKey: secretKeyBytes) }

    deinit {
        Sodium.zero(&seedBytes)
        Sodium.zero(&secretKeyBytes)
    }
}
