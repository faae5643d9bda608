import Foundation
import MeshCore
import Sodium

/// A validator's Ed25519 public key: the identity votes are checked against and messages are
/// addressed to, the same key that names the validator's node (`PeerIdentity.publicKey`). Only
/// the canonical key of a pair is one (`PublicKey(_:)` refuses the twin, ``IdentityKey``): a
/// validator cannot be listed, or speak, under its key's negated twin.
public typealias ValidatorKey = PublicKey

/// The validators of one epoch, in genesis order: a validator's index is its bit in signer bitmaps
/// and its slot in leader rotation. With n = 3f+1 a quorum is 2f+1; for other n it is n - f with
/// f = (n-1)/3, so any two quorums share an honest validator.
public struct ValidatorSet: Sendable, Equatable {
    public let keys: [ValidatorKey]
    private let indexByKey: [ValidatorKey: Int]

    /// nil for an empty set, more than `maxValidators` keys, or a key listed twice.
    public init?(_ keys: [ValidatorKey]) {
        guard !keys.isEmpty, keys.count <= ValidatorSet.maxValidators else { return nil }
        var index: [ValidatorKey: Int] = [:]
        for (i, k) in keys.enumerated() {
            guard index[k] == nil else { return nil }
            index[k] = i
        }
        self.keys = keys
        indexByKey = index
    }

    /// Bitmaps are sized by a u16 count; 1,024 keeps a certificate within 70 KiB.
    public static let maxValidators = 1024

    public var count: Int { keys.count }
    public var faultTolerance: Int { (keys.count - 1) / 3 }
    public var quorum: Int { keys.count - faultTolerance }
    public func index(of key: ValidatorKey) -> Int? { indexByKey[key] }

    public static func == (a: ValidatorSet, b: ValidatorSet) -> Bool { a.keys == b.keys }
}

/// The start of a chain: the validator set of epoch 0. Its hash (`chainID`) is mixed into every
/// signed and hashed structure, so a signature from one chain never verifies on another.
public struct Genesis: Sendable, Equatable {
    public let validators: ValidatorSet
    public let chainID: [UInt8]

    public init(validators: ValidatorSet) {
        self.validators = validators
        var w = ByteWriter()
        w.raw(Array("iotaf/consensus/genesis/v1".utf8))
        w.u16(UInt16(validators.count))
        for k in validators.keys { w.raw(k.bytes) }
        chainID = Blake2b.hash(w.bytes, outputLength: 32)
    }

    /// The genesis block's hash: the parent of height 1 and the block the genesis certificate names.
    public var blockHash: BlockHash {
        BlockHash(Blake2b.hash(Array("iotaf/consensus/genesis-block/v1".utf8) + chainID, outputLength: 32))
    }

    /// The certificate every chain starts from: round 0, no signers.
    public var certificate: QuorumCertificate {
        QuorumCertificate(epoch: 0, round: 0, blockHash: blockHash, signers: SignerBitmap(count: validators.count), signatures: [])
    }

    /// Genesis as text, one hex public key a line (what `iotaf network init --validators` would write).
    public var text: String { validators.keys.map { Hex.encode($0.bytes) }.joined(separator: "\n") + "\n" }

    /// Parses `text`: one hex Ed25519 public key a line; blank lines and `#` comments are skipped.
    public static func parse(_ text: String) throws(GenesisError) -> Genesis {
        var keys: [ValidatorKey] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let bytes = Hex.decode(line), let key = ValidatorKey(bytes) else {
                throw .badKey(line: n + 1)
            }
            keys.append(key)
        }
        guard let set = ValidatorSet(keys) else { throw .badSet(count: keys.count) }
        return Genesis(validators: set)
    }
}

public enum GenesisError: Error, Equatable, CustomStringConvertible {
    case badKey(line: Int)
    case badSet(count: Int)

    public var description: String {
        switch self {
        case .badKey(let line): "genesis line \(line): expected a 64-hex-digit canonical Ed25519 public key (as `iotaf keygen` prints)"
        case .badSet(let count): "genesis: \(count) keys; need 1 to \(ValidatorSet.maxValidators) distinct keys"
        }
    }
}

/// BLAKE2b-256 of a block's canonical encoding (Docs/consensus.md, "Encodings").
public struct BlockHash: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String { Hex.encode(bytes.prefix(4)) }
}
