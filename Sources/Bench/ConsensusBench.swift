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
/// A second row puts beside the same run the plainest ordering with the same durability: the
/// signature work above plus, per block, one durable write of each validator's safety state (the
/// state our validators write before voting, `pwrite` + `fdatasync` of its bytes to a file of
/// its own, the four validators' writes run in parallel as our runtimes' thread pool runs them).
/// Any protocol that keeps "no vote before the state that justifies it is durable" and certifies
/// one block per round pays at least that per block; the first row's baseline leaves it out.
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
        var commitInstants: [UInt64] = []
        var submittedAt: [Int64: UInt64] = [:]
        var phaseDone: (() -> Bool)?
        nodes[0].onEvent = { event in
            guard case let .service(id, p) = event, id == ConsensusService.protocolID, case let .committed(b)? = p.as(ConsensusEvent.self) else { return }
            let t = uv_hrtime()
            committedBlocks.append(b)
            commitInstants.append(t)
            for payload in b.payloads where payload.count == payloadSize {
                var seq: Int64 = 0
                for k in 0..<8 { seq = seq << 8 | Int64(payload[k]) }
                committedAt[seq] = t
            }
            if phaseDone?() == true { loop.stop() }
        }
        for node in nodes { try node.start() }
        // CONSENSUS_BENCH_TRACE=1: each validator's round, last vote and high certificate as they change.
        let trace = ProcessInfo.processInfo.environment["CONSENSUS_BENCH_TRACE"] != nil
        var traced = [String](repeating: "", count: n)
        let traceStart = uv_hrtime()
        func runUntil(_ seconds: Double, _ done: @escaping () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            phaseDone = done
            while !done() && Date() < deadline {
                loop.runOnce()
                guard trace else { continue }
                for (i, node) in nodes.enumerated() {
                    guard let st = node.consensus?.status else { continue }
                    let line = "r\(st.round) lv\(st.lastVotedRound) qc\(st.highQCRound) h\(st.height) mem\(st.mempool)"
                    if line != traced[i] {
                        traced[i] = line
                        print(String(format: "%9.3f ms v%d ", Double(uv_hrtime() - traceStart) / 1e6, i) + line)
                    }
                }
            }
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
        let before = Snapshot(nodes)
        if progress != nil { Snapshot.streams(nodes[0]).forEach { progress?($0) } }
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
        if let progress {
            Snapshot(nodes).describe(since: before, wall: elapsed).forEach(progress)
            Snapshot.streams(nodes[0]).forEach(progress)
            let blocks = zip(committedBlocks[blocksBefore...], commitInstants[blocksBefore...]).map { b, t in
                String(format: "h%llu r%llu %d@%.1fms", b.height, b.round, b.payloads.count, Double(t - start) / 1e6)
            }
            progress("  blocks committed at v0 (height, round, payloads@ms): " + blocks.joined(separator: ", "))
        }

        // The baseline on the same bytes.
        let baselineSeconds = try signatureWork(peakBlocks, chainID: genesis.genesis.chainID, keys: identities.map(\.publicKey.bytes))
        let baseline = Double(payloads) / baselineSeconds
        progress?(String(format: "baseline: signature work of those blocks %.4f s (%.0f payloads/s)", baselineSeconds, baseline))
        let writeSeconds = try durableWrites(peakBlocks, dir: dir)
        let durableBaseline = Double(payloads) / (baselineSeconds + writeSeconds)
        progress?(String(format: "baseline with durability: + one raw safety-state write per block (4 in parallel) %.4f s (%.0f payloads/s)", writeSeconds, durableBaseline))

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
            .init(metric: "payloads_committed_vs_signatures_and_writes", unit: "payloads/s", ours: peak, baseline: durableBaseline, higherIsBetter: true),
        ], context: ["load_average_1m": LaceroBench.loadAverage()]), latencyP50: p50, latencyP99: p99, halfRate: Double(perTick) * 100, blocks: peakBlocks.count)
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

extension ConsensusBench {
    /// Seconds that one durable safety-state write per validator per block takes with raw system
    /// calls: for each block, the four validators' states (last voted round and the block's
    /// certificate, encoded as they persist it) written with `pwrite` + `fdatasync`, each to its own
    /// file, the four at once on four threads.
    static func durableWrites(_ blocks: [CommittedBlock], dir: String) throws -> Double {
        let fds = try (0..<n).map { i -> Int32 in
            let fd = open(dir + "/raw-safety-\(i)", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0 else { throw RuntimeError("baseline: cannot create \(dir)/raw-safety-\(i): errno \(errno)") }
            return fd
        }
        defer { for fd in fds { close(fd) } }
        let failures = Failures()
        let t0 = uv_hrtime()
        for b in blocks {
            let bytes = SafetyState(epoch: b.epoch, lastVotedRound: b.round, highQC: b.certificate).encoded
            DispatchQueue.concurrentPerform(iterations: n) { i in
                let ok = bytes.withUnsafeBytes { pwrite(fds[i], $0.baseAddress, $0.count, 0) } == bytes.count && fdatasync(fds[i]) == 0
                if !ok { failures.add() }
            }
        }
        let seconds = Double(uv_hrtime() - t0) / 1e9
        guard failures.count == 0 else { throw RuntimeError("baseline: \(failures.count) raw writes failed") }
        return max(seconds, 1e-9)
    }

    /// Failed raw writes, counted from the concurrent writers.
    private final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func add() { lock.lock(); n += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return n }
    }
}

/// What the validators did during a phase: where the time went (CPU of this process against
/// wall time, persist writes), rounds, timeouts, drops and the reliable stream's refusals.
struct Snapshot {
    var cpu: Double
    var rcvbufErrors: Int
    var nodes: [(status: ConsensusStatus, node: NodeCounters, persist: NodeRuntime.PersistStats)]

    init(_ runtimes: [NodeRuntime]) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        cpu = Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
        rcvbufErrors = Self.kernelCounter("Udp6RcvbufErrors")
        nodes = runtimes.map { ($0.consensus!.status, $0.core.counters, $0.persistStats) }
    }

    /// A counter of /proc/net/snmp6 (datagrams the kernel dropped for a full receive buffer; the
    /// whole machine's, so other programs' drops show too).
    static func kernelCounter(_ name: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/net/snmp6", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.count == 2, f[0] == name { return Int(f[1]) ?? -1 }
        }
        return -1
    }

    func describe(since b: Snapshot, wall: Double) -> [String] {
        var lines = [String(format: "  process CPU %.3f s over %.3f s wall; kernel UDP receive-buffer drops %d", cpu - b.cpu, wall, rcvbufErrors - b.rcvbufErrors)]
        for (i, (n, o)) in zip(nodes, b.nodes).enumerated() {
            guard let c = n.status.core, let c0 = o.status.core else { continue }
            var drops: [String] = []
            for (r, k) in c.drops where k - c0.dropped(r) > 0 { drops.append("\(r.rawValue)=\(k - c0.dropped(r))") }
            var nodeDrops: [String] = []
            for (r, k) in n.node.drops where k - (o.node.drops[r] ?? 0) > 0 { nodeDrops.append("\(r.rawValue)=\(k - (o.node.drops[r] ?? 0))") }
            let tx = n.persist.transactions - o.persist.transactions
            let busy: Double = tx == 0 ? 0 : (n.persist.busy - o.persist.busy).milliseconds / Double(tx)
            let s = n.status.service, s0 = o.status.service
            var line = "  v\(i): rounds \(n.status.round - o.status.round), proposals \(c.proposalsSent - c0.proposalsSent)"
            line += ", votes \(c.votesSent - c0.votesSent), timeouts \(c.timeoutsSent - c0.timeoutsSent)"
            line += ", TCs \(c.timeoutCertificatesFormed - c0.timeoutCertificatesFormed), forwarded \(c.payloadsForwarded - c0.payloadsForwarded)"
            line += ", datagrams \(s.datagramsSent - s0.datagramsSent), reliable \(s.reliableSent - s0.reliableSent)"
            line += " (failed \(n.node.reliableFailed - o.node.reliableFailed))"
            line += ", persists \(n.persist.batches - o.persist.batches) in \(tx) writes"
            line += String(format: " (%.2f ms each)", busy)
            line += "; drops [\(drops.sorted().joined(separator: " "))] node drops [\(nodeDrops.sorted().joined(separator: " "))]"
            lines.append(line)
        }
        return lines
    }

    /// Validator 0's reliable-stream connections: congestion window, bandwidth estimate, RTT, state.
    static func streams(_ node: NodeRuntime) -> [String] {
        let r = node.core.reliable
        return r.peers.map { p in
            String(format: "  v0→%@: window %d B, bandwidth %.2f MB/s, srtt %.2f ms, ", p.short,
                   r.congestionWindow(to: p) ?? -1, (r.bandwidthEstimate(to: p) ?? 0) / 1e6,
                   (r.smoothedRTT(to: p)?.milliseconds ?? -1)) + (r.rateState(to: p) ?? "")
        }
    }
}

/// Lets a timer's closure re-arm the timer itself.
private final class TimerBox { var timer: LoopTimer? }
