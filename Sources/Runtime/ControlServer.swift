import CLibuv
import Foundation

/// The node's local control socket: a Unix domain socket that takes one JSON request per line
/// and answers one JSON line. The CLI (`iotaf status`, `iotaf members`) talks to it.
/// A request may be answered later (a query collects answers for its timeout): the loop goes on
/// meanwhile, and a client that hung up by then gets nothing.
public final class ControlServer {
    /// Hands the response line to the client; call it once, on the loop thread.
    public typealias Reply = ([UInt8]) -> Void
    private let handle: UnsafeMutablePointer<uv_pipe_t>
    private let loop: EventLoop
    public let path: String
    var respond: ([UInt8], @escaping Reply) -> Void
    private var closed = false

    /// Longest request accepted; anything longer is answered with an error and closed.
    static let maxRequest = 64 * 1024

    /// Answers every request at once.
    public convenience init(loop: EventLoop, path: String, respond: @escaping ([UInt8]) -> [UInt8]) throws {
        try self.init(loop: loop, path: path, respondLater: { request, reply in reply(respond(request)) })
    }

    public init(loop: EventLoop, path: String, respondLater: @escaping ([UInt8], @escaping Reply) -> Void) throws {
        self.loop = loop
        self.path = path
        self.respond = respondLater
        guard path.utf8.count < 104 else {
            throw RuntimeError("control socket path \(path) is \(path.utf8.count) bytes; Unix sockets allow 103 — choose a shorter --control path")
        }
        try Self.checkDirectory(of: path)
        try Self.removeStaleSocket(path)
        handle = .allocate(capacity: 1)
        uv_pipe_init(loop.raw, handle, 0)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var rc = uv_pipe_bind(handle, path)
        if rc == 0 {
            rc = uv_listen(asStream(handle), 16) { server, status in
                guard status == 0, let server else { return }
                Unmanaged<ControlServer>.fromOpaque(server.pointee.data).takeUnretainedValue().accept()
            }
        }
        if rc != 0 {
            closeAndFree(handle)
            throw RuntimeError("cannot open control socket \(path): \(UVError(code: rc, operation: "listen")); check the directory exists and is writable")
        }
        chmod(path, 0o600)
    }

    /// The socket's directory must exist and be writable: say which, rather than bind's errno.
    static func checkDirectory(of path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        guard !dir.isEmpty else { return }
        var st = stat()
        guard stat(dir, &st) == 0 else {
            throw RuntimeError("cannot open control socket \(path): its directory \(dir) does not exist; create it (a systemd unit: RuntimeDirectory=iotaf for /run/iotaf) or choose another --control / [node] control path")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw RuntimeError("cannot open control socket \(path): \(dir) is not a directory; choose another --control / [node] control path")
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            throw RuntimeError("cannot open control socket \(path): its directory \(dir) is not writable by this user (uid \(getuid())); fix its owner or mode, or choose another --control path")
        }
    }

    /// A socket file left by a node that crashed is removed; a live one is refused.
    static func removeStaleSocket(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw RuntimeError("control path \(path) exists and is not a socket; remove it or choose another --control path")
        }
        if ControlClient.isListening(path) {
            throw RuntimeError("another node is already running on control socket \(path); stop it or choose another --control path")
        }
        unlink(path)
    }

    private func accept() {
        let client = UnsafeMutablePointer<uv_pipe_t>.allocate(capacity: 1)
        uv_pipe_init(loop.raw, client, 0)
        let connection = ControlConnection(server: self, handle: client)
        client.pointee.data = Unmanaged.passRetained(connection).toOpaque()
        guard uv_accept(asStream(handle), asStream(client)) == 0 else { closeAndFree(client); return }
        connection.startReading()
    }

    public func close() {
        guard !closed else { return }
        closed = true
        respond = { _, reply in reply(Array(#"{"error":"node is stopping"}"#.utf8)) }
        closeAndFree(handle)
        unlink(path)
    }
}

/// One accepted client: reads a line, answers it (maybe later), closes.
final class ControlConnection {
    let server: ControlServer
    let handle: UnsafeMutablePointer<uv_pipe_t>
    var buffer: [UInt8] = []
    var answered = false
    /// The handle is closed (client hung up, or the answer was written): a late answer is dropped.
    var closed = false
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)

    init(server: ControlServer, handle: UnsafeMutablePointer<uv_pipe_t>) {
        self.server = server
        self.handle = handle
    }

    deinit { readBuffer.deallocate() }

    func startReading() {
        uv_read_start(asStream(handle), { h, _, buf in
            let c = Unmanaged<ControlConnection>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            buf!.pointee = uv_buf_init(c.readBuffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(c.readBuffer.count))
        }, { stream, nread, buf in
            let c = Unmanaged<ControlConnection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            if nread < 0 { c.closed = true; closeAndFree(c.handle); return }
            c.buffer.append(contentsOf: UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
            c.process()
        })
    }

    private func process() {
        guard !answered else { return }
        if let newline = buffer.firstIndex(of: 0x0a) {
            answered = true
            server.respond(Array(buffer[..<newline])) { [self] response in write(response) }
        } else if buffer.count > ControlServer.maxRequest {
            answered = true
            write(Array(#"{"error":"request too long"}"#.utf8))
        }
    }

    private func write(_ response: [UInt8]) {
        guard !closed else { return }
        closed = true
        uv_read_stop(asStream(handle))
        let bytes = response + [0x0a]
        let req = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        copy.copyBytes(from: bytes)
        req.pointee.data = copy.baseAddress
        var buf = uv_buf_init(copy.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(req, asStream(handle), &buf, 1) { req, _ in
            let stream = req!.pointee.handle!
            req!.pointee.data.deallocate()
            req!.deallocate()
            closeAndFree(stream)
        }
        if rc != 0 {
            copy.deallocate()
            req.deallocate()
            closeAndFree(handle)
        }
    }
}

public struct RuntimeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
