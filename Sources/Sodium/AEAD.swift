import CSodium

/// ChaCha20-Poly1305 (IETF, 96-bit nonce) and AES-256-GCM where the CPU has AES-NI.
public enum ChaChaPoly {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    public static func seal(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        precondition(key.count == keyLength && nonce.count == nonceLength)
        var out = [UInt8](repeating: 0, count: plaintext.count + tagLength)
        var outLen: UInt64 = 0
        _ = crypto_aead_chacha20poly1305_ietf_encrypt(&out, &outLen, plaintext, UInt64(plaintext.count),
                                                      associatedData, UInt64(associatedData.count), nil, nonce, key)
        return out
    }

    public static func open(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        precondition(key.count == keyLength && nonce.count == nonceLength)
        guard ciphertext.count >= tagLength else { throw SodiumError.authenticationFailed }
        var out = [UInt8](repeating: 0, count: ciphertext.count - tagLength)
        var outLen: UInt64 = 0
        let rc = crypto_aead_chacha20poly1305_ietf_decrypt(&out, &outLen, nil, ciphertext, UInt64(ciphertext.count),
                                                           associatedData, UInt64(associatedData.count), nonce, key)
        guard rc == 0 else { throw SodiumError.authenticationFailed }
        return out
    }
}

public enum AESGCM {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    /// libsodium offers AES-256-GCM only on CPUs with hardware AES.
    public static var isAvailable: Bool {
        Sodium.ensureInitialised()
        return crypto_aead_aes256gcm_is_available() == 1
    }

    public static func seal(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        precondition(isAvailable && key.count == keyLength && nonce.count == nonceLength)
        var out = [UInt8](repeating: 0, count: plaintext.count + tagLength)
        var outLen: UInt64 = 0
        _ = crypto_aead_aes256gcm_encrypt(&out, &outLen, plaintext, UInt64(plaintext.count),
                                          associatedData, UInt64(associatedData.count), nil, nonce, key)
        return out
    }

    public static func open(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        precondition(isAvailable && key.count == keyLength && nonce.count == nonceLength)
        guard ciphertext.count >= tagLength else { throw SodiumError.authenticationFailed }
        var out = [UInt8](repeating: 0, count: ciphertext.count - tagLength)
        var outLen: UInt64 = 0
        let rc = crypto_aead_aes256gcm_decrypt(&out, &outLen, nil, ciphertext, UInt64(ciphertext.count),
                                               associatedData, UInt64(associatedData.count), nonce, key)
        guard rc == 0 else { throw SodiumError.authenticationFailed }
        return out
    }
}

// In-place variants for per-packet paths: the caller owns every buffer, so sealing a transport
// packet writes header, ciphertext and tag into the one array that goes on the wire, and opening
// reads the ciphertext where it lies in the datagram. Nothing is allocated.

extension ChaChaPoly {
    /// Seals `plaintext` into `output` (ciphertext then tag: `plaintext.count + tagLength` bytes).
    /// `output` must not overlap `plaintext` or `associatedData`.
    public static func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer,
                            plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        Sodium.ensureInitialised()
        precondition(key.count == keyLength && nonce.count == nonceLength && output.count == plaintext.count + tagLength)
        _ = crypto_aead_chacha20poly1305_ietf_encrypt(nonEmpty(output), nil,
                                                      u8(plaintext), UInt64(plaintext.count),
                                                      u8(associatedData), UInt64(associatedData.count),
                                                      nil, nonEmpty(nonce),
                                                      nonEmpty(key))
    }

    /// Opens `ciphertext` (with its tag) into `output` (`ciphertext.count - tagLength` bytes).
    /// On failure `output` holds no plaintext.
    public static func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer,
                            ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        Sodium.ensureInitialised()
        precondition(key.count == keyLength && nonce.count == nonceLength)
        guard ciphertext.count >= tagLength else { throw SodiumError.authenticationFailed }
        precondition(output.count == ciphertext.count - tagLength)
        let rc = crypto_aead_chacha20poly1305_ietf_decrypt(u8(output), nil, nil,
                                                           nonEmpty(ciphertext), UInt64(ciphertext.count),
                                                           u8(associatedData),
                                                           UInt64(associatedData.count), nonEmpty(nonce),
                                                           nonEmpty(key))
        guard rc == 0 else { throw SodiumError.authenticationFailed }
    }
}

extension AESGCM {
    /// As ``ChaChaPoly/seal(key:nonce:associatedData:plaintext:into:)``.
    public static func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer,
                            plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        precondition(isAvailable && key.count == keyLength && nonce.count == nonceLength
                     && output.count == plaintext.count + tagLength)
        _ = crypto_aead_aes256gcm_encrypt(nonEmpty(output), nil,
                                          u8(plaintext), UInt64(plaintext.count),
                                          u8(associatedData), UInt64(associatedData.count),
                                          nil, nonEmpty(nonce), nonEmpty(key))
    }

    /// As ``ChaChaPoly/open(key:nonce:associatedData:ciphertext:into:)``.
    public static func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer,
                            ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        precondition(isAvailable && key.count == keyLength && nonce.count == nonceLength)
        guard ciphertext.count >= tagLength else { throw SodiumError.authenticationFailed }
        precondition(output.count == ciphertext.count - tagLength)
        let rc = crypto_aead_aes256gcm_decrypt(u8(output), nil, nil,
                                               nonEmpty(ciphertext), UInt64(ciphertext.count),
                                               u8(associatedData), UInt64(associatedData.count),
                                               nonEmpty(nonce), nonEmpty(key))
        guard rc == 0 else { throw SodiumError.authenticationFailed }
    }
}

/// The bytes of a raw buffer as libsodium takes them (nil for an empty buffer).
@inline(__always)
private func u8(_ b: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? { b.baseAddress?.assumingMemoryBound(to: UInt8.self) }

/// For buffers the preconditions have shown to be non-empty (keys, nonces, tags).
@inline(__always)
private func nonEmpty(_ b: UnsafeRawBufferPointer) -> UnsafePointer<UInt8> { b.baseAddress!.assumingMemoryBound(to: UInt8.self) }

@inline(__always)
private func nonEmpty(_ b: UnsafeMutableRawBufferPointer) -> UnsafeMutablePointer<UInt8> {
    b.baseAddress!.assumingMemoryBound(to: UInt8.self)
}

@inline(__always)
private func u8(_ b: UnsafeMutableRawBufferPointer) -> UnsafeMutablePointer<UInt8>? { b.baseAddress?.assumingMemoryBound(to: UInt8.self) }
