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
///
/// Segmentation offload (Linux UDP GSO/GRO, as QUIC stacks use it): between `holdSends()` and
/// `releaseSends()` (the runtime holds them while it carries out one core call, and the socket
/// while it hands on one read), consecutive datagrams to one address with one length (the last
/// may be shorter) are copied into one buffer and given to the kernel with one `sendmsg` and a
/// UDP_SEGMENT control message; the kernel cuts it into the same datagrams (on loopback they
/// travel as one buffer). With UDP_GRO set, the kernel may deliver such a train as one read with
/// the segment size in a control message; the socket cuts it and hands on each datagram as before.
/// A segmented send the kernel refuses (EIO, EINVAL, ENOTSUP...: a device without checksum
/// offload, a route through IPsec) switches segmentation off for this socket (`gsoFallbacks`) and
/// the datagrams go out one by one, so none is lost.
///
/// Two lanes (`Lane`): channel frames (bulk) form the trains above and, when the kernel pushes
/// back, wait in order in `queued`; every other datagram (membership, probes, handshakes) goes out
/// at once, ahead of a held train, and when the kernel pushes back waits in `controlQueued`, which
/// is flushed before any bulk datagram. A probe thus never waits behind a window of frames in this
/// process (Docs/channels.md, "Membership beside a transfer").
public final class UDPSocket {
    /// Which queue a datagram waits in when the kernel will not take it at once.
    public enum Lane: Sendable {
        /// Channel frames: joined into segmented trains, sent in order behind each other.
        case bulk
        /// Everything else: sent at once, and before every waiting bulk datagram.
        case control
    }

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
    /// One control buffer per slot, for the UDP_GRO segment size.
    private let controls: UnsafeMutableRawPointer
    /// Datagrams held for one segmented send: `trainCount` of `trainSegment` bytes each, the last
    /// possibly shorter (`trainClosed` then), all to `trainTarget`.
    private let train: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var trainCount = 0
    @exclusivity(unchecked) private var trainBytes = 0
    @exclusivity(unchecked) private var trainSegment = 0
    @exclusivity(unchecked) private var trainClosed = false
    @exclusivity(unchecked) private var trainTarget = UnderlayAddress(high: 0, low: 0, port: 0)
    @exclusivity(unchecked) private var trainAddress = sockaddr_in6()
    /// Nesting depth of `holdSends`; the train leaves when it drops back to 0.
    @exclusivity(unchecked) private var holds = 0
    /// Segmented sends in use: the kernel knows UDP_SEGMENT and has not refused one.
    public private(set) var segmentationEnabled: Bool
    /// The kernel delivers coalesced reads to this socket (UDP_GRO accepted).
    public let coalescedReceive: Bool
    /// Segmented sends the kernel refused (segmentation then stays off; the datagrams were resent one by one).
    public private(set) var gsoFallbacks: UInt64 = 0
    /// Segmented sends made and the datagrams they carried.
    public private(set) var gsoSends: UInt64 = 0
    public private(set) var gsoDatagrams: UInt64 = 0
    /// Coalesced reads received and the datagrams cut from them.
    public private(set) var groReads: UInt64 = 0
    public private(set) var groDatagrams: UInt64 = 0
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
    /// Bulk datagrams the kernel would not take at once, sent in order when the socket is writable
    /// (after `controlQueued`).
    private var queued: [(bytes: [UInt8], address: sockaddr_in6)] = []
    private var queuedHead = 0
    /// Control datagrams the kernel would not take at once: sent first when the socket is writable.
    private var controlQueued: [(bytes: [UInt8], address: sockaddr_in6)] = []
    private var controlHead = 0
    /// Bulk datagrams that had to wait for the kernel; control datagrams that had to wait; control
    /// datagrams sent or queued while bulk datagrams were waiting (each overtook them).
    public private(set) var bulkWaited: UInt64 = 0
    public private(set) var controlWaited: UInt64 = 0
    public private(set) var controlOvertook: UInt64 = 0
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
    /// The same for control datagrams (a node sends a few per probe period; more means the kernel
    /// has not taken anything for a long while).
    static let controlQueueLimit = 1024
    /// Kernel socket buffers asked for (Linux caps them at net.core.rmem_max / wmem_max): a
    /// burst of channel frames should wait in the kernel rather than be dropped.
    static let kernelBuffer: Int32 = 4 << 20
    /// Datagrams per segmented send at most (the kernel allows 64 before Linux 6.6, 128 since).
    static let maxSegments = 64
    /// Bytes per segmented send at most: an IPv6 payload (65,535 bytes) minus the UDP header and room to spare.
    static let maxTrainBytes = 65_000
    /// Largest datagram sent in a train: the kernel refuses segments that would not fit the route's
    /// MTU unfragmented, and 1,232 (the 1,280-byte IPv6 minimum MTU minus IPv6 and UDP headers) fits
    /// every IPv6 link; the node's datagrams are never larger.
    static let maxSegment = 1232

    /// - Parameter segmentationOffload: false never uses GSO or GRO (tests, and a fallback for kernels that misbehave).
    public init(loop: EventLoop, segmentationOffload: Bool = true) {
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
        controls = .allocate(byteCount: Int(IOTAF_GRO_CONTROL_SPACE) * Self.batch, alignment: 16)
        train = .allocate(byteCount: Self.maxTrainBytes, alignment: 16)
        segmentationEnabled = segmentationOffload && iotaf_udp_gso_supported(descriptor) != 0
        coalescedReceive = segmentationOffload && iotaf_udp_enable_gro(descriptor) != 0
        for i in 0..<Self.batch {
            vectors[i] = iovec(iov_base: receiveBuffer.baseAddress! + i * Self.slotSize, iov_len: Self.slotSize)
            names[i] = sockaddr_storage()
            headers[i] = iotaf_mmsghdr()
            headers[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
            headers[i].msg_hdr.msg_iov = vectors + i
            headers[i].msg_hdr.msg_iovlen = 1
            if coalescedReceive {
                headers[i].msg_hdr.msg_control = controls + i * Int(IOTAF_GRO_CONTROL_SPACE)
            }
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
        controls.deallocate()
        train.deallocate()
    }

    /// The socket's descriptor (for socket options the runtime does not set itself).
    public var descriptor: Int32 { fd }

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
        if backlogged { events |= Int32(UV_WRITABLE.rawValue) }
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
                if coalescedReceive { headers[i].msg_hdr.msg_controllen = Int(IOTAF_GRO_CONTROL_SPACE) }
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
            // Sends made while these datagrams are handed on leave together, after the last one.
            holdSends()
            var delivered = 0
            for i in 0..<n {
                guard receiving && !closed else { break }
                let h = headers[i].msg_hdr
                if h.msg_flags & Int32(MSG_TRUNC) != 0 { receiveErrors += 1; continue }
                let source = UnsafeRawPointer(names + i).assumingMemoryBound(to: sockaddr.self)
                guard let from = Self.address(from: source) else { continue }
                let total = Int(headers[i].msg_len)
                // A coalesced read holds datagrams of `segment` bytes, the last possibly shorter.
                var segment = total
                if coalescedReceive {
                    if h.msg_flags & Int32(MSG_CTRUNC) != 0 { receiveErrors += 1; continue }
                    let s = withUnsafeMutablePointer(to: &headers[i].msg_hdr) { Int(iotaf_udp_gro_segment($0)) }
                    if s > 0 && s < total {
                        segment = s
                        groReads += 1
                        groDatagrams += UInt64((total + s - 1) / s)
                    }
                }
                var offset = 0
                repeat {
                    let count = min(segment, total - offset)
                    // The array the last datagram came in, if nobody kept it and the size matches:
                    // no allocation per datagram in a stream of same-sized frames.
                    var bytes = spare
                    spare = []
                    if bytes.count != count { bytes = [UInt8](unsafeUninitializedCapacity: count) { _, n in n = count } }
                    bytes.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: vectors[i].iov_base! + offset, count: count)) }
                    onDatagram(from, bytes)
                    spare = bytes
                    offset += count
                    delivered += 1
                } while offset < total && receiving && !closed
            }
            releaseSends()
            guard receiving && !closed else { return }
            budget -= max(n, delivered)
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

    /// Datagrams wait for the kernel in either lane.
    private var backlogged: Bool { queuedHead < queued.count || controlHead < controlQueued.count }

    /// Sends now if the kernel takes it (or, for bulk while sends are held, with the train it
    /// joins); otherwise queues it in its lane until the socket is writable. Failures are counted.
    public func send(_ bytes: [UInt8], to address: UnderlayAddress, lane: Lane = .bulk) {
        guard !closed else { return }
        sentSinceRead = true
        if lane == .control {
            sendControl(bytes, to: Self.sockaddr6(address))
            return
        }
        // Datagrams keep their order: while some wait, new ones wait behind them.
        if backlogged {
            sendTrain()
            enqueue(bytes, Self.sockaddr6(address))
            return
        }
        if holds > 0 && segmentationEnabled && bytes.count > 0 && bytes.count <= Self.maxSegment {
            if trainCount > 0 {
                let joins = address == trainTarget && !trainClosed && bytes.count <= trainSegment
                    && trainCount < Self.maxSegments && trainBytes + bytes.count <= Self.maxTrainBytes
                if !joins { sendTrain() }
            }
            if trainCount == 0 {
                trainTarget = address
                trainAddress = Self.sockaddr6(address)
                trainSegment = bytes.count
                trainClosed = false
            }
            bytes.withUnsafeBytes { (train.baseAddress! + trainBytes).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            trainBytes += bytes.count
            trainCount += 1
            if bytes.count < trainSegment { trainClosed = true }
            return
        }
        sendTrain()
        var sa = Self.sockaddr6(address)
        sendOne(bytes, to: &sa)
    }

    /// Holds sends back so that consecutive datagrams can leave in one segmented send; every
    /// call needs a matching `releaseSends`, and the last release sends what is held.
    public func holdSends() { holds += 1 }

    public func releaseSends() {
        holds -= 1
        if holds == 0 { sendTrain() }
    }

    /// A control datagram: at once unless control datagrams already wait (they keep their order),
    /// never behind bulk ones.
    private func sendControl(_ bytes: [UInt8], to address: sockaddr_in6) {
        var sa = address
        let overtaking = queuedHead < queued.count
        if controlHead == controlQueued.count {
            let rc = trySend(bytes, to: &sa)
            if rc >= 0 {
                if overtaking { controlOvertook += 1 }
                return
            }
            guard rc == Int32(UV_EAGAIN.rawValue) || rc == Int32(UV_ENOBUFS.rawValue) else { sendErrors += 1; return }
        }
        guard controlQueued.count - controlHead < Self.controlQueueLimit else { sendErrors += 1; return }
        let wasIdle = !backlogged
        controlQueued.append((bytes, sa))
        controlWaited += 1
        if overtaking { controlOvertook += 1 }
        if wasIdle, watch() != 0 { sendErrors += 1 }
    }

    private func sendOne(_ bytes: [UInt8], to sa: inout sockaddr_in6) {
        guard !backlogged else { enqueue(bytes, sa); return }
        let rc = trySend(bytes, to: &sa)
        if rc >= 0 { return }
        if rc == Int32(UV_EAGAIN.rawValue) || rc == Int32(UV_ENOBUFS.rawValue) { enqueue(bytes, sa); return }
        sendErrors += 1
    }

    /// Sends the held train: one datagram as usual, several with one segmented `sendmsg`.
    private func sendTrain() {
        guard trainCount > 0 else { return }
        let count = trainCount, length = trainBytes
        trainCount = 0
        trainBytes = 0
        // Datagrams waiting for the socket to become writable go first.
        guard !backlogged else {
            forEachInTrain(count: count, length: length) { enqueue($0, trainAddress) }
            return
        }
        if count > 1 && segmentationEnabled {
            let rc = iotaf_udp_send_segments(fd, train.baseAddress!, length, &trainAddress, UInt16(trainSegment))
            if rc >= 0 {
                gsoSends += 1
                gsoDatagrams += UInt64(count)
                return
            }
            let e = Int32(-rc)
            if e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS {
                // The kernel buffer is full: the datagrams wait in the queue like any others.
                forEachInTrain(count: count, length: length) { enqueue($0, trainAddress) }
                return
            }
            if [EIO, EINVAL, EOPNOTSUPP, ENOPROTOOPT, EMSGSIZE, EPROTONOSUPPORT].contains(e) {
                // This path cannot segment (no checksum offload, IPsec, an old kernel): never again on this socket.
                segmentationEnabled = false
                gsoFallbacks += 1
            }
            // Resent one by one: each then succeeds, waits, or is counted as a send error on its own.
        }
        // One by one straight from the train's buffer (a lone datagram, the common case of a
        // request/answer exchange, costs no array); only one that must wait is copied out.
        var offset = 0
        for _ in 0..<count {
            let size = min(trainSegment, length - offset)
            let start = UnsafeRawPointer(train.baseAddress! + offset)
            offset += size
            if backlogged {
                enqueue([UInt8](UnsafeRawBufferPointer(start: start, count: size)), trainAddress)
                continue
            }
            let rc = trySend(start, size, to: &trainAddress)
            if rc >= 0 { continue }
            if rc == Int32(UV_EAGAIN.rawValue) || rc == Int32(UV_ENOBUFS.rawValue) {
                enqueue([UInt8](UnsafeRawBufferPointer(start: start, count: size)), trainAddress)
            } else {
                sendErrors += 1
            }
        }
    }

    /// The held datagrams as arrays, in order.
    private func forEachInTrain(count: Int, length: Int, _ body: ([UInt8]) -> Void) {
        var offset = 0
        for _ in 0..<count {
            let size = min(trainSegment, length - offset)
            body([UInt8](UnsafeRawBufferPointer(start: train.baseAddress! + offset, count: size)))
            offset += size
        }
    }

    private func trySend(_ bytes: [UInt8], to sa: inout sockaddr_in6) -> Int32 {
        bytes.withUnsafeBytes { b in trySend(b.baseAddress ?? UnsafeRawPointer(train.baseAddress!), b.count, to: &sa) }
    }

    private func trySend(_ start: UnsafeRawPointer, _ count: Int, to sa: inout sockaddr_in6) -> Int32 {
        var buf = uv_buf_init(UnsafeMutablePointer(mutating: start.assumingMemoryBound(to: CChar.self)), UInt32(count))
        return withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_try_send(handle, &buf, 1, $0) }
        }
    }

    /// Queues a bulk datagram behind the waiting ones.
    private func enqueue(_ bytes: [UInt8], _ sa: sockaddr_in6) {
        guard queued.count - queuedHead < Self.queueLimit else { sendErrors += 1; return }
        let wasIdle = !backlogged
        queued.append((bytes, sa))
        bulkWaited += 1
        if wasIdle, watch() != 0 { sendErrors += 1 }
    }

    /// Sends queued datagrams, control ones first, each lane in order, until the kernel pushes back again.
    private func flushQueue() {
        while controlHead < controlQueued.count && !closed {
            var sa = controlQueued[controlHead].address
            let rc = trySend(controlQueued[controlHead].bytes, to: &sa)
            if rc == Int32(UV_EAGAIN.rawValue) || rc == Int32(UV_ENOBUFS.rawValue) { return }
            if rc < 0 { sendErrors += 1 }
            controlHead += 1
        }
        controlQueued.removeAll(keepingCapacity: controlQueued.capacity <= 64)
        controlHead = 0
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
        sendTrain()
        closed = true
        receiving = false
        onDatagram = { _, _ in }
        sendErrors += UInt64(queued.count - queuedHead + controlQueued.count - controlHead)
        queued = []
        queuedHead = 0
        controlQueued = []
        controlHead = 0
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
