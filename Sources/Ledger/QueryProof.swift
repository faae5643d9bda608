import Consensus
import Contracts
import MeshCore

/// A query, its answer, and the proof: the header of the block the answer was read at (with the
/// validators' certificate of that block) and a Merkle proof of every row the answer read against
/// the header's state root. `check` needs only the genesis: a small box that keeps no replica can
/// trust one answer from any node (within what "Not built yet" in Docs/ledger.md says about the
/// state root's certification).
public struct QueryProof: Sendable, Equatable {
    public struct Item: Sendable, Equatable {
        public let read: QueryAnswer.Read
        public let proof: StateProof
    }

    public let header: LedgerHeader
    /// A quorum's signatures over the header: what makes its state root trustworthy.
    public let headerCertificate: HeaderCertificate
    public let chaincode: String
    public let function: String
    public let args: [[UInt8]]
    public let result: TxResult
    public let reads: [Item]

    public init(header: LedgerHeader, headerCertificate: HeaderCertificate, chaincode: String, function: String,
                args: [[UInt8]], result: TxResult, reads: [Item]) {
        self.header = header
        self.headerCertificate = headerCertificate
        self.chaincode = chaincode
        self.function = function
        self.args = args
        self.result = result
        self.reads = reads
    }

    /// Checks the header certificate (a quorum signed this header, so its state root), the
    /// consensus certificate, every row's proof against the state root, and that the query run
    /// over exactly the proven rows gives the claimed result.
    public func check(genesis: LedgerGenesis) throws {
        try headerCertificate.check(headerHash: header.hash(chainID: genesis.chainID), height: header.height, genesis: genesis)
        guard header.certificate.blockHash.bytes == header.consensusHash, header.certificate.round == header.round else {
            throw LedgerError("the header's certificate names another block")
        }
        do { try header.certificate.check(set: genesis.consensus.validators, genesis: genesis.consensus) } catch {
            throw LedgerError("the header's quorum certificate does not check (\(error))")
        }
        var proven = LedgerState()
        for item in reads {
            do { try item.proof.verify(root: header.stateRoot, key: item.read.key, value: item.read.value) } catch {
                throw LedgerError("the proof of a row the answer read fails: \(error)")
            }
            if let v = item.read.value { proven.set(item.read.key, v) }
        }
        let provenKeys = Set(reads.map(\.read.key))
        guard let code = BuiltIns.named(chaincode) else {
            // A deployed contract: its record, version and module rows are among the proven rows,
            // so the code that ran is proven too; an anonymous call at the header's height.
            guard let again = WasmChaincode.query(chaincode, function: function, args: args, caller: [], height: header.height, time: header.time, state: proven,
                                                  contracts: ContractRuntime(), provenKeys: provenKeys) else {
                throw LedgerError("\(chaincode) is neither a built-in chaincode nor a contract the proven rows hold")
            }
            guard !again.readUnproven else { throw LedgerError("the answer depends on a row the proof does not cover") }
            guard again.answer.result == result else { throw LedgerError("the proven rows give another answer than the one claimed") }
            return
        }
        guard code.queries.contains(function) else {
            throw LedgerError("\(chaincode).\(function) is not a query")
        }
        var view = StateView(base: proven, namespace: code.name)
        view.provenKeys = provenKeys
        var effects = Effects()
        let again: TxResult
        do {
            again = .ok(try code.run(Invocation(caller: [], callerIsAdmin: false, height: header.height, function: function, args: args),
                                     state: &view, effects: &effects))
        } catch { again = .refused(error) }
        guard !view.readUnproven else { throw LedgerError("the answer depends on a row the proof does not cover") }
        guard again == result else { throw LedgerError("the proven rows give another answer than the one claimed") }
    }

    /// `u8 version(1) || bytes header || bytes header_certificate || bytes chaincode || bytes function || u8 n || n × bytes arg ||
    /// bytes result || u16 m || m × (bytes key || u8 present || [bytes value] || bytes proof)`.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 1024)
        w.u8(1)
        LedgerCodec.bytes(header.encoded, into: &w)
        LedgerCodec.bytes(headerCertificate.encoded, into: &w)
        LedgerCodec.bytes(Array(chaincode.utf8), into: &w)
        LedgerCodec.bytes(Array(function.utf8), into: &w)
        w.u8(UInt8(args.count))
        for a in args { LedgerCodec.bytes(a, into: &w) }
        LedgerCodec.bytes(result.encoded, into: &w)
        w.u16(UInt16(reads.count))
        for i in reads {
            LedgerCodec.bytes(i.read.key, into: &w)
            if let v = i.read.value { w.u8(1); LedgerCodec.bytes(v, into: &w) } else { w.u8(0) }
            LedgerCodec.bytes(i.proof.encoded, into: &w)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> QueryProof {
        var r = ByteReader(bytes)
        do {
            guard try r.u8() == 1 else { throw LedgerError("unknown proof version") }
            let header = try LedgerHeader.decode(try LedgerCodec.readBytes(&r))
            let certificate = try HeaderCertificate.decode(try LedgerCodec.readBytes(&r))
            let cc = String(decoding: try LedgerCodec.readBytes(&r, max: 64), as: UTF8.self)
            let fn = String(decoding: try LedgerCodec.readBytes(&r, max: 64), as: UTF8.self)
            var args: [[UInt8]] = []
            for _ in 0..<Int(try r.u8()) { args.append(try LedgerCodec.readBytes(&r)) }
            let result = try TxResult.decode(try LedgerCodec.readBytes(&r))
            var items: [Item] = []
            for _ in 0..<Int(try r.u16()) {
                let key = try LedgerCodec.readBytes(&r)
                let value: [UInt8]? = try r.u8() == 1 ? try LedgerCodec.readBytes(&r) : nil
                let proof = try StateProof.decode(try LedgerCodec.readBytes(&r))
                items.append(Item(read: QueryAnswer.Read(key: key, value: value), proof: proof))
            }
            guard r.remaining == 0 else { throw LedgerError("bytes after the proof") }
            return QueryProof(header: header, headerCertificate: certificate, chaincode: cc, function: fn, args: args, result: result, reads: items)
        } catch let e as LedgerError {
            throw e
        } catch {
            throw LedgerError("the proof is truncated or malformed")
        }
    }
}
