import CSodium

/// Arithmetic on Ed25519 scalars (integers mod the group order L) and points, from libsodium's
/// `crypto_core_ed25519_*` and `crypto_scalarmult_ed25519_*`.
///
/// Nodes never need it to sign or verify (``Ed25519`` does that). It exists so that the rule
/// "an Ed25519 key and its negation are one identity" can be checked against the real thing:
/// tests build a negated twin from a secret scalar exactly as an attacker's modified software
/// would, and see it refused. Scalars and points are 32 bytes, little-endian as libsodium has them.
public enum Ed25519Arithmetic {
    public static let scalarLength = 32
    public static let pointLength = 32

    /// The secret scalar and nonce prefix an Ed25519 seed expands to (RFC 8032 5.1.5): SHA-512 of
    /// the seed, the first half clamped. The scalar times the base point is the public key.
    public static func expand(seed: [UInt8]) throws -> (scalar: [UInt8], prefix: [UInt8]) {
        try requireLength(seed, Ed25519.seedLength, "Ed25519 seed")
        var h = SHA512.hash(seed)
        defer { Sodium.zero(&h) }
        var scalar = Array(h[0..<32])
        scalar[0] &= 248
        scalar[31] &= 127
        scalar[31] |= 64
        return (scalar, Array(h[32..<64]))
    }

    /// A 64-byte number reduced mod L (what RFC 8032 does to every SHA-512 output it uses as a scalar).
    public static func reduce(_ wide: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(wide, 64, "wide scalar")
        var out = [UInt8](repeating: 0, count: scalarLength)
        crypto_core_ed25519_scalar_reduce(&out, wide)
        return out
    }

    /// L - s mod L.
    public static func negate(scalar s: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(s, scalarLength, "Ed25519 scalar")
        var out = [UInt8](repeating: 0, count: scalarLength)
        crypto_core_ed25519_scalar_negate(&out, s)
        return out
    }

    /// a + b mod L.
    public static func add(scalar a: [UInt8], _ b: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(a, scalarLength, "Ed25519 scalar")
        try requireLength(b, scalarLength, "Ed25519 scalar")
        var out = [UInt8](repeating: 0, count: scalarLength)
        crypto_core_ed25519_scalar_add(&out, a, b)
        return out
    }

    /// a * b mod L.
    public static func multiply(scalar a: [UInt8], _ b: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(a, scalarLength, "Ed25519 scalar")
        try requireLength(b, scalarLength, "Ed25519 scalar")
        var out = [UInt8](repeating: 0, count: scalarLength)
        crypto_core_ed25519_scalar_mul(&out, a, b)
        return out
    }

    /// s times the base point, with the scalar taken as it is (no clamping): the public key of a
    /// secret scalar. Fails for a scalar that is 0 mod L.
    public static func baseMultiply(scalar s: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialised()
        try requireLength(s, scalarLength, "Ed25519 scalar")
        var out = [UInt8](repeating: 0, count: pointLength)
        guard crypto_scalarmult_ed25519_base_noclamp(&out, s) == 0 else {
            throw SodiumError.invalidKey("scalar is zero mod the group order")
        }
        return out
    }

    /// Whether 32 bytes are the canonical encoding of a point in the prime-order subgroup, not of
    /// small order (libsodium's `crypto_core_ed25519_is_valid_point`; costs a scalar multiplication).
    public static func isValidPoint(_ p: [UInt8]) -> Bool {
        Sodium.ensureInitialised()
        guard p.count == pointLength else { return false }
        return crypto_core_ed25519_is_valid_point(p) == 1
    }
}
