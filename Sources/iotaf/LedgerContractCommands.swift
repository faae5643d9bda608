import ArgumentParser
import Contracts
import Foundation
import Ledger
import LedgerStore
import MeshCore

/// `iotaf ledger deploy` and `ledger submit`: through a running node (its control socket: the
/// node signs with its identity and its validators commit), or offline with `--data`: one
/// transaction committed in a new block of a *sample* ledger (`ledger sample`), certified by the
/// sample's four public test validator keys.
struct OfflineCommit: ParsableArguments {
    @Option(help: "Offline: a data directory holding a sample ledger (`iotaf ledger sample`).")
    var data: String?
    @Option(help: "A running node's control socket (default: found as `iotaf status` finds it).")
    var control: String?
    @Option(help: "With --data: which public test signer signs (test seed 500+N; the sample's own kv writer is 0). Never for a real mesh.")
    var signer = 0
    @Flag(help: "Print JSON.")
    var json = false

    /// Signs `kind chaincode function args`, executes it in one new certified block, stores it; returns the result.
    func commit(data: String, _ kind: TransactionKind, _ chaincode: String, _ function: String, _ args: [[UInt8]]) throws -> (TxResult, UInt64) {
        try Self.commit(data: data, signer: signer, kind, chaincode, function, args)
    }

    /// The same for a command that takes `--data` among other options (`ledger submit --data`).
    static func commit(data: String, signer: Int, _ kind: TransactionKind, _ chaincode: String, _ function: String, _ args: [[UInt8]]) throws -> (TxResult, UInt64) {
        let path = (data as NSString).appendingPathComponent(LedgerStore.fileName)
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError("no ledger at \(path); make one with `iotaf ledger sample --data \(data)`") }
        let store = try LedgerStore(path: path)
        var ledger = try store.load()
        var chain = try CertifiedChain(validatorSeeds: (0..<4).map { TransactionSigner.testSeed(UInt64($0)) }, admins: ledger.genesis.admins)
        guard chain.genesis.hash == ledger.genesis.hash else {
            throw CLIError("this ledger's validators are not the sample's test validators: offline deploy and submit only extend a `ledger sample` ledger (a real mesh commits through its validators: not built yet)")
        }
        if let head = ledger.head { chain.resume(at: head.height, certificate: head.certificate) }
        var tx = try TransactionSigner(seed: TransactionSigner.testSeed(500 + UInt64(max(0, signer))))
        var r = ByteReader(ledger.state[StateKey.make("ledger", Array("nonce/".utf8) + tx.publicKey)] ?? [])
        if let last = try? r.u64() { tx.nextNonce = last + 1 }
        let payload = try tx.sign(kind, chaincode, function, args, chainID: ledger.genesis.chainID).encoded
        guard let executed = try ledger.apply(chain.next([payload])) else { throw CLIError("the block was not applied") }
        try store.apply(LedgerRows.ops(for: executed))
        try store.apply(LedgerRows.ops(for: chain.certify(executed)))
        try store.checkpoint()
        return (executed.results[0], executed.header.height)
    }
}

/// Prints a transaction's or query's result; a contract's output is decoded (output, events, fuel).
func printResult(_ result: TxResult, height: UInt64, contract: Bool, json: Bool, extra: [String: Any] = [:]) throws {
    switch result {
    case .ok(let out):
        if contract, let r = ContractResult.decode(out) {
            let text = String(validating: r.output, as: UTF8.self)
            let events = r.events.map { ["topic": String(decoding: $0.topic, as: UTF8.self), "data_hex": Hex.encode($0.data)] }
            if json {
                printJSON(["ok": true, "height": height, "output": text ?? "", "output_hex": Hex.encode(r.output), "fuel": r.fuelUsed, "events": events]
                    .merging(extra) { a, _ in a })
            } else {
                print(text.map { $0.isEmpty ? "(no output)" : $0 } ?? Hex.encode(r.output))
                for e in r.events { print("event \(String(decoding: e.topic, as: UTF8.self)) \(Hex.encode(e.data))") }
                print("fuel \(r.fuelUsed)")
            }
        } else {
            let text = String(validating: out, as: UTF8.self)
            if json { printJSON(["ok": true, "height": height, "output_hex": Hex.encode(out), "output": text ?? ""]) } else { print(text ?? Hex.encode(out)) }
        }
    case .refused(let r):
        if json { printJSON(["ok": false, "height": height, "reason": "\(r.reason)", "detail": r.detail].merging(extra) { a, _ in a }) }
        throw CLIError("refused: \(r)")
    }
}

struct LedgerDeployCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Deploy a WebAssembly contract (.wasm, or .wat compiled here) under NAME, or a new version of it: through a running node (signed by its identity), or offline on a sample ledger with --data.")
    @Argument(help: "Contract name (1 to 64 of a-z, 0-9, '-', '_', '.').")
    var name: String
    @Argument(help: "The module: a .wasm binary or .wat text.")
    var file: String
    @OptionGroup var commit: OfflineCommit

    func run() throws {
        guard let bytes = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
        let module: [UInt8]
        do { module = try ContractSource.module(from: [UInt8](bytes)) } catch { throw CLIError("\(file): \(error.detail)") }
        let result: TxResult, height: UInt64
        if let data = commit.data {
            (result, height) = try commit.commit(data: data, .deploy, name, WasmChaincode.deployFunction, [module])
        } else {
            let r = try LedgerDataOptions.fetch(control: commit.control, "ledger_submit", ["kind": "deploy", "chaincode": name, "module": Hex.encode(module)], timeoutSeconds: 20)
            (result, height) = try controlResult(r)
        }
        guard case .ok(let out) = result, out.count == 36 else { return try printResult(result, height: height, contract: false, json: commit.json) }
        let hash = Hex.encode(out.prefix(32)), version = out.suffix(4).reduce(0) { $0 << 8 | UInt32($1) }
        if commit.json { printJSON(["ok": true, "height": height, "name": name, "hash": hash, "version": version, "bytes": module.count]) } else {
            print("deployed \(name) version \(version) at height \(height): \(module.count) bytes, hash \(hash)")
        }
    }
}


/// A control socket's submission answer as a result and height (`status` committed).
func controlResult(_ r: [String: Any]) throws -> (TxResult, UInt64) {
    let height = (r["height"] as? NSNumber)?.uint64Value ?? 0
    let tx = r["tx"] as? String ?? ""
    if (r["ok"] as? Bool) == true {
        guard let out = (r["output_hex"] as? String).flatMap({ Hex.decode($0) }) else { throw CLIError("transaction \(tx): the node's answer has no output") }
        return (.ok(out), height)
    }
    let reason = (r["reason"] as? String).flatMap { name in RefusalReason.allCases.first { "\($0)" == name } } ?? .contractFailed
    return (.refused(Refusal(reason, "transaction \(tx) \(r["detail"] as? String ?? "was refused")")), height)
}
