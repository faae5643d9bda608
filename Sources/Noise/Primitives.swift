import Sodium

/// Diffie-Hellman functions. Only 25519: libsodium has no X448.
public enum NoiseDH: String, Sendable, CaseIterable {
    case x25519 = "25519"

    public var dhLength: Int { 32 }

    /// Fails on a low-order public key (libsodium refuses an all-zero result).
    func dh(secretKey: [UInt8], publicKey: [UInt8]) throws -> [UInt8] {
        do {
            return try X25519.sharedSecret(secretKey: secretKey, publicKey: publicKey)
        } catch {
            throw NoiseError.invalidKey("Diffie-Hellman failed: \(error)")
        }
    }
}

/// AEAD ciphers. Their nonce encodings differ, which is an easy thing to get wrong.
public enum NoiseCipher: String, Sendable, CaseIterable {
    case chaChaPoly = "ChaChaPoly"
    case aesGCM = "AESGCM"

    public static let keyLength = 32
    public static let tagLength = 16

    /// AESGCM needs hardware AES in libsodium; ChaChaPoly is always there.
    public var isAvailable: Bool {
        switch self {
        case .chaChaPoly: return true
        case .aesGCM: return AESGCM.isAvailable
        }
    }

    /// ChaChaPoly: 4 zero bytes then the counter little-endian; AESGCM: 4 zero bytes then big-endian.
    func nonceBytes(_ n: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 {
            let byte = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))
            switch self {
            case .chaChaPoly: out[4 + i] = byte
            case .aesGCM: out[11 - i] = byte
            }
        }
        return out
    }

    /// The 12-byte nonce for counter `n` in stack memory, for the in-place paths.
    @inline(__always)
    func withNonce<R>(_ n: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeTemporaryAllocation(byteCount: 12, alignment: 8) { raw in
            for i in 0..<4 { raw[i] = 0 }
            for i in 0..<8 {
                let byte = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))
                switch self {
                case .chaChaPoly: raw[4 + i] = byte
                case .aesGCM: raw[11 - i] = byte
                }
            }
            return try body(UnsafeRawBufferPointer(raw))
        }
    }

    /// Seals into `output` (plaintext.count + 16 bytes) with nothing allocated.
    func seal(key: UnsafeRawBufferPointer, nonce: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
              into output: UnsafeMutableRawBufferPointer) throws {
        try withNonce(nonce) { n in
            switch self {
            case .chaChaPoly:
                ChaChaPoly.seal(key: key, nonce: n, associatedData: ad, plaintext: plaintext, into: output)
            case .aesGCM:
                guard AESGCM.isAvailable else { throw NoiseError.unsupported("AESGCM (no hardware AES on this CPU)") }
                AESGCM.seal(key: key, nonce: n, associatedData: ad, plaintext: plaintext, into: output)
            }
        }
    }

    /// Opens into `output` (ciphertext.count - 16 bytes) with nothing allocated.
    func open(key: UnsafeRawBufferPointer, nonce: UInt64, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
              into output: UnsafeMutableRawBufferPointer) throws {
        guard ciphertext.count >= Self.tagLength else {
            throw NoiseError.truncated("ciphertext of \(ciphertext.count) bytes is shorter than the 16-byte tag")
        }
        try withNonce(nonce) { n in
            do {
                switch self {
                case .chaChaPoly:
                    try ChaChaPoly.open(key: key, nonce: n, associatedData: ad, ciphertext: ciphertext, into: output)
                case .aesGCM:
                    guard AESGCM.isAvailable else { throw NoiseError.unsupported("AESGCM (no hardware AES on this CPU)") }
                    try AESGCM.open(key: key, nonce: n, associatedData: ad, ciphertext: ciphertext, into: output)
                }
            } catch let error as NoiseError {
                throw error
            } catch {
                throw NoiseError.decryptionFailed
            }
        }
    }

    func encrypt(key: [UInt8], nonce: UInt64, ad: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        let n = nonceBytes(nonce)
        switch self {
        case .chaChaPoly:
            return ChaChaPoly.seal(key: key, nonce: n, associatedData: ad, plaintext: plaintext)
        case .aesGCM:
            guard AESGCM.isAvailable else { throw NoiseError.unsupported("AESGCM (no hardware AES on this CPU)") }
            return AESGCM.seal(key: key, nonce: n, associatedData: ad, plaintext: plaintext)
        }
    }

    func decrypt(key: [UInt8], nonce: UInt64, ad: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        guard ciphertext.count >= Self.tagLength else {
            throw NoiseError.truncated("ciphertext of \(ciphertext.count) bytes is shorter than the 16-byte tag")
        }
        let n = nonceBytes(nonce)
        do {
            switch self {
            case .chaChaPoly:
                return try ChaChaPoly.open(key: key, nonce: n, associatedData: ad, ciphertext: ciphertext)
            case .aesGCM:
                guard AESGCM.isAvailable else { throw NoiseError.unsupported("AESGCM (no hardware AES on this CPU)") }
                return try AESGCM.open(key: key, nonce: n, associatedData: ad, ciphertext: ciphertext)
            }
        } catch let error as NoiseError {
            throw error
        } catch {
            throw NoiseError.decryptionFailed
        }
    }
}

/// Hash functions, with HMAC and HKDF built by hand as section 4.3 defines them: libsodium's keyed
/// BLAKE2b is a different construction and would give different keys.
public enum NoiseHash: String, Sendable, CaseIterable {
    case blake2b = "BLAKE2b"
    case sha256 = "SHA256"
    case sha512 = "SHA512"

    public var hashLength: Int {
        switch self {
        case .blake2b, .sha512: return 64
        case .sha256: return 32
        }
    }

    public var blockLength: Int {
        switch self {
        case .blake2b, .sha512: return 128
        case .sha256: return 64
        }
    }

    public func hash(_ data: [UInt8]) -> [UInt8] {
        switch self {
        case .blake2b: return Blake2b.hash(data, outputLength: 64)
        case .sha256: return SHA256.hash(data)
        case .sha512: return SHA512.hash(data)
        }
    }

    /// HASH(a || b) without building the concatenation: MixHash and HMAC always hash two parts.
    public func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        switch self {
        case .blake2b: return Blake2b.hash(a, b, outputLength: 64)
        case .sha256: return SHA256.hash(a, b)
        case .sha512: return SHA512.hash(a, b)
        }
    }

    /// HMAC (RFC 2104) over this hash. Noise keys are never longer than a block, but a longer key
    /// is hashed first as the RFC says, so the function is total.
    public func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var longKey = key.count > blockLength ? hash(key) : []
        var pad = [UInt8](repeating: 0x36, count: blockLength)
        for (i, byte) in (longKey.isEmpty ? key : longKey).enumerated() { pad[i] ^= byte }
        var inner = hash(pad, data)
        for i in pad.indices { pad[i] ^= 0x36 ^ 0x5c }
        let result = hash(pad, inner)
        Sodium.zero(&pad)
        Sodium.zero(&inner)
        Sodium.zero(&longKey)
        return result
    }

    /// HKDF as Noise uses it: two or three outputs of HASHLEN bytes each.
    public func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF makes two or three outputs")
        var tempKey = hmac(key: chainingKey, data: inputKeyMaterial)
        var result: [[UInt8]] = []
        var previous: [UInt8] = []
        for i in 1...outputs {
            previous = hmac(key: tempKey, data: previous + [UInt8(i)])
            result.append(previous)
        }
        Sodium.zero(&tempKey)
        return result
    }
}

/// A Diffie-Hellman key pair whose secret half is wiped when the last reference goes.
///
/// `@unchecked Sendable`: the only mutation after init is the zeroing in deinit, when no other
/// reference can exist.
public final class DHKeyPair: @unchecked Sendable {
    public let publicKey: [UInt8]
    public private(set) var secretKey: [UInt8]

    /// Derives the public key from a 32-byte X25519 secret key.
    public init(secretKey: [UInt8]) throws {
        guard secretKey.count == 32 else {
            throw NoiseError.invalidKey("X25519 secret key must be 32 bytes, got \(secretKey.count)")
        }
        do {
            self.publicKey = try X25519.publicKey(secretKey: secretKey)
        } catch {
            throw NoiseError.invalidKey("\(error)")
        }
        self.secretKey = secretKey
    }

    /// A fresh key pair from the OS generator.
    public static func generate() -> DHKeyPair {
        // 32 random bytes are always a valid X25519 secret key, so this cannot fail.
        try! DHKeyPair(secretKey: Sodium.randomBytes(32))
    }

    deinit { Sodium.zero(&secretKey) }
}
