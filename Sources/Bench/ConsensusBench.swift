import CLibuv
import CSodium
import Consensus
import Foundation
import Logging
import MeshCore
import Node
import Runtime

/// `iotaf bench consensus`: payloads of 256 bytes committed per second by four validators, each a
/// full `NodeRuntime` (UDP socket on ::1, Noise sessions, the node's reliable stream, the safety
/// state persisted to its SQLite store on the thread pool before every vote), all four on one libuv
/// loop in this process.
///
/// Baseline: the unavoidable signature work of the same run. For every block validator 0
/// committed, each of the four validators verifies the block's proposal signature and each
/// signature of its quorum certificate once, and the leader that formed the certificate verifies
/// each of its votes once: n·(q+1) + q Ed25519 verifications per block (n = 4, q = 3), run with raw
/// libsodium (`crypto_sign_verify_detached`) on the certificate's own signatures and signed bytes.
/// The baseline rate is the run's payloads over the time those verifications take on one core.
///
/// Latency: a second phase submits at half the measured peak rate for a few seconds and reports
/// submit-to-commit (at validator 0) p50 and p99.
public enum ConsensusBench {
    public struct Figures: Sendable {
        public var result: BenchResult
        public var latencyP50: Double
        public var latencyP99: Double
        public var halfRate: Double
        public var blocks: Int
    }

    static let n = 4
    static let payloadSize = 256

    public static func run(payloads: Int, latencySeconds: Double, progress: ((String) -> Void)?) throws -> Figures {
        let loop = try EventLoop()
        let dir = NSTemporaryDirectory() + "iotaf-bench-consensus-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var identities: [NodeIdentity] = []
        while identities.count < n {
            let id = NodeIdentity.generate()
            if ValidatorKey(id.publicKey) != nil { identities.append(id) }
        }
        let genesis = GenesisFile(validators: identities.map { ValidatorKey($0.publicKey)! }, admins: [])
        let genesisPath = dir + "/genesis"
        try Data(genesis.text.utf8).write(to: URL(fileURLWithPath: genesisPath))
        var logger = Logger(label: "iotaf.bench")
        logger.logLevel = .error

        var nodes: [NodeRuntime] = []
        for i in 0..<n {
            var s = NodeSettings()
            s.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
            s.dataDir = dir + "/d\(i)"
            s.consensus = ConsensusSettings(genesisPath: genesisPath)
            if let first = nodes.first { s.peers = [first.boundAddress] }
            nodes.append(try NodeRuntime(settings: s, identity: identities[i], loop: loop, logger: logger, withControlSocket: false, withPeerStore: true))
        }
        // What validator 0 commits: per payload (by its sequence number) when; and the blocks.
        var committedAt: [Int64: UInt64] = [:]
        var committedBlocks: [CommittedBlock] = []
        var submittedAt: [Int64: UInt64] = [:]
        var phaseDone: (() -> Bool)?
        nodes[0].onEvent = { event in
            guard case let .service(id, p) = event, id == ConsensusService.protocolID, case let .committed(b)? = p.as(ConsensusEvent.self) else { return }
            let t = uv_hrtime()
            committedBlocks.append(b)
            for payload in b.payloads where payload.count == payloadSize {
                var seq: Int64 = 0
                for k in 0..<8 { seq = seq << 8 | Int64(payload[k]) }
                committedAt[seq] = t
            }
            if phaseDone?() == true { loop.stop() }
        }
        for node in nodes { try node.start() }
        func runUntil(_ seconds: Double, _ done: @escaping () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            phaseDone = done
            while !done() && Date() < deadline { loop.runOnce() }
            phaseDone = nil
            return done()
        }
        defer {
            for node in nodes { node.stop() }
            loop.run()
        }
        // The mesh forms and the chain moves (empty blocks) before the clock starts.
        guard runUntil(60, { nodes.allSatisfy { ($0.consensus?.status.height ?? 0) >= 3 } }) else {
            throw RuntimeError("the four validators did not commit within 60 s")
        }
        progress?("validators formed; submitting \(payloads) payloads of \(payloadSize) bytes")

        var nextSeq: Int64 = 0
        func submit(to i: Int) {
            var p = [UInt8](repeating: 0xa5, count: payloadSize)
            for k in 0..<8 { p[k] = UInt8(truncatingIfNeeded: nextSeq >> (56 - 8 * Int64(k))) }
            submittedAt[nextSeq] = uv_hrtime()
            nextSeq += 1
            nodes[i].command(.service(ConsensusService.protocolID, ServicePayload(ConsensusRequest.submit(p))))
        }

        // Peak: every payload handed over at once, spread over the validators.
        let blocksBefore = committedBlocks.count
        let start = uv_hrtime()
        for k in 0..<payloads { submit(to: k % n) }
        let target = Int64(payloads)
        guard runUntil(120, { committedAt.count >= target }) else {
            throw RuntimeError("only \(committedAt.count) of \(payloads) payloads committed within 120 s")
        }
        let last = committedAt.values.max()!
        let elapsed = Double(last - start) / 1e9
        let peak = Double(payloads) / elapsed
        let peakBlocks = Array(committedBlocks[blocksBefore...])
        progress?(String(format: "peak: %d payloads in %.3f s (%.0f /s), %d blocks", payloads, elapsed, peak, peakBlocks.count))

        // The baseline on the same bytes.
        let baselineSeconds = try signatureWork(peakBlocks, chainID: genesis.genesis.chainID, keys: identities.map(\.publicKey.bytes))
        let baseline = Double(payloads) / baselineSeconds
        progress?(String(format: "baseline: signature work of those blocks %.4f s (%.0f payloads/s)", baselineSeconds, baseline))

        // Latency at half the peak rate: a batch every 10 ms.
        let perTick = max(1, Int((peak / 2 / 100).rounded()))
        let firstLatencySeq = nextSeq
        let ticks = max(1, Int(latencySeconds * 100))
        var tick = 0
        let box = TimerBox()
        box.timer = LoopTimer(loop: loop) {
            for _ in 0..<perTick { submit(to: Int(nextSeq) % n) }
            tick += 1
            if tick < ticks { box.timer?.schedule(at: loop.now + .milliseconds(10)) }
        }
        box.timer?.schedule(at: loop.now + .milliseconds(10))
        let wanted = Int64(ticks * perTick)
        guard runUntil(latencySeconds + 30, { tick >= ticks && (firstLatencySeq..<(firstLatencySeq + wanted)).allSatisfy { committedAt[$0] != nil } }) else {
            throw RuntimeError("the latency phase did not commit its \(wanted) payloads")
        }
        box.timer?.close()
        var latencies: [Double] = []
        for seq in firstLatencySeq..<(firstLatencySeq + wanted) {
            if let c = committedAt[seq], let s = submittedAt[seq] { latencies.append(Double(c - s) / 1e9) }
        }
        latencies.sort()
        let p50 = latencies[latencies.count / 2]
        let p99 = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        progress?(String(format: "latency at %.0f payloads/s: p50 %.1f ms, p99 %.1f ms", Double(perTick) * 100, p50 * 1e3, p99 * 1e3))
        return Figures(result: BenchResult(bench: "consensus", results: [
            .init(metric: "payloads_committed", unit: "payloads/s", ours: peak, baseline: baseline, higherIsBetter: true),
        ]), latencyP50: p50, latencyP99: p99, halfRate: Double(perTick) * 100, blocks: peakBlocks.count)
    }

    /// Seconds raw libsodium takes to verify, for every block, n·(q+1) + q signatures of its
    /// certificate (each validator: the proposal and every certificate signature; the leader: every vote).
    static func signatureWork(_ blocks: [CommittedBlock], chainID: [UInt8], keys: [[UInt8]]) throws -> Double {
        var jobs: [(sig: [UInt8], msg: [UInt8], key: [UInt8])] = []
        for b in blocks {
            let qc = b.certificate
            let signers = (0..<keys.count).filter { qc.signers.contains($0) }
            let msg = voteDigest(chainID: chainID, epoch: qc.epoch, round: qc.round, block: qc.blockHash)
            let sigs = Array(zip(signers, qc.signatures))
            guard let first = sigs.first else { continue }
            // Each validator: one proposal signature (same size; stood in by a certificate signature) and the certificate.
            for _ in 0..<keys.count {
                jobs.append((first.1, msg, keys[first.0]))
                for (i, s) in sigs { jobs.append((s, msg, keys[i])) }
            }
            for (i, s) in sigs { jobs.append((s, msg, keys[i])) }  // the leader's votes
        }
        let t0 = uv_hrtime()
        var ok = 0
        for j in jobs {
            if crypto_sign_verify_detached(j.sig, j.msg, UInt64(j.msg.count), j.key) == 0 { ok += 1 }
        }
        let seconds = Double(uv_hrtime() - t0) / 1e9
        guard ok == jobs.count else { throw RuntimeError("baseline: \(jobs.count - ok) of \(jobs.count) signatures did not verify") }
        return max(seconds, 1e-9)
    }
}

/// Lets a timer's closure re-arm the timer itself.
private final class TimerBox { var timer: LoopTimer? }
