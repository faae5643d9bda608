import CLibuv
import Foundation
import MeshCore

/// `[metrics] listen`: answers `GET /metrics` with the node's Prometheus text, over TCP on the
/// node's own libuv loop (no second event loop or thread: decision 0030 weighs this against
/// Hummingbird). It speaks only what a scraper needs: one request per connection, answered with
/// `Connection: close`; anything else gets a 4xx status line saying why.
public final class MetricsHTTPServer {
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    let loop: EventLoop
    /// The address it listens on (the port the kernel chose when the configured one was 0).
    public private(set) var boundAddress: UnderlayAddress
    /// Builds the response body (the exposition text) at each scrape.
    let render: () -> [UInt8]
    private var open: [ObjectIdentifier: MetricsHTTPConnection] = [:]
    private var closed = false
    /// Scrapes answered, requests refused (bad or unknown), connections turned away (too many open).
    public private(set) var scrapes: UInt64 = 0
    public private(set) var refused: UInt64 = 0
    public private(set) var turnedAway: UInt64 = 0

    /// Longest request head read; a scraper's is a few hundred bytes.
    static let maxRequest = 8 * 1024
    /// A connection that sends no whole request head within this is closed.
    static let requestTimeout: Duration = .seconds(5)
    /// Connections open at once; more are closed at accept (a scraper uses one).
    static let maxConnections = 16

    public init(loop: EventLoop, listen: UnderlayAddress, render: @escaping () -> [UInt8]) throws {
        self.loop = loop
        self.render = render
        boundAddress = listen
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var sa = UDPSocket.sockaddr6(listen)
        var rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(handle, $0, 0) } }
        if rc == 0 {
            rc = uv_listen(asStream(handle), 16) { server, status in
                guard status == 0, let server else { return }
                Unmanaged<MetricsHTTPServer>.fromOpaque(server.pointee.data).takeUnretainedValue().accept()
            }
        }
        if rc != 0 {
            closeAndFree(handle)
            throw RuntimeError("cannot serve metrics on \(listen): \(UVError(code: rc, operation: "listen")); is another program using TCP port \(listen.port)? Choose another [metrics] listen / --metrics-listen")
        }
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(handle, $0, &len) }
        }
        if got == 0, let a = withUnsafePointer(to: &storage, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { UDPSocket.address(from: $0) } }) {
            boundAddress = a
        }
    }

    private func accept() {
        let client = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop.raw, client)
        let connection = MetricsHTTPConnection(server: self, handle: client)
        client.pointee.data = Unmanaged.passRetained(connection).toOpaque()
        guard uv_accept(asStream(handle), asStream(client)) == 0 else { closeAndFree(client); return }
        guard open.count < Self.maxConnections else { turnedAway += 1; closeAndFree(client); return }
        open[ObjectIdentifier(connection)] = connection
        connection.start()
    }

    func finished(_ c: MetricsHTTPConnection) { open[ObjectIdentifier(c)] = nil }

    /// The answer to one request head (everything up to the blank line).
    func respond(to head: [UInt8]) -> [UInt8] {
        let firstLine = head.split(separator: 0x0d, maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        let parts = String(decoding: firstLine, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            refused += 1
            return Self.response(400, "Bad Request", "a request line like GET /metrics HTTP/1.1 was expected\n")
        }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            refused += 1
            return Self.response(405, "Method Not Allowed", "only GET /metrics is served\n", extra: "Allow: GET, HEAD\r\n")
        }
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path == "/metrics" else {
            refused += 1
            return Self.response(404, "Not Found", "the metrics are at /metrics\n")
        }
        scrapes += 1
        let body = render()
        return Self.response(200, "OK", body, contentType: "text/plain; version=0.0.4; charset=utf-8", headOnly: parts[0] == "HEAD")
    }

    static func response(_ code: Int, _ reason: String, _ body: String, extra: String = "") -> [UInt8] {
        response(code, reason, Array(body.utf8), contentType: "text/plain; charset=utf-8", extra: extra)
    }

    static func response(_ code: Int, _ reason: String, _ body: [UInt8], contentType: String, extra: String = "", headOnly: Bool = false) -> [UInt8] {
        let head = "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\(extra)Connection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : body)
    }

    public func close() {
        guard !closed else { return }
        closed = true
        for c in open.values { c.hangUp() }
        open = [:]
        closeAndFree(handle)
    }
}

/// One scraper's connection: reads the request head, writes the answer, closes.
final class MetricsHTTPConnection {
    unowned let server: MetricsHTTPServer
    let handle: UnsafeMutablePointer<uv_tcp_t>
    var buffer: [UInt8] = []
    var done = false
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
    var timer: LoopTimer?

    init(server: MetricsHTTPServer, handle: UnsafeMutablePointer<uv_tcp_t>) {
        self.server = server
        self.handle = handle
    }

    deinit { readBuffer.deallocate() }

    func start() {
        let t = LoopTimer(loop: server.loop) { [unowned self] in
            self.answer(MetricsHTTPServer.response(408, "Request Timeout", "no request within \(MetricsHTTPServer.requestTimeout)\n"))
        }
        t.schedule(at: server.loop.now + MetricsHTTPServer.requestTimeout)
        timer = t
        uv_read_start(asStream(handle), { h, _, buf in
            let c = Unmanaged<MetricsHTTPConnection>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            buf!.pointee = uv_buf_init(c.readBuffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(c.readBuffer.count))
        }, { stream, nread, buf in
            let c = Unmanaged<MetricsHTTPConnection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            if nread < 0 { c.hangUp(); return }
            c.buffer.append(contentsOf: UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
            c.process()
        })
    }

    private func process() {
        guard !done else { return }
        if let end = Self.headEnd(buffer) {
            answer(server.respond(to: Array(buffer[..<end])))
        } else if buffer.count > MetricsHTTPServer.maxRequest {
            answer(MetricsHTTPServer.response(431, "Request Header Fields Too Large", "request head over \(MetricsHTTPServer.maxRequest) bytes\n"))
        }
    }

    /// Where the blank line that ends the request head begins, if it has arrived.
    static func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 0x0d && b[i + 1] == 0x0a && b[i + 2] == 0x0d && b[i + 3] == 0x0a { return i }
        return nil
    }

    private func stopTimer() {
        timer?.close()
        timer = nil
    }

    /// Closes without answering (the client hung up, or the node is stopping).
    func hangUp() {
        guard !done else { return }
        done = true
        stopTimer()
        server.finished(self)
        closeAndFree(handle)
    }

    private func answer(_ bytes: [UInt8]) {
        guard !done else { return }
        done = true
        stopTimer()
        server.finished(self)
        uv_read_stop(asStream(handle))
        let req = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
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
