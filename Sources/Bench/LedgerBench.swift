import CSodium
import Consensus
import Foundation
import GRDBSQLite
import Ledger
import LedgerStore
import MeshCore

/// `iotaf bench ledger`: the ledger's executor and store (one validator's share of committing)
/// beside the work no ledger can skip on the same bytes, measured in the same run:
///
/// - ours: each certified block (kv put of `valueBytes`-byte values, signed, `blockSize` a block)
///   through `Ledger.apply` (consensus hash and certificate re-checked, every transaction's
///   signature verified, nonce, chaincode, state tree) and `LedgerStore.apply` of its
///   `LedgerRows` ops (one SQLite transaction, WAL, synchronous=FULL) on a real file;
/// - baseline: libsodium's `crypto_sign_verify_detached` once per transaction over the same signed
///   bytes (messages prepared before the clock starts), and one raw sqlite3 transaction per block
///   inserting the block's payload bytes as one row, in WAL with synchronous=FULL, in the same
///   directory.
///
/// Blocks are certified by four real validators (3 signatures) before the clock starts.
public enum LedgerBench {
    public struct Sizes: Sendable {
        public var transactions = 20_000
        public var blockSize = 500
        public var valueBytes = 256
        public var signers = 64
        public init() {}
    }

    public static func run(sizes: Sizes, trials: Int, directory: String? = nil, progress: ((String) -> Void)?) throws -> BenchResult {
        let dir = directory ?? (NSTemporaryDirectory() + "iotaf-bench-ledger-\(getpid())")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) } }

        var chain = try CertifiedChain(validatorSeeds: (0..<4).map { TransactionSigner.testSeed(UInt64($0)) }, admins: [])
        var signers = try (0..<max(1, sizes.signers)).map { try TransactionSigner(seed: TransactionSigner.testSeed(1000 + UInt64($0))) }
        let value = [UInt8](repeating: 0x5a, count: sizes.valueBytes)
        var txs: [Transaction] = []
        txs.reserveCapacity(sizes.transactions)
        for i in 0..<sizes.transactions {
            txs.append(try signers[i % signers.count].sign(.invoke, "kv", "put", [Array("key-\(i)".utf8), value], chainID: chain.genesis.chainID))
        }
        var blocks: [CommittedBlock] = []
        var start = 0
        while start < txs.count {
            let end = min(txs.count, start + max(1, sizes.blockSize))
            blocks.append(chain.next(txs[start..<end].map(\.encoded)))
            start = end
        }
        let messages = txs.map { ($0.signingMessage(chainID: chain.genesis.chainID), $0.signature, $0.signer) }
        progress?("ledger: \(txs.count) transactions of \(txs.first?.encoded.count ?? 0) bytes in \(blocks.count) blocks; \(trials) trials")

        var ours: [Double] = [], raw: [Double] = []
        for t in 1...max(1, trials) {
            raw.append(try baseline(blocks: blocks, messages: messages, path: dir + "/raw-\(t).sqlite"))
            ours.append(try executorAndStore(blocks: blocks, genesis: chain.genesis, path: dir + "/ledger-\(t).sqlite"))
            let decodeVerify = decodeAndVerify(blocks: blocks, chainID: chain.genesis.chainID)
            progress?(String(format: "  trial %d: ours %.0f tx/s (executor %.2f s, of which decoding and verifying %.2f s; store %.2f s), baseline %.0f tx/s",
                             t, ours.last!, split.execute, decodeVerify, split.store, raw.last!))
        }
        return BenchResult(bench: "ledger", results: [
            .init(metric: "kv_put_\(sizes.valueBytes)B_signed_tx_per_s", unit: "tx/s", ours: ours.max()!, baseline: raw.max()!, higherIsBetter: true),
        ])
    }

    /// Seconds spent in `Ledger.apply` and in `LedgerStore.apply` in the last executor run (for the progress lines).
    nonisolated(unsafe) static var split = (execute: 0.0, store: 0.0)

    static func executorAndStore(blocks: [CommittedBlock], genesis: LedgerGenesis, path: String) throws -> Double {
        let store = try LedgerStore(path: path)
        try store.apply(LedgerRows.genesisOps(genesis))
        var ledger = Ledger(genesis: genesis)
        var count = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        var executing: UInt64 = 0
        for b in blocks {
            let s0 = DispatchTime.now().uptimeNanoseconds
            guard let e = try ledger.apply(b) else { throw LedgerError("block \(b.height) not applied") }
            executing += DispatchTime.now().uptimeNanoseconds - s0
            try store.apply(LedgerRows.ops(for: e))
            count += e.results.reduce(0) { if case .ok = $1 { $0 + 1 } else { $0 } }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        split = (Double(executing) / 1e9, seconds - Double(executing) / 1e9)
        guard count == blocks.reduce(0, { $0 + $1.payloads.count }) else { throw LedgerError("\(count) transactions went through, not all") }
        return Double(count) / seconds
    }

    /// Seconds to decode every payload and verify its signature through `Transaction` alone: the
    /// part of the executor's time that is not state, chaincode or roots.
    static func decodeAndVerify(blocks: [CommittedBlock], chainID: [UInt8]) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var ok = 0
        for b in blocks {
            for p in b.payloads where (try? Transaction.decode(p))?.signatureIsValid(chainID: chainID) == true { ok += 1 }
        }
        precondition(ok > 0)
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    static func baseline(blocks: [CommittedBlock], messages: [([UInt8], [UInt8], [UInt8])], path: String) throws -> Double {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else { throw LedgerError("sqlite3_open_v2 \(path)") }
        defer { sqlite3_close(db) }
        for sql in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA wal_autocheckpoint = 0",
                    "CREATE TABLE blocks (height INTEGER PRIMARY KEY, body BLOB NOT NULL)"] {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw LedgerError("sqlite3: \(sql)") }
        }
        var insert: OpaquePointer?
        guard sqlite3_prepare_v2(db, "INSERT INTO blocks (height, body) VALUES (?, ?)", -1, &insert, nil) == SQLITE_OK else { throw LedgerError("prepare") }
        defer { sqlite3_finalize(insert) }
        let bodies = blocks.map { $0.payloads.reduce(into: [UInt8]()) { $0 += $1 } }
        var ok = 0, next = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        for (i, b) in blocks.enumerated() {
            for _ in b.payloads {
                let (m, sig, pk) = messages[next]
                next += 1
                if crypto_sign_verify_detached(sig, m, UInt64(m.count), pk) == 0 { ok += 1 }
            }
            guard sqlite3_exec(db, "BEGIN", nil, nil, nil) == SQLITE_OK else { throw LedgerError("BEGIN") }
            sqlite3_bind_int64(insert, 1, Int64(i + 1))
            _ = bodies[i].withUnsafeBytes { sqlite3_bind_blob(insert, 2, $0.baseAddress, Int32($0.count), nil) }
            guard sqlite3_step(insert) == SQLITE_DONE else { throw LedgerError("insert") }
            sqlite3_reset(insert)
            guard sqlite3_exec(db, "COMMIT", nil, nil, nil) == SQLITE_OK else { throw LedgerError("COMMIT") }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard ok == messages.count else { throw LedgerError("baseline: \(messages.count - ok) signatures failed") }
        return Double(ok) / seconds
    }
}
