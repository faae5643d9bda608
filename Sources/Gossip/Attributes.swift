import MeshCore
import Sodium

extension GossipDropReason: Error {}

public struct AttributePair: Sendable, Equatable, Hashable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

/// A node's key = value tags. Kept sorted by key (byte order) with unique keys, so the encoding is
/// canonical. Up to `GossipWire.maxAttributeBytes` encoded (8 KiB; the floor is 4 KiB).
public struct Attributes: Sendable, Equatable {
    public private(set) var pairs: [AttributePair]

    public init() { pairs = [] }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case emptyKey, keyTooLong(String), valueTooLong(String), tooLarge(Int), tooMany(Int)
        public var description: String {
            switch self {
            case .emptyKey: "an attribute key is empty"
            case let .keyTooLong(k): "attribute key '\(k.prefix(20))…' is longer than \(GossipWire.maxKeyLength) bytes"
            case let .valueTooLong(k): "the value of attribute '\(k)' is longer than \(GossipWire.maxValueLength) bytes"
            case let .tooLarge(n): "attributes take \(n) bytes encoded; the limit is \(GossipWire.maxAttributeBytes)"
            case let .tooMany(n): "\(n) attributes; the limit is \(GossipWire.maxAttributePairs)"
            }
        }
    }

    /// Validates limits; a later duplicate key replaces an earlier one.
    public init(_ input: [(String, String)]) throws {
        var byKey: [String: String] = [:]
        for (k, v) in input {
            if k.isEmpty { throw Failure.emptyKey }
            if k.utf8.count > GossipWire.maxKeyLength { throw Failure.keyTooLong(k) }
            if v.utf8.count > GossipWire.maxValueLength { throw Failure.valueTooLong(k) }
            byKey[k] = v
        }
        pairs = byKey.map { AttributePair(key: $0.key, value: $0.value) }
            .sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        if pairs.count > GossipWire.maxAttributePairs { throw Failure.tooMany(pairs.count) }
        if encodedSize > GossipWire.maxAttributeBytes { throw Failure.tooLarge(encodedSize) }
    }

    init(validatedSorted pairs: [AttributePair]) { self.pairs = pairs }

    public subscript(key: String) -> String? { pairs.first { $0.key == key }?.value }

    public var encodedSize: Int { 2 + pairs.reduce(0) { $0 + 1 + $1.key.utf8.count + 2 + $1.value.utf8.count } }

    func write(_ w: inout ByteWriter) {
        w.u16(UInt16(pairs.count))
        for p in pairs { GossipWire.writePair(p, &w) }
    }

    static func read(_ r: inout ByteReader) throws -> Attributes {
        let n = Int(try r.u16())
        guard n <= GossipWire.maxAttributePairs else { throw GossipDropReason.badLength }
        var pairs: [AttributePair] = []
        var previous: [UInt8]?
        var size = 2
        for _ in 0..<n {
            let p = try GossipWire.readPair(&r)
            let k = Array(p.key.utf8)
            if let previous, !previous.lexicographicallyPrecedes(k) { throw GossipDropReason.nonCanonical }
            previous = k
            size += 3 + k.count + p.value.utf8.count
            pairs.append(p)
        }
        guard size <= GossipWire.maxAttributeBytes else { throw GossipDropReason.oversized }
        return Attributes(validatedSorted: pairs)
    }
}

/// An administrator's order to remove a node from the mesh for good. Valid when signed by one of
/// the configured admin keys over `signedBytes(network:)`; a culled node id never comes back,
/// whatever incarnation it claims.
public struct CullRecord: Sendable, Equatable {
    public var subject: NodeID
    /// Seconds since the Unix epoch, as the admin's tool wrote it; part of the signed bytes so two
    /// culls of the same node differ.
    public var issuedAt: UInt64
    public var adminKey: PublicKey
    public var signature: [UInt8]

    static let encodedLength = 32 + 8 + 32 + 64
    static let label = Array("iotaf/gossip-cull/v1".utf8)

    public init(subject: NodeID, issuedAt: UInt64, adminKey: PublicKey, signature: [UInt8]) {
        self.subject = subject
        self.issuedAt = issuedAt
        self.adminKey = adminKey
        self.signature = signature
    }

    /// The canonical signed bytes: "iotaf/gossip-cull/v1" (20 ASCII bytes) || network id (16) ||
    /// subject node id (32) || issued-at (8, big-endian).
    public static func signedBytes(network: NetworkID, subject: NodeID, issuedAt: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 76)
        w.raw(label)
        w.raw(network.bytes)
        w.raw(subject.bytes)
        w.u64(issuedAt)
        return w.bytes
    }

    public static func sign(subject: NodeID, issuedAt: UInt64, network: NetworkID, admin: NodeIdentity) -> CullRecord {
        let sig = admin.sign(signedBytes(network: network, subject: subject, issuedAt: issuedAt))
        return CullRecord(subject: subject, issuedAt: issuedAt, adminKey: admin.publicKey, signature: sig)
    }

    public func verify(network: NetworkID, adminKeys: [PublicKey]) -> GossipDropReason? {
        guard adminKeys.contains(adminKey) else { return .unknownAdmin }
        // Only against the canonical key: an admin key's negated twin signs nothing (IdentityKey).
        let ok = IdentityKey.verify(signature, message: Self.signedBytes(network: network, subject: subject, issuedAt: issuedAt), publicKey: adminKey.bytes)
        return ok ? nil : .badSignature
    }

    func write(_ w: inout ByteWriter) {
        w.raw(subject.bytes)
        w.u64(issuedAt)
        w.raw(adminKey.bytes)
        w.raw(signature)
    }

    static func read(_ r: inout ByteReader) throws -> CullRecord {
        let s = NodeID(bytes: try r.raw(32))!
        let t = try r.u64()
        // Any 32 bytes decode; a key that is no admin's, or not canonical, fails `verify`.
        guard let admin = PublicKey(raw: try r.raw(PublicKey.length)) else { throw GossipDropReason.truncated }
        return CullRecord(subject: s, issuedAt: t, adminKey: admin, signature: try r.raw(64))
    }
}
