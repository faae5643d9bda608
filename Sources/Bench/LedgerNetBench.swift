import CLibuv
import CSodium
import Consensus
import Foundation
import GRDBSQLite
import Ledger
import LedgerService
import Logging
import MeshCore
import Node
import Runtime

/// `iotaf bench ledger` end to end: signed kv puts of `valueBytes` bytes committed per second by
/// four validators, each a full `NodeRuntime` with `[ledger] role = "validator"` (UDP on ::1, Noise
/// sessions, consensus, the ledger service executing each block, its rows written to its own
/// `ledger.sqlite` in WAL with synchronous=FULL before its header vote leaves), all four on one
/// libuv loop in this process. A transaction counts as committed when validator 0 reports its
/// block applied and durable.
///
/// Baseline, the work no ledger can skip on the same bytes, in the same run: each of the four
/// validators verifies each transaction's signature once (raw `crypto_sign_verify_detached`) and
/// makes one raw sqlite3 WAL+FULL commit per block validator 0 applied (the block's payload bytes
/// as one row), on one core. The baseline rate is the transactions over that time.
///
/// Latency: a second phase submits at half the measured peak for a few seconds and reports
/// submit-to-durable (at validator 0) p50 and p99.
public enum LedgerNetBench {
    public struct Figures: Sendable {
        public var result: BenchResult
        public var latencyP50: Double
        public var latencyP99: Double
        public var halfRate: Double
        public var blocks: Int
    }

    static let n = 4

    public static func run(transactions: Int, valueBytes: Int, latencySeconds: Double, progress: ((String) -> Void)?) throws -> Figures {
        let loop = try EventLoop()
        let dir = NSTemporaryDirectory() + "iotaf-bench-ledger-net-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var identities: [NodeIdentity] = []
        while identities.count < n {
            let id = NodeIdentity.generate()
            if ValidatorKey(id.publicKey) != nil { identities.append(id) }
        }
        let file = GenesisFile(validators: identities.map { ValidatorKey($0.publicKey)! }, admins: [])
        let genesisPath = dir + "/genesis"
        try Data(file.text.utf8).write(to: URL(fileURLWithPath: genesisPath))
        let chainID = file.genesis.chainID
        var logger = Logger(label: "iotaf.bench")
        logger.logLevel = .error

        // Every transaction signed before the clock starts, each by a client key of its own (so no
        // two of one signer can be ordered against their nonces when spread over the validators).
        let value = [UInt8](repeating: 0x5a, count: valueBytes)
        func sign(_ k: Int) throws -> Transaction {
            var signer = try TransactionSigner(seed: TransactionSigner.testSeed(2000 + UInt64(k)))
            return try signer.sign(.invoke, "kv", "put", [Array("key-\(k)".utf8), value], chainID: chainID)
        }
        var txs: [Transaction] = []
        for k in 0..<transactions { txs.append(try sign(k)) }
        progress?("signed \(transactions) kv puts of \(txs.first?.encoded.count ?? 0) bytes")

        var nodes: [NodeRuntime] = []
        for i in 0..<n {
            var s = NodeSettings()
            s.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
            s.dataDir = dir + "/d\(i)"
            s.consensus = ConsensusSettings(genesisPath: genesisPath)
            s.ledger = LedgerSettings(role: .validator, genesisPath: genesisPath)
            if let first = nodes.first { s.peers = [first.boundAddress] }
            nodes.append(try NodeRuntime(settings: s, identity: identities[i], loop: loop, logger: logger, withControlSocket: false, withPeerStore: true))
        }
        var durableAt: [[UInt8]: UInt64] = [:]
        var appliedBlocks: [(height: UInt64, ids: [[UInt8]])] = []
        var refusedResults = 0
        var phaseDone: (() -> Bool)?
        nodes[0].onEvent = { event in
            guard case let .service(id, p) = event, id == LedgerService.protocolID, case let .applied(b)? = p.as(LedgerEvent.self) else { return }
            let t = uv_hrtime()
            let ids = b.txIDs.compactMap { $0 }
            refusedResults += b.ok.filter { !$0 }.count
            appliedBlocks.append((b.height, ids))
            for id in ids { durableAt[id] = t }
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
        guard runUntil(60, { nodes.allSatisfy { ($0.ledger?.durableHeight ?? 0) >= 3 } }) else {
            throw RuntimeError("the four validators did not apply blocks within 60 s")
        }
        progress?("validators formed; submitting \(transactions) transactions")

        var submittedAt: [[UInt8]: UInt64] = [:]
        var request: UInt64 = 0
        func submit(_ tx: Transaction, to i: Int) {
            submittedAt[tx.id] = uv_hrtime()
            request += 1
            nodes[i].command(.service(LedgerService.protocolID, ServicePayload(LedgerRequest.submitSigned(request: request, transaction: tx.encoded))))
        }

        // Peak: every transaction handed over at once, spread over the validators.
        let blocksBefore = appliedBlocks.count
        let start = uv_hrtime()
        for (k, tx) in txs.enumerated() { submit(tx, to: k % n) }
        let peakIDs = txs.map(\.id)
        guard runUntil(180, { peakIDs.allSatisfy { durableAt[$0] != nil } }) else {
            throw RuntimeError("only \(peakIDs.filter { durableAt[$0] != nil }.count) of \(transactions) transactions committed within 180 s")
        }
        let last = peakIDs.compactMap { durableAt[$0] }.max()!
        let elapsed = Double(last - start) / 1e9
        let peak = Double(transactions) / elapsed
        let peakBlocks = Array(appliedBlocks[blocksBefore...]).filter { !$0.ids.isEmpty }
        progress?(String(format: "peak: %d transactions in %.3f s (%.0f tx/s), %d blocks with transactions, %d refused results", transactions, elapsed, peak, peakBlocks.count, refusedResults))

        // The baseline on the same bytes.
        let byID = Dictionary(uniqueKeysWithValues: txs.map { ($0.id, $0) })
        let baselineSeconds = try baseline(blocks: peakBlocks.map { $0.ids.compactMap { byID[$0] } }, chainID: chainID, dir: dir)
        let baselineRate = Double(transactions) / baselineSeconds
        progress?(String(format: "baseline: %d validators' signature checks and one WAL+FULL commit per block: %.3f s (%.0f tx/s)", n, baselineSeconds, baselineRate))

        // Latency at half the peak rate: a batch every 10 ms, freshly signed (signing is the client's, before the clock of each).
        let perTick = max(1, Int((peak / 2 / 100).rounded()))
        let ticks = max(1, Int(latencySeconds * 100))
        var latencyTxs: [Transaction] = []
        for k in 0..<(ticks * perTick) { latencyTxs.append(try sign(transactions + k)) }
        var tick = 0
        let box = NetTimerBox()
        box.timer = LoopTimer(loop: loop) {
            for k in 0..<perTick { let tx = latencyTxs[tick * perTick + k]; submit(tx, to: (tick + k) % n) }
            tick += 1
            if tick < ticks { box.timer?.schedule(at: loop.now + .milliseconds(10)) }
        }
        box.timer?.schedule(at: loop.now + .milliseconds(10))
        let latencyIDs = latencyTxs.map(\.id)
        guard runUntil(latencySeconds + 60, { tick >= ticks && latencyIDs.allSatisfy { durableAt[$0] != nil } }) else {
            throw RuntimeError("the latency phase did not commit its \(latencyIDs.count) transactions")
        }
        box.timer?.close()
        var latencies = latencyIDs.compactMap { id -> Double? in
            guard let c = durableAt[id], let s = submittedAt[id] else { return nil }
            return Double(c - s) / 1e9
        }
        latencies.sort()
        let p50 = latencies[latencies.count / 2]
        let p99 = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        progress?(String(format: "latency at %.0f tx/s: p50 %.1f ms, p99 %.1f ms", Double(perTick) * 100, p50 * 1e3, p99 * 1e3))
        return Figures(result: BenchResult(bench: "ledger", results: [
            .init(metric: "kv_put_\(valueBytes)B_signed_tx_per_s_4_validators", unit: "tx/s", ours: peak, baseline: baselineRate, higherIsBetter: true),
        ]), latencyP50: p50, latencyP99: p99, halfRate: Double(perTick) * 100, blocks: peakBlocks.count)
    }

    /// Seconds for `n` validators each to verify every transaction's signature once and to make
    /// one raw WAL+FULL sqlite3 commit per block (the block's payloads as one row), one after another.
    static func baseline(blocks: [[Transaction]], chainID: [UInt8], dir: String) throws -> Double {
        let messages = blocks.map { $0.map { ($0.signingMessage(chainID: chainID), $0.signature, $0.signer) } }
        let bodies = blocks.map { $0.reduce(into: [UInt8]()) { $0 += $1.encoded } }
        var total = 0.0
        for v in 0..<n {
            var db: OpaquePointer?
            let path = dir + "/baseline-\(v).sqlite"
            guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else { throw LedgerError("sqlite3_open_v2 \(path)") }
            defer { sqlite3_close(db) }
            for sql in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA wal_autocheckpoint = 0",
                        "CREATE TABLE blocks (height INTEGER PRIMARY KEY, body BLOB NOT NULL)"] {
                guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw LedgerError("sqlite3: \(sql)") }
            }
            var insert: OpaquePointer?
            guard sqlite3_prepare_v2(db, "INSERT INTO blocks (height, body) VALUES (?, ?)", -1, &insert, nil) == SQLITE_OK else { throw LedgerError("prepare") }
            defer { sqlite3_finalize(insert) }
            var ok = 0, count = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            for (i, block) in messages.enumerated() {
                for (m, sig, pk) in block {
                    count += 1
                    if crypto_sign_verify_detached(sig, m, UInt64(m.count), pk) == 0 { ok += 1 }
                }
                guard sqlite3_exec(db, "BEGIN", nil, nil, nil) == SQLITE_OK else { throw LedgerError("BEGIN") }
                sqlite3_bind_int64(insert, 1, Int64(i + 1))
                _ = bodies[i].withUnsafeBytes { sqlite3_bind_blob(insert, 2, $0.baseAddress, Int32($0.count), nil) }
                guard sqlite3_step(insert) == SQLITE_DONE else { throw LedgerError("insert") }
                sqlite3_reset(insert)
                guard sqlite3_exec(db, "COMMIT", nil, nil, nil) == SQLITE_OK else { throw LedgerError("COMMIT") }
            }
            total += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            guard ok == count else { throw LedgerError("baseline: \(count - ok) signatures failed") }
        }
        return max(total, 1e-9)
    }
}

/// Lets a timer's closure re-arm the timer itself.
private final class NetTimerBox { var timer: LoopTimer? }
