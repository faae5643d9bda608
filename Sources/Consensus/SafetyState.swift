import MeshCore
import Sodium

/// What a validator must remember across a restart so that it never signs two conflicting things:
/// the highest round it voted or timed out in (it signs nothing for a round at or below it again)
/// and its highest quorum certificate (its lock: what its timeouts report). Persisted through
/// `.persist` before any vote, timeout or proposal that depends on it leaves.
public struct SafetyState: Hashable, Sendable {
    public var epoch: UInt64
    /// The highest round this validator voted in, proposed in or timed out.
    public var lastVotedRound: UInt64
    public var highQC: QuorumCertificate

    public init(epoch: UInt64, lastVotedRound: UInt64, highQC: QuorumCertificate) {
        self.epoch = epoch
        self.lastVotedRound = lastVotedRound
        self.highQC = highQC
    }

    static let version: UInt8 = 1
    static let checksumLength = 16

    /// Version byte, epoch, last voted round, the certificate, then a 16-byte BLAKE2b of all of
    /// it, so a torn write is refused at load instead of read as an older, unsafe state.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.u8(Self.version)
        w.u64(epoch)
        w.u64(lastVotedRound)
        highQC.encode(into: &w)
        let sum = Blake2b.hash(w.bytes, outputLength: Self.checksumLength)
        w.raw(sum)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(SafetyStateError) -> SafetyState {
        guard bytes.count > checksumLength else { throw .corrupt("\(bytes.count) bytes is too short") }
        let body = Array(bytes.dropLast(checksumLength))
        guard Blake2b.hash(body, outputLength: checksumLength) == Array(bytes.suffix(checksumLength)) else {
            throw .corrupt("checksum mismatch (a torn or altered write)")
        }
        var r = ByteReader(body)
        do {
            guard try r.u8() == version else { throw SafetyStateError.corrupt("unknown version") }
            let epoch = try r.u64()
            let last = try r.u64()
            let qc = try QuorumCertificate.decode(&r)
            guard r.remaining == 0 else { throw SafetyStateError.corrupt("trailing bytes") }
            return SafetyState(epoch: epoch, lastVotedRound: last, highQC: qc)
        } catch let e as SafetyStateError {
            throw e
        } catch {
            throw .corrupt("malformed: \(error)")
        }
    }
}

public enum SafetyStateError: Error, Equatable, CustomStringConvertible {
    case corrupt(String)

    public var description: String {
        switch self {
        case .corrupt(let why):
            "consensus safety state is unreadable (\(why)); do not start this validator with an empty state: restore the file or remove the key from the validator set"
        }
    }
}
