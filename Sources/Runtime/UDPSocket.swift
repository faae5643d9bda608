import CLibuv
import MeshCore
#if canImport(Glibc)
import Glibc
#endif

/// One dual-stack UDP socket on IPv6 (IPv4 peers arrive as mapped addresses).
///
/// libuv's `uv_udp_t` binds the socket and sends (`uv_udp_try_send`, the same call `bench loop`'s
/// raw baseline makes); receiving goes through a `uv_poll_t` on the same descriptor and the
/// system calls below. libuv's own receive loop reads until the kernel answers EAGAIN, so every
/// readiness costs one system call that returns nothing (half the receive calls of a ping-pong);
/// libuv's epoll registration is level-triggered, so a read that leaves a datagram behind is
/// simply reported again, and a read that comes back short needs no second try.
public final class UDPSocket {
    private let handle: UnsafeMutablePointer<uv_udp_t>
    /// Readiness of `handle`'s descriptor. libuv's UDP watcher is never started (no
    /// `uv_udp_recv_start`, no `uv_udp_send`), so the descriptor has this one watcher.
    private let poll: UnsafeMutablePointer<uv_poll_t>
    private let fd: Int32
    private let receiveBuffer: UnsafeMutableRawBufferPointer
    /// One header, iovec and source address per slot of `receiveBuffer`, set up once.
    private let headers: UnsafeMutablePointer<iotaf_mmsghdr>
    private let vectors: UnsafeMutablePointer<iovec>
    private let names: UnsafeMutablePointer<sockaddr_storage>
    /// Read for every datagram, on the loop thread only: no dynamic exclusivity checks.
    @exclusivity(unchecked) private var onDatagram: (UnderlayAddress, [UInt8]) -> Void = { _, _ in }
    public private(set) var sendErrors: UInt64 = 0
    public private(set) var receiveErrors: UInt64 = 0
    /// Datagrams asked of the next read: one while traffic trickles (plain recvmsg: a
    /// request/answer exchange finds one datagram waiting, and asking for more costs the kernel
    /// another try per call), doubling up to `batch` while each read fills every slot (a burst
    /// of channel frames), back to what the last short read found once the burst is drained.
    @exclusivity(unchecked) private var slots = 1
    /// The last datagram's array, reused for the next one when no one else holds it.
    @exclusivity(unchecked) private var spare: [UInt8] = []
    /// Datagrams the kernel would not take at once, sent in order when the socket is writable.
    private var queued: [(bytes: [UInt8], address: sockaddr_in6)] = []
    private var queuedHead = 0
    /// Whether anything was sent since the last single-datagram read (see `readAvailable`).
    @exclusivity(unchecked) private var sentSinceRead = true
    @exclusivity(unchecked) private var receiving = false
    @exclusivity(unchecked) private var closed = false

    /// Datagrams read per system call at most.
    static let batch = 8
    /// Receive space per datagram: the largest UDP payload fits.
    static let slotSize = 65536
    /// Datagrams read per readiness at most, so the loop's other handles get their turn.
    static let readBudget = 64
    /// Datagrams waiting for the socket to become writable at most; beyond, sends are dropped
    /// and counted (the kernel buffer below is already full).
    static let queueLimit = 4096
    /// Kernel socket buffers asked for (Linux caps them at net.core.rmem_max / wmem_max): a
    /// burst of channel frames should wait in the kernel rather than be dropped.
    static let kernelBuffer: Int32 = 4 << 20

    public init(loop: EventLoop) {
        handle = .allocate(capacity: 1)
        // AF_INET6 makes libuv create the descriptor now, so the poll handle can watch it.
        uv_udp_init_ex(loop.raw, handle, UInt32(AF_INET6))
        var descriptor: uv_os_fd_t = -1
        _ = uv_fileno(asHandle(handle), &descriptor)
        fd = descriptor
        poll = .allocate(capacity: 1)
        let rc = uv_poll_init_socket(loop.raw, poll, descriptor)
        precondition(rc == 0, "uv_poll_init_socket on a new UDP socket failed: \(UVError(code: rc, operation: "uv_poll_init_socket"))")
        receiveBuffer = .allocate(byteCount: Self.slotSize * Self.batch, alignment: 16)
        headers = .allocate(capacity: Self.batch)
        vectors = .allocate(capacity: Self.batch)
        names = .allocate(capacity: Self.batch)
        for i in 0..<Self.batch {
            vectors[i] = iovec(iov_base: receiveBuffer.baseAddress! + i * Self.slotSize, iov_len: Self.slotSize)
            names[i] = sockaddr_storage()
            headers[i] = iotaf_mmsghdr()
            headers[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
            headers[i].msg_hdr.msg_iov = vectors + i
            headers[i].msg_hdr.msg_iovlen = 1
        }
        // Each handle holds the socket until its close callback (`closeAndFree`) releases it.
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        poll.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit {
        receiveBuffer.deallocate()
        headers.deallocate()
        vectors.deallocate()
        names.deallocate()
    }

    /// Binds to `address`; an unspecified IPv6 address binds dual-stack.
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
        guard !closed else { throw RuntimeError("the UDP socket is closed") }
        onDatagram = handler
        receiving = true
        let rc = watch()
        guard rc == 0 else { throw UVError(code: rc, operation: "uv_poll_start") }
    }

    /// (Re)starts the poll for what is wanted now: reading once receiving, writing while datagrams wait.
    private func watch() -> Int32 {
        var events: Int32 = 0
        if receiving { events |= Int32(UV_READABLE.rawValue) }
        if queuedHead < queued.count { events |= Int32(UV_WRITABLE.rawValue) }
        guard events != 0 else { return uv_poll_stop(poll) }
        return uv_poll_start(poll, events) { p, status, events in
            let sock = Unmanaged<UDPSocket>.fromOpaque(p!.pointee.data).takeUnretainedValue()
            if status < 0 { sock.recoverFromError(); return }
            if events & Int32(UV_WRITABLE.rawValue) != 0 { sock.flushQueue() }
            if events & Int32(UV_READABLE.rawValue) != 0 { sock.readAvailable() }
        }
    }

    /// libuv stops a poll whose descriptor reports an error (a pending socket error, e.g. from an
    /// ICMP message): count it, clear it, and watch again, so one error never ends reception.
    private func recoverFromError() {
        receiveErrors += 1
        guard !closed else { return }
        var pending: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &length)
        _ = watch()
    }

    /// Reads what the kernel holds, `slots` datagrams per call (see `slots`), and hands each on.
    private func readAvailable() {
        var budget = Self.readBudget
        while budget > 0 && receiving && !closed {
            let want = min(slots, budget)
            for i in 0..<want {
                headers[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                headers[i].msg_hdr.msg_flags = 0
            }
            let n: Int
            if want == 1 {
                let r = withUnsafeMutablePointer(to: &headers[0].msg_hdr) { recvmsg(fd, $0, Int32(MSG_DONTWAIT)) }
                if r >= 0 { headers[0].msg_len = UInt32(r) }
                n = r < 0 ? -1 : 1
            } else {
                n = Int(iotaf_recvmmsg(fd, headers, UInt32(want), Int32(MSG_DONTWAIT)))
            }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e != EAGAIN && e != EWOULDBLOCK { receiveErrors += 1 }
                slots = 1
                return
            }
            for i in 0..<n {
                guard receiving && !closed else { return }
                let h = headers[i].msg_hdr
                if h.msg_flags & Int32(MSG_TRUNC) != 0 { receiveErrors += 1; continue }
                let source = UnsafeRawPointer(names + i).assumingMemoryBound(to: sockaddr.self)
                guard let from = Self.address(from: source) else { continue }
                let count = Int(headers[i].msg_len)
                // The array the last datagram came in, if nobody kept it and the size matches:
                // no allocation per datagram in a stream of same-sized frames.
                var bytes = spare
                spare = []
                if bytes.count != count { bytes = [UInt8](unsafeUninitializedCapacity: count) { _, n in n = count } }
                bytes.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: vectors[i].iov_base, count: count)) }
                onDatagram(from, bytes)
                spare = bytes
            }
            budget -= n
            if n < want {
                // Drained: the next readiness reads about as many as this one found.
                slots = max(1, n)
                return
            }
            if want == 1 {
                // One asked, one found. Read one at a time while this socket answers between
                // reads (a request/answer exchange: asking for more would mostly find nothing);
                // two reads in a row with nothing sent between them look like a burst arriving.
                if !sentSinceRead { slots = 2 }
                sentSinceRead = false
                // If more waits, the poll reports it again.
                return
            }
            slots = min(slots * 2, Self.batch)
        }
    }

    /// Sends now if the kernel takes it; otherwise queues it until the socket is writable.
    /// Failures are counted.
    public func send(_ bytes: [UInt8], to address: UnderlayAddress) {
        guard !closed else { return }
        sentSinceRead = true
        var sa = Self.sockaddr6(address)
        // Datagrams keep their order: while some wait, new ones wait behind them.
        guard queuedHead == queued.count else { enqueue(bytes, sa); return }
        let rc = trySend(bytes, to: &sa)
        if rc >= 0 { return }
        if rc == Int32(UV_EAGAIN.rawValue) || rc == Int32(UV_ENOBUFS.rawValue) { enqueue(bytes, sa); return }
        sendErrors += 1
    }

    private func trySend(_ bytes: [UInt8], to sa: inout sockaddr_in6) -> Int32 {
        bytes.withUnsafeBufferPointer { b in
            var buf = uv_buf_init(UnsafeMutablePointer(mutating: UnsafeRawPointer(b.baseAddress!).assumingMemoryBound(to: CChar.self)),
                                  UInt32(b.count))
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_try_send(handle, &buf, 1, $0) }
            }
        }
    }

    private func enqueue(_ bytes: [UInt8], _ sa: sockaddr_in6) {
        guard queued.count - queuedHead < Self.queueLimit else { sendErrors += 1; return }
        let wasEmpty = queuedHead == queued.count
        queued.append((bytes, sa))
        if wasEmpty, watch() != 0 { sendErrors += 1 }
    }

    /// Sends queued datagrams in order until the kernel pushes back again.
    private func flushQueue() {
        while queuedHead < queued.count && !closed {
            var sa = queued[queuedHead].address
            let rc = trySend(queued[queuedHead].bytes, to: &sa)
            if rc == Int32(UV_EAGAIN.rawValue) || rc == Int32(UV_ENOBUFS.rawValue) { return }
            if rc < 0 { sendErrors += 1 }
            queuedHead += 1
        }
        queued.removeAll(keepingCapacity: queued.capacity <= 256)
        queuedHead = 0
        if !closed { _ = watch() }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        receiving = false
        onDatagram = { _, _ in }
        sendErrors += UInt64(queued.count - queuedHead)
        queued = []
        queuedHead = 0
        // The poll first: its watcher must be gone before closing the UDP handle closes the descriptor.
        uv_poll_stop(poll)
        closeAndFree(poll)
        closeAndFree(handle)
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
