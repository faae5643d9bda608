import Noise
import Testing

/// The public vectors are the ground truth: every vector whose suite libsodium supports must pass.
@Suite struct VectorTests {
    @Test("cacophony.json: every supported vector passes",
          .enabled(if: VectorFiles.present("cacophony.json"),
                   "skipped: ../shared/vectors/cacophony.json not found beside the package root"))
    func cacophony() throws {
        let report = try NoiseTestVectors.run(file: VectorFiles.path("cacophony.json"))
        check(report, file: "cacophony.json")
    }

    @Test("snow.json: every supported vector passes",
          .enabled(if: VectorFiles.present("snow.json"),
                   "skipped: ../shared/vectors/snow.json not found beside the package root"))
    func snow() throws {
        let report = try NoiseTestVectors.run(file: VectorFiles.path("snow.json"))
        check(report, file: "snow.json")
    }

    private func check(_ report: NoiseTestVectors.Report, file: String) {
        print("\(file): \(report.summary)")
        for (name, why) in report.failures.prefix(20) {
            Issue.record("\(file): \(name) failed: \(why)")
        }
        #expect(report.failed == 0, "\(file): \(report.summary)")
        #expect(report.passed > 0, "\(file): no vector ran")
        // Only the suites libsodium lacks may be skipped.
        for reason in report.skipReasons.keys {
            #expect(reason.contains("448") || reason.contains("BLAKE2s") || reason.contains("AESGCM unavailable"),
                    "unexpected skip reason: \(reason)")
        }
    }

    @Test("protocol names parse into the right pattern")
    func parsing() throws {
        let xx = try NoiseProtocol(name: "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b")
        #expect(xx.pattern.messages == [[.e], [.e, .ee, .s, .es], [.s, .se, .psk]])
        let ik = try NoiseProtocol(name: "Noise_IKpsk2_25519_AESGCM_SHA256")
        #expect(ik.pattern.messages == [[.e, .es, .s, .ss], [.e, .ee, .se, .psk]])
        #expect(ik.pattern.responderPreMessage == [.s])
        let multi = try HandshakePattern(parsing: "NXpsk0+psk1+psk2")
        #expect(multi.messages == [[.psk, .e, .psk], [.e, .ee, .s, .es, .psk]])
        let deferred = try HandshakePattern(parsing: "X1K1")
        #expect(deferred.messages == [[.e], [.e, .ee, .es], [.s], [.se]])
    }

    @Test("unknown names are errors, not crashes",
          arguments: ["", "Noise", "Noise_XX_25519_ChaChaPoly", "Noise_QQ_25519_ChaChaPoly_BLAKE2b",
                      "Noise_XXpsk9_25519_ChaChaPoly_BLAKE2b", "Noise_XXfallback_25519_ChaChaPoly_BLAKE2b",
                      "Noise_XX_448_ChaChaPoly_BLAKE2b", "Noise_XX_25519_ChaChaPoly_BLAKE2s",
                      "Noise_XXpsk_25519_ChaChaPoly_BLAKE2b", "Noise_XX+psk0_25519_ChaChaPoly_BLAKE2b"])
    func badNames(name: String) {
        #expect(throws: NoiseError.self) { try NoiseProtocol(name: name) }
    }
}

@Suite struct PrimitiveTests {
    @Test("HMAC-SHA256 matches RFC 4231 test case 2")
    func hmacRFC4231() {
        let mac = NoiseHash.sha256.hmac(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8))
        #expect(TestHex.encode(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test("two-part hashes equal hashing the concatenation", arguments: NoiseHash.allCases)
    func twoPart(hash: NoiseHash) {
        let a = Array(0..<200).map { UInt8($0) }
        let b = Array("iotaf".utf8)
        #expect(hash.hash(a, b) == hash.hash(a + b))
        #expect(hash.hash([], []) == hash.hash([]))
    }

    @Test("nonce encodings: ChaChaPoly little-endian, AESGCM big-endian")
    func nonceEncodings() throws {
        let key = [UInt8](repeating: 7, count: 32)
        // Both directions agree with themselves; the vectors pin the byte order.
        for cipher in NoiseCipher.allCases where cipher.isAvailable {
            let c = CipherState(cipher: cipher, key: key)
            c.setNonce(0x0102_0304_0506_0708)
            let ct = try c.encryptWithAd([1], [2, 3])
            let d = CipherState(cipher: cipher, key: key)
            #expect(throws: NoiseError.decryptionFailed) { try d.decryptWithAd([1], ct) }
            d.setNonce(0x0102_0304_0506_0708)
            #expect(try d.decryptWithAd([1], ct) == [2, 3])
        }
    }
}
