import Consensus
import Foundation
import MeshCore

/// The genesis file `iotaf network init --validators … --admins …` writes beside the network key
/// (`DIR/genesis`): who validates (consensus's set, in order: index = bitmap bit and rotation
/// slot) and who administers (the ledger's admin keys). Canonical text, one form only
/// (Docs/encoding.md, "Genesis file"):
///
/// ```
/// iotaf-genesis-v1
/// validator <64 lower-case hex digits>      (1…1024 lines, in set order, no key twice)
/// admin <64 lower-case hex digits>          (0 or more lines, no key twice)
/// ```
///
/// Lines end in LF; `#` comment lines and blank lines are skipped when reading (the writer adds
/// none), so the bytes a writer produces for one set are always the same.
public struct GenesisFile: Sendable, Equatable {
    public static let header = "iotaf-genesis-v1"
    public static let fileName = "genesis"

    public var validators: [ValidatorKey]
    public var admins: [[UInt8]]

    public init(validators: [ValidatorKey], admins: [[UInt8]]) {
        self.validators = validators
        self.admins = admins
    }

    /// The consensus genesis (chain id from the validators, Docs/consensus.md).
    public var genesis: Genesis { Genesis(validators: ValidatorSet(validators)!) }

    public var text: String {
        var s = Self.header + "\n"
        for v in validators { s += "validator " + Hex.encode(v.bytes) + "\n" }
        for a in admins { s += "admin " + Hex.encode(a) + "\n" }
        return s
    }

    /// Parses the text form; the error names the line and says what is wrong.
    public static func parse(_ text: String) throws -> GenesisFile {
        var sawHeader = false
        var validators: [ValidatorKey] = []
        var admins: [[UInt8]] = []
        for (k, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            func fail(_ why: String) -> RuntimeError { RuntimeError("genesis line \(k + 1): \(why)") }
            guard sawHeader else {
                guard line == header else { throw fail("expected \"\(header)\" first (a file from `iotaf network init --validators`)") }
                sawHeader = true
                continue
            }
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let bytes = Hex.decode(String(parts[1])), bytes.count == 32 else {
                throw fail("expected \"validator HEX64\" or \"admin HEX64\"")
            }
            switch parts[0] {
            case "validator":
                guard let key = ValidatorKey(bytes) else { throw fail("not a canonical Ed25519 public key (as `iotaf keygen` prints)") }
                guard !validators.contains(key) else { throw fail("validator listed twice") }
                validators.append(key)
            case "admin":
                guard IdentityKey.isCanonical(bytes) else { throw fail("not a canonical Ed25519 public key (as `iotaf keygen` prints)") }
                guard !admins.contains(bytes) else { throw fail("admin listed twice") }
                admins.append(bytes)
            default:
                throw fail("unknown kind \"\(parts[0])\"; expected validator or admin")
            }
        }
        guard sawHeader else { throw RuntimeError("genesis: empty file; expected \"\(header)\" and validator lines") }
        guard !validators.isEmpty, validators.count <= ValidatorSet.maxValidators else {
            throw RuntimeError("genesis: needs 1…\(ValidatorSet.maxValidators) validator lines, has \(validators.count)")
        }
        return GenesisFile(validators: validators, admins: admins)
    }

    public static func read(_ path: String) throws -> GenesisFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuntimeError("cannot read the genesis file \(path); `iotaf network init --out DIR --validators KEY,...` writes DIR/genesis")
        }
        do {
            return try parse(String(decoding: data, as: UTF8.self))
        } catch let e as RuntimeError {
            throw RuntimeError("\(path): \(e)")
        }
    }

    /// Parses a comma-separated list of keys from a flag (`--validators`, `--admins`).
    public static func keys(_ list: String, flag: String) throws -> [[UInt8]] {
        try list.split(separator: ",").map { item in
            let t = item.trimmingCharacters(in: .whitespaces).lowercased()
            guard let b = Hex.decode(t), b.count == 32, IdentityKey.isCanonical(b) else {
                throw RuntimeError("\(flag): \"\(t)\" is not a 64-hex-digit canonical Ed25519 public key (as `iotaf keygen` prints)")
            }
            return b
        }
    }
}

/// `[consensus]`: run this node as a validator.
public struct ConsensusSettings: Sendable, Equatable {
    /// The genesis file; default: `genesis` beside the network key.
    public var genesisPath: String?
    public var roundTimeout: Duration = .seconds(1)

    public init(genesisPath: String? = nil) { self.genesisPath = genesisPath }
}
