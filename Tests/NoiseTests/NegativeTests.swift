import Noise
import Sodium
import Testing

/// Bad input must come back as a NoiseError, never a crash, and must not break the state.
@Suite struct NegativeTests {
    static let xx = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
    static let ik = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"

    struct Pair {
        let initiator: HandshakeState
        let responder: HandshakeState
    }

    static func pair(_ name: String, initiatorPSK: [UInt8], responderPSK: [UInt8]) throws -> Pair {
        let si = DHKeyPair.generate()
        let sr = DHKeyPair.generate()
        let isIK = name.contains("_IK")
        let i = try HandshakeState(protocolName: name, initiator: true, prologue: Array("iotaf".utf8),
                                   localStatic: si, remoteStatic: isIK ? sr.publicKey : nil, psks: [initiatorPSK])
        let r = try HandshakeState(protocolName: name, initiator: false, prologue: Array("iotaf".utf8),
                                   localStatic: sr, psks: [responderPSK])
        return Pair(initiator: i, responder: r)
    }

    /// Runs the handshake to the end; returns both transports.
    static func complete(_ p: Pair) throws -> (NoiseTransport, NoiseTransport) {
        while !p.initiator.isFinished {
            let (w, r) = p.initiator.isMyTurnToWrite ? (p.initiator, p.responder) : (p.responder, p.initiator)
            let msg = try w.writeMessage(payload: Array("hello".utf8))
            #expect(try r.readMessage(msg) == Array("hello".utf8))
        }
        return (try p.initiator.finish(), try p.responder.finish())
    }

    @Test(arguments: [xx, ik])
    func tamperedHandshakeMessage(name: String) throws {
        let psk = Sodium.randomBytes(32)
        let p = try Self.pair(name, initiatorPSK: psk, responderPSK: psk)
        let first = try p.initiator.writeMessage(payload: [1, 2, 3])
        // With a psk modifier even the first message is authenticated (e is mixed into the key),
        // so a flipped bit anywhere, in the key or the payload, fails at once.
        for position in [0, 31, 32, first.count - 1] {
            var tampered = first
            tampered[position] ^= 0x01
            #expect(throws: NoiseError.decryptionFailed) { try p.responder.readMessage(tampered) }
        }
        // The failed reads left the responder able to take the genuine message.
        #expect(try p.responder.readMessage(first) == [1, 2, 3])
        _ = try Self.complete(p)
    }

    @Test(arguments: [xx, ik])
    func wrongPSK(name: String) throws {
        let p = try Self.pair(name, initiatorPSK: Sodium.randomBytes(32), responderPSK: Sodium.randomBytes(32))
        var failed = false
        do {
            _ = try Self.complete(p)
        } catch let error as NoiseError {
            #expect(error == .decryptionFailed)
            failed = true
        }
        #expect(failed, "a handshake with different psks must not complete")
    }

    @Test(arguments: [xx, ik])
    func truncatedMessages(name: String) throws {
        let psk = Sodium.randomBytes(32)
        let p = try Self.pair(name, initiatorPSK: psk, responderPSK: psk)
        while !p.initiator.isFinished {
            let (w, r) = p.initiator.isMyTurnToWrite ? (p.initiator, p.responder) : (p.responder, p.initiator)
            let msg = try w.writeMessage(payload: [])
            for cut in 0..<msg.count {
                #expect(throws: NoiseError.self) { try r.readMessage(Array(msg.prefix(cut))) }
            }
            _ = try r.readMessage(msg)
        }
        #expect(p.responder.isFinished)
    }

    @Test func wrongResponderStatic() throws {
        let psk = Sodium.randomBytes(32)
        let sr = DHKeyPair.generate()
        let i = try HandshakeState(protocolName: Self.ik, initiator: true, localStatic: .generate(),
                                   remoteStatic: DHKeyPair.generate().publicKey, psks: [psk])
        let r = try HandshakeState(protocolName: Self.ik, initiator: false, localStatic: sr, psks: [psk])
        #expect(throws: NoiseError.decryptionFailed) { try r.readMessage(try i.writeMessage()) }
    }

    @Test func tamperedTransport() throws {
        let psk = Sodium.randomBytes(32)
        let (a, b) = try Self.complete(try Self.pair(Self.xx, initiatorPSK: psk, responderPSK: psk))
        #expect(a.handshakeHash == b.handshakeHash)
        let original = try a.sender.encryptWithAd([], Array("meter read".utf8))
        var ct = original
        ct[3] ^= 0x80
        #expect(throws: NoiseError.decryptionFailed) { try b.receiver.decryptWithAd([], ct) }
        #expect(throws: NoiseError.self) { try b.receiver.decryptWithAd([], [1, 2, 3]) }
        // The failed attempts did not advance the receiver's nonce.
        #expect(try b.receiver.decryptWithAd([], original) == Array("meter read".utf8))
        let good = try a.sender.encryptWithAd([], [9])
        #expect(try b.receiver.decryptWithAd([], good) == [9])
        // Explicit nonces: out of order is fine, a wrong nonce is not.
        let c7 = try b.sender.encrypt(nonce: 7, ad: [1], plaintext: [7])
        let c3 = try b.sender.encrypt(nonce: 3, ad: [1], plaintext: [3])
        #expect(try a.receiver.decrypt(nonce: 3, ad: [1], ciphertext: c3) == [3])
        #expect(try a.receiver.decrypt(nonce: 7, ad: [1], ciphertext: c7) == [7])
        #expect(throws: NoiseError.decryptionFailed) { try a.receiver.decrypt(nonce: 8, ad: [1], ciphertext: c7) }
        #expect(throws: NoiseError.nonceExhausted) { try a.sender.encrypt(nonce: .max, ad: [], plaintext: []) }
    }

    @Test func rekeyAndNonceLimit() throws {
        let psk = Sodium.randomBytes(32)
        let (a, b) = try Self.complete(try Self.pair(Self.ik, initiatorPSK: psk, responderPSK: psk))
        let before = try a.sender.encrypt(nonce: 1, ad: [], plaintext: [1])
        try a.sender.rekey()
        try b.receiver.rekey()
        let after = try a.sender.encrypt(nonce: 1, ad: [], plaintext: [1])
        #expect(before != after)
        #expect(try b.receiver.decrypt(nonce: 1, ad: [], ciphertext: after) == [1])
        #expect(throws: NoiseError.decryptionFailed) { try b.receiver.decrypt(nonce: 1, ad: [], ciphertext: before) }
        a.sender.setNonce(.max)
        #expect(throws: NoiseError.nonceExhausted) { try a.sender.encryptWithAd([], [1]) }
    }

    @Test func misuseIsAnError() throws {
        let psk = Sodium.randomBytes(32)
        // IK without the responder's key, and psk patterns without a psk, are refused up front.
        #expect(throws: NoiseError.self) {
            try HandshakeState(protocolName: Self.ik, initiator: true, localStatic: .generate(), psks: [psk])
        }
        #expect(throws: NoiseError.self) {
            try HandshakeState(protocolName: Self.xx, initiator: true, localStatic: .generate())
        }
        #expect(throws: NoiseError.self) {
            try HandshakeState(protocolName: Self.xx, initiator: true, localStatic: .generate(), psks: [[1, 2]])
        }
        let p = try Self.pair(Self.xx, initiatorPSK: psk, responderPSK: psk)
        #expect(throws: NoiseError.self) { try p.responder.writeMessage() }
        #expect(throws: NoiseError.self) { try p.initiator.readMessage([]) }
        #expect(throws: NoiseError.self) { try p.initiator.finish() }
        #expect(throws: NoiseError.self) { try p.initiator.writeMessage(payload: [UInt8](repeating: 0, count: 65_535)) }
        _ = try Self.complete(p)
        #expect(throws: NoiseError.self) { try p.initiator.writeMessage() }
    }

    @Test func oneWayPatternHasNoBackChannel() throws {
        let sr = DHKeyPair.generate()
        let i = try HandshakeState(protocolName: "Noise_N_25519_ChaChaPoly_SHA256", initiator: true,
                                   remoteStatic: sr.publicKey)
        let r = try HandshakeState(protocolName: "Noise_N_25519_ChaChaPoly_SHA256", initiator: false, localStatic: sr)
        #expect(try r.readMessage(try i.writeMessage(payload: [5])) == [5])
        #expect(throws: NoiseError.self) { try r.finish().sender.encryptWithAd([], [1]) }
        let ct = try i.finish().sender.encryptWithAd([], [1])
        #expect(try r.finish().receiver.decryptWithAd([], ct) == [1])
    }
}
