import Lacero
import MeshCore
import Sodium
import Testing

struct ShredderTests {
    static func object(_ size: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededGenerator(seed: seed)
        return (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    static let secrets = (key: [UInt8](repeating: 7, count: 32), deleteSecret: [UInt8](repeating: 9, count: 32))

    static func shred(_ object: [UInt8], _ p: LaceroParameters) throws -> (metadata: LaceroMetadata, segments: [EncodedSegment]) {
        try Shredder.shred(object, parameters: p, key: secrets.key, deleteSecret: secrets.deleteSecret)
    }

    @Test(arguments: [0, 1, 15, 16, 17, 999, 1000, 1001, 4321])
    func objectsOfEverySizeComeBackFromTheirDataFragments(size: Int) throws {
        let p = try LaceroParameters(k: 3, n: 5, segmentSize: 1000)
        let object = Self.object(size, seed: UInt64(size))
        let (metadata, segments) = try Self.shred(object, p)
        #expect(segments.count == max(1, (size + 999) / 1000))
        #expect(metadata.fragmentIDs.count == segments.count * 5)
        var r = try Reassembler(metadata: metadata)
        // Data fragments only: a plain copy path; parity only where k allows.
        let back = try r.rebuild { s in (0..<3).map { (index: $0, bytes: segments[s].fragment($0)) } }
        #expect(back == object)
        var r2 = try Reassembler(metadata: metadata)
        let fromParity = try r2.rebuild { s in (2..<5).map { (index: $0, bytes: segments[s].fragment($0)) } }
        #expect(fromParity == object)
    }

    /// The put job the service offloads lays out, per segment, the n ids then the n fragments,
    /// byte for byte what the segment-at-a-time coder gives (a short last segment included), and
    /// jobs that split the object differently agree.
    @Test(arguments: [1, 2, 4, 7])
    func aPutJobHoldsExactlyTheSegmentsFragmentsAndIDs(segmentsPerJob: Int) throws {
        let p = try LaceroParameters(k: 3, n: 5, segmentSize: 1000)
        let object = Self.object(6543, seed: 5)
        let (_, segments) = try Self.shred(object, p)
        let code = try ReedSolomon(k: 3, n: 5)
        var packed: [UInt8] = []
        object.withUnsafeBytes { all in
            for first in stride(from: 0, to: segments.count, by: segmentsPerJob) {
                let range = first..<min(segments.count, first + segmentsPerJob)
                let job = Shredder.shredJob(all, segments: range, parameters: p, key: Self.secrets.key, code: code)
                #expect(job.count == Shredder.jobLength(segments: range, objectSize: UInt64(object.count), parameters: p))
                packed += job
            }
        }
        let expected = segments.flatMap { $0.ids.flatMap { $0 } + $0.buffer }
        #expect(packed == expected)
    }

    @Test func everySetOfNMinusKHoldersRemovedStillDecodes() throws {
        let p = try LaceroParameters(k: 3, n: 6, segmentSize: 512)
        let object = Self.object(1500, seed: 42)
        let (metadata, segments) = try Self.shred(object, p)
        var trials = 0
        for a in 0..<6 { for b in (a + 1)..<6 { for c in (b + 1)..<6 {
            let gone: Set<Int> = [a, b, c]
            var r = try Reassembler(metadata: metadata)
            let back = try r.rebuild { s in (0..<6).filter { !gone.contains($0) }.map { (index: $0, bytes: segments[s].fragment($0)) } }
            #expect(back == object)
            trials += 1
        } } }
        #expect(trials == 20)
    }

    @Test func oneMoreMissingFragmentFailsWithTheSegmentNamed() throws {
        let p = try LaceroParameters(k: 3, n: 5, segmentSize: 512)
        let (metadata, segments) = try Self.shred(Self.object(1200, seed: 1), p)
        var r = try Reassembler(metadata: metadata)
        #expect(throws: LaceroRebuildError.notEnoughFragments(segment: 1, have: 2, need: 3)) {
            try r.rebuild { s in (0..<(s == 1 ? 2 : 3)).map { (index: $0, bytes: segments[s].fragment($0)) } }
        }
    }

    @Test func tamperedAndTruncatedFragmentsAreRefusedCountedAndReplacedByOthers() throws {
        let p = try LaceroParameters(k: 2, n: 4, segmentSize: 4096)
        let object = Self.object(3000, seed: 3)
        let (metadata, segments) = try Self.shred(object, p)
        var tampered = Array(segments[0].fragment(0))
        tampered[5] ^= 1
        let truncated = segments[0].fragment(1).dropLast()
        var r = try Reassembler(metadata: metadata)
        let back = try r.rebuild { _ in
            [(index: 0, bytes: tampered[...]), (index: 1, bytes: truncated),
             (index: 2, bytes: segments[0].fragment(2)), (index: 3, bytes: segments[0].fragment(3))]
        }
        #expect(back == object)
        #expect(r.refused == ["hash_mismatch": 1, "wrong_length": 1])
        // A fragment passed off under another share's index is refused too.
        var r2 = try Reassembler(metadata: metadata)
        #expect(throws: LaceroRebuildError.self) {
            try r2.rebuild { _ in [(index: 0, bytes: segments[0].fragment(1)), (index: 1, bytes: segments[0].fragment(0))] }
        }
        #expect(r2.refused["hash_mismatch"] == 2)
    }

    @Test func metadataWithAnotherKeyDoesNotAuthenticate() throws {
        let p = try LaceroParameters(k: 2, n: 3, segmentSize: 100)
        let (metadata, segments) = try Self.shred(Self.object(150, seed: 5), p)
        var wrong = metadata
        wrong.key = [UInt8](repeating: 1, count: 32)
        var r = try Reassembler(metadata: wrong)
        #expect(throws: LaceroRebuildError.authenticationFailed(segment: 0)) {
            try r.rebuild { s in (0..<2).map { (index: $0, bytes: segments[s].fragment($0)) } }
        }
    }

    @Test func repairRebuildsTheSameFragmentsFromAnyK() throws {
        let p = LaceroParameters.standard
        let (metadata, segments) = try Self.shred(Self.object(300_000, seed: 8), LaceroParameters(k: p.k, n: p.n, segmentSize: 100_000))
        var r = try Reassembler(metadata: metadata)
        let repaired = try r.repairSegment(2, fragments: (4..<14).map { (index: $0, bytes: segments[2].fragment($0)) })
        #expect(repaired.ids == segments[2].ids)
        #expect(repaired.buffer == segments[2].buffer)
    }

    @Test func expansionAtTheDefaultsIsUnderTwoAndMetadataUnderOnePercentFromOneMiB() throws {
        let object = Self.object(1 << 20, seed: 9)
        let (metadata, segments) = try Self.shred(object, .standard)
        let stored = segments.reduce(0) { $0 + $1.buffer.count }
        #expect(Double(stored) / Double(object.count) <= 2.0)
        #expect(Double(metadata.encode().count) / Double(object.count) <= 0.01)
    }
}

struct MetadataTests {
    static func sample() throws -> LaceroMetadata {
        let p = try LaceroParameters(k: 2, n: 3, segmentSize: 100)
        let nodes = (0..<3).map { NodeID(publicKey: Ed25519Keys.make($0).publicKey) }
        return try Shredder.shred(ShredderTests.object(250, seed: 2), parameters: p, key: ShredderTests.secrets.key,
                                  deleteSecret: ShredderTests.secrets.deleteSecret, available: nodes).metadata
    }

    @Test func encodingRoundTripsAndIsCanonical() throws {
        let m = try Self.sample()
        let bytes = m.encode()
        #expect(try LaceroMetadata.decode(bytes) == m)
        #expect(try LaceroMetadata.decode(bytes).encode() == bytes)
        #expect(m.segmentCount == 3 && m.fragmentIDs.count == 9 && m.available.count == 3)
    }

    @Test func everyTruncationAndAnExtraByteAreRefused() throws {
        let bytes = try Self.sample().encode()
        for cut in 0..<bytes.count {
            #expect(throws: LaceroDecodeError.self) { try LaceroMetadata.decode(Array(bytes[0..<cut])) }
        }
        #expect(throws: LaceroDecodeError.trailingBytes) { try LaceroMetadata.decode(bytes + [0]) }
    }

    @Test func unsortedAvailableNodesAreNotCanonical() throws {
        let m = try Self.sample()
        var bytes = m.encode()
        // Swap the last two node ids.
        let end = bytes.count
        let a = Array(bytes[(end - 64)..<(end - 32)]), b = Array(bytes[(end - 32)..<end])
        bytes.replaceSubrange((end - 64)..<end, with: b + a)
        #expect(throws: LaceroDecodeError.notCanonical) { try LaceroMetadata.decode(bytes) }
    }

    @Test func sealedMetadataOpensOnlyWithTheRequestersKey() throws {
        let m = try Self.sample()
        let requester = Ed25519Keys.make(1), other = Ed25519Keys.make(2)
        let sealed = try m.seal(to: requester.publicKey)
        #expect(try LaceroMetadata.open(sealed: sealed, ed25519SecretKey: requester.secretKey) == m)
        #expect(throws: LaceroDecodeError.notForThisKey) { try LaceroMetadata.open(sealed: sealed, ed25519SecretKey: other.secretKey) }
        var altered = sealed
        altered[altered.count / 2] ^= 0x40
        #expect(throws: LaceroDecodeError.notForThisKey) { try LaceroMetadata.open(sealed: altered, ed25519SecretKey: requester.secretKey) }
        #expect(throws: LaceroDecodeError.truncated) { try LaceroMetadata.open(sealed: Array(sealed.prefix(20)), ed25519SecretKey: requester.secretKey) }
    }

    @Test func deleteProofMatchesOnlyItsFragment() throws {
        let m = try Self.sample()
        let check = LaceroMetadata.deleteCheck(proof: m.deleteProof(for: m.fragmentIDs[0]))
        #expect(LaceroMetadata.deleteCheck(proof: m.deleteProof(for: m.fragmentIDs[0])) == check)
        #expect(LaceroMetadata.deleteCheck(proof: m.deleteProof(for: m.fragmentIDs[1])) != check)
    }
}

enum Ed25519Keys {
    static func make(_ i: Int) -> (publicKey: [UInt8], secretKey: [UInt8]) {
        try! Ed25519.keyPair(seed: [UInt8](repeating: UInt8(i + 1), count: 32))
    }
}

struct WireTests {
    static let id = [UInt8](repeating: 0xAB, count: 32)
    static let messages: [LaceroMessage] = [
        .store(.init(id: id, register: 1, threshold: 3, hops: 8, token: [UInt8](repeating: 1, count: 16),
                     segmentTag: [UInt8](repeating: 2, count: 16), deleteCheck: [UInt8](repeating: 3, count: 32),
                     leaseSeconds: 86_400, visited: [1, 2, 3], bytes: [9, 8, 7])),
        .keepAck(token: [UInt8](repeating: 1, count: 16), id: id, kept: true, register: 3),
        .want([id, id]), .have([]), .have([id]), .fetch(id: id), .block(id: id, bytes: [1, 2, 3, 4]),
        .delete(id: id, proof: [UInt8](repeating: 5, count: 32)),
        .renew(id: id, proof: [UInt8](repeating: 5, count: 32), seconds: 3600),
    ]

    @Test(arguments: messages)
    func everyMessageRoundTripsAndEveryTruncationOrExtraByteIsRefused(message: LaceroMessage) throws {
        let bytes = message.encode()
        #expect(try LaceroMessage.decode(bytes) == message)
        for cut in 0..<bytes.count {
            #expect(throws: LaceroDecodeError.self) { try LaceroMessage.decode(Array(bytes[0..<cut])) }
        }
        #expect(throws: LaceroDecodeError.trailingBytes) { try LaceroMessage.decode(bytes + [0]) }
    }

    @Test func outOfRangeFieldsAreRefusedWithTheirReason() throws {
        #expect(throws: LaceroDecodeError.unknownKind) { try LaceroMessage.decode([0x69, 0x4C, 0x63]) }
        #expect(throws: LaceroDecodeError.badMagic) { try LaceroMessage.decode([0x69, 0x47, 0x01]) }
        var ack = LaceroMessage.keepAck(token: [UInt8](repeating: 1, count: 16), id: Self.id, kept: true, register: 3).encode()
        ack[3 + 16 + 32] = 2
        #expect(throws: LaceroDecodeError.badField) { try LaceroMessage.decode(ack) }
        var w = ByteWriter()
        w.raw(LaceroMessage.magic); w.u8(6); w.raw(Self.id); w.u32(UInt32(LaceroMessage.maxFragmentBytes + 1))
        #expect(throws: LaceroDecodeError.tooLarge) { try LaceroMessage.decode(w.bytes) }
    }
}
