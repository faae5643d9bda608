import Consensus
import Contracts
import MeshCore
import Sodium

/// The replicated state machine: applies committed blocks in height order, one transaction at a
/// time, and answers queries. Sans-IO and deterministic: the same blocks give the same results,
/// roots and header hashes on every replica (no clock, no randomness, no dictionary-order output).
public struct Ledger: Sendable {
    public let genesis: LedgerGenesis
    public private(set) var state: LedgerState
    public private(set) var height: UInt64 = 0
    /// The hash of the last header (the genesis hash at height 0).
    public private(set) var headHash: [UInt8]
    /// The consensus block the last header executed (the genesis block at height 0): height h+1's
    /// `justify` must certify it.
    public private(set) var headConsensusHash: [UInt8]
    public private(set) var head: LedgerHeader?
    /// Re-check each block's hash and quorum certificate (a replica fed by peers must; a validator
    /// fed by its own core may skip it).
    public var checksCertificates = true
    /// Runs deployed WebAssembly contracts (WasmChaincode.swift); its instance cache never changes a result.
    public var contracts = ContractRuntime()

    public init(genesis: LedgerGenesis) {
        self.genesis = genesis
        state = LedgerState.initial(genesis)
        headHash = genesis.hash
        headConsensusHash = genesis.consensus.blockHash.bytes
    }

    /// Resumes from stored state rows and the last stored header; refuses rows whose root is not
    /// the header's state root (a torn or altered store).
    public init(genesis: LedgerGenesis, head: LedgerHeader?, rows: [(key: [UInt8], value: [UInt8])]) throws {
        self.init(genesis: genesis)
        guard let head else {
            guard rows.isEmpty || LedgerState.fromRows(rows).root == state.root else {
                throw LedgerError("the store holds state rows but no block")
            }
            return
        }
        let s = LedgerState.fromRows(rows)
        guard s.root == head.stateRoot else {
            throw LedgerError("stored state rows do not match the state root of height \(head.height): the store was altered or torn; run `iotaf ledger verify`")
        }
        state = s
        height = head.height
        headHash = head.hash(chainID: genesis.chainID)
        headConsensusHash = head.consensusHash
        self.head = head
    }

    /// Executes `block` if it is the next height. Returns nil for a height already applied (the
    /// consensus core re-emits from 1 after a restart); throws for a gap or a block whose hash,
    /// parent link or certificate does not check, and then changes nothing.
    ///
    /// `signatureChecked[i] == true` says payload i's signature was already verified over these
    /// exact bytes (off the loop, `SignatureCheck.run`, or at submission): it is not verified again.
    /// Anything else (false, or past the end) is verified here.
    public mutating func apply(_ block: CommittedBlock, signatureChecked: [Bool] = []) throws -> ExecutedBlock? {
        if block.height <= height { return nil }
        guard block.height == height + 1 else { throw LedgerError("block \(block.height) arrived at height \(height): a gap") }
        guard block.justify.blockHash.bytes == headConsensusHash else {
            throw LedgerError("block \(block.height) does not extend consensus block \(Hex.encode(headConsensusHash.prefix(4)))")
        }
        if checksCertificates { try Ledger.checkConsensus(block, genesis: genesis) }

        var results: [TxResult] = []
        var ids: [[UInt8]?] = []
        var changes: [ValidatorChange] = []
        var written: [[UInt8]: [UInt8]?] = [:]
        results.reserveCapacity(block.payloads.count)
        for (i, payload) in block.payloads.enumerated() {
            let checked = i < signatureChecked.count && signatureChecked[i]
            let (result, id, writes, effects) = execute(payload, height: block.height, time: block.time, signatureChecked: checked)
            results.append(result)
            ids.append(id)
            for (k, v) in writes {
                state.set(k, v)
                written[k] = v
            }
            if let c = effects?.validatorChange { changes.append(c) }
        }
        let header = LedgerHeader(height: block.height, previous: headHash, epoch: block.epoch, round: block.round,
                                  proposer: block.proposer, consensusHash: block.hash.bytes, justify: block.justify,
                                  certificate: block.certificate, txRoot: MerkleRoot.of(block.payloads),
                                  resultsRoot: MerkleRoot.of(results.map(\.encoded)), stateRoot: state.root, time: block.time)
        let hash = header.hash(chainID: genesis.chainID)
        height = block.height
        headHash = hash
        headConsensusHash = block.hash.bytes
        head = header
        let writes = written.map { (key: $0.key, value: $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        return ExecutedBlock(header: header, hash: hash, payloads: block.payloads, results: results, txIDs: ids,
                             writes: writes, validatorChanges: changes)
    }

    /// The consensus block's own checks: its fields hash to its hash, and the certificate is a
    /// quorum's for that hash. (Validator-set changes are not applied to certificates yet:
    /// consensus runs epoch 0 only; Docs/ledger.md, "Not built yet".)
    public static func checkConsensus(_ block: CommittedBlock, genesis: LedgerGenesis) throws {
        guard block.recomputedHash(chainID: genesis.chainID) == block.hash else {
            throw LedgerError("block \(block.height): its fields do not hash to its consensus hash")
        }
        guard block.certificate.blockHash == block.hash, block.certificate.round == block.round else {
            throw LedgerError("block \(block.height): the certificate names another block")
        }
        do { try block.certificate.check(set: genesis.consensus.validators, genesis: genesis.consensus) } catch {
            throw LedgerError("block \(block.height): the quorum certificate does not check (\(error))")
        }
    }

    /// One payload: decode, signature, culled signer, nonce, then the chaincode. The nonce advances
    /// for every correctly signed transaction, even one the chaincode refuses, so it can never be
    /// replayed once circumstances change.
    func execute(_ payload: [UInt8], height: UInt64, time: UInt64 = 0, signatureChecked: Bool = false) -> (TxResult, [UInt8]?, [([UInt8], [UInt8]?)], Effects?) {
        let tx: Transaction
        do { tx = try Transaction.decode(payload) } catch { return (.refused(error), nil, [], nil) }
        guard signatureChecked || tx.signatureIsValid(chainID: genesis.chainID) else {
            return (.refused(Refusal(.badSignature, "the signature is not the signer's over this chain's transaction")), tx.id, [], nil)
        }
        if state[StateKey.culled(tx.signer)] != nil {
            return (.refused(Refusal(.culledSigner, "the signer was culled")), tx.id, [], nil)
        }
        let nonceKey = StateKey.nonce(tx.signer)
        let last = state[nonceKey].flatMap { b -> UInt64? in var r = ByteReader(b); return try? r.u64() }
        if let last, tx.nonce <= last {
            return (.refused(Refusal(.replayedNonce, "nonce \(tx.nonce) is not above the signer's last, \(last)")), tx.id, [], nil)
        }
        var nw = ByteWriter(); nw.u64(tx.nonce)
        var writes: [([UInt8], [UInt8]?)] = [(nonceKey, nw.bytes)]

        switch tx.kind {
        case .query:
            return (.refused(Refusal(.queryInBlock, "a query is answered by a replica, not ordered in a block")), tx.id, writes, nil)
        case .deploy:
            let (result, contractWrites) = deployContract(tx, height: height, writes: writes)
            return (result, tx.id, contractWrites, nil)
        case .invoke:
            break
        }
        guard let code = BuiltIns.named(tx.chaincode) else {
            if let r = invokeContract(tx, height: height, time: time, writes: writes) { return (r.0, tx.id, r.1, nil) }
            return (.refused(Refusal(.unknownChaincode, "no chaincode \(tx.chaincode)")), tx.id, writes, nil)
        }
        guard code.invokes.contains(tx.function) else {
            let detail = code.queries.contains(tx.function) ? "\(tx.function) is a query; send it as a query" : "\(tx.chaincode) has no function \(tx.function)"
            return (.refused(Refusal(.unknownFunction, detail)), tx.id, writes, nil)
        }
        let call = Invocation(caller: tx.signer, callerIsAdmin: state[StateKey.admin(tx.signer)] != nil, height: height,
                              function: tx.function, args: tx.args)
        var view = StateView(base: state, namespace: code.name)
        var effects = Effects()
        do {
            let output = try code.run(call, state: &view, effects: &effects)
            let pending = view.pending.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            for (k, v) in pending { writes.append((k, v)) }
            return (.ok(output), tx.id, writes, effects)
        } catch {
            return (.refused(error), tx.id, writes, nil)
        }
    }

    /// Answers a query from the current state (no block, no signature needed: reading is local).
    /// The answer carries every row it read, with the value read, for proofs.
    public func query(chaincode: String, function: String, args: [[UInt8]], caller: [UInt8] = []) -> QueryAnswer {
        guard let code = BuiltIns.named(chaincode) else {
            if let answer = queryContract(chaincode, function: function, args: args, caller: caller) { return answer }
            return QueryAnswer(result: .refused(Refusal(.unknownChaincode, "no chaincode \(chaincode)")), reads: [])
        }
        guard code.queries.contains(function) else {
            return QueryAnswer(result: .refused(Refusal(.unknownFunction, "\(chaincode) has no query \(function)")), reads: [])
        }
        let call = Invocation(caller: caller, callerIsAdmin: state[StateKey.admin(caller)] != nil, height: height,
                              function: function, args: args)
        var view = StateView(base: state, namespace: code.name)
        var effects = Effects()
        let result: TxResult
        do { result = .ok(try code.run(call, state: &view, effects: &effects)) } catch { result = .refused(error) }
        return QueryAnswer(result: result, reads: view.reads.map { QueryAnswer.Read(key: $0.key, value: $0.value) })
    }

    /// A proof of the answer: every row it read proven against the head's state root, with the
    /// head and the validators' certificate of it (nil before any block).
    public func prove(chaincode: String, function: String, args: [[UInt8]], answer: QueryAnswer,
                      headerCertificate: HeaderCertificate) -> QueryProof? {
        guard let head else { return nil }
        return QueryProof(header: head, headerCertificate: headerCertificate, chaincode: chaincode, function: function, args: args, result: answer.result,
                          reads: answer.reads.map { QueryProof.Item(read: $0, proof: state.prove($0.key)) })
    }
}

extension LedgerState {
    static func fromRows(_ rows: [(key: [UInt8], value: [UInt8])]) -> LedgerState {
        var s = LedgerState()
        for r in rows { s.set(r.key, r.value) }
        return s
    }
}

/// A query's result and the rows behind it.
public struct QueryAnswer: Sendable, Equatable {
    public struct Read: Sendable, Equatable {
        public let key: [UInt8]
        public let value: [UInt8]?
    }
    public let result: TxResult
    public let reads: [Read]
}
