import ArgumentParser
import Foundation
import Ledger
import LedgerStore
import MeshCore
import Runtime

/// `iotaf ledger …`: submissions and reads through a running node's control socket (its ledger
/// service), and offline reads and checks of a data directory's ledger (`DIR/ledger.sqlite`).
struct LedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "Inspect, verify and query a node's ledger replica; check proofs offline.",
        subcommands: [LedgerSubmitCommand.self, LedgerVerifyCommand.self, LedgerStatusCommand.self, LedgerBlockCommand.self, LedgerTxCommand.self,
                      LedgerQueryCommand.self, LedgerHistoryCommand.self, LedgerCheckProofCommand.self, LedgerSampleCommand.self,
                      LedgerDeployCommand.self])
}

struct LedgerDataOptions: ParsableArguments {
    @Option(help: "The node's data directory (holding ledger.sqlite): read offline.")
    var data: String?
    @Option(help: "Or a running node's control socket (default: found as `iotaf status` finds it), where the command supports it.")
    var control: String?
    @Option(help: "A genesis file (`iotaf network init`'s DIR/genesis, or a ledger genesis text) to check against instead of the copy in the store.")
    var genesis: String?

    func open() throws -> LedgerStore {
        guard let data else { throw CLIError("give --data DIR: this command reads a data directory's ledger.sqlite offline") }
        do { return try LedgerStore(path: (data as NSString).appendingPathComponent(LedgerStore.fileName), readOnly: true) } catch { throw CLIError("\(error)") }
    }

    /// One request to a running node's control socket; an error reply becomes a `CLIError`.
    func fetch(_ command: String, _ fields: [String: String], timeoutSeconds: Int = 5) throws -> [String: Any] {
        try Self.fetch(control: control, command, fields, timeoutSeconds: timeoutSeconds)
    }

    static func fetch(control: String?, _ command: String, _ fields: [String: String], timeoutSeconds: Int = 5) throws -> [String: Any] {
        let path: String
        if let control { path = control } else {
            switch ControlClient.locate() {
            case let .success(p): path = p
            case let .failure(why): throw CLIError("\(why) (or give --data DIR to read a ledger offline)")
            }
        }
        let data: Data
        do { data = try ControlClient.request(path, fields.merging(["command": command]) { $1 }, timeoutSeconds: timeoutSeconds) } catch { throw CLIError("\(error)") }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw CLIError("node at \(path) answered something that is not JSON") }
        if let err = obj["error"] as? String { throw CLIError("node at \(path): \(err)") }
        return obj
    }

    func givenGenesis() throws -> LedgerGenesis? {
        guard let genesis else { return nil }
        return try readLedgerGenesis(genesis)
    }
}

/// A genesis for offline checks: the file `iotaf network init --validators … --admins …` writes
/// (`DIR/genesis`, as a node reads it), or a ledger genesis text (`ledger sample`'s genesis.txt).
func readLedgerGenesis(_ path: String) throws -> LedgerGenesis {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw CLIError("cannot read the genesis file \(path)")
    }
    if text.split(separator: "\n").first?.trimmingCharacters(in: .whitespaces) == GenesisFile.header {
        do {
            let file = try GenesisFile.parse(text)
            return LedgerGenesis(consensus: file.genesis, admins: file.admins)
        } catch { throw CLIError("genesis \(path): \(error)") }
    }
    do { return try LedgerGenesis.parse(text) } catch {
        throw CLIError("genesis \(path): \(error) (expected the file `iotaf network init --validators` writes, or a ledger genesis text)")
    }
}

/// Arguments as the control socket takes them: a JSON array of hex strings.
func controlArgs(_ args: [String]) -> String {
    let hex = args.map { Hex.encode(Array($0.utf8)) }
    return String(decoding: try! JSONSerialization.data(withJSONObject: hex), as: UTF8.self)
}

struct LedgerSubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Sign an invoke with the node's identity and submit it; wait until it is committed and print the block height, transaction id and result. With --data: offline, one new block on a sample ledger (`ledger sample`).")
    @OptionGroup var options: LedgerDataOptions
    @Option(help: "With --data: which public test signer signs (test seed 500+N). Never for a real mesh.")
    var signer = 0
    @Argument(help: "Chaincode (kv, registry, cull, anchor, validators) or a deployed contract's name.")
    var chaincode: String
    @Argument(help: "Function (kv: put, delete; registry: register, update, retire; cull: cull; anchor: put; validators: add, remove).")
    var function: String
    @Argument(help: "Arguments (UTF-8 text).")
    var args: [String] = []
    @Flag(name: .customLong("no-wait"), help: "Return the transaction id as soon as the node accepted it.")
    var noWait = false
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        if let data = options.data {
            let (result, height) = try OfflineCommit.commit(data: data, signer: signer, .invoke, chaincode, function, args.map { Array($0.utf8) })
            try printResult(result, height: height, contract: BuiltIns.named(chaincode) == nil, json: json)
            return
        }
        let r = try options.fetch("ledger_submit", ["chaincode": chaincode, "function": function, "args": controlArgs(args), "wait": noWait ? "0" : "1"],
                                  timeoutSeconds: 20)
        let tx = r["tx"] as? String ?? ""
        if !noWait, BuiltIns.named(chaincode) == nil {
            // A deployed contract: its output, events and fuel decoded.
            let (result, height) = try controlResult(r)
            if !json, case .ok = result { print("committed at height \(height): tx \(tx)") }
            return try printResult(result, height: height, contract: true, json: json, extra: ["tx": tx, "status": r["status"] ?? ""])
        }
        if json { printJSON(r) }
        if noWait {
            if !json { print("accepted \(tx)") }
            return
        }
        let height = r["height"].map { "\($0)" } ?? "?"
        if (r["ok"] as? Bool) == true {
            if !json { print("committed at height \(height): tx \(tx)\nresult: ok \(r["output"] as? String ?? "")") }
        } else {
            throw CLIError("transaction \(tx) \(r["detail"] as? String ?? "was refused") (\(r["reason"] as? String ?? ""))")
        }
    }
}

struct LedgerHistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Every transaction that named a key (kv: each put and delete, and refused attempts), oldest first.")
    @OptionGroup var options: LedgerDataOptions
    @Argument(help: "The key (UTF-8 text).")
    var key: String
    @Option(help: "The chaincode whose keys these are.")
    var chaincode = "kv"
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let entries: [[String: Any]]
        if options.data != nil {
            do { entries = try options.open().history(chaincode: chaincode, key: Array(key.utf8)).map(\.fields) } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
        } else {
            entries = try options.fetch("ledger_history", ["key": key, "chaincode": chaincode], timeoutSeconds: 30)["entries"] as? [[String: Any]] ?? []
        }
        if json { printJSON(["key": key, "chaincode": chaincode, "entries": entries]); return }
        if entries.isEmpty { print("no transaction of \(chaincode) names \(key)") }
        for e in entries {
            print("height \(e["height"] ?? "?") index \(e["index"] ?? "?") \(e["function"] ?? "?") by \(e["signer"] as? String ?? "?") tx \(e["tx"] ?? "?"): \(e["result"] ?? "?")")
        }
    }
}

func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

struct LedgerVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-check from genesis every block hash, link, transaction signature, quorum certificate, result and state root; name the first height that fails.")

    @OptionGroup var options: LedgerDataOptions
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let store = try options.open()
        do {
            let height = try store.verify(genesis: try options.givenGenesis())
            let head = try store.header(at: height)
            let hash = try head.map { Hex.encode($0.hash(chainID: try (options.givenGenesis() ?? store.genesis())!.chainID)) } ?? ""
            if json { printJSON(["ok": true, "height": height, "head": hash]) } else { print("ledger verified: \(height) blocks, head \(hash)") }
        } catch let failure as LedgerVerifier.Failure {
            if json { printJSON(["ok": false, "height": failure.height, "error": failure.description]) }
            throw CLIError("ledger verify failed at height \(failure.height): \(failure)")
        } catch {
            throw CLIError("ledger verify: \(error)")
        }
    }
}

struct LedgerStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Height, head hash, state root and row count.")
    @OptionGroup var options: LedgerDataOptions
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        if options.data == nil {
            let r = try options.fetch("ledger_status", [:])
            if json { printJSON(r); return }
            print("role \(r["role"] ?? "?")\nheight \(r["height"] ?? "?") (durable \(r["durable_height"] ?? "?"), certified \(r["certified_height"] ?? "?"))\nhead \(r["head"] ?? "?")\nstate root \(r["state_root"] ?? "?") (\(r["rows"] ?? "?") rows)")
            if let h = r["halted"] { print("HALTED \(h)") }
            if let f = r["far_behind"] { print("far behind: \(f)") }
            return
        }
        let store = try options.open()
        let ledger: Ledger
        do { ledger = try store.load(genesis: try options.givenGenesis()) } catch { throw CLIError("\(error)") }
        let fields: [String: Any] = ["height": ledger.height, "head": Hex.encode(ledger.headHash), "state_root": Hex.encode(ledger.state.root),
                                     "rows": ledger.state.rows.count, "chain_id": Hex.encode(ledger.genesis.chainID)]
        if json { printJSON(fields) } else {
            print("height \(ledger.height)\nhead \(Hex.encode(ledger.headHash))\nstate root \(Hex.encode(ledger.state.root)) (\(ledger.state.rows.count) rows)")
        }
    }
}

struct LedgerBlockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "block", abstract: "One block: header fields and each transaction's result.")
    @OptionGroup var options: LedgerDataOptions
    @Argument(help: "Height.")
    var height: UInt64
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let store = try options.open()
        guard let h = try store.header(at: height), let g = try options.givenGenesis() ?? store.genesis() else { throw CLIError("no block at height \(height)") }
        var txs: [[String: Any]] = []
        for (i, t) in try store.txBytes(at: height).enumerated() {
            let (p, r) = try LedgerRows.decodeTxValue(t)
            let id = (try? Transaction.decode(p)).map { Hex.encode($0.id) } ?? ""
            txs.append(["index": i, "id": id, "result": r.description])
        }
        let fields: [String: Any] = ["height": h.height, "hash": Hex.encode(h.hash(chainID: g.chainID)), "previous": Hex.encode(h.previous),
                                     "round": h.round, "consensus_hash": Hex.encode(h.consensusHash), "tx_root": Hex.encode(h.txRoot),
                                     "results_root": Hex.encode(h.resultsRoot), "state_root": Hex.encode(h.stateRoot),
                                     "signers": h.certificate.signers.population, "transactions": txs]
        if json { printJSON(fields) } else {
            print("block \(h.height) \(fields["hash"]!)\n  previous \(fields["previous"]!)\n  state root \(fields["state_root"]!)\n  certified by \(h.certificate.signers.population) validators in round \(h.round)")
            for t in txs { print("  tx \(t["index"]!) \(t["id"]!): \(t["result"]!)") }
        }
    }
}

struct LedgerTxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tx", abstract: "One transaction by id: where it is, what it asked, its result.")
    @OptionGroup var options: LedgerDataOptions
    @Argument(help: "Transaction id (64 hex digits).")
    var id: String
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        guard let raw = Hex.decode(id), raw.count == 32 else { throw CLIError("a transaction id is 64 hex digits") }
        guard let found = try options.open().transaction(id: raw) else { throw CLIError("no transaction \(id)") }
        let tx = try? Transaction.decode(found.payload)
        let fields: [String: Any] = ["height": found.height, "index": found.index, "result": found.result.description,
                                     "kind": tx.map { "\($0.kind)" } ?? "", "chaincode": tx?.chaincode ?? "", "function": tx?.function ?? "",
                                     "signer": tx.map { Hex.encode($0.signer) } ?? "", "nonce": tx?.nonce ?? 0]
        if json { printJSON(fields) } else {
            print("height \(found.height) index \(found.index): \(fields["kind"]!) \(fields["chaincode"]!).\(fields["function"]!) by \(fields["signer"]!) nonce \(fields["nonce"]!)\nresult: \(found.result)")
        }
    }
}

struct LedgerQueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Read committed state from the replica (no block); --prove writes a proof that `ledger check-proof` checks offline.")
    @OptionGroup var options: LedgerDataOptions
    @Argument(help: "Chaincode (kv, registry, cull, anchor, validators) or a deployed contract's name.")
    var chaincode: String
    @Argument(help: "Query function (kv: get, range; registry, cull, anchor: get; validators: get; a contract's export).")
    var function: String
    @Argument(help: "Arguments (UTF-8 text).")
    var args: [String] = []
    @Option(help: "Write the answer's proof (header, validators' header certificate, Merkle proofs) to this file.")
    var prove: String?
    @Option(help: "A contract: run it as it stood at this height (the version then current, over the rows then, with that block's time; the stored blocks are re-executed up to it).")
    var height: UInt64?
    @Option(help: "A contract: the caller's identity key (64 hex digits) the contract sees.")
    var caller: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let contract = BuiltIns.named(chaincode) == nil
        guard contract || (height == nil && caller == nil) else { throw CLIError("--height and --caller are for deployed contracts") }
        if prove != nil, height != nil || caller != nil {
            throw CLIError("a proof is of an anonymous query at the head: leave out --height and --caller with --prove")
        }
        if options.data == nil {
            var fields = ["chaincode": chaincode, "function": function, "args": controlArgs(args), "prove": prove == nil ? "0" : "1"]
            if let caller { fields["caller"] = caller }
            if let height { fields["height"] = String(height) }
            let r = try options.fetch("ledger_query", fields)
            if let prove, let hex = r["proof_hex"] as? String, let bytes = Hex.decode(hex) {
                try Data(bytes).write(to: URL(fileURLWithPath: prove))
            }
            if contract {
                let out = (r["output_hex"] as? String).flatMap { Hex.decode($0) } ?? []
                let result: TxResult = (r["ok"] as? Bool) == true ? .ok(out)
                    : .refused(Refusal((r["reason"] as? String).flatMap { n in RefusalReason.allCases.first { "\($0)" == n } } ?? .contractFailed,
                                       r["detail"] as? String ?? ""))
                return try printResult(result, height: (r["height"] as? NSNumber)?.uint64Value ?? 0, contract: true, json: json)
            }
            if json { var o = r; o["proof_hex"] = nil; printJSON(o) }
            guard (r["ok"] as? Bool) == true else { throw CLIError("query refused: \(r["reason"] ?? ""): \(r["detail"] ?? "")") }
            if !json { print(r["output"] as? String ?? "") }
            return
        }
        let store = try options.open()
        var ledger: Ledger
        do { ledger = try store.load(genesis: try options.givenGenesis()) } catch { throw CLIError("\(error)") }
        if let height, height < ledger.height {
            // The state at that height: the stored blocks re-executed from genesis up to it.
            do { ledger = try store.ledger(at: height, from: Ledger(genesis: ledger.genesis)) } catch { throw CLIError("\(error)") }
        }
        let a = args.map { Array($0.utf8) }
        let callerKey: [UInt8] = try caller.map { (c: String) throws -> [UInt8] in
            guard let k = Hex.decode(c), k.count == 32 else { throw CLIError("--caller is a 64-hex-digit identity key") }
            return k
        } ?? []
        let answer: QueryAnswer
        if contract, let c = ledger.queryContract(chaincode, function: function, args: a, caller: callerKey, height: height) {
            answer = c
        } else {
            answer = ledger.query(chaincode: chaincode, function: function, args: a)
        }
        if let prove {
            guard let cert = try store.headerCertificate(at: ledger.height) else {
                throw CLIError("height \(ledger.height) has no header certificate yet: its state root is not certified, so no proof can be given")
            }
            guard let proof = ledger.prove(chaincode: chaincode, function: function, args: a, answer: answer, headerCertificate: cert) else {
                throw CLIError("the ledger has no block yet")
            }
            try Data(proof.encoded).write(to: URL(fileURLWithPath: prove))
        }
        if contract { return try printResult(answer.result, height: ledger.height, contract: true, json: json) }
        switch answer.result {
        case .ok(let out):
            let text = String(validating: out, as: UTF8.self)
            if json { printJSON(["ok": true, "height": ledger.height, "output_hex": Hex.encode(out), "output": text ?? ""]) } else {
                print(text ?? Hex.encode(out))
            }
        case .refused(let r):
            if json { printJSON(["ok": false, "height": ledger.height, "reason": "\(r.reason)", "detail": r.detail]) }
            throw CLIError("query refused: \(r)")
        }
    }
}

struct LedgerCheckProofCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-proof",
        abstract: "Check a query proof offline against a genesis (the validator set is the only thing trusted).")
    @Argument(help: "The proof file `ledger query --prove` wrote.")
    var proof: String
    @Option(help: "Genesis file: the one `iotaf network init --validators` writes (DIR/genesis), or a ledger genesis text.")
    var genesis: String?
    @Option(help: "Or: a data directory whose ledger holds the genesis.")
    var data: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let g: LedgerGenesis
        if let genesis {
            g = try readLedgerGenesis(genesis)
        } else if let data {
            guard let stored = try? LedgerStore(path: (data as NSString).appendingPathComponent(LedgerStore.fileName), readOnly: true).genesis() else {
                throw CLIError("no ledger genesis in \(data)")
            }
            g = stored
        } else {
            throw CLIError("give --genesis FILE (or --data DIR): the validator set the proof must be certified by")
        }
        guard let bytes = FileManager.default.contents(atPath: proof) else { throw CLIError("cannot read \(proof)") }
        do {
            let p = try QueryProof.decode([UInt8](bytes))
            try p.check(genesis: g)
            let fields: [String: Any] = ["ok": true, "height": p.header.height, "query": "\(p.chaincode).\(p.function)", "result": p.result.description]
            if json { printJSON(fields) } else { print("proof checks: \(p.chaincode).\(p.function) at height \(p.header.height) → \(p.result)") }
        } catch {
            if json { printJSON(["ok": false, "error": "\(error)"]) }
            throw CLIError("proof does not check: \(error)")
        }
    }
}

struct LedgerSampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Write a sample ledger certified by four fixed test validators (public test keys: for trying verify, query and proofs, never for a real mesh).")
    @Option(help: "Data directory to create DIR/ledger.sqlite in.")
    var data: String
    @Option(help: "Blocks to write.")
    var blocks = 10
    @Option(help: "kv puts per block.")
    var perBlock = 20

    func run() throws {
        let path = (data as NSString).appendingPathComponent(LedgerStore.fileName)
        guard !FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path) exists") }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        var chain = try CertifiedChain(validatorSeeds: (0..<4).map { TransactionSigner.testSeed(UInt64($0)) }, admins: [])
        var signer = try TransactionSigner(seed: TransactionSigner.testSeed(500))
        let store = try LedgerStore(path: path)
        try store.apply(LedgerRows.genesisOps(chain.genesis))
        var ledger = Ledger(genesis: chain.genesis)
        for h in 0..<max(1, blocks) {
            let txs = try (0..<max(0, perBlock)).map { i in
                try signer.sign(.invoke, "kv", "put", [Array("key-\(h)-\(i)".utf8), Array("value \(h)/\(i)".utf8)], chainID: chain.genesis.chainID).encoded
            }
            guard let e = try ledger.apply(chain.next(txs)) else { continue }
            try store.apply(LedgerRows.ops(for: e))
            try store.apply(LedgerRows.ops(for: chain.certify(e)))
        }
        try store.checkpoint()
        try Data(chain.genesis.text.utf8).write(to: URL(fileURLWithPath: (data as NSString).appendingPathComponent("genesis.txt")))
        print("wrote \(path): \(ledger.height) blocks, head \(Hex.encode(ledger.headHash)); genesis in \(data)/genesis.txt")
    }
}
