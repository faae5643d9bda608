import CLibuv
import Channels
import Dispatch
import Foundation
import Logging
import MeshCore
import Node
import Runtime
import Simulator
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `iotaf bench channel`: goodput of a bulk transfer through the whole stack (channels over
/// Noise sessions over UDP on ::1) beside the least work an encrypted datagram transport does
/// (`SealedDatagramStream`: ChaCha20-Poly1305 per datagram, GSO/GRO, sendmmsg/recvmmsg, two
/// threads); and simulated goodput under loss beside the simulated link's bandwidth.
public enum ChannelBench {
    /// Bytes of one loopback transfer.
    public static let loopbackBytes = 64 << 20
    /// Message size of the transfer (as `iotaf send` uses).
    public static let messageBytes = 1 << 20

    /// - Parameter simulate: false leaves out the simulated row (for profiling the loopback alone).
    public static func run(trials: Int, simBytes: Int = 64 << 20, simulate: Bool = true, progress: ((String) -> Void)?) throws -> BenchResult {
        var ours: [Double] = [], raw: [Double] = []
        for t in 1...max(1, trials) {
            let baseline = try SealedDatagramStream.run(bytes: loopbackBytes)
            raw.append(baseline.bytesPerSecond)
            ours.append(try loopbackGoodput(bytes: loopbackBytes, detail: progress))
            progress?(String(format: "trial %d/%d: channels %.1f MB/s, sealed GSO/GRO stream %.1f MB/s (%d datagrams, %d lost, %d sendmmsg, %d recvmmsg)",
                             t, trials, ours.last! / 1e6, raw.last! / 1e6, baseline.datagrams, baseline.lost, baseline.sendCalls, baseline.receiveCalls))
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

    /// State the two node threads of `loopbackGoodput` share: the clock's two ends, the receiver's
    /// address, the outcome, and a flag telling either thread to stop.
    final class LoopbackShared: Sendable {
        let started = Atomic<UInt64>(0)
        let finished = Atomic<UInt64>(0)
        let abort = Atomic<Bool>(false)
        let receiver = Mutex<(address: UnderlayAddress, id: NodeID)?>(nil)
        let failure = Mutex<String?>(nil)
        let receiverDetail = Mutex<String>("")
    }

    /// Two nodes as two real nodes run: each a `NodeRuntime` on its own libuv loop in its own
    /// thread (as the baseline's two threads). Node A sends `bytes` to B as 1 MiB messages; returns
    /// the message bytes delivered at B per second, from the first send to the last delivery.
    static func loopbackGoodput(bytes: Int, detail: ((String) -> Void)? = nil) throws -> Double {
        let shared = LoopbackShared()
        let receiverUp = DispatchSemaphore(value: 0)
        let receiverDone = DispatchSemaphore(value: 0)
        let deadline = Date().addingTimeInterval(120)
        let thread = Thread {
            receiveLoopback(bytes: bytes, shared: shared, deadline: deadline, up: receiverUp)
            receiverDone.signal()
        }
        thread.start()
        receiverUp.wait()
        var joined = false
        func join() {
            shared.abort.store(true, ordering: .releasing)
            if !joined { receiverDone.wait(); joined = true }
        }
        defer { join() }
        guard let (address, target) = shared.receiver.withLock({ $0 }) else {
            throw RuntimeError("loopback receiver did not start: \(shared.failure.withLock { $0 } ?? "?")")
        }

        let loop = try EventLoop()
        var settings = NodeSettings()
        settings.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
        settings.peers = [address]
        let a = try NodeRuntime(settings: settings, identity: .generate(), loop: loop, logger: benchLogger, withControlSocket: false, withPeerStore: false)
        let message = [UInt8](repeating: 0x5a, count: messageBytes)
        var queued = 0
        func fail(_ reason: String) {
            shared.failure.withLock { if $0 == nil { $0 = reason } }
            shared.abort.store(true, ordering: .releasing)
        }
        func fill() {
            while queued < bytes {
                switch a.sendMessage(message, stream: 8, to: target) {
                case .success: queued += message.count
                case .failure(.backpressure): return // `.channelWritable` resumes
                case let .failure(e): fail("\(e)"); return
                }
            }
        }
        a.onEvent = { event in
            switch event {
            // Joining makes b a member; a ping over the new session, answered, starts the clock
            // (gossip, the membership protocol, sends no `.probeAnswered` of its own).
            case let .memberAdded(id, _) where id == target && shared.started.load(ordering: .relaxed) == 0:
                a.command(.probe(target))
            case let .probeAnswered(id, _) where id == target && shared.started.load(ordering: .relaxed) == 0:
                shared.started.store(uv_hrtime(), ordering: .releasing)
                fill()
            case let .channelWritable(id) where id == target: fill()
            case let .messageFailed(_, _, reason): fail("a message failed: \(reason.rawValue)")
            default: break
            }
        }
        try a.start()
        while shared.finished.load(ordering: .acquiring) == 0 && !shared.abort.load(ordering: .acquiring) && Date() < deadline { loop.runOnce() }
        let st = a.core.channels.stats
        let finished = shared.finished.load(ordering: .acquiring)
        join()
        detail?("  sender: \(st.framesOut) frames, \(st.retransmittedChunks) chunks retransmitted, \(st.lossEvents) loss events, \(st.congestionEvents) congestion events, \(st.probeTimeouts) probe timeouts; "
                + shared.receiverDetail.withLock { $0 }
                + "; UDP: sender \(a.status.counters["udp_gso_sends"] ?? 0) segmented sends carrying \(a.status.counters["udp_gso_datagrams"] ?? 0) of \(st.framesOut) frames, GSO fallbacks \(a.status.counters["udp_gso_fallbacks"] ?? 0)")
        a.stop()
        loop.run()
        if let failure = shared.failure.withLock({ $0 }) { throw RuntimeError("loopback transfer failed: \(failure)") }
        guard finished > 0 else { throw RuntimeError("loopback transfer of \(bytes) bytes did not finish within 120 s") }
        return Double(bytes) / (Double(finished - shared.started.load(ordering: .acquiring)) / 1e9)
    }

    static var benchLogger: Logger {
        var logger = Logger(label: "iotaf.bench")
        logger.logLevel = .error
        return logger
    }

    /// Node B of `loopbackGoodput`, on its own thread and loop: publishes its address, then counts
    /// delivered message bytes until all arrived (stamping the end) or the sender gives up.
    static func receiveLoopback(bytes: Int, shared: LoopbackShared, deadline: Date, up: DispatchSemaphore) {
        let loop: EventLoop, b: NodeRuntime
        do {
            loop = try EventLoop()
            var settings = NodeSettings()
            settings.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
            b = try NodeRuntime(settings: settings, identity: .generate(), loop: loop, logger: benchLogger, withControlSocket: false, withPeerStore: false)
            var received = 0
            b.onEvent = { event in
                guard case let .messageReceived(_, _, m) = event else { return }
                received += m.count
                if received >= bytes { shared.finished.store(uv_hrtime(), ordering: .releasing) }
            }
            try b.start()
            shared.receiver.withLock { $0 = (b.boundAddress, b.identity.nodeID) }
        } catch {
            shared.failure.withLock { $0 = "receiver: \(error)" }
            up.signal()
            return
        }
        up.signal()
        while shared.finished.load(ordering: .acquiring) == 0 && !shared.abort.load(ordering: .acquiring) && Date() < deadline { loop.runOnce() }
        let st = b.core.channels.stats
        shared.receiverDetail.withLock {
            $0 = "receiver: \(st.framesOut) frames (ACKs), drops \(st.totalDrops), session drops \(b.core.sessions.counters.totalDrops), socket receive errors \(b.status.counters["receive_errors"] ?? 0), \(b.status.counters["udp_gro_reads"] ?? 0) coalesced reads carrying \(b.status.counters["udp_gro_datagrams"] ?? 0) datagrams"
        }
        b.stop()
        loop.run()
    }
}
