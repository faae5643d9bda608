import MeshCore
import Sodium

/// How an object is cut and coded. Defaults: 10 data + 4 parity fragments per segment (expansion
/// 1.4, any 4 holders of a segment may vanish), 1 MiB plaintext segments.
public struct LaceroParameters: Sendable, Equatable {
    public enum AEAD: UInt8, Sendable { case chacha20poly1305 = 1 }
    public enum Hash: UInt8, Sendable { case sha256 = 1 }

    public static let maxSegmentSize = 64 << 20

    public var k: Int
    public var n: Int
    public var segmentSize: Int
    public var aead: AEAD
    public var hash: Hash

    public static let standard = try! LaceroParameters(k: 10, n: 14, segmentSize: 1 << 20)

    public init(k: Int, n: Int, segmentSize: Int, aead: AEAD = .chacha20poly1305, hash: Hash = .sha256) throws(LaceroParameterError) {
        // k = 1 would be replication: every fragment the same bytes, so the same id, and the
        // mesh could not tell the copies apart.
        guard k >= 2, n > k, n <= 256 else { throw .coding(k: k, n: n) }
        guard segmentSize >= 1, segmentSize <= Self.maxSegmentSize else { throw .segmentSize(segmentSize) }
        self.k = k
        self.n = n
        self.segmentSize = segmentSize
        self.aead = aead
        self.hash = hash
    }

    /// Segments of an object of `objectSize` bytes (an empty object is one empty segment).
    public func segmentCount(objectSize: UInt64) -> Int {
        objectSize == 0 ? 1 : Int((objectSize + UInt64(segmentSize) - 1) / UInt64(segmentSize))
    }

    /// Plaintext bytes in segment `s`.
    public func plaintextLength(segment s: Int, objectSize: UInt64) -> Int {
        let start = UInt64(s) * UInt64(segmentSize)
        return Int(min(UInt64(segmentSize), objectSize - min(objectSize, start)))
    }

    /// Ciphertext bytes of segment `s` (plaintext and the AEAD tag).
    public func ciphertextLength(segment s: Int, objectSize: UInt64) -> Int {
        plaintextLength(segment: s, objectSize: objectSize) + ChaChaPoly.tagLength
    }

    /// Bytes in each fragment of segment `s` (the ciphertext cut into k equal blocks, zero-padded).
    public func fragmentLength(segment s: Int, objectSize: UInt64) -> Int {
        (ciphertextLength(segment: s, objectSize: objectSize) + k - 1) / k
    }
}

public enum LaceroParameterError: Error, Equatable, CustomStringConvertible {
    case coding(k: Int, n: Int)
    case segmentSize(Int)

    public var description: String {
        switch self {
        case let .coding(k, n): "Lacero needs 2 <= k < n <= 256 (got --k \(k) --n \(n)); k = 1 would store identical copies under one id"
        case let .segmentSize(s): "segment size \(s) is outside 1 ... \(LaceroParameters.maxSegmentSize) bytes"
        }
    }
}

/// One segment's n fragments, laid out in one buffer (fragment i at i·fragmentLength), and their ids.
public struct EncodedSegment: Sendable {
    public let index: Int
    public let fragmentLength: Int
    public let buffer: [UInt8]
    public let ids: [[UInt8]]

    public func fragment(_ i: Int) -> ArraySlice<UInt8> {
        buffer[(i * fragmentLength)..<((i + 1) * fragmentLength)]
    }
}

/// Object → fragments: encrypt each segment (ChaCha20-Poly1305, fresh key per object, the segment
/// number as nonce, its position bound in the associated data), cut the ciphertext into k blocks,
/// add n−k parity blocks (zfec's code on ISA-L), hash every fragment for its id. Pure functions:
/// each segment is independent, so a driver may run segments on as many cores as it has.
public enum Shredder {
    /// The associated data that binds a segment to its place: reordering, dropping or swapping
    /// segments between objects fails authentication.
    static func associatedData(segment: Int, count: Int, objectSize: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 40)
        w.raw(Array("lacero/segment/v1".utf8))
        w.u32(UInt32(segment))
        w.u32(UInt32(count))
        w.u64(objectSize)
        return w.bytes
    }

    /// The 96-bit nonce of segment `s`: a counter is safe, the key encrypts one object only.
    static func nonce(segment: Int) -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        w.u32(0)
        w.u64(UInt64(segment))
        return w.bytes
    }

    /// Encodes segment `index` of an object whose plaintext for that segment is `plaintext`.
    public static func encodeSegment(_ plaintext: UnsafeRawBufferPointer, index: Int, objectSize: UInt64,
                                     parameters p: LaceroParameters, key: [UInt8], code: ReedSolomon) -> EncodedSegment {
        let length = p.fragmentLength(segment: index, objectSize: objectSize)
        var ids: [[UInt8]] = []
        let buffer = [UInt8](unsafeUninitializedCapacity: p.n * length) { raw, initialized in
            ids = encodeSegment(plaintext, index: index, objectSize: objectSize, parameters: p, key: key, code: code,
                                into: UnsafeMutableRawBufferPointer(raw))
            initialized = p.n * length
        }
        return EncodedSegment(index: index, fragmentLength: length, buffer: buffer, ids: ids)
    }

    /// Encodes segment `index` into `fragments` (n · fragment length bytes, fragment i at
    /// i · length; a caller may reuse one buffer for segment after segment) and returns the n ids.
    ///
    /// The buffer is not zero-filled first: the ciphertext, the zero padding of the last data
    /// block and the parity cover every byte, so each byte is written once (a zero fill was one
    /// more pass over n/k times the segment, and a put writes 1.4 times the object).
    public static func encodeSegment(_ plaintext: UnsafeRawBufferPointer, index: Int, objectSize: UInt64,
                                     parameters p: LaceroParameters, key: [UInt8], code: ReedSolomon,
                                     into all: UnsafeMutableRawBufferPointer) -> [[UInt8]] {
        seal(plaintext, index: index, objectSize: objectSize, parameters: p, key: key, code: code, into: all)
        let length = p.fragmentLength(segment: index, objectSize: objectSize)
        return (0..<p.n).map { i in FragmentHash.hash(UnsafeRawBufferPointer(rebasing: all[(i * length)..<((i + 1) * length)])) }
    }

    /// Encrypts segment `index` into the first k fragments of `all`, zero-pads the last data
    /// block and computes the n−k parity fragments in place after them.
    static func seal(_ plaintext: UnsafeRawBufferPointer, index: Int, objectSize: UInt64,
                     parameters p: LaceroParameters, key: [UInt8], code: ReedSolomon,
                     into all: UnsafeMutableRawBufferPointer) {
        let count = p.segmentCount(objectSize: objectSize)
        let length = p.fragmentLength(segment: index, objectSize: objectSize)
        precondition(all.count == p.n * length, "the fragment buffer must hold n fragments of the segment")
        let cipherLength = plaintext.count + ChaChaPoly.tagLength
        let ad = associatedData(segment: index, count: count, objectSize: objectSize)
        let nonce = nonce(segment: index)
        // The padding of the last data block, then the ciphertext before it, then the parity.
        all[cipherLength..<(p.k * length)].initializeMemory(as: UInt8.self, repeating: 0)
        key.withUnsafeBytes { k in
            nonce.withUnsafeBytes { nc in
                ad.withUnsafeBytes { a in
                    ChaChaPoly.seal(key: k, nonce: nc, associatedData: a, plaintext: plaintext,
                                    into: UnsafeMutableRawBufferPointer(rebasing: all[0..<cipherLength]))
                }
            }
        }
        code.encodeParity(all, length: length)
    }

    /// Segments per offloaded put job: big enough that a job's fixed costs (its one allocation,
    /// the thread hand-off) vanish beside 4 MiB of coding, small enough that two cores share
    /// even a 16 MiB object evenly.
    public static let segmentsPerJob = 4

    /// Bytes `shredJob` returns for `segments`: per segment, n ids then n fragments.
    public static func jobLength(segments: Range<Int>, objectSize: UInt64, parameters p: LaceroParameters) -> Int {
        segments.reduce(0) { $0 + p.n * (FragmentHash.length + p.fragmentLength(segment: $1, objectSize: objectSize)) }
    }

    /// One put job: `segments` of the object coded into one buffer laid out segment after segment
    /// as n ids (32 bytes each) then n fragments (Docs/lacero.md, "The put pipeline"). Each
    /// segment is sealed, coded and hashed where it lies in that buffer, and each id written
    /// straight into its place: one allocation per job, no copy between encode and hand-off.
    public static func shredJob(_ object: UnsafeRawBufferPointer, segments: Range<Int>, parameters p: LaceroParameters,
                                key: [UInt8], code: ReedSolomon) -> [UInt8] {
        let size = UInt64(object.count)
        let total = jobLength(segments: segments, objectSize: size, parameters: p)
        return [UInt8](unsafeUninitializedCapacity: total) { raw, initialized in
            let out = UnsafeMutableRawBufferPointer(raw)
            var at = 0
            for s in segments {
                let length = p.fragmentLength(segment: s, objectSize: size)
                let ids = at, fragments = at + p.n * FragmentHash.length
                let start = s * p.segmentSize
                let plain = UnsafeRawBufferPointer(rebasing: object[start..<(start + p.plaintextLength(segment: s, objectSize: size))])
                let region = UnsafeMutableRawBufferPointer(rebasing: out[fragments..<(fragments + p.n * length)])
                seal(plain, index: s, objectSize: size, parameters: p, key: key, code: code, into: region)
                for i in 0..<p.n {
                    FragmentHash.hash(UnsafeRawBufferPointer(rebasing: region[(i * length)..<((i + 1) * length)]),
                                      into: UnsafeMutableRawBufferPointer(rebasing: out[(ids + i * FragmentHash.length)..<(ids + (i + 1) * FragmentHash.length)]))
                }
                at = fragments + p.n * length
            }
            initialized = total
        }
    }

    /// Shreds a whole object on the calling thread: its metadata and every segment's fragments.
    public static func shred(_ object: [UInt8], parameters p: LaceroParameters, key: [UInt8], deleteSecret: [UInt8],
                             available: [NodeID] = []) throws -> (metadata: LaceroMetadata, segments: [EncodedSegment]) {
        let code = try ReedSolomon(k: p.k, n: p.n)
        let size = UInt64(object.count)
        let segments = object.withUnsafeBytes { all in
            (0..<p.segmentCount(objectSize: size)).map { s in
                let start = s * p.segmentSize
                let plain = UnsafeRawBufferPointer(rebasing: all[start..<(start + p.plaintextLength(segment: s, objectSize: size))])
                return encodeSegment(plain, index: s, objectSize: size, parameters: p, key: key, code: code)
            }
        }
        let metadata = LaceroMetadata(parameters: p, objectSize: size, key: key, deleteSecret: deleteSecret,
                                      fragmentIDs: segments.flatMap(\.ids), available: available)
        return (metadata, segments)
    }

    /// A fresh object key and delete secret from libsodium's generator.
    public static func freshSecrets() -> (key: [UInt8], deleteSecret: [UInt8]) {
        (Sodium.randomBytes(32), Sodium.randomBytes(32))
    }
}

/// Why an object (or one segment of it) could not be rebuilt.
public enum LaceroRebuildError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than k fragments of the segment passed their hash check.
    case notEnoughFragments(segment: Int, have: Int, need: Int)
    /// The decoded segment failed authentication (cannot happen with k verified fragments unless
    /// the metadata itself is wrong).
    case authenticationFailed(segment: Int)

    public var description: String {
        switch self {
        case let .notEnoughFragments(s, have, need):
            "segment \(s): only \(have) of the \(need) fragments needed answered with the right bytes; run `iotaf lacero check` and `repair` while enough remain"
        case let .authenticationFailed(s): "segment \(s) does not authenticate under the metadata's key: the metadata does not belong to these fragments"
        }
    }
}

/// Fragments → object: every fragment is checked against its id before use (a wrong or truncated
/// one is refused and counted), any k per segment are decoded, and the segment is authenticated.
public struct Reassembler {
    public let metadata: LaceroMetadata
    private let code: ReedSolomon
    /// Fragments refused, by reason (`wrong_length`, `hash_mismatch`, `unknown_fragment`).
    public private(set) var refused: [String: Int] = [:]

    public init(metadata: LaceroMetadata) throws {
        self.metadata = metadata
        code = try ReedSolomon(k: metadata.parameters.k, n: metadata.parameters.n)
    }

    /// Checks one fragment's bytes against the metadata: its share index in segment `s`, or nil
    /// (refused and counted).
    public mutating func verify(segment s: Int, share i: Int, bytes: ArraySlice<UInt8>) -> Bool {
        let p = metadata.parameters
        guard s >= 0, s < metadata.segmentCount, i >= 0, i < p.n else { refused["unknown_fragment", default: 0] += 1; return false }
        guard bytes.count == p.fragmentLength(segment: s, objectSize: metadata.objectSize) else {
            refused["wrong_length", default: 0] += 1; return false
        }
        guard FragmentHash.hash(bytes) == metadata.fragmentIDs[s * p.n + i] else {
            refused["hash_mismatch", default: 0] += 1; return false
        }
        return true
    }

    /// The plaintext of segment `s` from whatever fragments are given (share index, bytes).
    public mutating func decodeSegment(_ s: Int, fragments: [(index: Int, bytes: ArraySlice<UInt8>)]) throws(LaceroRebuildError) -> [UInt8] {
        let length = metadata.parameters.plaintextLength(segment: s, objectSize: metadata.objectSize)
        var failure: LaceroRebuildError?
        let plain = [UInt8](unsafeUninitializedCapacity: length) { buf, initialized in
            do throws(LaceroRebuildError) { try decodeSegment(s, fragments: fragments, into: UnsafeMutableRawBufferPointer(buf)) } catch { failure = error }
            initialized = length
        }
        if let failure { throw failure }
        return plain
    }

    /// Decodes segment `s` into `output` (exactly its plaintext length). The k verified fragments
    /// are read where they lie: data shares are copied once into the ciphertext buffer, missing
    /// data blocks are computed straight into their place, and the plaintext is opened into
    /// `output`; no other copy. On failure `output` holds no plaintext.
    public mutating func decodeSegment(_ s: Int, fragments: [(index: Int, bytes: ArraySlice<UInt8>)],
                                       into output: UnsafeMutableRawBufferPointer) throws(LaceroRebuildError) {
        let p = metadata.parameters
        var good: [(index: Int, bytes: ArraySlice<UInt8>)] = []
        good.reserveCapacity(p.k)
        var seen = Set<Int>()
        for f in fragments where good.count < p.k && !seen.contains(f.index) {
            if verify(segment: s, share: f.index, bytes: f.bytes) {
                good.append(f)
                seen.insert(f.index)
            }
        }
        guard good.count == p.k else { throw .notEnoughFragments(segment: s, have: good.count, need: p.k) }
        let length = p.fragmentLength(segment: s, objectSize: metadata.objectSize)
        let cipherLength = p.ciphertextLength(segment: s, objectSize: metadata.objectSize)
        precondition(output.count == cipherLength - ChaChaPoly.tagLength, "output must hold the segment's plaintext")
        let ad = Shredder.associatedData(segment: s, count: metadata.segmentCount, objectSize: metadata.objectSize)
        var decoded = false
        let padded = [UInt8](unsafeUninitializedCapacity: p.k * length) { buf, n in
            decoded = code.decode(good, length: length, into: UnsafeMutableRawBufferPointer(buf))
            n = p.k * length
        }
        guard decoded else { throw .notEnoughFragments(segment: s, have: good.count, need: p.k) }
        do {
            try metadata.key.withUnsafeBytes { k in
                try Shredder.nonce(segment: s).withUnsafeBytes { nc in
                    try ad.withUnsafeBytes { a in
                        try padded.withUnsafeBytes { c in
                            try ChaChaPoly.open(key: k, nonce: nc, associatedData: a,
                                                ciphertext: UnsafeRawBufferPointer(rebasing: c[0..<cipherLength]), into: output)
                        }
                    }
                }
            }
        } catch {
            throw .authenticationFailed(segment: s)
        }
    }

    /// The whole object; `fragments(s)` gives what is at hand for segment s. Each segment is
    /// decoded straight into its place in the object.
    public mutating func rebuild(_ fragments: (Int) -> [(index: Int, bytes: ArraySlice<UInt8>)]) throws(LaceroRebuildError) -> [UInt8] {
        let p = metadata.parameters
        let size = Int(metadata.objectSize)
        var failure: LaceroRebuildError?
        let object = [UInt8](unsafeUninitializedCapacity: size) { buf, initialized in
            let all = UnsafeMutableRawBufferPointer(buf)
            for s in 0..<metadata.segmentCount {
                let start = s * p.segmentSize
                let end = start + p.plaintextLength(segment: s, objectSize: metadata.objectSize)
                do throws(LaceroRebuildError) { try decodeSegment(s, fragments: fragments(s), into: UnsafeMutableRawBufferPointer(rebasing: all[start..<end])) } catch {
                    failure = error
                    break
                }
            }
            initialized = size
        }
        if let failure { throw failure }
        return object
    }

    /// The n fragments of segment `s` rebuilt from any k (repair): the segment is decoded and
    /// coded again, so the rebuilt fragments equal the originals byte for byte (same ids).
    public mutating func repairSegment(_ s: Int, fragments: [(index: Int, bytes: ArraySlice<UInt8>)]) throws(LaceroRebuildError) -> EncodedSegment {
        let plain = try decodeSegment(s, fragments: fragments)
        return plain.withUnsafeBytes {
            Shredder.encodeSegment($0, index: s, objectSize: metadata.objectSize, parameters: metadata.parameters,
                                   key: metadata.key, code: code)
        }
    }
}
