import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client for a node's control socket, for the CLI and tests (never the loop thread).
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Sends one request line and returns the response line.
    public static func request(_ path: String, _ body: [String: String], timeoutSeconds: Int = 5) throws -> Data {
        let fd = try connect(path)
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var line = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        line.append(0x0a)
        let written = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == line.count else { throw Failure(description: "could not write to control socket \(path)") }
        var response = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            response.append(contentsOf: chunk[0..<n])
            if chunk[n - 1] == 0x0a { break }
        }
        guard !response.isEmpty else {
            throw Failure(description: "node at \(path) closed the connection without answering (timed out after \(timeoutSeconds) s?)")
        }
        return response
    }

    public static func isListening(_ path: String) -> Bool {
        guard let fd = try? connect(path) else { return false }
        close(fd)
        return true
    }

    static func connect(_ path: String) throws -> Int32 {
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw Failure(description: "control socket path \(path) is too long")
        }
        let (fd, code) = rawConnect(path)
        guard fd >= 0 else { throw Failure(description: "cannot reach a node on control socket \(path): \(problem(path, errno: code))") }
        return fd
    }

    /// A connected descriptor, or -1 and the errno.
    static func rawConnect(_ path: String) -> (fd: Int32, errno: Int32) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return (-1, errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return (-1, ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes + [0]) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { let code = errno; close(fd); return (-1, code) }
        return (fd, 0)
    }

    /// Why connecting to `path` failed, in words that say what to check.
    static func problem(_ path: String, errno code: Int32, short: Bool = false) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        var st = stat()
        switch code {
        case ENOENT where !dir.isEmpty && stat(dir, &st) != 0:
            return "its directory \(dir) does not exist" + (short ? "" : ", so no node runs with this control path (is the node running? does its config put the socket elsewhere?)")
        case ENOENT:
            return "no such socket" + (short ? "" : "; is `iotaf node run` running with this control path?")
        case ECONNREFUSED:
            return short ? "no node listens there" : "the socket file exists but no node listens on it (left by a node that stopped uncleanly?)"
        case EACCES, EPERM:
            return "permission denied" + (short ? "" : "; run as the node's user (or root)")
        case ENOTSOCK:
            return "the path is not a socket"
        default:
            return "\(String(cString: strerror(code))); is `iotaf node run` running with this control path?"
        }
    }

    /// Whether a node answers at `path`, and if not, why (for `locate`'s report).
    public static func probe(_ path: String) -> String? {
        let (fd, code) = rawConnect(path)
        guard fd >= 0 else { return problem(path, errno: code, short: true) }
        close(fd)
        return nil
    }

    /// Finds a running node's control socket when the CLI got no --control or --config: the
    /// sockets named by the configs in `configDirectory` (the packaged ones), then the user's
    /// node from `iotaf up` (UserDirectories), the packaged default, then the default data
    /// directory's. Returns the first a node listens on, or every place looked at with why it did
    /// not do.
    public static func locate(configDirectory: String = "/etc/iotaf",
                              fallbacks: [String] = [UserDirectories().control, "/run/iotaf/control.sock", "/var/lib/iotaf/control.sock",
                                                     "iotaf-data/control.sock"]) -> Result<String, Failure> {
        var candidates: [(path: String, origin: String)] = []
        let configs = ((try? FileManager.default.contentsOfDirectory(atPath: configDirectory)) ?? []).filter { $0.hasSuffix(".toml") }.sorted()
        for name in configs {
            let file = (configDirectory as NSString).appendingPathComponent(name)
            if let p = ConfigLoader.controlPath(ofConfig: file) { candidates.append((p, "named by \(file)")) }
        }
        for f in fallbacks { candidates.append((f, "default")) }
        var looked: [String] = []
        var seen: Set<String> = []
        for c in candidates where seen.insert(c.path).inserted {
            guard let why = probe(c.path) else { return .success(c.path) }
            looked.append("\(c.path) (\(c.origin)): \(why)")
        }
        return .failure(Failure(description: "found no running node; looked for its control socket at:\n  " + looked.joined(separator: "\n  ")
                        + "\npass --control PATH (the node's [node] control) or --config PATH (its config file)"))
    }
}
