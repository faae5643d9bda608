import CLibcrypto

/// A fragment's id: SHA-256 of its bytes (Docs/lacero.md, "Why SHA-256"). The put pipeline
/// hashes n/k times the object, so the hash bounds it: OpenSSL's SHA-256 runs on the CPU's SHA
/// instructions (x86 SHA-NI, ARMv8 crypto extensions) at about 1.8 GB/s per core here, twice
/// libsodium's BLAKE2b (0.9 GB/s); it is also the hash IPFS and Tahoe-LAFS name shares by.
public enum FragmentHash {
    public static let length = 32

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBufferPointer { o in
            _ = SHA256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(o.baseAddress!), bytes.count, o.baseAddress)
        }
        return out
    }

    /// Writes the id of `bytes` into `out` (32 bytes), as a put job does straight into its buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count == length)
        let o = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        _ = SHA256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(o), bytes.count, o)
    }

    public static func hash<C: ContiguousBytes>(_ bytes: C) -> [UInt8] {
        bytes.withUnsafeBytes { hash($0) }
    }
}

/// Bytes that can lend a contiguous view (arrays and slices).
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
