import CISAL

/// Systematic Reed-Solomon over GF(2^8), byte-compatible with zfec (Tahoe-LAFS's coder): the same
/// field (polynomial x^8+x^4+x^3+x^2+1, 0x11D, which is also ISA-L's), the same encoding matrix,
/// so zfec decodes our shares and we decode zfec's. The arithmetic runs in Intel ISA-L's SIMD
/// kernels (`ec_encode_data`), never a byte-at-a-time table loop.
///
/// zfec's matrix: an n×k Vandermonde matrix V whose row 0 is the point 0 (1, 0, …, 0) and whose
/// row r ≥ 1 is the point α^(r−1) (entries α^((r−1)·c), α = 2); the code's matrix is V times the
/// inverse of V's top k×k block, so its top k rows are the identity (share i < k is data block i)
/// and rows k..n−1 make the parity shares. Any k rows are independent, so any k shares decode.
public struct ReedSolomon: Sendable {
    /// Data shares (any k of the n decode).
    public let k: Int
    /// All shares, data and parity.
    public let n: Int
    /// The n×k encoding matrix, row-major (rows 0..<k are the identity).
    public let matrix: [UInt8]
    /// ISA-L's expanded tables for the parity rows (32·k·(n−k) bytes).
    private let parityTables: [UInt8]

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case parameters(k: Int, n: Int)
        case shareCount(have: Int, need: Int)
        case shareIndex(Int)
        case duplicateShare(Int)
        case shareLength
        case singular

        public var description: String {
            switch self {
            case let .parameters(k, n): "Reed-Solomon needs 1 <= k < n <= 256 (got k=\(k), n=\(n))"
            case let .shareCount(have, need): "decoding needs \(need) shares, got \(have)"
            case let .shareIndex(i): "share index \(i) is outside 0..<n"
            case let .duplicateShare(i): "share \(i) given twice"
            case .shareLength: "shares differ in length"
            case .singular: "the shares' rows do not invert (cannot happen for an MDS code: a bug)"
            }
        }
    }

    public init(k: Int, n: Int) throws {
        guard k >= 1, n > k, n <= 256 else { throw Error.parameters(k: k, n: n) }
        self.k = k
        self.n = n
        matrix = Self.zfecMatrix(k: k, n: n)
        var tables = [UInt8](repeating: 0, count: 32 * k * (n - k))
        var parityRows = Array(matrix[(k * k)...])
        parityRows.withUnsafeMutableBufferPointer { rows in
            tables.withUnsafeMutableBufferPointer { t in
                ec_init_tables(Int32(k), Int32(n - k), rows.baseAddress, t.baseAddress)
            }
        }
        parityTables = tables
    }

    /// zfec's encoding matrix for (k, n), row-major n×k.
    static func zfecMatrix(k: Int, n: Int) -> [UInt8] {
        // α^i for i in 0..<255.
        var exp = [UInt8](repeating: 0, count: 255)
        var x: UInt8 = 1
        for i in 0..<255 { exp[i] = x; x = gf_mul(x, 2) }
        var vandermonde = [UInt8](repeating: 0, count: n * k)
        vandermonde[0] = 1
        for row in 1..<n {
            for col in 0..<k { vandermonde[row * k + col] = exp[((row - 1) * col) % 255] }
        }
        var top = Array(vandermonde[0..<(k * k)])
        var topInverse = [UInt8](repeating: 0, count: k * k)
        let rc = gf_invert_matrix(&top, &topInverse, Int32(k))
        precondition(rc == 0, "a Vandermonde block on distinct points is invertible")
        var out = [UInt8](repeating: 0, count: n * k)
        for i in 0..<k { out[i * k + i] = 1 }
        for row in k..<n {
            for col in 0..<k {
                var acc: UInt8 = 0
                for j in 0..<k { acc ^= gf_mul(vandermonde[row * k + j], topInverse[j * k + col]) }
                out[row * k + col] = acc
            }
        }
        return out
    }

    /// Computes the n−k parity shares of `length` bytes each in place: `shares` holds n·length
    /// bytes, share i at i·length; the first k (the data) are read, the rest written.
    public func encodeParity(_ shares: UnsafeMutableRawBufferPointer, length: Int) {
        precondition(shares.count >= n * length && length > 0)
        let base = shares.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var data = (0..<k).map { Optional(base + $0 * length) }
        var parity = (k..<n).map { Optional(base + $0 * length) }
        parityTables.withUnsafeBufferPointer { t in
            ec_encode_data(Int32(length), Int32(k), Int32(n - k), UnsafeMutablePointer(mutating: t.baseAddress),
                           &data, &parity)
        }
    }

    /// All n shares of `data` (k·length bytes, share i = bytes i·length..<(i+1)·length).
    public func encode(_ data: [UInt8]) -> [[UInt8]] {
        precondition(data.count % k == 0 && !data.isEmpty, "data must be k equal blocks")
        let length = data.count / k
        var all = data + [UInt8](repeating: 0, count: (n - k) * length)
        all.withUnsafeMutableBytes { encodeParity($0, length: length) }
        return (0..<n).map { Array(all[($0 * length)..<(($0 + 1) * length)]) }
    }

    /// The k data blocks from exactly k distinct shares of `length` bytes each, written into
    /// `out` (k·length bytes): data shares present are copied into place, the missing data blocks
    /// are computed by ISA-L from the shares where they lie, straight into their place. False when
    /// the shares are not k distinct valid ones of that length.
    public func decode(_ shares: [(index: Int, bytes: ArraySlice<UInt8>)], length: Int, into out: UnsafeMutableRawBufferPointer) -> Bool {
        guard shares.count == k, length > 0, out.count == k * length,
              shares.allSatisfy({ $0.index >= 0 && $0.index < n && $0.bytes.count == length }),
              Set(shares.map { $0.index }).count == k else { return false }
        let chosen = shares.sorted { $0.index < $1.index }
        let present = Set(chosen.map { $0.index })
        let base = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        for share in chosen where share.index < k {
            share.bytes.withUnsafeBytes { b in
                UnsafeMutableRawBufferPointer(rebasing: out[(share.index * length)..<((share.index + 1) * length)]).copyMemory(from: b)
            }
        }
        let missing = (0..<k).filter { !present.contains($0) }
        if missing.isEmpty { return true }
        // Rows of the chosen shares, inverted: row j of the inverse rebuilds data block j.
        var sub = [UInt8](repeating: 0, count: k * k)
        for (r, share) in chosen.enumerated() {
            for c in 0..<k { sub[r * k + c] = matrix[share.index * k + c] }
        }
        var inverse = [UInt8](repeating: 0, count: k * k)
        guard gf_invert_matrix(&sub, &inverse, Int32(k)) == 0 else { return false }
        var rows = [UInt8]()
        rows.reserveCapacity(missing.count * k)
        for j in missing { rows.append(contentsOf: inverse[(j * k)..<((j + 1) * k)]) }
        var tables = [UInt8](repeating: 0, count: 32 * k * missing.count)
        ec_init_tables(Int32(k), Int32(missing.count), &rows, &tables)
        // The sources are the shares' own storage: pointers valid while each slice is lent.
        func withSources<R>(_ i: Int, _ pointers: [UnsafeMutablePointer<UInt8>?], _ body: ([UnsafeMutablePointer<UInt8>?]) -> R) -> R {
            guard i < chosen.count else { return body(pointers) }
            return chosen[i].bytes.withUnsafeBytes { b in
                withSources(i + 1, pointers + [UnsafeMutablePointer(mutating: b.baseAddress!.assumingMemoryBound(to: UInt8.self))], body)
            }
        }
        withSources(0, []) { sources in
            var src = sources
            var dst = missing.map { Optional(base + $0 * length) }
            ec_encode_data(Int32(length), Int32(k), Int32(missing.count), &tables, &src, &dst)
        }
        return true
    }

    /// The k data blocks from any k shares (index, bytes), concatenated. Extra shares are ignored.
    public func decode(_ shares: [(index: Int, bytes: [UInt8])]) throws -> [UInt8] {
        var chosen: [(index: Int, bytes: [UInt8])] = []
        var seen = Set<Int>()
        // Prefer data shares: each one present is a copy, not a multiply.
        for share in shares.sorted(by: { $0.index < $1.index }) {
            guard share.index >= 0, share.index < n else { throw Error.shareIndex(share.index) }
            guard seen.insert(share.index).inserted else { throw Error.duplicateShare(share.index) }
            if chosen.count < k { chosen.append(share) }
        }
        guard chosen.count == k else { throw Error.shareCount(have: chosen.count, need: k) }
        let length = chosen[0].bytes.count
        guard length > 0, chosen.allSatisfy({ $0.bytes.count == length }) else { throw Error.shareLength }
        var out = [UInt8](repeating: 0, count: k * length)
        let missing = (0..<k).filter { !seen.contains($0) }
        for share in chosen where share.index < k {
            out.replaceSubrange((share.index * length)..<((share.index + 1) * length), with: share.bytes)
        }
        if missing.isEmpty { return out }
        // Rows of the chosen shares, inverted: row j of the inverse rebuilds data block j.
        var sub = [UInt8](repeating: 0, count: k * k)
        for (r, share) in chosen.enumerated() {
            for c in 0..<k { sub[r * k + c] = matrix[share.index * k + c] }
        }
        var inverse = [UInt8](repeating: 0, count: k * k)
        guard gf_invert_matrix(&sub, &inverse, Int32(k)) == 0 else { throw Error.singular }
        var rows = [UInt8]()
        rows.reserveCapacity(missing.count * k)
        for j in missing { rows.append(contentsOf: inverse[(j * k)..<((j + 1) * k)]) }
        var tables = [UInt8](repeating: 0, count: 32 * k * missing.count)
        ec_init_tables(Int32(k), Int32(missing.count), &rows, &tables)
        // Contiguous source and output blocks, so ISA-L gets stable pointers.
        var sources = [UInt8]()
        sources.reserveCapacity(k * length)
        for share in chosen { sources.append(contentsOf: share.bytes) }
        var rebuilt = [UInt8](repeating: 0, count: missing.count * length)
        sources.withUnsafeMutableBufferPointer { src in
            rebuilt.withUnsafeMutableBufferPointer { dst in
                var s = (0..<k).map { Optional(src.baseAddress! + $0 * length) }
                var d = (0..<missing.count).map { Optional(dst.baseAddress! + $0 * length) }
                ec_encode_data(Int32(length), Int32(k), Int32(missing.count), &tables, &s, &d)
            }
        }
        for (m, j) in missing.enumerated() {
            out.replaceSubrange((j * length)..<((j + 1) * length), with: rebuilt[(m * length)..<((m + 1) * length)])
        }
        return out
    }
}

