import Gossip
import MeshCore
import Testing

/// The `nearest` LAN beacon's codec (Docs/encoding.md) and the verdict the runtime applies to a datagram.
@Suite struct BeaconTests {
    let tag = Beacon.networkTag(.defaultNetwork)
    var sample: Beacon { Beacon(networkTag: tag, port: 7400, nonce: 0x0102_0304_0506_0708) }

    @Test func roundTripAndLayout() throws {
        let bytes = sample.encoded()
        #expect(bytes.count == Beacon.length)
        #expect(Array(bytes[0..<5]) == Array("iotb".utf8) + [1])
        #expect(Array(bytes[5..<13]) == tag)
        #expect(Array(bytes[13..<15]) == [0x1c, 0xe8])
        #expect(Array(bytes[15..<23]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try Beacon.decode(bytes).get() == sample)
        // The vector of Docs/encoding.md (tag computed independently with Python's hashlib.blake2b).
        #expect(NetworkID.defaultNetwork.description == "601d6a20afdb1aad149cfc1c9f85a9c7")
        #expect(Hex.encode(bytes) == "696f746201" + "038ecc582fb6d770" + "1ce8" + "0102030405060708")
        #expect(Hex.encode(Beacon.networkTag(NetworkID(hex: "0123456789abcdef0123456789abcdef")!)) == "29794e7f111c827f")
        let edge = Beacon(networkTag: [UInt8](repeating: 0xff, count: 8), port: 65535, nonce: .max)
        #expect(try Beacon.decode(edge.encoded()).get() == edge)
    }

    @Test func everyTruncationIsRefused() {
        let bytes = sample.encoded()
        for n in 0..<bytes.count {
            guard case .failure(.truncated) = Beacon.decode(Array(bytes.prefix(n))) else {
                Issue.record("a \(n)-byte prefix was not refused as truncated")
                continue
            }
        }
    }

    @Test func trailingBytesBadMagicVersionAndPortAreRefused() {
        let bytes = sample.encoded()
        for extra in 1...3 {
            #expect(Beacon.decode(bytes + [UInt8](repeating: 0, count: extra)) == .failure(.trailingBytes))
        }
        for i in 0..<4 {
            var b = bytes
            b[i] ^= 0x20
            #expect(Beacon.decode(b) == .failure(.badMagic))
        }
        var v = bytes
        v[4] = 2
        #expect(Beacon.decode(v) == .failure(.badVersion))
        #expect(Beacon.decode(Array(v.prefix(5))) == .failure(.badVersion), "a future version is not called truncated")
        var p = bytes
        p[13] = 0
        p[14] = 0
        #expect(Beacon.decode(p) == .failure(.badPort))
    }

    @Test func anotherNetworkAndOurOwnAreDropped() throws {
        let other = NetworkID(hex: "0123456789abcdef0123456789abcdef")!
        #expect(Beacon.networkTag(other) != tag)
        // The tag is BLAKE2b-128 keyed with "iotaf beacon v1" over the id, cut to 8 bytes: pinned
        // against Python's hashlib.blake2b(id, digest_size=16, key=b"iotaf beacon v1").
        #expect(Hex.encode(Beacon.networkTag(other)) == "29794e7f111c827f")
        let theirs = Beacon(networkTag: Beacon.networkTag(other), port: 7400, nonce: 9).encoded()
        #expect(Beacon.accept(theirs, networkTag: tag, ownNonce: 1) == .failure(.otherNetwork))
        #expect(Beacon.accept(sample.encoded(), networkTag: tag, ownNonce: sample.nonce) == .failure(.own))
        #expect(try Beacon.accept(sample.encoded(), networkTag: tag, ownNonce: 1).get() == sample)
        #expect(Beacon.accept([1, 2, 3], networkTag: tag, ownNonce: 1) == .failure(.truncated))
    }
}
