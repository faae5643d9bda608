import CSodium

// Multi-part hashes: H(a || b || c) through libsodium's incremental API, so HMAC, HKDF and Noise's
// MixHash never build the concatenation (a handshake makes dozens of them). The hash state lives
// on the stack and is wiped after use; BLAKE2b's state is placed on a 64-byte boundary inside a
// larger stack buffer, since libsodium declares it 64-byte aligned and an aligned temporary
// allocation would go to the heap.

extension Blake2b {
    /// BLAKE2b of `a || b` (unkeyed), 16...64 bytes of output.
    public static func hash(_ a: [UInt8], _ b: [UInt8], outputLength: Int = 32) -> [UInt8] {
        precondition(outputLength >= 16 && outputLength <= 64, "BLAKE2b output length out of range")
        return [UInt8](unsafeUninitializedCapacity: outputLength) { out, count in
            a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
                hash(pa, pb, UnsafeRawBufferPointer(start: nil, count: 0), into: UnsafeMutableRawBufferPointer(out))
            } }
            count = outputLength
        }
    }

    /// BLAKE2b of `a || b || c` (unkeyed) into `out`, whose size (16...64) is the output length.
    public static func hash(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawBufferPointer) {
        Sodium.ensureInitialised()
        precondition(out.count >= 16 && out.count <= 64, "BLAKE2b output length out of range")
        let stateBytes = crypto_generichash_statebytes()
        withUnsafeTemporaryAllocation(byteCount: stateBytes + 64, alignment: 16) { raw in
            let base = Int(bitPattern: raw.baseAddress!)
            let aligned = UnsafeMutableRawPointer(bitPattern: (base + 63) & ~63)!
            let state = OpaquePointer(aligned)
            _ = crypto_generichash_init(state, nil, 0, out.count)
            for part in TriplePart(a, b, c) {
                _ = crypto_generichash_update(state, part.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(part.count))
            }
            _ = crypto_generichash_final(state, out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count)
            sodium_memzero(aligned, stateBytes)
        }
    }
}

extension SHA256 {
    /// SHA-256 of `a || b`.
    public static func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { out, count in
            a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
                hash(pa, pb, UnsafeRawBufferPointer(start: nil, count: 0), into: UnsafeMutableRawBufferPointer(out))
            } }
            count = 32
        }
    }

    /// SHA-256 of `a || b || c` into `out` (32 bytes).
    public static func hash(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawBufferPointer) {
        Sodium.ensureInitialised()
        precondition(out.count == 32, "SHA-256 output is 32 bytes")
        var state = crypto_hash_sha256_state()
        _ = crypto_hash_sha256_init(&state)
        for part in TriplePart(a, b, c) {
            _ = crypto_hash_sha256_update(&state, part.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(part.count))
        }
        _ = crypto_hash_sha256_final(&state, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
        withUnsafeMutableBytes(of: &state) { sodium_memzero($0.baseAddress!, $0.count) }
    }
}

extension SHA512 {
    /// SHA-512 of `a || b`.
    public static func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 64) { out, count in
            a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
                hash(pa, pb, UnsafeRawBufferPointer(start: nil, count: 0), into: UnsafeMutableRawBufferPointer(out))
            } }
            count = 64
        }
    }

    /// SHA-512 of `a || b || c` into `out` (64 bytes).
    public static func hash(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawBufferPointer) {
        Sodium.ensureInitialised()
        precondition(out.count == 64, "SHA-512 output is 64 bytes")
        var state = crypto_hash_sha512_state()
        _ = crypto_hash_sha512_init(&state)
        for part in TriplePart(a, b, c) {
            _ = crypto_hash_sha512_update(&state, part.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(part.count))
        }
        _ = crypto_hash_sha512_final(&state, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
        withUnsafeMutableBytes(of: &state) { sodium_memzero($0.baseAddress!, $0.count) }
    }
}

/// The non-empty ones of three buffers, in order, without building an array of them.
struct TriplePart: Sequence, IteratorProtocol {
    private var parts: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer)
    private var index = 0

    init(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer) { parts = (a, b, c) }

    mutating func next() -> UnsafeRawBufferPointer? {
        while index < 3 {
            index += 1
            let part = index == 1 ? parts.0 : index == 2 ? parts.1 : parts.2
            if part.count > 0 { return part }
        }
        return nil
    }
}
