import CSodium

/// BLAKE2b (libsodium's generichash), SHA-256 and SHA-512.
public enum Blake2b {
    /// Plain or keyed BLAKE2b with an output of 16...64 bytes.
    public static func hash(_ message: [UInt8], outputLength: Int = 32, key: [UInt8] = []) -> [UInt8] {
        Sodium.ensureInitialised()
        precondition(outputLength >= 16 && outputLength <= 64, "BLAKE2b output length out of range")
        precondition(key.count <= 64, "BLAKE2b key longer than 64 bytes")
        var out = [UInt8](repeating: 0, count: outputLength)
        _ = key.withUnsafeBufferPointer { k in
            crypto_generichash(&out, outputLength, message, UInt64(message.count),
                               key.isEmpty ? nil : k.baseAddress, key.count)
        }
        return out
    }
}

public enum SHA256 {
    public static func hash(_ message: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_hash_sha256(&out, message, UInt64(message.count))
        return out
    }
}

public enum SHA512 {
    public static func hash(_ message: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 64)
        _ = crypto_hash_sha512(&out, message, UInt64(message.count))
        return out
    }
}
