import CLibuv
import CSodium
import Dispatch
import Foundation
import Sessions
import Sodium
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The baseline of `goodput_loopback_64MiB`: the least work any encrypted datagram transport
/// must do to move the same bytes over ::1. Two threads, two UDP sockets: the sender seals each
/// 1,200-byte piece of the payload with ChaCha20-Poly1305 (libsodium, IETF; the 16-byte header
/// carrying the 64-bit counter is the associated data and the nonce) straight into a segment of
/// a 52-datagram train, and hands up to 8 trains to the kernel in one `sendmmsg` with UDP GSO;
/// the receiver reads coalesced trains (UDP GRO) up to 8 at a time with `recvmmsg` and opens
/// every datagram. 1,232 bytes on the wire per datagram (header 16, payload 1,200, tag 16), as
/// the node's largest; no acknowledgements, no retransmission, no framing: only a window of
/// datagrams in flight (the receiver's count, shared in memory) so that the receive buffer never
/// overflows. Goodput: payload bytes opened per second, from the first send to the last open.
enum SealedDatagramStream {
    static let datagram = 1232
    static let header = SessionWire.transportHeaderLength
    static let tag = 16
    static let payload = datagram - header - tag
    /// Datagrams per segmented send (under the 64 KiB a UDP send may carry).
    static let segments = 52
    /// Segmented sends per `sendmmsg`, and coalesced reads per `recvmmsg`.
    static let batch = 8
    /// Datagrams in flight at most: about 2.5 MB, under the 4 MiB receive buffer the runtime asks for.
    static let window = 2048

    struct Outcome {
        var bytesPerSecond: Double
        var datagrams: Int
        var lost: Int
        var sendCalls: Int
        var receiveCalls: Int
    }

    final class Shared: Sendable {
        /// Datagrams the receiver opened (or gave up on), read by the sender for its window.
        let settled = Atomic<Int>(0)
        let sendCalls = Atomic<Int>(0)
        let started = Atomic<UInt64>(0)
        let failure = Mutex<String?>(nil)
    }

    static func run(bytes: Int) throws -> Outcome {
        Sodium.ensureInitialised()
        let count = (bytes + payload - 1) / payload
        let key = Sodium.randomBytes(32)
        let receiver = try openSocket(receive: true)
        defer { close(receiver.fd) }
        let shared = Shared()
        let done = DispatchSemaphore(value: 0)
        let port = receiver.port
        let thread = Thread {
            send(count: count, bytes: bytes, key: key, port: port, shared: shared)
            done.signal()
        }
        thread.start()
        let received = receive(fd: receiver.fd, count: count, key: key, shared: shared)
        done.wait()
        if let failure = shared.failure.withLock({ $0 }) { throw BenchError("sealed datagram baseline: \(failure)") }
        let elapsed = Double(received.end - shared.started.load(ordering: .acquiring)) / 1e9
        return Outcome(bytesPerSecond: Double(received.payloadBytes) / elapsed, datagrams: received.opened,
                       lost: count - received.opened, sendCalls: shared.sendCalls.load(ordering: .relaxed),
                       receiveCalls: received.calls)
    }

    /// A UDP socket on ::1 with the runtime's 4 MiB buffers; the receiver's asks for coalesced reads
    /// and times out after 200 ms of silence.
    static func openSocket(receive: Bool) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
        var size: Int32 = 4 << 20
        _ = setsockopt(fd, SOL_SOCKET, receive ? SO_RCVBUF : SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        if receive {
            guard iotaf_udp_enable_gro(fd) != 0 else { close(fd); throw BenchError("the kernel refuses UDP_GRO on this socket") }
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        var sa = loopback(port: 0)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        guard rc == 0 else { close(fd); throw BenchError("bind ::1: errno \(errno)") }
        var bound = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, UInt16(bigEndian: bound.sin6_port))
    }

    static func loopback(port: UInt16) -> sockaddr_in6 {
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sa.sin6_addr) { $0[15] = 1 }
        return sa
    }

    /// Nonce of datagram `counter`: 4 zero bytes, then the counter little-endian (as the sessions' transport).
    @inline(__always)
    static func nonce(_ counter: UInt64, into n: UnsafeMutablePointer<UInt8>) {
        for i in 0..<4 { n[i] = 0 }
        withUnsafeBytes(of: counter.littleEndian) { for i in 0..<8 { n[4 + i] = $0[i] } }
    }

    private static func send(count: Int, bytes: Int, key: [UInt8], port: UInt16, shared: Shared) {
        guard let (fd, _) = try? openSocket(receive: false) else { shared.failure.withLock { $0 = "the sender's socket" }; return }
        defer { close(fd) }
        let source = [UInt8](repeating: 0x5a, count: payload)
        let trains = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * segments * datagram, alignment: 16)
        defer { trains.deallocate() }
        var to = loopback(port: port)
        var buffers = [UnsafeMutableRawPointer?](repeating: nil, count: batch)
        var lengths = [Int](repeating: 0, count: batch)
        var nonceBytes = [UInt8](repeating: 0, count: 12)
        var next = 0
        var calls = 0
        var lastProgress = (settled: 0, at: DispatchTime.now().uptimeNanoseconds)
        shared.started.store(DispatchTime.now().uptimeNanoseconds, ordering: .releasing)
        while next < count {
            // The window: wait for the receiver (a datagram the kernel dropped is given up after 50 ms of no progress).
            let settled = shared.settled.load(ordering: .acquiring)
            let room = window - (next - settled)
            if room < segments {
                let now = DispatchTime.now().uptimeNanoseconds
                if settled != lastProgress.settled { lastProgress = (settled, now) }
                else if now - lastProgress.at > 50_000_000 { shared.failure.withLock { $0 = "the receiver stopped at \(settled) of \(count) datagrams" }; return }
                sched_yield()
                continue
            }
            var messages = 0
            var budget = room
            while messages < batch && next < count && budget >= 1 {
                let inTrain = min(segments, count - next, budget)
                let base = trains.baseAddress! + messages * segments * datagram
                var offset = 0
                for k in 0..<inTrain {
                    let counter = UInt64(next + k)
                    let last = next + k == count - 1
                    let length = last ? bytes - (count - 1) * payload : payload
                    let h = (base + offset).assumingMemoryBound(to: UInt8.self)
                    for i in 0..<header { h[i] = 0 }
                    withUnsafeBytes(of: counter.littleEndian) { for i in 0..<8 { h[8 + i] = $0[i] } }
                    nonceBytes.withUnsafeMutableBufferPointer { nonce(counter, into: $0.baseAddress!) }
                    var sealed: UInt64 = 0
                    _ = crypto_aead_chacha20poly1305_ietf_encrypt(h + header, &sealed, source, UInt64(length), h, UInt64(header), nil, nonceBytes, key)
                    offset += header + Int(sealed)
                }
                buffers[messages] = base
                lengths[messages] = offset
                messages += 1
                next += inTrain
                budget -= inTrain
            }
            var first = 0
            while first < messages {
                let sent = buffers.withUnsafeBufferPointer { b in
                    lengths.withUnsafeBufferPointer { l in
                        iotaf_udp_send_segment_batch(fd, b.baseAddress! + first, l.baseAddress! + first, Int32(messages - first), &to, UInt16(datagram))
                    }
                }
                calls += 1
                if sent < 0 { shared.failure.withLock { $0 = "sendmmsg: errno \(-sent)" }; return }
                first += Int(sent)
            }
        }
        shared.sendCalls.store(calls, ordering: .relaxed)
    }

    private static func receive(fd: Int32, count: Int, key: [UInt8], shared: Shared) -> (opened: Int, payloadBytes: Int, end: UInt64, calls: Int) {
        let slot = 65536
        let space = UnsafeMutableRawBufferPointer.allocate(byteCount: slot * batch, alignment: 16)
        let controls = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(IOTAF_GRO_CONTROL_SPACE) * batch, alignment: 16)
        let headers = UnsafeMutablePointer<iotaf_mmsghdr>.allocate(capacity: batch)
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
        let opened = UnsafeMutablePointer<UInt8>.allocate(capacity: datagram)
        defer { space.deallocate(); controls.deallocate(); headers.deallocate(); vectors.deallocate(); opened.deallocate() }
        var nonceBytes = [UInt8](repeating: 0, count: 12)
        var done = 0, payloadBytes = 0, calls = 0, failed = 0
        var end = DispatchTime.now().uptimeNanoseconds
        while done + failed < count {
            for i in 0..<batch {
                vectors[i] = iovec(iov_base: space.baseAddress! + i * slot, iov_len: slot)
                headers[i] = iotaf_mmsghdr()
                headers[i].msg_hdr.msg_iov = vectors + i
                headers[i].msg_hdr.msg_iovlen = 1
                headers[i].msg_hdr.msg_control = controls.baseAddress! + i * Int(IOTAF_GRO_CONTROL_SPACE)
                headers[i].msg_hdr.msg_controllen = Int(IOTAF_GRO_CONTROL_SPACE)
            }
            // MSG_WAITFORONE: block for the first, then take what else is there.
            let n = Int(iotaf_recvmmsg(fd, headers, UInt32(batch), 0x10000))
            calls += 1
            if n < 0 {
                if errno == EINTR { continue }
                break // 200 ms of silence: the rest was lost
            }
            for i in 0..<n {
                let total = Int(headers[i].msg_len)
                let s = withUnsafeMutablePointer(to: &headers[i].msg_hdr) { Int(iotaf_udp_gro_segment($0)) }
                let segment = s > 0 ? s : total
                var offset = 0
                while offset < total {
                    let length = min(segment, total - offset)
                    let h = (space.baseAddress! + i * slot + offset).assumingMemoryBound(to: UInt8.self)
                    offset += length
                    guard length > header + tag else { failed += 1; continue }
                    var counter: UInt64 = 0
                    withUnsafeMutableBytes(of: &counter) { for k in 0..<8 { $0[k] = h[8 + k] } }
                    nonceBytes.withUnsafeMutableBufferPointer { nonce(UInt64(littleEndian: counter), into: $0.baseAddress!) }
                    var plain: UInt64 = 0
                    if crypto_aead_chacha20poly1305_ietf_decrypt(opened, &plain, nil, h + header, UInt64(length - header), h, UInt64(header), nonceBytes, key) == 0 {
                        done += 1
                        payloadBytes += Int(plain)
                    } else {
                        failed += 1
                    }
                }
            }
            shared.settled.store(done + failed, ordering: .releasing)
            end = DispatchTime.now().uptimeNanoseconds
        }
        if failed > 0 { shared.failure.withLock { $0 = "\(failed) datagrams did not open" } }
        return (done, payloadBytes, end, calls)
    }
}
