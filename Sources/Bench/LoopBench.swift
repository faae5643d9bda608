import CLibuv
import Foundation
import Logging
import MeshCore
import Node
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `iotaf bench loop`: two full node runtimes ping-ponging over ::1 on one libuv loop, beside
/// a minimal ping-pong written straight against libuv with datagrams of the same size.
public enum LoopBench {
    public static func run(roundTrips: Int, trials: Int, progress: ((String) -> Void)?) throws -> BenchResult {
        var ours: [Double] = [], raw: [Double] = []
        for t in 1...max(1, trials) {
            // Alternate, so drift in machine load hits both sides alike.
            raw.append(try RawPingPong.run(roundTrips: roundTrips, payload: PingWire.headerLength))
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

/// The physical baseline: two raw libuv UDP sockets on ::1 bouncing one datagram.
enum RawPingPong {
    final class State {
        var remaining: Int
        var payload: [UInt8]
        var a: UnsafeMutablePointer<uv_udp_t>
        var b: UnsafeMutablePointer<uv_udp_t>
        var addrA = sockaddr_in6()
        var addrB = sockaddr_in6()
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        init(remaining: Int, payload: [UInt8], a: UnsafeMutablePointer<uv_udp_t>, b: UnsafeMutablePointer<uv_udp_t>) {
            self.remaining = remaining
            self.payload = payload
            self.a = a
            self.b = b
        }
        func send(from h: UnsafeMutablePointer<uv_udp_t>, to addr: inout sockaddr_in6) {
            payload.withUnsafeMutableBufferPointer { p in
                var buf = uv_buf_init(UnsafeMutableRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), UInt32(p.count))
                withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = uv_udp_try_send(h, &buf, 1, $0) } }
            }
        }
    }

    static func run(roundTrips: Int, payload: Int) throws -> Double {
        let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
        uv_loop_init(loop)
        let a = UnsafeMutablePointer<uv_udp_t>.allocate(capacity: 1)
        let b = UnsafeMutablePointer<uv_udp_t>.allocate(capacity: 1)
        uv_udp_init(loop, a)
        uv_udp_init(loop, b)
        let state = State(remaining: roundTrips, payload: [UInt8](repeating: 7, count: payload), a: a, b: b)
        for (h, keyPath) in [(a, \State.addrA), (b, \State.addrB)] {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: UnderlayAddress.loopbackV6) }
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_bind(h, $0, 0) } }
            guard rc == 0 else { throw RuntimeError("raw ping-pong cannot bind ::1: \(UVError(code: rc, operation: "uv_udp_bind"))") }
            var len = Int32(MemoryLayout<sockaddr_in6>.size)
            var bound = sockaddr_in6()
            _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_getsockname(h, $0, &len) } }
            state[keyPath: keyPath] = bound
            h.pointee.data = Unmanaged.passUnretained(state).toOpaque()
        }
        let alloc: uv_alloc_cb = { h, _, buf in
            let s = Unmanaged<State>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            buf!.pointee = uv_buf_init(s.buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(s.buffer.count))
        }
        uv_udp_recv_start(b, alloc) { h, n, _, _, _ in
            guard n > 0 else { return }
            let s = Unmanaged<State>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            s.send(from: s.b, to: &s.addrA)
        }
        uv_udp_recv_start(a, alloc) { h, n, _, _, _ in
            guard n > 0 else { return }
            let s = Unmanaged<State>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            s.remaining -= 1
            if s.remaining > 0 {
                s.send(from: s.a, to: &s.addrB)
            } else {
                uv_udp_recv_stop(s.a)
                uv_udp_recv_stop(s.b)
            }
        }
        let start = uv_hrtime()
        state.send(from: a, to: &state.addrB)
        uv_run(loop, UV_RUN_DEFAULT)
        let elapsed = uv_hrtime() - start
        uv_close(UnsafeMutableRawPointer(a).assumingMemoryBound(to: uv_handle_t.self), nil)
        uv_close(UnsafeMutableRawPointer(b).assumingMemoryBound(to: uv_handle_t.self), nil)
        uv_run(loop, UV_RUN_DEFAULT)
        uv_loop_close(loop)
        a.deallocate(); b.deallocate(); loop.deallocate(); state.buffer.deallocate()
        return Double(roundTrips) / (Double(elapsed) / 1e9)
    }
}
