import CSodium

/// Ed25519 signatures: the node's one long-term identity key.
public enum Ed25519 {
    public static let seedLength = 32
    public static let publicKeyLength = 32
    public static let secretKeyLength = 64
    public static let signatureLength = 64

    /// Derives the key pair from a 32-byte seed; the seed is what a key file stores.
    public static func keyPair(seed: [UInt8]) throws -> (publicKey: [UInt8], secretKey: [UInt8]) {
        Sodium.ensureInitialised()
        try requireLength(seed, seedLength, "Ed25519 seed")
        var pk = [UInt8](repeating: 0, count: publicKeyLength)
        var sk = [UInt8](repeating: 0, count: secretKeyLength)
        _ = crypto_sign_seed_keypair(&pk, &sk, seed)
        return (pk, sk)
    }

    public static func sign(_ message: [UInt8], secretKey: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(secretKey, secretKeyLength, "Ed25519 secret key")
        var sig = [UInt8](repeating: 0, count: signatureLength)
        _ = crypto_sign_detached(&sig, nil, message, UInt64(message.count), secretKey)
        return sig
    }

    public static func verify(_ signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        Sodium.ensureInitialised()
        guard signature.count == signatureLength, publicKey.count == publicKeyLength else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }

    /// The X25519 form of an Ed25519 public key (the node's Noise static public key).
    public static func curve25519PublicKey(_ publicKey: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(publicKey, publicKeyLength, "Ed25519 public key")
        var out = [UInt8](repeating: 0, count: 32)
        guard crypto_sign_ed25519_pk_to_curve25519(&out, publicKey) == 0 else {
            throw SodiumError.invalidKey("Ed25519 public key is not a valid curve point")
        }
        return out
    }

    /// The X25519 form of an Ed25519 secret key (the node's Noise static private key).
    public static func curve25519SecretKey(_ secretKey: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(secretKey, secretKeyLength, "Ed25519 secret key")
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_sign_ed25519_sk_to_curve25519(&out, secretKey)
        return out
    }
}

/// X25519 Diffie-Hellman.
public enum X25519 {
    public static let keyLength = 32

    public static func publicKey(secretKey: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(secretKey, keyLength, "X25519 secret key")
        var out = [UInt8](repeating: 0, count: keyLength)
        _ = crypto_scalarmult_base(&out, secretKey)
        return out
    }

    /// Fails on a low-order peer key (all-zero shared secret), as libsodium reports it.
    public static func sharedSecret(secretKey: [UInt8], publicKey: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(secretKey, keyLength, "X25519 secret key")
        try requireLength(publicKey, keyLength, "X25519 public key")
        var out = [UInt8](repeating: 0, count: keyLength)
        guard crypto_scalarmult(&out, secretKey, publicKey) == 0 else {
            throw SodiumError.invalidKey("X25519 public key has low order")
        }
        return out
    }
}
