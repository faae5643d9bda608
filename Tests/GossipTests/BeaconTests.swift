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

/// A private mesh's beacon (`PrivateBeacon`): sealed under the network key, dated, refused when
/// a stranger's, altered, stale or replayed, all before the node hears of it.
@Suite struct PrivateBeaconTests {
    static let network = NetworkID(hex: "0123456789abcdef0123456789abcdef")!
    static let key = PrivateBeacon.key(network: network, networkKey: [UInt8](repeating: 7, count: 32))
    static let salt: [UInt8] = [0xa1, 0xb2, 0xc3, 0xd4]
    static let sentAt: UInt64 = 1_800_000_000_123
    static var sample: [UInt8] { PrivateBeacon.seal(port: 7400, nonce: 0x0102_0304_0506_0708, sentAtMs: sentAt, salt: salt, key: key) }

    @Test func layoutMatchesAnIndependentImplementation() throws {
        // Computed with Python's hashlib.blake2b and cryptography's ChaCha20Poly1305 from the
        // recipe in Docs/encoding.md ("LAN beacon, private mesh").
        #expect(Hex.encode(Self.key) == "6d4984210911fd6c36187696dd4c65c50ad7e4cc5d13e7797c2f3ef1e3702e20")
        #expect(Hex.encode(Self.sample) == "696f746202000001a3185c507ba1b2c3d4c09c3329cad38bea45192d152cef0e7e343b3e66681e8538fc50")
        #expect(Self.sample.count == PrivateBeacon.length)
        let o = try PrivateBeacon.open(Self.sample, key: Self.key).get()
        #expect(o.port == 7400 && o.nonce == 0x0102_0304_0506_0708 && o.sentAtMs == Self.sentAt && o.salt == Self.salt)
    }

    @Test func itRevealsNeitherTheMeshNorThePortNorTheSender() {
        let b = Self.sample
        let body = Array(b[17...])
        // Not the open beacon's network tag, not the port, not the nonce: only the date and salt are clear.
        #expect(!body.contains(subsequence: Beacon.networkTag(Self.network)))
        #expect(!body.contains(subsequence: [0x1c, 0xe8]))
        #expect(!body.contains(subsequence: [1, 2, 3, 4, 5, 6, 7, 8]))
        // Two beacons of one node share no bytes past the magic and version but what the clock gives.
        let again = PrivateBeacon.seal(port: 7400, nonce: 0x0102_0304_0506_0708, sentAtMs: Self.sentAt, salt: [9, 9, 9, 9], key: Self.key)
        #expect(Array(again[17...]) != body)
    }

    @Test func strangersAlteredAndOpenBeaconsAreUnauthenticated() {
        var guard_ = BeaconReplayGuard()
        let now = Self.sentAt + 500
        let stranger = PrivateBeacon.key(network: Self.network, networkKey: [UInt8](repeating: 8, count: 32))
        #expect(PrivateBeacon.accept(Self.sample, key: stranger, ownNonce: 1, nowMs: now, replay: &guard_) == .failure(.unauthenticated))
        // Another mesh id under the same key bytes is another key too.
        let otherMesh = PrivateBeacon.key(network: .defaultNetwork, networkKey: [UInt8](repeating: 7, count: 32))
        #expect(PrivateBeacon.accept(Self.sample, key: otherMesh, ownNonce: 1, nowMs: now, replay: &guard_) == .failure(.unauthenticated))
        for i in 5..<PrivateBeacon.length {
            var altered = Self.sample
            altered[i] ^= 0x01
            #expect(PrivateBeacon.open(altered, key: Self.key) == .failure(.unauthenticated), "byte \(i) altered")
        }
        let open = Beacon(networkTag: Beacon.networkTag(Self.network), port: 7400, nonce: 5).encoded()
        #expect(PrivateBeacon.accept(open, key: Self.key, ownNonce: 1, nowMs: now, replay: &guard_) == .failure(.unauthenticated))
        #expect(guard_.count == 0, "nothing refused reached the replay guard")
        // And the open network's nodes refuse a private beacon as another network's.
        #expect(Beacon.decode(Self.sample) == .failure(.badVersion))
        #expect(Beacon.accept(Self.sample, networkTag: Beacon.networkTag(.defaultNetwork), ownNonce: 1) == .failure(.otherNetwork))
        for n in 0..<PrivateBeacon.length where n != 4 {
            guard case .failure(.truncated) = PrivateBeacon.open(Array(Self.sample.prefix(n)), key: Self.key) else {
                Issue.record("a \(n)-byte prefix was not refused as truncated")
                continue
            }
        }
        #expect(PrivateBeacon.open(Self.sample + [0], key: Self.key) == .failure(.trailingBytes))
    }

    @Test func aRecordedBeaconIsRefusedWhenReplayedOrStale() throws {
        var guard_ = BeaconReplayGuard()
        let window = UInt64(PrivateBeacon.window.nanoseconds / 1_000_000)
        let heard = try PrivateBeacon.accept(Self.sample, key: Self.key, ownNonce: 1, nowMs: Self.sentAt + 200, replay: &guard_).get()
        #expect(heard.port == 7400 && heard.nonce == 0x0102_0304_0506_0708)
        // Played again inside the window: refused.
        #expect(PrivateBeacon.accept(Self.sample, key: Self.key, ownNonce: 1, nowMs: Self.sentAt + 5_000, replay: &guard_) == .failure(.replayed))
        // After the window: stale, whatever the guard still remembers.
        #expect(PrivateBeacon.accept(Self.sample, key: Self.key, ownNonce: 1, nowMs: Self.sentAt + window + 1, replay: &guard_) == .failure(.stale))
        // Dated ahead of the receiver's clock by more than the window: stale too; just inside: taken.
        let ahead = PrivateBeacon.seal(port: 7400, nonce: 3, sentAtMs: Self.sentAt + window + 1, salt: Self.salt, key: Self.key)
        #expect(PrivateBeacon.accept(ahead, key: Self.key, ownNonce: 1, nowMs: Self.sentAt, replay: &guard_) == .failure(.stale))
        let inside = PrivateBeacon.seal(port: 7400, nonce: 3, sentAtMs: Self.sentAt + window, salt: Self.salt, key: Self.key)
        #expect((try? PrivateBeacon.accept(inside, key: Self.key, ownNonce: 1, nowMs: Self.sentAt, replay: &guard_).get()) != nil)
        // Our own beacon looped back.
        #expect(PrivateBeacon.accept(Self.sample, key: Self.key, ownNonce: 0x0102_0304_0506_0708, nowMs: Self.sentAt, replay: &guard_) == .failure(.own))
    }

    @Test func theReplayGuardIsBoundedAndForgetsWhatLeftTheWindow() {
        var g = BeaconReplayGuard()
        let t: UInt64 = 1_000_000
        for i in 0..<BeaconReplayGuard.capacity {
            #expect(g.admit(sentAtMs: t, salt: [UInt8(i >> 8), UInt8(i & 0xff), 0, 0], nowMs: t) == nil)
        }
        #expect(g.count == BeaconReplayGuard.capacity)
        #expect(g.admit(sentAtMs: t, salt: [0xff, 0xff, 0xff, 0xff], nowMs: t) == .rateLimited)
        let later = t + UInt64(PrivateBeacon.window.nanoseconds / 1_000_000) + 1
        #expect(g.admit(sentAtMs: later, salt: [0xff, 0xff, 0xff, 0xff], nowMs: later) == nil)
        #expect(g.count == 1)
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence s: [UInt8]) -> Bool {
        guard !s.isEmpty, s.count <= count else { return false }
        return (0...(count - s.count)).contains { Array(self[$0..<($0 + s.count)]) == s }
    }
}
