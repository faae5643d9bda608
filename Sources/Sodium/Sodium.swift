import CSodium

/// Safe Swift over the parts of libsodium iotaf uses. Every function initialises libsodium
/// on first use, so callers never have to remember `sodium_init`.
public enum Sodium {
    private static let initialised: Bool = sodium_init() >= 0

    /// Makes sure libsodium is ready; aborting here is better than using an uninitialised RNG.
    @inline(__always)
    public static func ensureInitialised() {
        precondition(initialised, "libsodium failed to initialise")
    }

    /// Cryptographically secure random bytes (the OS generator via libsodium).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        ensureInitialised()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }

    /// Overwrites memory in a way the optimiser cannot remove.
    public static func zero(_ bytes: inout [UInt8]) {
        let n = bytes.count
        guard n > 0 else { return }
        bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, n) }
    }

    /// Overwrites raw memory (stack scratch space for keys) in a way the optimiser cannot remove.
    public static func zero(_ bytes: UnsafeMutableRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        sodium_memzero(base, bytes.count)
    }

    /// Constant-time comparison, for MACs and secrets.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
            sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 } }
    }
}

public enum SodiumError: Error, Equatable, CustomStringConvertible {
    case wrongLength(what: String, expected: Int, got: Int)
    case authenticationFailed
    case invalidKey(String)

    public var description: String {
        switch self {
        case let .wrongLength(what, expected, got): return "\(what) must be \(expected) bytes, got \(got)"
        case .authenticationFailed: return "authentication failed (wrong key or tampered data)"
        case let .invalidKey(why): return "invalid key: \(why)"
        }
    }
}

@inline(__always)
func requireLength(_ bytes: [UInt8], _ n: Int, _ what: String) throws {
    if bytes.count != n { throw SodiumError.wrongLength(what: what, expected: n, got: bytes.count) }
}
