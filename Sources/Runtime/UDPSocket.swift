import CLibuv
import MeshCore
#if canImport(Glibc)
import Glibc
#endif

/// One dual-stack UDP socket on IPv6 (IPv4 peers arrive as mapped addresses).
public final class UDPSocket {
    private let handle: UnsafeMutablePointer<uv_udp_t>
    private let receiveBuffer: UnsafeMutableRawBufferPointer
    /// Read for every datagram, on the loop thread only: no dynamic exclusivity checks.
    @exclusivity(unchecked) private var onDatagram: (UnderlayAddress, [UInt8]) -> Void = { _, _ in }
    public private(set) var sendErrors: UInt64 = 0
    public private(set) var receiveErrors: UInt64 = 0
    /// Datagrams asked of the next recvmmsg: one while traffic trickles (a request/answer
    /// exchange finds one datagram waiting, and asking for more costs the kernel another try per
    /// call), doubling up to `batch` while each call fills every slot (a burst of channel frames).
    @exclusivity(unchecked) private var slots = 1
    @exclusivity(unchecked) private var filled = 0
    private var closed = false

    public init(loop: EventLoop) {
        handle = .allocate(capacity: 1)
        // recvmmsg: up to `batch` datagrams per system call (libuv slices the buffer into 64 KiB
        // slots); bulk channel traffic arrives in bursts, and the syscall is most of its cost.
        uv_udp_init_ex(loop.raw, handle, UInt32(AF_INET6) | UInt32(UV_UDP_RECVMMSG.rawValue))
        receiveBuffer = .allocate(byteCount: Self.slotSize * Self.batch, alignment: 16)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Binds to `address`; an unspecified IPv6 address binds dual-stack.
    /// Datagrams read per system call.
    static let batch = 8
    /// libuv gives each datagram of a recvmmsg batch a 64 KiB slot of the buffer.
    static let slotSize = 65536
    /// Kernel socket buffers asked for (Linux caps them at net.core.rmem_max / wmem_max): a
    /// burst of channel frames should wait in the kernel rather than be dropped.
    static let kernelBuffer: Int32 = 4 << 20

    public func bind(_ address: UnderlayAddress) throws {
        defer {
            var size = Self.kernelBuffer
            _ = uv_recv_buffer_size(asHandle(handle), &size)
            size = Self.kernelBuffer
            _ = uv_send_buffer_size(asHandle(handle), &size)
        }
        var sa = Self.sockaddr6(address)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_bind(handle, $0, 0) }
        }
        guard rc == 0 else { throw UVError(code: rc, operation: "binding UDP socket to \(address)") }
    }

    /// The address the socket is bound to (with the port the kernel chose for port 0).
    public var localAddress: UnderlayAddress? {
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_getsockname(handle, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Self.address(from: $0) } }
    }

    public func startReceiving(_ handler: @escaping (UnderlayAddress, [UInt8]) -> Void) throws {
        onDatagram = handler
        let rc = uv_udp_recv_start(handle, { h, _, buf in
            let sock = Unmanaged<UDPSocket>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            sock.filled = 0
            buf!.pointee = uv_buf_init(sock.receiveBuffer.baseAddress!.assumingMemoryBound(to: CChar.self),
                                       UInt32(UDPSocket.slotSize * sock.slots))
        }, { h, nread, buf, addr, _ in
            let sock = Unmanaged<UDPSocket>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            if nread < 0 { sock.receiveErrors += 1; return }
            guard let addr else {
                // The end of one read (libuv's closing call of a recvmmsg batch, or nothing waiting).
                sock.slots = sock.filled >= sock.slots ? min(sock.slots * 2, UDPSocket.batch) : 1
                return
            }
            sock.filled += 1
            guard let from = UDPSocket.address(from: addr) else { return }
            let bytes = Array(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
            sock.onDatagram(from, bytes)
        })
        guard rc == 0 else { throw UVError(code: rc, operation: "uv_udp_recv_start") }
    }

    /// Sends now if the kernel takes it; otherwise queues it with libuv. Failures are counted.
    public func send(_ bytes: [UInt8], to address: UnderlayAddress) {
        guard !closed else { return }
        var sa = Self.sockaddr6(address)
        let rc: Int32 = bytes.withUnsafeBufferPointer { b in
            var buf = uv_buf_init(UnsafeMutablePointer(mutating: UnsafeRawPointer(b.baseAddress!).assumingMemoryBound(to: CChar.self)),
                                  UInt32(b.count))
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_try_send(handle, &buf, 1, $0) }
            }
        }
        if rc >= 0 { return }
        if rc == Int32(UV_EAGAIN.rawValue) { queueSend(bytes, to: &sa); return }
        sendErrors += 1
    }

    private func queueSend(_ bytes: [UInt8], to sa: inout sockaddr_in6) {
        let req = UnsafeMutablePointer<uv_udp_send_t>.allocate(capacity: 1)
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        copy.copyBytes(from: bytes)
        req.pointee.data = copy.baseAddress
        var buf = uv_buf_init(copy.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                uv_udp_send(req, handle, &buf, 1, $0) { req, _ in
                    req!.pointee.data.deallocate()
                    req!.deallocate()
                }
            }
        }
        if rc != 0 {
            sendErrors += 1
            copy.deallocate()
            req.deallocate()
        }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        uv_udp_recv_stop(handle)
        onDatagram = { _, _ in }
        let buffer = receiveBuffer
        closeAndFree(handle)
        buffer.deallocate()
    }

    static func sockaddr6(_ a: UnderlayAddress) -> sockaddr_in6 {
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = a.port.bigEndian
        sa.sin6_scope_id = a.scope
        withUnsafeMutableBytes(of: &sa.sin6_addr) { a.copyIP(to: $0) }
        return sa
    }

    static func address(from sa: UnsafePointer<sockaddr>) -> UnderlayAddress? {
        switch Int32(sa.pointee.sa_family) {
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                let (h, l) = withUnsafeBytes(of: p.pointee.sin6_addr) { b in
                    (UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                     UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
                }
                return UnderlayAddress(high: h, low: l, port: UInt16(bigEndian: p.pointee.sin6_port), scope: p.pointee.sin6_scope_id)
            }
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                let v4 = withUnsafeBytes(of: p.pointee.sin_addr) { Array($0) }
                return UnderlayAddress(ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + v4, port: UInt16(bigEndian: p.pointee.sin_port))
            }
        default:
            return nil
        }
    }
}
