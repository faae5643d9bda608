import Foundation
import MeshCore
import Sodium

/// The identity key file: one line `iotaf-ed25519-seed-v1 <64 hex digits>` after comments,
/// mode 0600. The seed is the only secret a node keeps.
public enum KeyFile {
    static let tag = "iotaf-ed25519-seed-v1"

    /// Creates the directory a key file goes into (mode 0700: it holds secrets), if missing.
    public static func makeDirectory(of path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        guard !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) else { return }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw RuntimeError("cannot create the directory \(dir) for key file \(path): \(DataDirectory.reason(error)); create it yourself (mode 0700) or choose another --out")
        }
    }

    public static func write(_ identity: NodeIdentity, to path: String, force: Bool) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: path) && !force {
            throw RuntimeError("key file \(path) already exists; refusing to overwrite it (pass --force to replace it, and lose the old identity)")
        }
        let text = "# iotaf node identity (Ed25519 seed). Secret: anyone holding it is this node.\n\(tag) \(Hex.encode(identity.seed))\n"
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else {
            throw RuntimeError("cannot create key file \(path): \(String(cString: strerror(errno))); check the directory exists and is writable")
        }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw RuntimeError("cannot write key file \(path): \(String(cString: strerror(errno)))")
        }
        chmod(path, 0o600)
    }

    public static func read(_ path: String) throws -> NodeIdentity {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw RuntimeError("key file \(path) does not exist; create one with `iotaf keygen --out \(path)`")
        }
        if st.st_mode & 0o077 != 0 {
            throw RuntimeError("key file \(path) is readable by other users (mode \(String(st.st_mode & 0o777, radix: 8))); run `chmod 600 \(path)`")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw RuntimeError("cannot read key file \(path); check its permissions")
        }
        let regenerate = "regenerate it with `iotaf keygen --out \(path) --force` (a new identity) or restore it from a backup"
        switch KeyLine.find(in: text, tag: tag, fields: [64]) {
        case let .found(fields):
            do {
                return try NodeIdentity(seed: Hex.decode(fields[0])!)
            } catch IdentityError.nonCanonicalKey {
                // Keys made before iotaf refused the negated twin of a key: half of them are it.
                throw RuntimeError("key file \(path) holds a seed whose Ed25519 public key is not canonical (sign bit set); "
                    + "every node refuses such a key, since its negated twin is the same secret's other identity "
                    + "(Docs/noise.md, \"One key, one identity\"). Generate a new identity with `iotaf keygen --out \(path) --force` "
                    + "(the node gets a new node id)")
            }
        case let .problem(what):
            throw RuntimeError("key file \(path) (\(data.count) bytes) \(what); expected one line `\(tag) <64 hex digits>`; \(regenerate)")
        }
    }
}

/// Finds and checks the one key line of a key file (`TAG field...` after comment lines), saying
/// precisely what is wrong with a file that was cut short, edited or is of another kind.
enum KeyLine {
    enum Outcome: Equatable {
        case found([String])
        case problem(String)
    }

    /// `fields` are the hex lengths expected after the tag.
    static func find(in text: String, tag: String, fields: [Int]) -> Outcome {
        if text.isEmpty { return .problem("is empty") }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let line = lines.first(where: { !$0.isEmpty && !$0.hasPrefix("#") }) else {
            return .problem("holds only comments, no key line: it was probably cut short")
        }
        let parts = line.split(separator: " ").map(String.init)
        guard parts[0] == tag else {
            if tag.hasPrefix(parts[0]) { return .problem("ends inside its tag `\(parts[0])`: it was cut short") }
            if parts[0].hasPrefix("iotaf-") { return .problem("is a `\(parts[0])` file, not `\(tag)`") }
            return .problem("does not start with `\(tag)`: it is not this kind of key file")
        }
        let values = Array(parts.dropFirst())
        if values.count < fields.count { return .problem("has \(values.count) of the \(fields.count) values after `\(tag)`: it was cut short") }
        if values.count > fields.count { return .problem("has \(values.count) values after `\(tag)`, not \(fields.count)") }
        for (i, (value, length)) in zip(values, fields).enumerated() {
            let which = fields.count == 1 ? "its key" : "value \(i + 1)"
            if value.contains(where: { !$0.isHexDigit }) || Hex.decode(value.count % 2 == 0 ? value : value + "0") == nil {
                return .problem("has a character that is not a hex digit in \(which)")
            }
            if value.count < length { return .problem("has \(value.count) of the \(length) hex digits of \(which): it was cut short") }
            if value.count > length { return .problem("has \(value.count) hex digits in \(which), not \(length)") }
        }
        return .found(values)
    }
}
