import MeshCore

/// Lacero's messages between nodes (protocol id "iL", Docs/lacero.md "Wire"): the status-register
/// relay (store, keep-ack), fetch by id (want, have, block), delete and lease renewal. One kind
/// byte after the magic; big-endian fields; the decoder refuses truncated, oversized, trailing or
/// unknown input with a `LaceroDecodeError` (a counted drop reason), never a trap.
public enum LaceroMessage: Sendable, Equatable {
    public static let magic: [UInt8] = [0x69, 0x4C]  // "iL"
    /// Largest fragment a store or block message carries (a 64 MiB segment at k = 1 would be
    /// larger; the CLI refuses parameters whose fragments exceed it).
    public static let maxFragmentBytes = 16 << 20
    /// Most ids in one want or have (so either fits one datagram: 4 + 32·32 = 1,028 bytes).
    public static let maxIDs = 32
    public static let idLength = 32
    public static let tokenLength = 16

    /// A fragment handed along the relay. A hop keeps it (by probability, quota and load, never
    /// two fragments of one `segmentTag`), raises `register` if it did, and passes it to a random
    /// neighbour not in `visited` while `register < threshold` and `hops > 0`.
    case store(Store)
    /// Back to the sharding node (through the relay's path): the fragment id and whether the
    /// register reached its threshold. Never the holders' addresses.
    case keepAck(token: [UInt8], id: [UInt8], kept: Bool, register: UInt8)
    /// Which of these ids do you hold? (IPFS Bitswap's want-have.)
    case want([[UInt8]])
    /// The answer to want: the ids held, in the order asked.
    case have([[UInt8]])
    /// Send me the fragment with this id.
    case fetch(id: [UInt8])
    /// A fragment's bytes (checked against its id by the receiver before any use).
    case block(id: [UInt8], bytes: [UInt8])
    /// Delete fragment `id`; `proof` hashes to the delete check stored with it.
    case delete(id: [UInt8], proof: [UInt8])
    /// Extend fragment `id`'s lease by `seconds`; the same proof as delete.
    case renew(id: [UInt8], proof: [UInt8], seconds: UInt32)

    public struct Store: Sendable, Equatable {
        public var id: [UInt8]
        public var register: UInt8
        public var threshold: UInt8
        public var hops: UInt8
        /// Opaque to every hop but the sharding node: matches the keep-ack to its fragment.
        public var token: [UInt8]
        /// The same for every fragment of one segment, unrelated across segments and objects (16
        /// random bytes): what a node needs to refuse a second fragment of a segment.
        public var segmentTag: [UInt8]
        /// BLAKE2b-256 of the delete proof (`LaceroMetadata.deleteCheck`).
        public var deleteCheck: [UInt8]
        public var leaseSeconds: UInt32
        /// Nodes already asked (their node ids' first 8 bytes), so the walk spreads.
        public var visited: [UInt64]
        public var bytes: [UInt8]

        public init(id: [UInt8], register: UInt8, threshold: UInt8, hops: UInt8, token: [UInt8], segmentTag: [UInt8],
                    deleteCheck: [UInt8], leaseSeconds: UInt32, visited: [UInt64], bytes: [UInt8]) {
            self.id = id; self.register = register; self.threshold = threshold; self.hops = hops; self.token = token
            self.segmentTag = segmentTag; self.deleteCheck = deleteCheck; self.leaseSeconds = leaseSeconds
            self.visited = visited; self.bytes = bytes
        }
    }

    public static let maxVisited = 64

    enum Kind: UInt8 {
        case store = 1, keepAck, want, have, fetch, block, delete, renew
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.raw(Self.magic)
        switch self {
        case let .store(s):
            w.u8(Kind.store.rawValue)
            w.raw(s.id); w.u8(s.register); w.u8(s.threshold); w.u8(s.hops)
            w.raw(s.token); w.raw(s.segmentTag); w.raw(s.deleteCheck); w.u32(s.leaseSeconds)
            w.u8(UInt8(s.visited.count)); for v in s.visited { w.u64(v) }
            w.u32(UInt32(s.bytes.count)); w.raw(s.bytes)
        case let .keepAck(token, id, kept, register):
            w.u8(Kind.keepAck.rawValue); w.raw(token); w.raw(id); w.u8(kept ? 1 : 0); w.u8(register)
        case let .want(ids):
            w.u8(Kind.want.rawValue); w.u8(UInt8(ids.count)); for id in ids { w.raw(id) }
        case let .have(ids):
            w.u8(Kind.have.rawValue); w.u8(UInt8(ids.count)); for id in ids { w.raw(id) }
        case let .fetch(id):
            w.u8(Kind.fetch.rawValue); w.raw(id)
        case let .block(id, bytes):
            w.u8(Kind.block.rawValue); w.raw(id); w.u32(UInt32(bytes.count)); w.raw(bytes)
        case let .delete(id, proof):
            w.u8(Kind.delete.rawValue); w.raw(id); w.raw(proof)
        case let .renew(id, proof, seconds):
            w.u8(Kind.renew.rawValue); w.raw(id); w.raw(proof); w.u32(seconds)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(LaceroDecodeError) -> LaceroMessage {
        var r = ByteReader(bytes)
        let message: LaceroMessage
        do {
            guard try r.raw(2) == magic else { throw LaceroDecodeError.badMagic }
            guard let kind = Kind(rawValue: try r.u8()) else { throw LaceroDecodeError.unknownKind }
            switch kind {
            case .store:
                let id = try r.raw(idLength)
                let register = try r.u8(), threshold = try r.u8(), hops = try r.u8()
                guard threshold >= 1, register <= threshold else { throw LaceroDecodeError.badField }
                let token = try r.raw(tokenLength), tag = try r.raw(16), check = try r.raw(32)
                let lease = try r.u32()
                let visitedCount = Int(try r.u8())
                guard visitedCount <= maxVisited else { throw LaceroDecodeError.tooLarge }
                var visited: [UInt64] = []
                for _ in 0..<visitedCount { visited.append(try r.u64()) }
                let length = Int(try r.u32())
                guard length >= 1, length <= maxFragmentBytes else { throw LaceroDecodeError.tooLarge }
                message = .store(Store(id: id, register: register, threshold: threshold, hops: hops, token: token, segmentTag: tag,
                                       deleteCheck: check, leaseSeconds: lease, visited: visited, bytes: try r.raw(length)))
            case .keepAck:
                let token = try r.raw(tokenLength), id = try r.raw(idLength)
                let kept = try r.u8()
                guard kept <= 1 else { throw LaceroDecodeError.badField }
                message = .keepAck(token: token, id: id, kept: kept == 1, register: try r.u8())
            case .want, .have:
                let count = Int(try r.u8())
                guard count <= maxIDs else { throw LaceroDecodeError.tooLarge }
                guard kind == .have || count >= 1 else { throw LaceroDecodeError.badField }
                var ids: [[UInt8]] = []
                for _ in 0..<count { ids.append(try r.raw(idLength)) }
                message = kind == .want ? .want(ids) : .have(ids)
            case .fetch:
                message = .fetch(id: try r.raw(idLength))
            case .block:
                let id = try r.raw(idLength)
                let length = Int(try r.u32())
                guard length >= 1, length <= maxFragmentBytes else { throw LaceroDecodeError.tooLarge }
                message = .block(id: id, bytes: try r.raw(length))
            case .delete:
                message = .delete(id: try r.raw(idLength), proof: try r.raw(32))
            case .renew:
                message = .renew(id: try r.raw(idLength), proof: try r.raw(32), seconds: try r.u32())
            }
        } catch let e as LaceroDecodeError {
            throw e
        } catch {
            throw LaceroDecodeError.truncated
        }
        guard r.remaining == 0 else { throw .trailingBytes }
        return message
    }
}
