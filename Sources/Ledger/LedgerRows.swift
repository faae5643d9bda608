import MeshCore
import NodeService

/// The ledger's rows as the service seam's storage ops: one `PersistBatch` per block, carried out
/// in one database transaction (Docs/ledger.md, "Storage"). Tables and their key and value encodings:
///
/// | table | key | value |
/// | --- | --- | --- |
/// | `ledger.blocks` | `u64 height` | header encoding |
/// | `ledger.txs` | `u64 height \|\| u32 index` | `bytes payload \|\| bytes result` |
/// | `ledger.txids` | transaction id (32) | `u64 height \|\| u32 index` |
/// | `ledger.state` | state key | state value (a removed row is deleted) |
/// | `ledger.headercerts` | `u64 height` | header certificate (validators' signatures over the header) |
/// | `ledger.meta` | `genesis` | the genesis text |
public enum LedgerRows {
    public static let blocks = "ledger.blocks"
    public static let txs = "ledger.txs"
    public static let txids = "ledger.txids"
    public static let state = "ledger.state"
    public static let headerCertificates = "ledger.headercerts"
    public static let meta = "ledger.meta"
    public static let tables = [blocks, txs, txids, state, headerCertificates, meta]

    /// A header certificate arrives after its block (validators sign once they executed it).
    public static func ops(for c: HeaderCertificate) -> [StorageOp] {
        [.put(table: headerCertificates, key: heightKey(c.height), value: c.encoded)]
    }

    public static func heightKey(_ h: UInt64) -> [UInt8] { var w = ByteWriter(); w.u64(h); return w.bytes }
    public static func txKey(_ h: UInt64, _ i: Int) -> [UInt8] { var w = ByteWriter(); w.u64(h); w.u32(UInt32(i)); return w.bytes }

    public static func txValue(payload: [UInt8], result: TxResult) -> [UInt8] {
        var w = ByteWriter(capacity: payload.count + 64)
        LedgerCodec.bytes(payload, into: &w)
        LedgerCodec.bytes(result.encoded, into: &w)
        return w.bytes
    }

    public static func decodeTxValue(_ b: [UInt8]) throws -> (payload: [UInt8], result: TxResult) {
        var r = ByteReader(b)
        let p = try LedgerCodec.readBytes(&r)
        let res = try TxResult.decode(try LedgerCodec.readBytes(&r))
        guard r.remaining == 0 else { throw LedgerError("bytes after a stored transaction") }
        return (p, res)
    }

    /// Everything one executed block writes.
    public static func ops(for b: ExecutedBlock) -> [StorageOp] {
        let h = b.header.height
        var ops: [StorageOp] = [.put(table: blocks, key: heightKey(h), value: b.header.encoded)]
        ops.reserveCapacity(1 + b.payloads.count * 2 + b.writes.count)
        for (i, p) in b.payloads.enumerated() {
            ops.append(.put(table: txs, key: txKey(h, i), value: txValue(payload: p, result: b.results[i])))
            if let id = b.txIDs[i] { ops.append(.put(table: txids, key: id, value: txKey(h, i))) }
        }
        for w in b.writes {
            if let v = w.value { ops.append(.put(table: state, key: w.key, value: v)) } else { ops.append(.delete(table: state, key: w.key)) }
        }
        return ops
    }

    public static func genesisOps(_ g: LedgerGenesis) -> [StorageOp] {
        var ops: [StorageOp] = [.put(table: meta, key: Array("genesis".utf8), value: Array(g.text.utf8))]
        for (k, v) in LedgerState.initial(g).rows.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            ops.append(.put(table: state, key: k, value: v))
        }
        return ops
    }
}

/// Re-checks a stored ledger from genesis, block by block (what `iotaf ledger verify` runs): each
/// block is re-executed from its stored payloads and must give back, field for field, the stored
/// header (consensus hash and certificate, link, roots) and the stored results; at the end the
/// stored state rows must be exactly the executed state. Names the first height that fails.
public struct LedgerVerifier {
    public private(set) var ledger: Ledger

    public init(genesis: LedgerGenesis) { ledger = Ledger(genesis: genesis) }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case block(height: UInt64, reason: String)
        case state(height: UInt64, reason: String)

        public var height: UInt64 {
            switch self { case .block(let h, _), .state(let h, _): h }
        }
        public var description: String {
            switch self {
            case .block(let h, let r): "height \(h): \(r)"
            case .state(let h, let r): "state at height \(h): \(r)"
            }
        }
    }

    /// The next stored block: its header bytes and its transactions (payload and result bytes), in order.
    public mutating func check(height: UInt64, header headerBytes: [UInt8], txs: [[UInt8]], headerCertificate: [UInt8]? = nil) throws(Failure) {
        guard height == ledger.height + 1 else { throw .block(height: ledger.height + 1, reason: "missing (next stored block is \(height))") }
        let stored: LedgerHeader
        do { stored = try LedgerHeader.decode(headerBytes) } catch { throw .block(height: height, reason: "header does not decode: \(error)") }
        guard stored.height == height else { throw .block(height: height, reason: "header says height \(stored.height)") }
        var payloads: [[UInt8]] = [], results: [TxResult] = []
        for (i, t) in txs.enumerated() {
            do {
                let (p, r) = try LedgerRows.decodeTxValue(t)
                payloads.append(p); results.append(r)
            } catch { throw .block(height: height, reason: "transaction \(i) does not decode: \(error)") }
        }
        guard stored.txRoot == MerkleRoot.of(payloads) else {
            throw .block(height: height, reason: "transactions do not match the header's transaction root")
        }
        guard let block = stored.committedBlock(payloads: payloads) else { throw .block(height: height, reason: "bad consensus hash") }
        guard stored.previous == ledger.headHash else { throw .block(height: height, reason: "previous hash does not link to height \(height - 1)") }
        let executed: ExecutedBlock?
        do { executed = try ledger.apply(block) } catch { throw .block(height: height, reason: "\(error)") }
        guard let e = executed else { throw .block(height: height, reason: "not applied") }
        guard e.results == results else {
            let i = zip(e.results, results).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
            throw .block(height: height, reason: "stored result of transaction \(i) differs from re-execution")
        }
        guard e.header == stored else {
            throw .block(height: height, reason: e.header.stateRoot != stored.stateRoot ? "state root differs from re-execution" : "header differs from re-execution")
        }
        if let headerCertificate {
            do { try HeaderCertificate.decode(headerCertificate).check(headerHash: e.hash, height: height, genesis: ledger.genesis) } catch {
                throw .block(height: height, reason: "header certificate: \(error)")
            }
        }
    }

    /// The stored state rows against the state executed up to the last block.
    public func checkState(rows: [(key: [UInt8], value: [UInt8])]) throws(Failure) {
        let h = ledger.height
        var seen = 0
        for r in rows {
            guard let v = ledger.state[r.key] else { throw .state(height: h, reason: "a row \(Hex.encode(r.key.prefix(24))) that execution never wrote") }
            guard v == r.value else { throw .state(height: h, reason: "row \(Hex.encode(r.key.prefix(24))) differs from execution") }
            seen += 1
        }
        guard seen == ledger.state.rows.count else { throw .state(height: h, reason: "\(ledger.state.rows.count - seen) rows missing") }
    }
}
