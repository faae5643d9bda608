import CSodium
import Foundation
import GRDBSQLite
import MeshCore
import MeterService
import Meters
import Node
import NodeService
import Runtime

/// `iotaf bench meter`: reads per second through one relay beside the work no relay can skip on
/// the same reads, measured in the same run:
///
/// - ours: a relay `MeterService` handed `reads` datagrams from a child (6 one-register reads each,
///   as they travel): each read decoded with its Ed25519 signature checked, the batch kept in
///   custody through the runtime's own store (`PeerStore.apply`, a real SQLite file), acknowledged,
///   forwarded to its parent, the parent's ack taken (custody rows deleted with the next write);
/// - baseline: libsodium's `crypto_sign_verify_detached` once per read over the same signed bytes
///   (prepared before the clock starts) and one raw sqlite3 transaction per batch inserting the
///   batch's reads as rows, in WAL with synchronous=FULL, in the same directory.
public enum MeterBench {
    public static func run(reads count: Int, trials: Int, directory: String? = nil, progress: ((String) -> Void)?) throws -> BenchResult {
        let dir = directory ?? (NSTemporaryDirectory() + "iotaf-bench-meter-\(getpid())")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) } }

        // 100 meters' chains, read by read, in batches of 6 as a relay receives them.
        let meters = (0..<100).map { NodeIdentity.deterministic(runSeed: 7, index: $0) }
        var last: [MeterRead?] = Array(repeating: nil, count: meters.count)
        var reads: [MeterRead] = []
        reads.reserveCapacity(count)
        for i in 0..<max(6, count) {
            let m = i % meters.count
            let regs = [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: Int64(i))]
            let r = try last[m].map { try $0.next(by: meters[m], intervalStart: $0.intervalStart + 900, durationSeconds: 900, registers: regs) }
                ?? MeterRead(meter: meters[m], sequence: 0, intervalStart: 1_780_000_200, durationSeconds: 900, previous: MeterRead.noPrevious, registers: regs)
            last[m] = r
            reads.append(r)
        }
        var batches: [[MeterRead]] = []
        var i = 0
        while i < reads.count { batches.append(Array(reads[i..<min(reads.count, i + 6)])); i += 6 }
        let datagrams = batches.enumerated().map { MeterMessage.reads(batch: UInt64($0.offset + 1), $0.element).encode() }
        let messages = reads.map { (MeterRead.domain + Array($0.encode().dropLast(64)), $0.signature, $0.meter.bytes) }
        progress?("meter: \(reads.count) reads of \(reads[0].encodedLength) bytes in \(batches.count) datagrams of \(datagrams[0].count) bytes; \(trials) trials")

        var ours: [Double] = [], raw: [Double] = []
        for t in 1...max(1, trials) {
            raw.append(try baseline(batches: batches, messages: messages, path: dir + "/raw-\(t).sqlite"))
            ours.append(try relay(datagrams: datagrams, reads: reads.count, path: dir + "/relay-\(t).sqlite"))
            progress?(String(format: "  trial %d: ours %.0f reads/s, baseline %.0f reads/s", t, ours.last!, raw.last!))
        }
        return BenchResult(bench: "meter", results: [
            .init(metric: "relay_reads_per_s", unit: "reads/s", ours: ours.max()!, baseline: raw.max()!, higherIsBetter: true),
        ])
    }

    /// Every member reachable, none a neighbour: the relay's parent and child.
    struct Directory: MemberDirectory {
        var peers: [NodeID: ProvenPeer]
        func peer(_ id: NodeID) -> ProvenPeer? { peers[id] }
        func isReachable(_ id: NodeID) -> Bool { peers[id] != nil }
        func isCulled(_ id: NodeID) -> Bool { false }
        func isNeighbour(_ id: NodeID) -> Bool { false }
    }

    static func relay(datagrams: [[UInt8]], reads: Int, path: String) throws -> Double {
        let (store, _) = try PeerStore.open(path: path)
        let me = NodeIdentity.deterministic(runSeed: 8, index: 0)
        let parent = ProvenPeer(identity: NodeIdentity.deterministic(runSeed: 8, index: 1).peer, address: UnderlayAddress(parsing: "[::1]:7401")!)
        let child = ProvenPeer(identity: NodeIdentity.deterministic(runSeed: 8, index: 2).peer, address: UnderlayAddress(parsing: "[::1]:7402")!)
        let dir = Directory(peers: [parent.nodeID: parent, child.nodeID: child])
        var service = MeterService(identity: me, config: MeterService.Config(role: .relay), rng: SeededGenerator(seed: 1))
        var now = Instant(nanoseconds: 1_000_000_000)
        _ = service.handle(.membership(.up(parent)), now: now, members: dir)
        _ = service.handle(.membership(.up(child)), now: now, members: dir)
        _ = service.handle(.message(from: parent, bytes: MeterMessage.advert(token: 0, rank: 0, parent: nil).encode(), reliable: false), now: now, members: dir)
        guard service.parent == parent.nodeID else { throw BenchError("the relay did not take its parent") }

        var forwarded = 0
        /// Carries out outputs as the runtime does: a persist is durable before its sends; acks
        /// to the child are dropped (the bench is the child), forwards are answered by the parent.
        func carry(_ outputs: [ServiceOutput<NodeCommand, NodeEvent>], _ service: inout MeterService) throws {
            var parentAcks: [[UInt8]] = []
            func one(_ o: ServiceOutput<NodeCommand, NodeEvent>) throws {
                switch o {
                case let .persist(batch, then):
                    try store.apply(batch.ops)
                    for t in then { try one(t) }
                case let .send(.member(id), bytes) where id == parent.nodeID:
                    if case let .reads(b, rs)? = try? MeterMessage.decode(bytes) {
                        forwarded += rs.count
                        parentAcks.append(MeterMessage.ack(batch: b, status: .taken).encode())
                    }
                default: break
                }
            }
            for o in outputs { try one(o) }
            for a in parentAcks { try carry(service.handle(.message(from: parent, bytes: a, reliable: false), now: now, members: dir), &service) }
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        for d in datagrams {
            now = now + .microseconds(100)
            try carry(service.handle(.message(from: child, bytes: d, reliable: false), now: now, members: dir), &service)
        }
        try carry(service.handle(.stop, now: now, members: dir), &service)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard forwarded == reads, service.heldCount == 0 else { throw BenchError("\(forwarded) of \(reads) reads forwarded, \(service.heldCount) held") }
        return Double(reads) / seconds
    }

    static func baseline(batches: [[MeterRead]], messages: [([UInt8], [UInt8], [UInt8])], path: String) throws -> Double {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else { throw BenchError("sqlite3_open_v2 \(path)") }
        defer { sqlite3_close(db) }
        for sql in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
                    "CREATE TABLE reads (hash BLOB PRIMARY KEY, body BLOB NOT NULL)"] {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw BenchError("sqlite3: \(sql)") }
        }
        var insert: OpaquePointer?
        guard sqlite3_prepare_v2(db, "INSERT INTO reads (hash, body) VALUES (?, ?)", -1, &insert, nil) == SQLITE_OK else { throw BenchError("prepare") }
        defer { sqlite3_finalize(insert) }
        let bodies = batches.map { $0.map { ($0.hash, $0.encode()) } }
        var ok = 0, next = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        for batch in bodies {
            for _ in batch {
                let (m, sig, pk) = messages[next]
                next += 1
                if crypto_sign_verify_detached(sig, m, UInt64(m.count), pk) == 0 { ok += 1 }
            }
            guard sqlite3_exec(db, "BEGIN", nil, nil, nil) == SQLITE_OK else { throw BenchError("BEGIN") }
            for (h, b) in batch {
                _ = h.withUnsafeBytes { sqlite3_bind_blob(insert, 1, $0.baseAddress, Int32($0.count), nil) }
                _ = b.withUnsafeBytes { sqlite3_bind_blob(insert, 2, $0.baseAddress, Int32($0.count), nil) }
                guard sqlite3_step(insert) == SQLITE_DONE else { throw BenchError("insert") }
                sqlite3_reset(insert)
            }
            guard sqlite3_exec(db, "COMMIT", nil, nil, nil) == SQLITE_OK else { throw BenchError("COMMIT") }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard ok == messages.count else { throw BenchError("baseline: \(messages.count - ok) signatures failed") }
        return Double(ok) / seconds
    }
}
