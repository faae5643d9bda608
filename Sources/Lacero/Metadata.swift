import CSodium
import MeshCore
import Sodium

/// The one thing that rebuilds an object: which fragments, in what order, coded how, under which
/// key. It goes back to the requester alone, sealed to its identity (`seal(to:)`). Its canonical
/// encoding is in Docs/lacero.md ("Metadata object"); `encode` and `decode` are its only codecs.
public struct LaceroMetadata: Sendable, Equatable {
    public static let magic: [UInt8] = [0x4C, 0x43, 0x4D, 0x01]  // "LCM", version 1
    /// Bounds the decoder checks before it allocates (1 TiB objects, 2^20 segments).
    public static let maxObjectSize: UInt64 = 1 << 40
    public static let maxSegments = 1 << 20
    public static let maxAvailable = 256

    public var parameters: LaceroParameters
    public var objectSize: UInt64
    /// The object's AEAD key (fresh per object).
    public var key: [UInt8]
    /// Storage nodes accept a delete of fragment f only with BLAKE2b-256(key: deleteSecret, f).
    public var deleteSecret: [UInt8]
    /// Fragment ids, segment by segment, each segment's n ids in share order.
    public var fragmentIDs: [[UInt8]]
    /// The storage nodes made available when the object was put (sorted, distinct): where `get`
    /// asks first. Says nothing about which node holds which fragment.
    public var available: [NodeID]

    public init(parameters: LaceroParameters, objectSize: UInt64, key: [UInt8], deleteSecret: [UInt8],
                fragmentIDs: [[UInt8]], available: [NodeID]) {
        self.parameters = parameters
        self.objectSize = objectSize
        self.key = key
        self.deleteSecret = deleteSecret
        self.fragmentIDs = fragmentIDs
        self.available = Array(Set(available)).sorted().prefix(Self.maxAvailable).map { $0 }
    }

    public var segmentCount: Int { parameters.segmentCount(objectSize: objectSize) }

    /// The fragment ids of segment `s`.
    public func segment(_ s: Int) -> ArraySlice<[UInt8]> {
        let n = parameters.n
        return fragmentIDs[(s * n)..<((s + 1) * n)]
    }

    /// The object's content hash: SHA-256 over the domain label and every fragment id in order.
    /// With every fragment checked against its id and every segment's AEAD tag, it names the
    /// exact object (what `--anchor` records on the ledger).
    public var contentHash: [UInt8] {
        var all = Array("lacero/content/v1".utf8)
        for id in fragmentIDs { all += id }
        return FragmentHash.hash(all)
    }

    /// The segment tag every fragment of segment `s` carries (a storage node keeps at most one
    /// fragment per tag): BLAKE2b-128 keyed with the delete secret, so a put and every later
    /// repair of the object give the same tag, and without the metadata the tags of two segments
    /// or objects are unrelated.
    public func segmentTag(_ s: Int) -> [UInt8] {
        var w = ByteWriter(capacity: 32)
        w.raw(Array("lacero/segment-tag/v1".utf8))
        w.u32(UInt32(s))
        return Blake2b.hash(w.bytes, outputLength: 16, key: deleteSecret)
    }

    /// The proof a storage node checks before it deletes fragment `id`.
    public func deleteProof(for id: [UInt8]) -> [UInt8] {
        Self.deleteProof(secret: deleteSecret, id: id)
    }

    public static func deleteProof(secret: [UInt8], id: [UInt8]) -> [UInt8] {
        Blake2b.hash(Array("lacero/delete/v1".utf8) + id, outputLength: 32, key: secret)
    }

    /// What a storage node keeps to check a delete proof later without learning the secret.
    public static func deleteCheck(proof: [UInt8]) -> [UInt8] {
        Blake2b.hash(proof, outputLength: 32)
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 128 + fragmentIDs.count * 32 + available.count * 32)
        w.raw(Self.magic)
        w.u8(parameters.aead.rawValue)
        w.u8(parameters.hash.rawValue)
        w.u16(UInt16(parameters.k))
        w.u16(UInt16(parameters.n))
        w.u32(UInt32(parameters.segmentSize))
        w.u64(objectSize)
        w.raw(key)
        w.raw(deleteSecret)
        for id in fragmentIDs { w.raw(id) }
        w.u16(UInt16(available.count))
        for node in available { w.raw(node.bytes) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(LaceroDecodeError) -> LaceroMetadata {
        var r = ByteReader(bytes)
        do {
            guard try r.raw(4) == magic else { throw LaceroDecodeError.badMagic }
            guard let aead = LaceroParameters.AEAD(rawValue: try r.u8()) else { throw LaceroDecodeError.unknownAlgorithm }
            guard let hash = LaceroParameters.Hash(rawValue: try r.u8()) else { throw LaceroDecodeError.unknownAlgorithm }
            let k = Int(try r.u16()), n = Int(try r.u16()), segmentSize = Int(try r.u32())
            let parameters: LaceroParameters
            do { parameters = try LaceroParameters(k: k, n: n, segmentSize: segmentSize, aead: aead, hash: hash) } catch {
                throw LaceroDecodeError.badParameters
            }
            let objectSize = try r.u64()
            guard objectSize <= maxObjectSize else { throw LaceroDecodeError.tooLarge }
            let segments = parameters.segmentCount(objectSize: objectSize)
            guard segments <= maxSegments else { throw LaceroDecodeError.tooLarge }
            let key = try r.raw(32), secret = try r.raw(32)
            // Check the whole length before allocating the ids.
            guard r.remaining >= segments * n * 32 + 2 else { throw LaceroDecodeError.truncated }
            var ids: [[UInt8]] = []
            ids.reserveCapacity(segments * n)
            for _ in 0..<(segments * n) { ids.append(try r.raw(32)) }
            let count = Int(try r.u16())
            guard count <= maxAvailable else { throw LaceroDecodeError.tooLarge }
            guard r.remaining == count * 32 else { throw r.remaining < count * 32 ? LaceroDecodeError.truncated : .trailingBytes }
            var available: [NodeID] = []
            for _ in 0..<count {
                guard let node = NodeID(bytes: try r.raw(32)) else { throw LaceroDecodeError.truncated }
                if let last = available.last, !(last < node) { throw LaceroDecodeError.notCanonical }
                available.append(node)
            }
            return LaceroMetadata(parameters: parameters, objectSize: objectSize, key: key, deleteSecret: secret,
                                  fragmentIDs: ids, available: available)
        } catch let e as LaceroDecodeError {
            throw e
        } catch {
            throw LaceroDecodeError.truncated
        }
    }

    /// The metadata sealed to the requester's Ed25519 identity (libsodium's sealed box to its
    /// X25519 form): only that key's holder opens it; the sender stays anonymous.
    public func seal(to requesterEd25519: [UInt8]) throws -> [UInt8] {
        let recipient = try Ed25519.curve25519PublicKey(requesterEd25519)
        let message = encode()
        var out = [UInt8](repeating: 0, count: message.count + Int(crypto_box_sealbytes()))
        guard crypto_box_seal(&out, message, UInt64(message.count), recipient) == 0 else {
            throw SodiumError.invalidKey("cannot seal to this key")
        }
        return out
    }

    /// Opens metadata sealed to the identity whose Ed25519 secret key is `secretKey` (64 bytes).
    public static func open(sealed: [UInt8], ed25519SecretKey secretKey: [UInt8]) throws(LaceroDecodeError) -> LaceroMetadata {
        guard sealed.count >= Int(crypto_box_sealbytes()) + magic.count else { throw .truncated }
        guard secretKey.count == 64,
              let xSecret = try? Ed25519.curve25519SecretKey(secretKey),
              let xPublic = try? Ed25519.curve25519PublicKey(Array(secretKey[32...])) else { throw .notForThisKey }
        var plain = [UInt8](repeating: 0, count: sealed.count - Int(crypto_box_sealbytes()))
        guard crypto_box_seal_open(&plain, sealed, UInt64(sealed.count), xPublic, xSecret) == 0 else { throw .notForThisKey }
        return try decode(plain)
    }
}

/// Why a Lacero decoder refused its input: each is a counted drop reason (`reason`).
public enum LaceroDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated
    case trailingBytes
    case badMagic
    case unknownKind
    case unknownAlgorithm
    case badParameters
    case tooLarge
    case notCanonical
    case badField
    case notForThisKey

    /// The counter name.
    public var reason: String {
        switch self {
        case .truncated: "truncated"
        case .trailingBytes: "trailing_bytes"
        case .badMagic: "bad_magic"
        case .unknownKind: "unknown_kind"
        case .unknownAlgorithm: "unknown_algorithm"
        case .badParameters: "bad_parameters"
        case .tooLarge: "too_large"
        case .notCanonical: "not_canonical"
        case .badField: "bad_field"
        case .notForThisKey: "not_for_this_key"
        }
    }

    public var description: String {
        switch self {
        case .notForThisKey: "the metadata is not sealed to this identity, or it was altered"
        default: "malformed Lacero input: \(reason)"
        }
    }
}
