import Testing
import MeshCore
import Sodium
@testable import Gossip

/// The negated twin's signature, made as modified software would: RFC 8032 with the secret
/// scalar negated (see MeshCoreTests' `signAsNegatedTwin`).
func twinSignature(seed: [UInt8], _ message: [UInt8]) throws -> (key: [UInt8], signature: [UInt8]) {
    let (scalar, prefix) = try Ed25519Arithmetic.expand(seed: seed)
    let negated = try Ed25519Arithmetic.negate(scalar: scalar)
    let key = try Ed25519Arithmetic.baseMultiply(scalar: negated)
    let r = try Ed25519Arithmetic.reduce(SHA512.hash(prefix + message))
    let R = try Ed25519Arithmetic.baseMultiply(scalar: r)
    let k = try Ed25519Arithmetic.reduce(SHA512.hash(R + key + message))
    return (key, try R + Ed25519Arithmetic.add(scalar: r, Ed25519Arithmetic.multiply(scalar: k, negated)))
}

/// One message of every type, with every field set to something recognisable.
enum Samples {
    static let network = Mesh.network
    static let admin = NodeIdentity.deterministic(runSeed: 5, index: 99)
    static func entry(_ i: Int) -> PeerEntry { PeerEntry(peer: Mesh.identity(i), address: Mesh.address(i)) }

    static var cull: CullRecord { CullRecord.sign(subject: entry(3).nodeID, issuedAt: 1_700_000_000, network: network, admin: admin) }

    static var updates: [MemberUpdate] {
        [.alive(entry(1), incarnation: 7, attributeVersion: 3),
         .suspect(entry(2).peer, incarnation: 1, accuser: 0x0102_0304_0506_0708),
         .dead(entry(3).peer, incarnation: 9),
         .left(entry(4).peer, incarnation: 0xffff_ffff),
         .cull(cull)]
    }

    static var attributes: Attributes {
        try! Attributes([("type", "meter"), ("site", "bâtiment-7"), ("blob", String(repeating: "x", count: 4096))])
    }

    static var datagramMessages: [GossipMessage] {
        [.ping(seq: 1, updates: updates),
         .ping(seq: 0, updates: []),
         .ack(seq: 0xdead_beef, updates: [updates[0]]),
         .pingRequest(seq: 5, target: entry(6)),
         .nack(seq: 5),
         .gossip(updates: updates),
         .join(incarnation: 4),
         .joinReply(sample: (0..<16).map(entry)),
         .forwardJoin(ttl: 6, joiner: entry(7)),
         .neighbor(priority: .high),
         .neighbor(priority: .low),
         .neighbor(priority: .nearer),
         .neighborReply(accepted: false, sample: [entry(8)]),
         .disconnect,
         .shuffle(id: 77, ttl: 3, origin: entry(9), sample: [entry(10), entry(11)]),
         .shuffleReply(id: 77, sample: []),
         .query(QueryMessage(id: 42, origin: entry(12), hops: 1, hopLimit: 6, mode: .nearest,
                             query: AttributeQuery(key: "type", value: "met", match: .prefix))),
         .queryAnswer(id: 42, hops: 3, pairs: [AttributePair(key: "type", value: "meter")]),
         .digest(exchange: 3, buckets: (0..<64).map { UInt64($0) &* 0x0101_0101_0101_0101 }, cullCount: 2, cullHash: 99),
         .digestReply(exchange: 3, differing: 0x8000_0000_0000_0001, cullsDiffer: true, busy: false),
         .attributesRequest(version: 12)]
    }

    static var reliableMessages: [GossipMessage] {
        [.delta(exchange: 3, records: (0..<100).map { MemberRecord(entry: entry($0), state: MemberState.allCases[$0 % 5], incarnation: UInt32($0), attributeVersion: 1) },
                culls: [cull]),
         .attributes(version: 2, attributes)]
    }
}

@Suite struct GossipWireTests {
    @Test func everyDatagramMessageRoundTrips() {
        for m in Samples.datagramMessages {
            let bytes = GossipWire.encode(m)
            #expect(bytes.count <= GossipWire.maxDatagram)
            #expect(GossipWire.decode(bytes) == .success(m))
            // Re-encoding is byte-identical: one canonical encoding.
            if case let .success(d) = GossipWire.decode(bytes) { #expect(GossipWire.encode(d) == bytes) }
        }
    }

    /// Decoding with a table of known identities (what a core does) gives the same messages, and
    /// a known key comes back as the held identity (its arrays shared, no node id derived).
    @Test func decodingWithKnownIdentitiesGivesTheSameMessages() {
        let known = PeerIdentities()
        for i in stride(from: 0, to: 100, by: 2) { _ = known.intern(Samples.entry(i)) }
        for m in Samples.datagramMessages {
            #expect(GossipWire.decode(GossipWire.encode(m), known: known) == .success(m))
        }
        for m in Samples.reliableMessages {
            #expect(GossipWire.decode(GossipWire.encode(m), transport: .reliable, known: known) == .success(m))
        }
        let held = known.identity(forKey: Samples.entry(6).peer.publicKey)
        #expect(held == Samples.entry(6).peer)
        #expect(known.identity(forKey: Samples.entry(7).peer.publicKey) == nil)
        if case let .success(.pingRequest(_, target)) = GossipWire.decode(GossipWire.encode(.pingRequest(seq: 5, target: Samples.entry(6))), known: known) {
            #expect(target.nodeID == Samples.entry(6).nodeID)
        } else {
            Issue.record("pingRequest did not decode")
        }
    }

    @Test func reliableMessagesRoundTripAndAreRefusedInDatagrams() {
        for m in Samples.reliableMessages {
            let bytes = GossipWire.encode(m)
            #expect(GossipWire.decode(bytes, transport: .reliable) == .success(m))
            let asDatagram = GossipWire.decode(bytes, transport: .datagram)
            #expect(asDatagram == .failure(.wrongTransport) || asDatagram == .failure(.oversized))
        }
        #expect(GossipWire.decode(GossipWire.encode(.disconnect), transport: .reliable) == .failure(.wrongTransport))
    }

    /// A `gossip` message spliced from updates encoded one by one (what a node pushing news to
    /// several neighbours sends) is byte for byte the message encoded whole; and every message's
    /// size hint is at least its length for the messages that carry updates or entries.
    @Test func splicedGossipEqualsEncodedGossip() {
        let updates = Samples.updates
        for n in 0...updates.count {
            var w = ByteWriter()
            for u in updates.prefix(n) { GossipWire.writeUpdate(u, &w) }
            let whole = GossipWire.encode(.gossip(updates: Array(updates.prefix(n))))
            #expect(GossipWire.encodeGossip(count: n, encodedUpdates: w.bytes) == whole)
            #expect(w.bytes.count == updates.prefix(n).reduce(0) { $0 + $1.encodedLength })
        }
        for m in Samples.datagramMessages + Samples.reliableMessages {
            switch m {
            case .ping, .ack, .gossip, .joinReply, .neighborReply, .shuffle, .shuffleReply, .digest, .delta:
                #expect(GossipWire.sizeHint(m) >= GossipWire.encode(m).count, "\(m)")
            default:
                break
            }
        }
    }

    @Test func headerLayout() {
        let b = GossipWire.encode(.nack(seq: 0x0102_0304))
        #expect(b == [0x69, 0x47, 1, 4, 1, 2, 3, 4])
    }

    @Test func everyTruncationIsNamed() {
        for m in Samples.datagramMessages where m != .disconnect {
            let bytes = GossipWire.encode(m)
            for n in 0..<bytes.count {
                let r = GossipWire.decode(Array(bytes.prefix(n)))
                guard case let .failure(reason) = r else {
                    Issue.record("prefix \(n) of \(m) decoded")
                    continue
                }
                #expect(reason == .truncated || reason == .badLength, "prefix \(n): \(reason)")
            }
        }
    }

    @Test func rejections() {
        let good = GossipWire.encode(.ping(seq: 1, updates: [Samples.updates[2]]))
        #expect(GossipWire.decode(good + [0]) == .failure(.trailingBytes))
        var bad = good; bad[0] = 0x00
        #expect(GossipWire.decode(bad) == .failure(.badMagic))
        bad = good; bad[2] = 2
        #expect(GossipWire.decode(bad) == .failure(.unsupportedVersion))
        bad = good; bad[3] = 200
        #expect(GossipWire.decode(bad) == .failure(.unknownType))
        bad = good; bad[9] = 9 // update kind
        #expect(GossipWire.decode(bad) == .failure(.badUpdateKind))
        bad = good; bad[8] = 65 // update count above the limit
        #expect(GossipWire.decode(bad) == .failure(.badLength))
        #expect(GossipWire.decode([UInt8](repeating: 0x69, count: GossipWire.maxDatagram + 1)) == .failure(.oversized))

        var flag = GossipWire.encode(.neighbor(priority: .high)); flag[4] = 3
        #expect(GossipWire.decode(flag) == .failure(.badFlag))
        var reply = GossipWire.encode(.digestReply(exchange: 1, differing: 0, cullsDiffer: false, busy: false)); reply[16] = 4
        #expect(GossipWire.decode(reply) == .failure(.badFlag))
        var sample = GossipWire.encode(.joinReply(sample: [])); sample[4] = 17
        #expect(GossipWire.decode(sample) == .failure(.badLength))

        // A query whose key is not UTF-8.
        var q = GossipWire.encode(.query(QueryMessage(id: 1, origin: Samples.entry(1), hops: 0, hopLimit: 1, mode: .master,
                                                      query: AttributeQuery(key: "ab", value: "", match: .exact))))
        q[4 + 8 + 50 + 4 + 1] = 0xff
        #expect(GossipWire.decode(q) == .failure(.badText))
        // hops above the limit.
        var h = GossipWire.encode(.query(QueryMessage(id: 1, origin: Samples.entry(1), hops: 2, hopLimit: 1, mode: .walk,
                                                      query: AttributeQuery(key: "a", value: "", match: .exact))))
        #expect(GossipWire.decode(h) == .failure(.badLength))
        h[4 + 8 + 50 + 2] = 9 // mode
        #expect(GossipWire.decode(h) == .failure(.badFlag))
    }

    @Test func attributesAreCanonical() throws {
        // Keys out of order (or repeated) are refused: one encoding per attribute set.
        var w = ByteWriter()
        w.raw(GossipWire.magic); w.u8(1); w.u8(65); w.u32(1); w.u16(2)
        for k in ["b", "a"] { w.u8(1); w.raw(Array(k.utf8)); w.u16(0) }
        #expect(GossipWire.decode(w.bytes, transport: .reliable) == .failure(.nonCanonical))
        // Construction sorts and de-duplicates.
        let a = try Attributes([("b", "1"), ("a", "2"), ("b", "3")])
        #expect(a.pairs == [AttributePair(key: "a", value: "2"), AttributePair(key: "b", value: "3")])
        #expect(throws: Attributes.Failure.self) { try Attributes([("big", String(repeating: "y", count: 4097))]) }
        #expect(throws: Attributes.Failure.self) { try Attributes([("", "v")]) }
        // 4 KiB of attributes fit.
        #expect(Samples.attributes.encodedSize > 4096)
    }

    @Test func deltaStateMustBeKnown() {
        var bytes = GossipWire.encode(.delta(exchange: 1, records: [MemberRecord(entry: Samples.entry(1), state: .alive, incarnation: 1, attributeVersion: 0)], culls: []))
        bytes[4 + 4 + 2 + 50] = 9
        #expect(GossipWire.decode(bytes, transport: .reliable) == .failure(.badState))
        var count = GossipWire.encode(.delta(exchange: 1, records: [], culls: []))
        count[8] = 0xff; count[9] = 0xff
        #expect(GossipWire.decode(count, transport: .reliable) == .failure(.badLength))
    }

    @Test func cullSignatures() {
        let c = Samples.cull
        #expect(c.verify(network: Samples.network, adminKeys: [Samples.admin.publicKey]) == nil)
        #expect(c.verify(network: Samples.network, adminKeys: []) == .unknownAdmin)
        #expect(c.verify(network: NetworkID.defaultNetwork, adminKeys: [Samples.admin.publicKey]) == .badSignature)
        var forged = c
        forged.issuedAt += 1
        #expect(forged.verify(network: Samples.network, adminKeys: [Samples.admin.publicKey]) == .badSignature)
        let signed = CullRecord.signedBytes(network: Samples.network, subject: c.subject, issuedAt: 1)
        #expect(signed.count == 20 + 16 + 32 + 8)
        #expect(Array(signed.prefix(20)) == Array("iotaf/gossip-cull/v1".utf8))
    }

    /// A record naming the negated twin of a member's key (same secret, sign bit set) is refused
    /// by the decoder, whatever message carries it: the twin is no member of its own.
    @Test func recordsNamingANegatedTwinAreRefused() throws {
        var twin = Samples.entry(1)
        var key = twin.peer.publicKey.bytes
        key[31] |= 0x80
        #expect(PeerIdentity(publicKey: key) == nil)
        // Written as the real entry, then the key's sign bit flipped where it lies on the wire.
        for m: GossipMessage in [.joinReply(sample: [twin]), .gossip(updates: [.alive(twin, incarnation: 1, attributeVersion: 0)]),
                                 .pingRequest(seq: 1, target: twin)] {
            var bytes = GossipWire.encode(m)
            let at = try #require(bytes.firstRange(of: twin.peer.publicKey.bytes)).lowerBound
            bytes[at + 31] |= 0x80
            #expect(GossipWire.decode(bytes) == .failure(.nonCanonicalKey), "\(m)")
        }
        var delta = GossipWire.encode(.delta(exchange: 1, records: [MemberRecord(entry: twin, state: .alive, incarnation: 1, attributeVersion: 0)], culls: []))
        let at = try #require(delta.firstRange(of: twin.peer.publicKey.bytes)).lowerBound
        delta[at + 31] |= 0x80
        #expect(GossipWire.decode(delta, transport: .reliable) == .failure(.nonCanonicalKey))
        twin.address = Samples.entry(2).address
        #expect(GossipWire.decode(GossipWire.encode(.joinReply(sample: [twin]))) != .failure(.nonCanonicalKey))
    }

    /// An admin key's negated twin cannot sign a cull: neither as an admin the mesh trusts, nor
    /// if an operator pasted the twin into the admin list.
    @Test func aCullSignedByAnAdminKeysTwinIsRefused() throws {
        let subject = Samples.entry(3).nodeID
        let message = CullRecord.signedBytes(network: Samples.network, subject: subject, issuedAt: 5)
        let (twinKey, signature) = try twinSignature(seed: Samples.admin.seed, message)
        #expect(Ed25519.verify(signature, message: message, publicKey: twinKey), "a genuine Ed25519 signature by the twin")
        let twin = try #require(PublicKey(raw: twinKey))
        let record = CullRecord(subject: subject, issuedAt: 5, adminKey: twin, signature: signature)
        #expect(record.verify(network: Samples.network, adminKeys: [Samples.admin.publicKey]) == .unknownAdmin)
        #expect(record.verify(network: Samples.network, adminKeys: [twin]) == .badSignature)
    }

    @Test func queryParsing() {
        #expect(AttributeQuery(parsing: "type=meter") == AttributeQuery(key: "type", value: "meter", match: .exact))
        #expect(AttributeQuery(parsing: "type=met*") == AttributeQuery(key: "type", value: "met", match: .prefix))
        #expect(AttributeQuery(parsing: "type=*ete*") == AttributeQuery(key: "type", value: "ete", match: .substring))
        #expect(AttributeQuery(parsing: "novalue") == nil)
        let attrs = Samples.attributes
        #expect(AttributeQuery(key: "type", value: "meter", match: .exact).matches(attrs) == "meter")
        #expect(AttributeQuery(key: "type", value: "met", match: .exact).matches(attrs) == nil)
        #expect(AttributeQuery(key: "site", value: "bât", match: .prefix).matches(attrs) == "bâtiment-7")
        #expect(AttributeQuery(key: "site", value: "ment", match: .substring).matches(attrs) != nil)
        #expect(AttributeQuery(key: "zone", value: "", match: .substring).matches(attrs) == nil)
    }

    @Test func broadcastQueueLimitsAndSupersedes() {
        var q = BroadcastQueue(capacity: 100)
        let p = Samples.entry(1)
        q.enqueue(.alive(p, incarnation: 1, attributeVersion: 0))
        q.enqueue(.dead(p.peer, incarnation: 1)) // supersedes the alive
        var sent: [MemberUpdate] = []
        for _ in 0..<10 { sent += q.take(budget: 1000, limit: 3) }
        #expect(sent == Array(repeating: .dead(p.peer, incarnation: 1), count: 3))
        #expect(q.isEmpty)
        // A budget too small for anything takes nothing and loses nothing.
        q.enqueue(.alive(p, incarnation: 2, attributeVersion: 0))
        #expect(q.take(budget: 20, limit: 3).isEmpty)
        #expect(q.count == 1)
        // Capacity bounds the queue.
        for i in 0..<300 { q.enqueue(.dead(Samples.entry(i).peer, incarnation: 0)) }
        #expect(q.count <= 100)
    }
}
