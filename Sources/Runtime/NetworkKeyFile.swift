import Foundation
import MeshCore
import Sodium

/// A private mesh: its id (public, names the mesh) and its 32-byte key (secret: without it no
/// handshake completes). File: comment lines, then `iotaf-network-v1 <32 hex id> <64 hex key>`, mode 0600.
public struct NetworkKey: Sendable, Equatable {
    public let id: NetworkID
    public let key: [UInt8]

    static let tag = "iotaf-network-v1"

    public init(id: NetworkID, key: [UInt8]) {
        precondition(key.count == 32, "a network key is 32 bytes")
        self.id = id
        self.key = key
    }

    public static func generate() -> NetworkKey {
        NetworkKey(id: NetworkID(bytes: Sodium.randomBytes(NetworkID.length))!, key: Sodium.randomBytes(32))
    }

    /// The open default network's key: public, so the default network is not private.
    public static let defaultNetwork = NetworkKey(id: .defaultNetwork, key: Blake2b.hash(Array("iotaf-default-network-key".utf8), outputLength: 32))

    public func write(to path: String, force: Bool) throws {
        if FileManager.default.fileExists(atPath: path) && !force {
            throw RuntimeError("network key file \(path) already exists; refusing to overwrite it (pass --force; every node of the old mesh would be locked out)")
        }
        let text = "# iotaf private mesh. Secret: give it only to nodes of this mesh.\n\(Self.tag) \(id) \(Hex.encode(key))\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw RuntimeError("cannot create network key file \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok else { throw RuntimeError("cannot write network key file \(path): \(String(cString: strerror(errno)))") }
        chmod(path, 0o600)
    }

    public static func read(_ path: String) throws -> NetworkKey {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw RuntimeError("network key file \(path) does not exist; create a mesh with `iotaf network init --out DIR`, or copy the mesh's network.key here")
        }
        if st.st_mode & 0o077 != 0 {
            throw RuntimeError("network key file \(path) is readable by other users; run `chmod 600 \(path)`")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw RuntimeError("cannot read network key file \(path); check its permissions")
        }
        switch KeyLine.find(in: text, tag: tag, fields: [NetworkID.length * 2, 64]) {
        case let .found(fields):
            return NetworkKey(id: NetworkID(hex: fields[0])!, key: Hex.decode(fields[1])!)
        case let .problem(what):
            throw RuntimeError("network key file \(path) (\(data.count) bytes) \(what); expected one line `\(tag) <32 hex id> <64 hex key>`; copy the mesh's network.key again")
        }
    }
}
