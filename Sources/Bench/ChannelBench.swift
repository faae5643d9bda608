import CLibuv
import Channels
import Foundation
import Logging
import MeshCore
import Node
import Runtime
import Simulator
#if canImport(Glibc)
import Glibc
#endif

/// `iotaf bench channel`: goodput of a bulk transfer through the whole stack (channels over
/// Noise sessions over UDP on ::1) beside raw libuv datagrams of the same size on the same kind
/// of loop; and simulated goodput under loss beside the simulated link's bandwidth.
public enum ChannelBench {
    /// Bytes of one loopback transfer.
    public static let loopbackBytes = 64 << 20
    /// Message size of the transfer (as `iotaf send` uses).
    public static let messageBytes = 1 << 20

    /// - Parameter simulate: false leaves out the simulated row (for profiling the loopback alone).
    public static func run(trials: Int, simBytes: Int = 64 << 20, simulate: Bool = true, progress: ((String) -> Void)?) throws -> BenchResult {
        var ours: [Double] = [], raw: [Double] = []
        for t in 1...max(1, trials) {
            raw.append(try RawDatagramStream.run(bytes: loopbackBytes, datagram: PingWire.maxDatagram))
            ours.append(try loopbackGoodput(bytes: loopbackBytes, detail: progress))
            progress?(String(format: "trial %d/%d: channels %.1f MB/s, raw libuv %.1f MB/s", t, trials, ours.last! / 1e6, raw.last! / 1e6))
        }
        let loopback = BenchResult.Row(metric: "goodput_loopback_64MiB", unit: "MB/s", ours: ours.max()! / 1e6, baseline: raw.max()! / 1e6, higherIsBetter: true)
        guard simulate else { return BenchResult(bench: "channel", results: [loopback]) }
        // Simulated links, each transfer through two whole node cores (Noise sessions, channels,
        // gossip) that serialise every wire byte (session and channel headers, ACKs, gossip) at the
        // link rate: 0 % and 1 % loss against the link, 10 % against the link less the lost share.
        let bandwidth = 10e6
        var rows = [loopback]
        let links: [(metric: String, loss: Double, capacity: Double)] = [
            ("goodput_sim_loss0pct", 0, bandwidth), ("goodput_sim_loss1pct", 0.01, bandwidth), ("goodput_sim_loss10pct", 0.1, 0.9 * bandwidth),
        ]
        for (metric, loss, capacity) in links {
            let r = NodeLinkGoodput.run(bytes: simBytes, loss: loss, rtt: .milliseconds(50), linkBytesPerSecond: bandwidth, seed: 1)
            guard r.completed else { throw RuntimeError("the simulated transfer at \(loss * 100) % loss did not complete") }
            progress?(String(format: "simulated nodes, %.0f%% loss each way, 50 ms RTT, 10 MB/s link: %.2f MB/s in %.1f virtual s, %llu chunks retransmitted, %llu probe timeouts, %d suspicions",
                             loss * 100, r.goodputBytesPerSecond / 1e6, r.seconds, r.sender.retransmittedChunks, r.sender.probeTimeouts, r.suspicions))
            rows.append(.init(metric: metric, unit: "MB/s", ours: r.goodputBytesPerSecond / 1e6, baseline: capacity / 1e6, higherIsBetter: true))
        }
        return BenchResult(bench: "channel", results: rows)
    }

    /// Two node runtimes on one loop: node A sends `bytes` to B as 1 MiB messages; returns the
    /// message bytes delivered at B per second, from the first send to the last delivery.
    static func loopbackGoodput(bytes: Int, detail: ((String) -> Void)? = nil) throws -> Double {
        let loop = try EventLoop()
        var settings = NodeSettings()
        settings.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
        var logger = Logger(label: "iotaf.bench")
        logger.logLevel = .error
        let b = try NodeRuntime(settings: settings, identity: .generate(), loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
        var settingsA = settings
        settingsA.peers = [b.boundAddress]
        let a = try NodeRuntime(settings: settingsA, identity: .generate(), loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
        let target = b.identity.nodeID
        let message = [UInt8](repeating: 0x5a, count: messageBytes)
        var queued = 0, received = 0
        var started: UInt64 = 0, elapsed: UInt64 = 0
        var failure: String?

        func fill() {
            while queued < bytes {
                switch a.sendMessage(message, stream: 8, to: target) {
                case .success: queued += message.count
                case .failure(.backpressure): return // `.channelWritable` resumes
                case let .failure(e): failure = "\(e)"; return
                }
            }
        }
        a.onEvent = { event in
            switch event {
            // Joining makes b a member; a ping over the new session, answered, starts the clock
            // (gossip, the membership protocol, sends no `.probeAnswered` of its own).
            case let .memberAdded(id, _) where id == target && started == 0:
                a.command(.probe(target))
            case let .probeAnswered(id, _) where id == target && started == 0:
                started = uv_hrtime()
                fill()
            case let .channelWritable(id) where id == target: fill()
            case let .messageFailed(_, _, reason): failure = "a message failed: \(reason.rawValue)"
            default: break
            }
        }
        b.onEvent = { event in
            guard case let .messageReceived(_, _, m) = event else { return }
            received += m.count
            if received >= bytes { elapsed = uv_hrtime() - started }
        }
        try b.start()
        try a.start()
        let deadline = Date().addingTimeInterval(120)
        while elapsed == 0 && failure == nil && Date() < deadline { loop.runOnce() }
        let st = a.core.channels.stats
        detail?("  sender: \(st.framesOut) frames, \(st.retransmittedChunks) chunks retransmitted, \(st.lossEvents) loss events, \(st.congestionEvents) congestion events, \(st.probeTimeouts) probe timeouts; receiver: \(b.core.channels.stats.framesOut) frames (ACKs), drops \(b.core.channels.stats.totalDrops), session drops \(b.core.sessions.counters.totalDrops), socket receive errors \(b.status.counters["receive_errors"] ?? 0)"
                + "; UDP: sender \(a.status.counters["udp_gso_sends"] ?? 0) segmented sends carrying \(a.status.counters["udp_gso_datagrams"] ?? 0) of \(st.framesOut) frames, receiver \(b.status.counters["udp_gro_reads"] ?? 0) coalesced reads carrying \(b.status.counters["udp_gro_datagrams"] ?? 0) datagrams, GSO fallbacks \((a.status.counters["udp_gso_fallbacks"] ?? 0) + (b.status.counters["udp_gso_fallbacks"] ?? 0))")
        a.stop(); b.stop()
        loop.run()
        if let failure { throw RuntimeError("loopback transfer failed: \(failure)") }
        guard elapsed > 0 else { throw RuntimeError("loopback transfer of \(bytes) bytes did not finish within 120 s (\(received) received)") }
        return Double(bytes) / (Double(elapsed) / 1e9)
    }
}

/// The physical baseline: one libuv loop, two UDP sockets on ::1 with the runtime's 4 MiB kernel
/// buffers, received with libuv's own recvmmsg in batches of 8; one pushes datagrams of the
/// given size with `uv_udp_try_send` as fast as the other receives them (at most `window` in
/// flight, so the receive buffer does not overflow), no channels, no crypto.
enum RawDatagramStream {
    final class State {
        let target: Int
        /// Datagrams received or still in flight (a lost one is forgotten after a silence).
        var sent = 0
        var received = 0
        var receivedBytes = 0
        var lastReceive: UInt64 = 0
        var payload: [UInt8]
        let a: UnsafeMutablePointer<uv_udp_t>
        let b: UnsafeMutablePointer<uv_udp_t>
        let check: UnsafeMutablePointer<uv_idle_t>
        var addrB = sockaddr_in6()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536 * 8, alignment: 16)
        static let window = 256

        init(target: Int, payload: [UInt8], a: UnsafeMutablePointer<uv_udp_t>, b: UnsafeMutablePointer<uv_udp_t>, check: UnsafeMutablePointer<uv_idle_t>) {
            self.target = target; self.payload = payload; self.a = a; self.b = b; self.check = check
        }

        func push() {
            let now = uv_hrtime()
            // A datagram the kernel dropped never arrives: after 20 ms of silence, stop waiting for it.
            if sent - received >= Self.window && now - lastReceive > 20_000_000 { sent = received }
            while sent - received < Self.window && sent < target {
                let rc: Int32 = payload.withUnsafeMutableBufferPointer { p in
                    var buf = uv_buf_init(UnsafeMutableRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), UInt32(p.count))
                    return withUnsafePointer(to: &addrB) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_try_send(a, &buf, 1, $0) } }
                }
                if rc < 0 { return }
                sent += 1
            }
        }
    }

    static func run(bytes: Int, datagram: Int) throws -> Double {
        let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
        uv_loop_init(loop)
        let a = UnsafeMutablePointer<uv_udp_t>.allocate(capacity: 1)
        let b = UnsafeMutablePointer<uv_udp_t>.allocate(capacity: 1)
        let idle = UnsafeMutablePointer<uv_idle_t>.allocate(capacity: 1)
        uv_udp_init_ex(loop, a, UInt32(AF_INET6) | UInt32(UV_UDP_RECVMMSG.rawValue))
        uv_udp_init_ex(loop, b, UInt32(AF_INET6) | UInt32(UV_UDP_RECVMMSG.rawValue))
        uv_idle_init(loop, idle)
        let count = (bytes + datagram - 1) / datagram
        let state = State(target: count, payload: [UInt8](repeating: 7, count: datagram), a: a, b: b, check: idle)
        for h in [a, b] {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: UnderlayAddress.loopbackV6) }
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_bind(h, $0, 0) } }
            guard rc == 0 else { throw RuntimeError("raw datagram stream cannot bind ::1: \(UVError(code: rc, operation: "uv_udp_bind"))") }
            h.pointee.data = Unmanaged.passUnretained(state).toOpaque()
            for f in [uv_recv_buffer_size, uv_send_buffer_size] {
                var size: Int32 = 4 << 20
                _ = f(asHandlePointer(h), &size)
            }
        }
        var len = Int32(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &state.addrB) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_getsockname(b, $0, &len) } }
        idle.pointee.data = Unmanaged.passUnretained(state).toOpaque()
        uv_udp_recv_start(b, { h, _, buf in
            let s = Unmanaged<State>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            buf!.pointee = uv_buf_init(s.buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(s.buffer.count))
        }) { h, n, _, _, _ in
            guard n > 0 else { return }
            let s = Unmanaged<State>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            s.received += 1
            s.receivedBytes += n
            s.lastReceive = uv_hrtime()
            if s.received >= s.target {
                uv_udp_recv_stop(s.b)
                uv_idle_stop(s.check)
            } else {
                s.push()
            }
        }
        uv_idle_start(idle) { h in
            Unmanaged<State>.fromOpaque(h!.pointee.data).takeUnretainedValue().push()
        }
        let start = uv_hrtime()
        state.lastReceive = start
        uv_run(loop, UV_RUN_DEFAULT)
        let elapsed = uv_hrtime() - start
        for h in [asHandlePointer(a), asHandlePointer(b), asHandlePointer(idle)] { uv_close(h, nil) }
        uv_run(loop, UV_RUN_DEFAULT)
        uv_loop_close(loop)
        let delivered = state.receivedBytes
        a.deallocate(); b.deallocate(); idle.deallocate(); loop.deallocate(); state.buffer.deallocate()
        return Double(delivered) / (Double(elapsed) / 1e9)
    }

    private static func asHandlePointer<H>(_ p: UnsafeMutablePointer<H>) -> UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)
    }
}
