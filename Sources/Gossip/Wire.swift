import MeshCore

/// Why a gossip message was not used. Codec reasons come from `GossipWire.decode`; the rest from
/// `GossipCore`. Every drop is counted under one of these names.
public enum GossipDropReason: String, Sendable, CaseIterable, Equatable {
    // Codec.
    case truncated, trailingBytes, oversized, badMagic, unsupportedVersion, unknownType
    case badLength, badUpdateKind, badText, nonCanonical, badFlag, badState
    /// A peer's Ed25519 key is the non-canonical one of its pair (`IdentityKey`).
    case nonCanonicalKey
    /// A type that may only travel over a reliable channel arrived in a datagram, or the reverse.
    case wrongTransport
    // Core.
    case fromSelf, fromCulled, fromUnknown, afterLeave, badSignature, unknownAdmin
    case unknownSequence, unknownExchange, exchangeBusy, duplicateQuery, tableFull, staleShuffle
    /// A query's origin is no member we know, did not send it to us itself, and claims no usable
    /// address (a node listening on `[::]` claims that): its answer has nowhere to go.
    case unroutableAnswer
    /// A valid cull refused because the node already holds `GossipConfig.maxCulls` of them.
    case cullTableFull
}

/// One peer as written in messages: its Ed25519 key (so the node can open an IK session) and its
/// underlay address.
public struct PeerEntry: Sendable, Equatable, Hashable {
    public var peer: PeerIdentity
    public var address: UnderlayAddress
    public init(peer: PeerIdentity, address: UnderlayAddress) {
        self.peer = peer
        self.address = address
    }
    public var nodeID: NodeID { peer.nodeID }
    static let encodedLength = 32 + 16 + 2
}

public enum MemberState: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    case alive = 1, suspect = 2, dead = 3, left = 4, culled = 5
    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        case .culled: "culled"
        }
    }
}

/// A membership fact that is disseminated by piggybacking and in anti-entropy deltas.
public enum MemberUpdate: Sendable, Equatable {
    /// `attributeVersion` tells holders of an older copy of the attributes to fetch them.
    case alive(PeerEntry, incarnation: UInt32, attributeVersion: UInt32)
    /// `accuser` is the first 8 bytes of the suspecting node's id: enough to count independent
    /// confirmations (Lifeguard) without spending 32 bytes.
    case suspect(PeerIdentity, incarnation: UInt32, accuser: UInt64)
    case dead(PeerIdentity, incarnation: UInt32)
    case left(PeerIdentity, incarnation: UInt32)
    case cull(CullRecord)

    public var subject: NodeID {
        switch self {
        case let .alive(e, _, _): e.nodeID
        case let .suspect(p, _, _), let .dead(p, _), let .left(p, _): p.nodeID
        case let .cull(c): c.subject
        }
    }

    var kind: UInt8 {
        switch self {
        case .alive: 1
        case .suspect: 2
        case .dead: 3
        case .left: 4
        case .cull: 5
        }
    }

    var encodedLength: Int {
        switch self {
        case .alive: 1 + PeerEntry.encodedLength + 8
        case .suspect: 1 + 32 + 4 + 8
        case .dead, .left: 1 + 32 + 4
        case .cull: 1 + CullRecord.encodedLength
        }
    }
}

/// A member's full row in an anti-entropy delta.
public struct MemberRecord: Sendable, Equatable {
    public var entry: PeerEntry
    public var state: MemberState
    public var incarnation: UInt32
    public var attributeVersion: UInt32
    public init(entry: PeerEntry, state: MemberState, incarnation: UInt32, attributeVersion: UInt32) {
        self.entry = entry
        self.state = state
        self.incarnation = incarnation
        self.attributeVersion = attributeVersion
    }
    static let encodedLength = PeerEntry.encodedLength + 1 + 4 + 4
}

/// HyParView's NEIGHBOR priority: `high` must be accepted (the asker has no neighbour left);
/// `low` only if there is room; `nearer` (mode `nearest`) also when the asker is nearer than the
/// receiver's farthest neighbour, which it then replaces.
public enum NeighbourPriority: UInt8, Sendable, Equatable, CaseIterable {
    case low = 0, high = 1, nearer = 2
}

public enum MatchKind: UInt8, Sendable, Equatable, CaseIterable {
    case exact = 1, prefix = 2, substring = 3
}

/// How a query travels: flooded over the active view (`master`), along one random walk (`walk`),
/// or to the peers with the lowest measured round-trip time (`nearest`).
public enum DiscoveryMode: UInt8, Sendable, Equatable, CaseIterable {
    case master = 1, walk = 2, nearest = 3
}

public struct AttributeQuery: Sendable, Equatable {
    public var key: String
    public var value: String
    public var match: MatchKind
    public init(key: String, value: String, match: MatchKind) {
        self.key = key
        self.value = value
        self.match = match
    }

    /// Parses `key=value` (exact), `key=value*` (prefix) or `key=*value*` (substring).
    public init?(parsing text: String) {
        guard let eq = text.firstIndex(of: "=") else { return nil }
        key = String(text[..<eq])
        var v = String(text[text.index(after: eq)...])
        if v.hasPrefix("*"), v.hasSuffix("*"), v.count >= 2 {
            v = String(v.dropFirst().dropLast())
            match = .substring
        } else if v.hasSuffix("*") {
            v = String(v.dropLast())
            match = .prefix
        } else {
            match = .exact
        }
        value = v
        guard !key.isEmpty, key.utf8.count <= GossipWire.maxKeyLength, v.utf8.count <= GossipWire.maxQueryValueLength else { return nil }
    }

    public func matches(_ attributes: Attributes) -> String? {
        guard let v = attributes[key] else { return nil }
        switch match {
        case .exact: return v == value ? v : nil
        case .prefix: return v.hasPrefix(value) ? v : nil
        case .substring: return (value.isEmpty || v.contains(value)) ? v : nil
        }
    }
}

public struct QueryMessage: Sendable, Equatable {
    public var id: UInt64
    public var origin: PeerEntry
    public var hops: UInt8
    public var hopLimit: UInt8
    public var mode: DiscoveryMode
    public var query: AttributeQuery
    public init(id: UInt64, origin: PeerEntry, hops: UInt8, hopLimit: UInt8, mode: DiscoveryMode, query: AttributeQuery) {
        self.id = id
        self.origin = origin
        self.hops = hops
        self.hopLimit = hopLimit
        self.mode = mode
        self.query = query
    }
}

/// Every gossip message. Datagram messages fit `GossipWire.maxDatagram`; `delta` and `attributes`
/// travel only over a reliable channel (the node's Channels), up to `GossipWire.maxReliable`.
public enum GossipMessage: Sendable, Equatable {
    case ping(seq: UInt32, updates: [MemberUpdate])
    case ack(seq: UInt32, updates: [MemberUpdate])
    /// Ask the receiver to probe `target` for us (SWIM indirect probe).
    case pingRequest(seq: UInt32, target: PeerEntry)
    /// The indirect prober's target did not answer in time (Lifeguard: proves the asker's own link works).
    case nack(seq: UInt32)
    case gossip(updates: [MemberUpdate])
    case join(incarnation: UInt32)
    case joinReply(sample: [PeerEntry])
    case forwardJoin(ttl: UInt8, joiner: PeerEntry)
    case neighbor(priority: NeighbourPriority)
    case neighborReply(accepted: Bool, sample: [PeerEntry])
    case disconnect
    case shuffle(id: UInt32, ttl: UInt8, origin: PeerEntry, sample: [PeerEntry])
    case shuffleReply(id: UInt32, sample: [PeerEntry])
    case query(QueryMessage)
    case queryAnswer(id: UInt64, hops: UInt8, pairs: [AttributePair])
    case digest(exchange: UInt32, buckets: [UInt64], cullCount: UInt32, cullHash: UInt64)
    /// `busy`: the receiver serves too many exchanges right now; try another peer later.
    case digestReply(exchange: UInt32, differing: UInt64, cullsDiffer: Bool, busy: Bool)
    case attributesRequest(version: UInt32)
    // Reliable only.
    case delta(exchange: UInt32, records: [MemberRecord], culls: [CullRecord])
    case attributes(version: UInt32, Attributes)

    var type: UInt8 {
        switch self {
        case .ping: 1
        case .ack: 2
        case .pingRequest: 3
        case .nack: 4
        case .gossip: 5
        case .join: 6
        case .joinReply: 7
        case .forwardJoin: 8
        case .neighbor: 9
        case .neighborReply: 10
        case .disconnect: 11
        case .shuffle: 12
        case .shuffleReply: 13
        case .query: 14
        case .queryAnswer: 15
        case .digest: 16
        case .digestReply: 17
        case .attributesRequest: 18
        case .delta: 64
        case .attributes: 65
        }
    }

    public var isReliableOnly: Bool { type >= 64 }
}

/// The canonical byte encoding of gossip messages (Docs/gossip.md). Big-endian; every count is
/// checked against a limit before anything is allocated; a decoded message re-encodes to the
/// same bytes.
public enum GossipWire {
    public static let magic: [UInt8] = [0x69, 0x47] // "iG"
    public static let version: UInt8 = 1
    /// Plaintext budget inside one Noise transport datagram (IPv6 minimum MTU minus headers and tags).
    public static let maxDatagram = 1100
    /// Largest message handed to a reliable channel.
    public static let maxReliable = 256 * 1024
    public static let headerLength = 4
    public static let bucketCount = 64
    public static let maxSample = 16
    public static let maxUpdates = 64
    public static let maxKeyLength = 64
    public static let maxValueLength = 4096
    public static let maxQueryValueLength = 255
    public static let maxAttributeBytes = 8192
    public static let maxAttributePairs = 256
    public static let maxDeltaRecords = 4000
    public static let maxDeltaCulls = 256

    // MARK: Encoding

    public static func encode(_ m: GossipMessage) -> [UInt8] {
        var w = ByteWriter(capacity: sizeHint(m))
        w.raw(magic)
        w.u8(version)
        w.u8(m.type)
        switch m {
        case let .ping(seq, updates), let .ack(seq, updates):
            w.u32(seq)
            writeUpdates(updates, &w)
        case let .pingRequest(seq, target):
            w.u32(seq)
            writeEntry(target, &w)
        case let .nack(seq):
            w.u32(seq)
        case let .gossip(updates):
            writeUpdates(updates, &w)
        case let .join(inc):
            w.u32(inc)
        case let .joinReply(sample):
            writeEntries(sample, &w)
        case let .forwardJoin(ttl, joiner):
            w.u8(ttl)
            writeEntry(joiner, &w)
        case let .neighbor(priority):
            w.u8(priority.rawValue)
        case let .neighborReply(accepted, sample):
            w.u8(accepted ? 1 : 0)
            writeEntries(sample, &w)
        case .disconnect:
            break
        case let .shuffle(id, ttl, origin, sample):
            w.u32(id)
            w.u8(ttl)
            writeEntry(origin, &w)
            writeEntries(sample, &w)
        case let .shuffleReply(id, sample):
            w.u32(id)
            writeEntries(sample, &w)
        case let .query(q):
            w.u64(q.id)
            writeEntry(q.origin, &w)
            w.u8(q.hops)
            w.u8(q.hopLimit)
            w.u8(q.mode.rawValue)
            w.u8(q.query.match.rawValue)
            writeShortText(q.query.key, &w)
            writeShortText(q.query.value, &w)
        case let .queryAnswer(id, hops, pairs):
            w.u64(id)
            w.u8(hops)
            w.u8(UInt8(pairs.count))
            for p in pairs { writePair(p, &w) }
        case let .digest(exchange, buckets, cullCount, cullHash):
            w.u32(exchange)
            for b in buckets { w.u64(b) }
            w.u32(cullCount)
            w.u64(cullHash)
        case let .digestReply(exchange, differing, cullsDiffer, busy):
            w.u32(exchange)
            w.u64(differing)
            w.u8((cullsDiffer ? 1 : 0) | (busy ? 2 : 0))
        case let .attributesRequest(version):
            w.u32(version)
        case let .delta(exchange, records, culls):
            w.u32(exchange)
            w.u16(UInt16(records.count))
            for r in records {
                writeEntry(r.entry, &w)
                w.u8(r.state.rawValue)
                w.u32(r.incarnation)
                w.u32(r.attributeVersion)
            }
            w.u16(UInt16(culls.count))
            for c in culls { c.write(&w) }
        case let .attributes(version, attrs):
            w.u32(version)
            attrs.write(&w)
        }
        return w.bytes
    }

    /// Bytes to reserve for `m`'s encoding: exact for the messages that carry updates or peer
    /// entries (most datagrams), so a message is written into one allocation instead of growing
    /// through 128, 256 and 512 bytes; 128 for the rest.
    static func sizeHint(_ m: GossipMessage) -> Int {
        switch m {
        case let .ping(_, updates), let .ack(_, updates):
            return headerLength + 4 + 1 + updates.reduce(0) { $0 + $1.encodedLength }
        case let .gossip(updates):
            return headerLength + 1 + updates.reduce(0) { $0 + $1.encodedLength }
        case let .joinReply(sample), let .neighborReply(_, sample), let .shuffleReply(_, sample):
            return headerLength + 5 + 1 + sample.count * PeerEntry.encodedLength
        case let .shuffle(_, _, _, sample):
            return headerLength + 5 + PeerEntry.encodedLength + 1 + sample.count * PeerEntry.encodedLength
        case .digest:
            return headerLength + 4 + bucketCount * 8 + 4 + 8
        case let .delta(_, records, culls):
            return headerLength + 4 + 2 + records.count * MemberRecord.encodedLength + 2 + culls.count * CullRecord.encodedLength
        default:
            return 128
        }
    }

    /// A `gossip` message whose updates were encoded already (`writeUpdate`, back to back):
    /// the same bytes as `encode(.gossip(updates:))` of those updates, for a sender that sends
    /// the same updates to several peers (`GossipCore.flushNews`) and encodes each once.
    static func encodeGossip<C: Collection>(count: Int, encodedUpdates: C) -> [UInt8] where C.Element == UInt8 {
        var w = ByteWriter(capacity: headerLength + 1 + encodedUpdates.count)
        w.raw(magic)
        w.u8(version)
        w.u8(GossipMessage.gossip(updates: []).type)
        w.u8(UInt8(count))
        w.raw(encodedUpdates)
        return w.bytes
    }

    static func writeEntry(_ e: PeerEntry, _ w: inout ByteWriter) {
        w.raw(e.peer.publicKey)
        w.u64(e.address.high)
        w.u64(e.address.low)
        w.u16(e.address.port)
    }

    static func writeEntries(_ es: [PeerEntry], _ w: inout ByteWriter) {
        w.u8(UInt8(es.count))
        for e in es { writeEntry(e, &w) }
    }

    static func writeShortText(_ s: String, _ w: inout ByteWriter) {
        let b = Array(s.utf8)
        w.u8(UInt8(b.count))
        w.raw(b)
    }

    static func writePair(_ p: AttributePair, _ w: inout ByteWriter) {
        writeShortText(p.key, &w)
        let v = Array(p.value.utf8)
        w.u16(UInt16(v.count))
        w.raw(v)
    }

    static func writeUpdates(_ us: [MemberUpdate], _ w: inout ByteWriter) {
        w.u8(UInt8(us.count))
        for u in us { writeUpdate(u, &w) }
    }

    static func writeUpdate(_ u: MemberUpdate, _ w: inout ByteWriter) {
        w.u8(u.kind)
        switch u {
        case let .alive(e, inc, av):
            writeEntry(e, &w)
            w.u32(inc)
            w.u32(av)
        case let .suspect(p, inc, accuser):
            w.raw(p.publicKey)
            w.u32(inc)
            w.u64(accuser)
        case let .dead(p, inc), let .left(p, inc):
            w.raw(p.publicKey)
            w.u32(inc)
        case let .cull(c):
            c.write(&w)
        }
    }

    // MARK: Decoding

    public enum Transport: Sendable { case datagram, reliable }

    /// Decodes or names the reason for refusing; never traps on any input.
    /// `known`: identities already held (a core passes its table), so a known member's entry costs
    /// a lookup instead of the BLAKE2b that derives its node id.
    public static func decode(_ bytes: [UInt8], transport: Transport = .datagram, known: PeerIdentities? = nil) -> Result<GossipMessage, GossipDropReason> {
        let limit = transport == .datagram ? maxDatagram : maxReliable
        if bytes.count > limit { return .failure(.oversized) }
        if bytes.count < headerLength { return .failure(.truncated) }
        if bytes[0] != magic[0] || bytes[1] != magic[1] { return .failure(.badMagic) }
        if bytes[2] != version { return .failure(.unsupportedVersion) }
        var r = ByteReader(bytes, offset: headerLength)
        do {
            let m = try decodeBody(type: bytes[3], &r, known)
            if m.isReliableOnly != (transport == .reliable) { return .failure(.wrongTransport) }
            if r.remaining != 0 { return .failure(.trailingBytes) }
            return .success(m)
        } catch let e as GossipDropReason {
            return .failure(e)
        } catch {
            return .failure(.truncated)
        }
    }

    private static func decodeBody(type: UInt8, _ r: inout ByteReader, _ k: PeerIdentities?) throws -> GossipMessage {
        switch type {
        case 1: return .ping(seq: try r.u32(), updates: try readUpdates(&r, k))
        case 2: return .ack(seq: try r.u32(), updates: try readUpdates(&r, k))
        case 3: return .pingRequest(seq: try r.u32(), target: try readEntry(&r, k))
        case 4: return .nack(seq: try r.u32())
        case 5: return .gossip(updates: try readUpdates(&r, k))
        case 6: return .join(incarnation: try r.u32())
        case 7: return .joinReply(sample: try readEntries(&r, k))
        case 8: return .forwardJoin(ttl: try r.u8(), joiner: try readEntry(&r, k))
        case 9:
            guard let p = NeighbourPriority(rawValue: try r.u8()) else { throw GossipDropReason.badFlag }
            return .neighbor(priority: p)
        case 10: return .neighborReply(accepted: try readBool(&r), sample: try readEntries(&r, k))
        case 11: return .disconnect
        case 12: return .shuffle(id: try r.u32(), ttl: try r.u8(), origin: try readEntry(&r, k), sample: try readEntries(&r, k))
        case 13: return .shuffleReply(id: try r.u32(), sample: try readEntries(&r, k))
        case 14:
            let id = try r.u64()
            let origin = try readEntry(&r, k)
            let hops = try r.u8()
            let hopLimit = try r.u8()
            guard let mode = DiscoveryMode(rawValue: try r.u8()) else { throw GossipDropReason.badFlag }
            guard let match = MatchKind(rawValue: try r.u8()) else { throw GossipDropReason.badFlag }
            let key = try readShortText(&r, max: maxKeyLength)
            let value = try readShortText(&r, max: maxQueryValueLength)
            guard !key.isEmpty else { throw GossipDropReason.badLength }
            guard hops <= hopLimit else { throw GossipDropReason.badLength }
            return .query(QueryMessage(id: id, origin: origin, hops: hops, hopLimit: hopLimit, mode: mode,
                                       query: AttributeQuery(key: key, value: value, match: match)))
        case 15:
            let id = try r.u64()
            let hops = try r.u8()
            let n = Int(try r.u8())
            guard n <= maxAttributePairs else { throw GossipDropReason.badLength }
            var pairs: [AttributePair] = []
            for _ in 0..<n { pairs.append(try readPair(&r)) }
            return .queryAnswer(id: id, hops: hops, pairs: pairs)
        case 16:
            let ex = try r.u32()
            var buckets: [UInt64] = []
            buckets.reserveCapacity(bucketCount)
            for _ in 0..<bucketCount { buckets.append(try r.u64()) }
            return .digest(exchange: ex, buckets: buckets, cullCount: try r.u32(), cullHash: try r.u64())
        case 17:
            let ex = try r.u32(), differing = try r.u64(), flags = try r.u8()
            guard flags & ~3 == 0 else { throw GossipDropReason.badFlag }
            return .digestReply(exchange: ex, differing: differing, cullsDiffer: flags & 1 != 0, busy: flags & 2 != 0)
        case 18: return .attributesRequest(version: try r.u32())
        case 64:
            let ex = try r.u32()
            let n = Int(try r.u16())
            guard n <= maxDeltaRecords else { throw GossipDropReason.badLength }
            guard r.remaining >= n * MemberRecord.encodedLength else { throw GossipDropReason.truncated }
            var records: [MemberRecord] = []
            records.reserveCapacity(n)
            for _ in 0..<n {
                let e = try readEntry(&r, k)
                guard let s = MemberState(rawValue: try r.u8()) else { throw GossipDropReason.badState }
                records.append(MemberRecord(entry: e, state: s, incarnation: try r.u32(), attributeVersion: try r.u32()))
            }
            let c = Int(try r.u16())
            guard c <= maxDeltaCulls else { throw GossipDropReason.badLength }
            var culls: [CullRecord] = []
            for _ in 0..<c { culls.append(try CullRecord.read(&r)) }
            return .delta(exchange: ex, records: records, culls: culls)
        case 65:
            let v = try r.u32()
            return .attributes(version: v, try Attributes.read(&r))
        default:
            throw GossipDropReason.unknownType
        }
    }

    static func readBool(_ r: inout ByteReader) throws -> Bool {
        switch try r.u8() {
        case 0: return false
        case 1: return true
        default: throw GossipDropReason.badFlag
        }
    }

    static func readKey(_ r: inout ByteReader, _ k: PeerIdentities?) throws -> PeerIdentity {
        // Whether the bytes are a valid point is the session layer's concern; but the negated twin
        // of a key (the same secret's other encoding) is no member of its own, so a record naming
        // one is refused here, before it reaches the member table.
        let key = try r.publicKey()
        if let k, let held = k.identity(forKey: key) { return held }
        guard let p = PeerIdentity(publicKey: key) else { throw GossipDropReason.nonCanonicalKey }
        return p
    }

    static func readEntry(_ r: inout ByteReader, _ k: PeerIdentities?) throws -> PeerEntry {
        let p = try readKey(&r, k)
        let high = try r.u64(), low = try r.u64(), port = try r.u16()
        return PeerEntry(peer: p, address: UnderlayAddress(high: high, low: low, port: port))
    }

    static func readEntries(_ r: inout ByteReader, _ k: PeerIdentities?) throws -> [PeerEntry] {
        let n = Int(try r.u8())
        guard n <= maxSample else { throw GossipDropReason.badLength }
        var out: [PeerEntry] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try readEntry(&r, k)) }
        return out
    }

    static func readText(_ r: inout ByteReader, count: Int) throws -> String {
        let b = try r.raw(count)
        guard let s = String(validating: b, as: UTF8.self) else { throw GossipDropReason.badText }
        return s
    }

    static func readShortText(_ r: inout ByteReader, max: Int) throws -> String {
        let n = Int(try r.u8())
        guard n <= max else { throw GossipDropReason.badLength }
        return try readText(&r, count: n)
    }

    static func readPair(_ r: inout ByteReader) throws -> AttributePair {
        let k = try readShortText(&r, max: maxKeyLength)
        guard !k.isEmpty else { throw GossipDropReason.badLength }
        let n = Int(try r.u16())
        guard n <= maxValueLength else { throw GossipDropReason.badLength }
        return AttributePair(key: k, value: try readText(&r, count: n))
    }

    static func readUpdates(_ r: inout ByteReader, _ k: PeerIdentities?) throws -> [MemberUpdate] {
        let n = Int(try r.u8())
        guard n <= maxUpdates else { throw GossipDropReason.badLength }
        var out: [MemberUpdate] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            switch try r.u8() {
            case 1:
                let e = try readEntry(&r, k)
                out.append(.alive(e, incarnation: try r.u32(), attributeVersion: try r.u32()))
            case 2:
                let p = try readKey(&r, k)
                out.append(.suspect(p, incarnation: try r.u32(), accuser: try r.u64()))
            case 3:
                let p = try readKey(&r, k)
                out.append(.dead(p, incarnation: try r.u32()))
            case 4:
                let p = try readKey(&r, k)
                out.append(.left(p, incarnation: try r.u32()))
            case 5:
                out.append(.cull(try CullRecord.read(&r)))
            default:
                throw GossipDropReason.badUpdateKind
            }
        }
        return out
    }
}
