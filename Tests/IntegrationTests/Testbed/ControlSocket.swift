import Foundation
import Glibc

/// A raw client of a node's control socket (one JSON line out, one back), for the test bed's
/// checkers and the control-socket hardening tests. It sends exactly what `iotaf members --json`
/// and `iotaf status --json` send and returns the bytes they print, without starting a process
/// per poll (a dozen hosts polled every 300 ms would otherwise load the 2-core machine).
enum ControlSocket {
    enum Outcome: Equatable {
        /// The node answered (the line, without its newline) and closed.
        case answered(String)
        /// The node closed the connection without a line.
        case closed
        /// Nothing within the bound.
        case timedOut
        /// connect(2) failed with this errno.
        case refused(Int32)
    }

    /// Connects to `path`; returns the descriptor or a negative errno.
    static func connect(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -errno }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return -ENAMETOOLONG }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 { let e = errno; close(fd); return -e }
        return fd
    }

    /// Sends `request` (bytes as given; add the newline yourself) and waits up to `seconds` for
    /// the answer or the close.
    static func exchange(_ path: String, _ request: [UInt8], within seconds: Double = 5) -> Outcome {
        let fd = connect(path)
        guard fd >= 0 else { return .refused(-fd) }
        defer { close(fd) }
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the node may close on a huge request before taking it all
            sent += n
        }
        return read(fd, within: seconds)
    }

    /// Reads from `fd` until a newline, EOF or `seconds` pass.
    static func read(_ fd: Int32, within seconds: Double) -> Outcome {
        let deadline = Date().addingTimeInterval(seconds)
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return .timedOut }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(max(1, left * 1000)))
            if ready == 0 { continue }
            if ready < 0 { if errno == EINTR { continue }; return .closed }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 {
                return got.isEmpty ? .closed : .answered(String(decoding: got, as: UTF8.self))
            }
            got += buf[..<n]
            if let nl = got.firstIndex(of: 0x0a) { return .answered(String(decoding: got[..<nl], as: UTF8.self)) }
        }
    }

    /// `{"command":NAME}` answered as parsed JSON, or nil.
    static func json(_ path: String, _ command: String, within seconds: Double = 5) -> Any? {
        guard case .answered(let line) = exchange(path, Array("{\"command\":\"\(command)\"}\n".utf8), within: seconds) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(line.utf8))
    }
}
