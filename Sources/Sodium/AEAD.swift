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
