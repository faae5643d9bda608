import Foundation
import MeshCore
import Sodium

/// The identity key file: one line `iotaf-ed25519-seed-v1 <64 hex digits>` after comments,
/// mode 0600. The seed is the only secret a node keeps.
public enum KeyFile {
    static let tag = "iotaf-ed25519-seed-v1"

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
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: " ")
            guard parts.count == 2, parts[0] == tag, let seed = Hex.decode(String(parts[1])), seed.count == 32 else {
                throw RuntimeError("key file \(path) is not an iotaf identity (expected `\(tag) <64 hex digits>`); regenerate it with `iotaf keygen --out \(path) --force`")
            }
            do {
                return try NodeIdentity(seed: seed)
            } catch IdentityError.nonCanonicalKey {
                // Keys made before iotaf refused the negated twin of a key: half of them are it.
                throw RuntimeError("key file \(path) holds a seed whose Ed25519 public key is not canonical (sign bit set); "
                    + "every node refuses such a key, since its negated twin is the same secret's other identity "
                    + "(Docs/noise.md, \"One key, one identity\"). Generate a new identity with `iotaf keygen --out \(path) --force` "
                    + "(the node gets a new node id)")
            }
        }
        throw RuntimeError("key file \(path) is empty; regenerate it with `iotaf keygen --out \(path) --force`")
    }
}
