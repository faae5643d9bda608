import CSodium

// Two-part hashes: H(a || b) through libsodium's incremental API, so HMAC and Noise's MixHash do
// not build the concatenation on every call (a handshake makes dozens of them).
// The state lives in a temporary buffer aligned to 64 bytes, as libsodium's BLAKE2b state requires.

extension Blake2b {
    /// BLAKE2b of `a || b` (unkeyed), 16...64 bytes of output.
    public static func hash(_ a: [UInt8], _ b: [UInt8], outputLength: Int = 32) -> [UInt8] {
        Sodium.ensureInitialised()
        precondition(outputLength >= 16 && outputLength <= 64, "BLAKE2b output length out of range")
        var out = [UInt8](repeating: 0, count: outputLength)
        withUnsafeTemporaryAllocation(byteCount: crypto_generichash_statebytes(), alignment: 64) { raw in
            let state = OpaquePointer(raw.baseAddress!)
            _ = crypto_generichash_init(state, nil, 0, outputLength)
            _ = crypto_generichash_update(state, a, UInt64(a.count))
            _ = crypto_generichash_update(state, b, UInt64(b.count))
            _ = crypto_generichash_final(state, &out, outputLength)
            sodium_memzero(raw.baseAddress!, raw.count)
        }
        return out
    }
}

extension SHA256 {
    /// SHA-256 of `a || b`.
    public static func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 32)
        withUnsafeTemporaryAllocation(byteCount: crypto_hash_sha256_statebytes(), alignment: 64) { raw in
            let state = raw.baseAddress!.assumingMemoryBound(to: crypto_hash_sha256_state.self)
            _ = crypto_hash_sha256_init(state)
            _ = crypto_hash_sha256_update(state, a, UInt64(a.count))
            _ = crypto_hash_sha256_update(state, b, UInt64(b.count))
            _ = crypto_hash_sha256_final(state, &out)
            sodium_memzero(raw.baseAddress!, raw.count)
        }
        return out
    }
}

extension SHA512 {
    /// SHA-512 of `a || b`.
    public static func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 64)
        withUnsafeTemporaryAllocation(byteCount: crypto_hash_sha512_statebytes(), alignment: 64) { raw in
            let state = raw.baseAddress!.assumingMemoryBound(to: crypto_hash_sha512_state.self)
            _ = crypto_hash_sha512_init(state)
            _ = crypto_hash_sha512_update(state, a, UInt64(a.count))
            _ = crypto_hash_sha512_update(state, b, UInt64(b.count))
            _ = crypto_hash_sha512_final(state, &out)
            sodium_memzero(raw.baseAddress!, raw.count)
        }
        return out
    }
}
