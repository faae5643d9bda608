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

    /// HASH(a || b || c) into `out` (HASHLEN bytes), with nothing allocated.
    func hash(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer,
              into out: UnsafeMutableRawBufferPointer) {
        switch self {
        case .blake2b: Blake2b.hash(a, b, c, into: out)
        case .sha256: SHA256.hash(a, b, c, into: out)
        case .sha512: SHA512.hash(a, b, c, into: out)
        }
    }

    /// HMAC (RFC 2104) over this hash. Noise keys are never longer than a block, but a longer key
    /// is hashed first as the RFC says, so the function is total.
    public func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var longKey = key.count > blockLength ? hash(key) : []
        defer { Sodium.zero(&longKey) }
        return [UInt8](unsafeUninitializedCapacity: hashLength) { out, count in
            (longKey.isEmpty ? key : longKey).withUnsafeBytes { k in
                data.withUnsafeBytes { d in
                    hmac(key: k, d, UnsafeRawBufferPointer(start: nil, count: 0), into: UnsafeMutableRawBufferPointer(out))
                }
            }
            count = hashLength
        }
    }

    /// HMAC(key, data || suffix) into `out` (HASHLEN bytes); `key` is at most a block long.
    /// Pads and the inner hash live on the stack and are wiped.
    func hmac(key: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, _ suffix: UnsafeRawBufferPointer,
              into out: UnsafeMutableRawBufferPointer) {
        precondition(key.count <= blockLength && out.count == hashLength)
        let block = blockLength, length = hashLength
        withUnsafeTemporaryAllocation(byteCount: block + length, alignment: 16) { scratch in
            let pad = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<block])
            let inner = UnsafeMutableRawBufferPointer(rebasing: scratch[block...])
            // Key zero-padded to a block, then XORed a word at a time (blocks are 64 or 128 bytes).
            pad.initializeMemory(as: UInt8.self, repeating: 0)
            if key.count > 0 { pad.baseAddress!.copyMemory(from: key.baseAddress!, byteCount: key.count) }
            xorWords(pad, 0x3636_3636_3636_3636)
            hash(UnsafeRawBufferPointer(pad), data, suffix, into: inner)
            xorWords(pad, 0x3636_3636_3636_3636 ^ 0x5c5c_5c5c_5c5c_5c5c)
            hash(UnsafeRawBufferPointer(pad), UnsafeRawBufferPointer(inner), UnsafeRawBufferPointer(start: nil, count: 0), into: out)
            Sodium.zero(scratch)
        }
    }

    private func xorWords(_ buffer: UnsafeMutableRawBufferPointer, _ mask: UInt64) {
        var offset = 0
        while offset < buffer.count {
            let word = buffer.load(fromByteOffset: offset, as: UInt64.self)
            buffer.storeBytes(of: word ^ mask, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
    }

    /// HKDF as Noise uses it: two or three outputs of HASHLEN bytes each. The intermediate keys
    /// stay on the stack and are wiped; only the outputs are allocated.
    public func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF makes two or three outputs")
        precondition(chainingKey.count <= blockLength, "a chaining key is HASHLEN bytes")
        let length = hashLength
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        return withUnsafeTemporaryAllocation(byteCount: 4 * length + 1, alignment: 16) { scratch in
            defer { Sodium.zero(scratch) }
            let tempKey = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<length])
            func output(_ i: Int) -> UnsafeMutableRawBufferPointer {
                UnsafeMutableRawBufferPointer(rebasing: scratch[((i + 1) * length)..<((i + 2) * length)])
            }
            let counter = UnsafeMutableRawBufferPointer(rebasing: scratch[(4 * length)...])
            chainingKey.withUnsafeBytes { ck in
                inputKeyMaterial.withUnsafeBytes { ikm in hmac(key: ck, ikm, none, into: tempKey) }
            }
            var result: [[UInt8]] = []
            result.reserveCapacity(outputs)
            for i in 0..<outputs {
                counter[0] = UInt8(i + 1)
                let previous = i == 0 ? none : UnsafeRawBufferPointer(output(i - 1))
                hmac(key: UnsafeRawBufferPointer(tempKey), previous, UnsafeRawBufferPointer(counter), into: output(i))
                result.append(Array(UnsafeRawBufferPointer(output(i))))
            }
            return result
        }
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
