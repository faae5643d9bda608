import Noise
import Sodium
import Testing

/// The precomputed static-static DH (`StaticStaticCache`) must give exactly the handshake that
/// computing `ss` every time gives; it only saves the X25519.
@Suite struct StaticStaticTests {
    static let name = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"
    static let psk = [UInt8](repeating: 7, count: 32)

    /// One IK handshake; returns both sides' handshake hashes and a transport message each way.
    static func handshake(initiator i: DHKeyPair, responder r: DHKeyPair, seed: UInt8,
                          initiatorCache: StaticStaticCache?, responderCache: StaticStaticCache?) throws
        -> (hash: [UInt8], other: [UInt8], toR: [UInt8], toI: [UInt8]) {
        let ie = [UInt8](repeating: seed, count: 32), re = [UInt8](repeating: seed &+ 1, count: 32)
        let hi = try HandshakeState(protocol: NoiseProtocol(name: name), initiator: true, localStatic: i,
                                    remoteStatic: r.publicKey, psks: [psk], staticStatic: initiatorCache,
                                    ephemeralSource: { ie })
        let hr = try HandshakeState(protocol: NoiseProtocol(name: name), initiator: false, localStatic: r,
                                    psks: [psk], staticStatic: responderCache, ephemeralSource: { re })
        let m1 = try hi.writeMessage(payload: [1, 2, 3])
        #expect(try hr.readMessage(m1) == [1, 2, 3])
        let m2 = try hr.writeMessage(payload: [4])
        #expect(try hi.readMessage(m2) == [4])
        let ti = try hi.finish(), tr = try hr.finish()
        let toR = try ti.sender.encryptWithAd([], [9, 9])
        let toI = try tr.sender.encryptWithAd([], [8])
        #expect(try tr.receiver.decryptWithAd([], toR) == [9, 9])
        #expect(try ti.receiver.decryptWithAd([], toI) == [8])
        return (ti.handshakeHash, tr.handshakeHash, toR, toI)
    }

    @Test func cachedResultGivesTheSameHandshakeAndIsReused() throws {
        let i = try DHKeyPair(secretKey: [UInt8](repeating: 0x11, count: 32))
        let r = try DHKeyPair(secretKey: [UInt8](repeating: 0x22, count: 32))
        let ci = StaticStaticCache(localStatic: i, capacity: 4)
        let cr = StaticStaticCache(localStatic: r, capacity: 4)
        for seed: UInt8 in [3, 5, 7] {
            let plain = try Self.handshake(initiator: i, responder: r, seed: seed, initiatorCache: nil, responderCache: nil)
            let cached = try Self.handshake(initiator: i, responder: r, seed: seed, initiatorCache: ci, responderCache: cr)
            #expect(plain.hash == plain.other)
            #expect(cached.hash == plain.hash && cached.other == plain.other)
            #expect(cached.toR == plain.toR && cached.toI == plain.toI)
        }
        // One X25519 per side for the first handshake, none for the two after it.
        #expect(ci.computed == 1 && ci.reused == 2)
        #expect(cr.computed == 1 && cr.reused == 2)
        ci.forget(remoteStatic: r.publicKey)
        #expect(ci.count == 0)
        _ = try Self.handshake(initiator: i, responder: r, seed: 9, initiatorCache: ci, responderCache: cr)
        #expect(ci.computed == 2)
    }

    @Test func cacheOfAnotherLocalKeyIsIgnored() throws {
        let i = try DHKeyPair(secretKey: [UInt8](repeating: 0x31, count: 32))
        let r = try DHKeyPair(secretKey: [UInt8](repeating: 0x32, count: 32))
        let stranger = try DHKeyPair(secretKey: [UInt8](repeating: 0x33, count: 32))
        let wrong = StaticStaticCache(localStatic: stranger, capacity: 4)
        let plain = try Self.handshake(initiator: i, responder: r, seed: 1, initiatorCache: nil, responderCache: nil)
        let withWrong = try Self.handshake(initiator: i, responder: r, seed: 1, initiatorCache: wrong, responderCache: wrong)
        #expect(withWrong.hash == plain.hash)
        #expect(wrong.computed == 0 && wrong.count == 0)
    }

    @Test func boundedOldestGoesFirst() throws {
        let local = try DHKeyPair(secretKey: [UInt8](repeating: 0x41, count: 32))
        let cache = StaticStaticCache(localStatic: local, capacity: 2)
        let remotes = try (1...3).map { try DHKeyPair(secretKey: [UInt8](repeating: UInt8($0), count: 32)) }
        for (n, remote) in remotes.enumerated() {
            _ = try Self.handshake(initiator: local, responder: remote, seed: UInt8(n), initiatorCache: cache, responderCache: nil)
        }
        #expect(cache.count == 2 && cache.computed == 3)
        // The first remote was evicted: it costs a DH again; the third is still held.
        _ = try Self.handshake(initiator: local, responder: remotes[2], seed: 20, initiatorCache: cache, responderCache: nil)
        #expect(cache.computed == 3 && cache.reused == 1)
        _ = try Self.handshake(initiator: local, responder: remotes[0], seed: 21, initiatorCache: cache, responderCache: nil)
        #expect(cache.computed == 4)
    }
}
