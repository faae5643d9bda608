import CLibuv
import Foundation
import Logging
import MeshCore
import Node
import Runtime
import Sessions
#if canImport(Glibc)
import Glibc
#endif

/// `iotaf bench loop`: two full node runtimes ping-ponging over ::1 on one libuv loop, beside
/// a minimal ping-pong on the same kind of loop that receives as the runtime does (readiness poll,
/// one `recvmsg`) and carries datagrams as long as ours on the wire.
public enum LoopBench {
    public static func run(roundTrips: Int, trials: Int, progress: ((String) -> Void)?) throws -> BenchResult {
        var ours: [Double] = [], raw: [Double] = []
        for t in 1...max(1, trials) {
            // Alternate, so drift in machine load hits both sides alike.
            raw.append(try RawPingPong.run(roundTrips: roundTrips))
            ours.append(try nodePingPong(roundTrips: roundTrips))
            progress?(String(format: "trial %d/%d: runtime %.0f rt/s, raw libuv %.0f rt/s", t, trials, ours.last!, raw.last!))
        }
        return BenchResult(bench: "loop", results: [
            .init(metric: "round_trips", unit: "round_trips/s", ours: ours.max()!, baseline: raw.max()!, higherIsBetter: true),
        ])
    }

    static func nodePingPong(roundTrips: Int) throws -> Double {
        let loop = try EventLoop()
        var settings = NodeSettings()
        settings.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
        // Gossip rounds far apart, so only the benchmark's pings are on the wire once joined.
        settings.timing.probeInterval = .seconds(3600)
        settings.timing.gossipInterval = .seconds(3600)
        settings.timing.probeTimeout = .seconds(3600)
        var logger = Logger(label: "iotaf.bench")
        logger.logLevel = .error
        let b = try NodeRuntime(settings: settings, identity: .generate(), loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
        var settingsA = settings
        settingsA.peers = [b.boundAddress]
        let a = try NodeRuntime(settings: settingsA, identity: .generate(), loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
        try b.start()
        var done = 0
        var started: UInt64 = 0
        var elapsed: UInt64 = 0
        let target = b.identity.nodeID
        a.onEvent = { event in
            // Joining makes b a member; the first ping's answer starts the clock.
            if case let .memberAdded(id, _) = event, id == target, started == 0 { a.command(.probe(target)); return }
            guard case let .probeAnswered(id, _) = event, id == target else { return }
            if started == 0 { started = uv_hrtime() } else { done += 1 }
            if done < roundTrips {
                a.command(.probe(target))
            } else {
                elapsed = uv_hrtime() - started
                a.stop()
                b.stop()
            }
        }
        // Starting joins through b at once.
        try a.start()
        let deadline = Date().addingTimeInterval(60)
        while elapsed == 0 && Date() < deadline { loop.runOnce() }
        if elapsed == 0 {
            a.stop(); b.stop()
            loop.run()
            throw RuntimeError("the two nodes never completed \(roundTrips) round trips within 60 s")
        }
        loop.run()
        return Double(roundTrips) / (Double(elapsed) / 1e9)
    }
}

/// The physical baseline: two UDP sockets on ::1 bouncing one datagram, received the way the
/// runtime's `UDPSocket` receives (a `uv_poll_t` readiness watcher on the descriptor, then one
/// non-blocking `recvmsg`; libuv's own receive loop would read again until EAGAIN) and sent with
/// `uv_udp_try_send` as the runtime sends. The datagrams are as long as ours on the wire: a ping
/// (60 bytes) or a pong (61) sealed in a Noise transport packet (32 bytes more).
enum RawPingPong {
    /// Wire sizes of the node's ping and pong datagrams.
    static let pingBytes = PingWire.headerLength + SessionWire.transportOverhead
    static let pongBytes = pingBytes + 1

    final class Side {
        let udp: UnsafeMutablePointer<uv_udp_t>
        let poll: UnsafeMutablePointer<uv_poll_t>
        let fd: Int32
        var peer = sockaddr_in6()
        var payload: [UInt8]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        var header = msghdr()
        var vector = iovec()
        var source = sockaddr_storage()
        /// The pinging side counts answers down; the answering side never stops by itself.
        var remaining: Int
        unowned(unsafe) var other: Side?

        init(loop: UnsafeMutablePointer<uv_loop_t>, payload: Int, remaining: Int) throws {
            udp = .allocate(capacity: 1)
            uv_udp_init_ex(loop, udp, UInt32(AF_INET6))
            var descriptor: uv_os_fd_t = -1
            _ = uv_fileno(UnsafeMutableRawPointer(udp).assumingMemoryBound(to: uv_handle_t.self), &descriptor)
            fd = descriptor
            poll = .allocate(capacity: 1)
            uv_poll_init_socket(loop, poll, descriptor)
            self.payload = [UInt8](repeating: 7, count: payload)
            self.remaining = remaining
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: UnderlayAddress.loopbackV6) }
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_bind(udp, $0, 0) } }
            guard rc == 0 else { throw RuntimeError("raw ping-pong cannot bind ::1: \(UVError(code: rc, operation: "uv_udp_bind"))") }
            vector = iovec(iov_base: buffer.baseAddress!, iov_len: buffer.count)
        }

        var bound: sockaddr_in6 {
            var len = Int32(MemoryLayout<sockaddr_in6>.size)
            var sa = sockaddr_in6()
            _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_getsockname(udp, $0, &len) } }
            return sa
        }

        func send() {
            payload.withUnsafeMutableBufferPointer { p in
                var buf = uv_buf_init(UnsafeMutableRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), UInt32(p.count))
                withUnsafePointer(to: &peer) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = uv_udp_try_send(udp, &buf, 1, $0) } }
            }
        }

        /// One readiness: one recvmsg, as `UDPSocket` reads while traffic is request/answer.
        func readable() {
            header.msg_name = withUnsafeMutablePointer(to: &source) { UnsafeMutableRawPointer($0) }
            header.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            header.msg_iov = withUnsafeMutablePointer(to: &vector) { $0 }
            header.msg_iovlen = 1
            header.msg_flags = 0
            let n = recvmsg(fd, &header, Int32(MSG_DONTWAIT))
            guard n > 0 else { return }
            if remaining == Int.max { send(); return }
            remaining -= 1
            if remaining > 0 { send() } else { uv_poll_stop(poll); uv_poll_stop(other!.poll) }
        }

        func close() {
            uv_close(UnsafeMutableRawPointer(poll).assumingMemoryBound(to: uv_handle_t.self), nil)
            uv_close(UnsafeMutableRawPointer(udp).assumingMemoryBound(to: uv_handle_t.self), nil)
        }

        deinit { buffer.deallocate(); udp.deallocate(); poll.deallocate() }
    }

    static func run(roundTrips: Int) throws -> Double {
        let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
        uv_loop_init(loop)
        defer { uv_loop_close(loop); loop.deallocate() }
        let a = try Side(loop: loop, payload: pingBytes, remaining: roundTrips)
        let b = try Side(loop: loop, payload: pongBytes, remaining: .max)
        a.peer = b.bound
        b.peer = a.bound
        a.other = b
        b.other = a
        for side in [a, b] {
            side.poll.pointee.data = Unmanaged.passUnretained(side).toOpaque()
            uv_poll_start(side.poll, Int32(UV_READABLE.rawValue)) { p, status, _ in
                guard status >= 0 else { return }
                Unmanaged<Side>.fromOpaque(p!.pointee.data).takeUnretainedValue().readable()
            }
        }
        let start = uv_hrtime()
        a.send()
        uv_run(loop, UV_RUN_DEFAULT)
        let elapsed = uv_hrtime() - start
        a.close(); b.close()
        uv_run(loop, UV_RUN_DEFAULT)
        guard a.remaining == 0 else { throw RuntimeError("the raw ping-pong stopped after \(roundTrips - a.remaining) of \(roundTrips) round trips") }
        return Double(roundTrips) / (Double(elapsed) / 1e9)
    }
}
