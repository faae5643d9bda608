import Consensus
import Foundation
import Ledger
import LedgerService
import LedgerStore
import MeshCore
import Node

/// `[ledger]`: this node keeps a ledger replica.
public struct LedgerSettings: Sendable, Equatable {
    public var role: LedgerRole
    /// The genesis file; default: `[consensus] genesis`, else `genesis` beside the network key.
    public var genesisPath: String?
    /// Where `ledger.sqlite` lives; default: the node's data directory.
    public var dataDir: String?

    public init(role: LedgerRole, genesisPath: String? = nil, dataDir: String? = nil) {
        self.role = role
        self.genesisPath = genesisPath
        self.dataDir = dataDir
    }
}

/// A control-socket submission waiting for the ledger service's answer.
struct PendingLedgerSubmit {
    let reply: ControlServer.Reply
    let wait: Bool
}

/// The runtime's side of the ledger: the service built from `[ledger]`, the genesis file and the
/// `LedgerStore` it resumes from; `.persist` batches of `ledger.*` tables go to that store (the
/// rest to the peer store); the control socket's `ledger_submit`, `ledger_query`,
/// `ledger_status` and `ledger_history`.
extension NodeRuntime {
    static func genesisPath(_ given: String?, settings: NodeSettings) -> String? {
        given ?? settings.networkKeyPath.map { (($0 as NSString).deletingLastPathComponent as NSString).appendingPathComponent(GenesisFile.fileName) }
    }

    /// The ledger service and its store, or nil when `[ledger]` is absent. Throws, saying what to
    /// fix, for a missing or bad genesis, a store holding another chain, a store that does not
    /// load, or a validator role for a key outside the validator set.
    static func ledgerService(settings: NodeSettings, identity: NodeIdentity) throws -> (LedgerService, LedgerStore)? {
        guard let l = settings.ledger else { return nil }
        guard let path = genesisPath(l.genesisPath ?? settings.consensus?.genesisPath, settings: settings) else {
            throw RuntimeError("[ledger] needs a genesis file: set [ledger] genesis = PATH (or --genesis), or a network key with the genesis beside it (`iotaf network init --validators`)")
        }
        let file = try GenesisFile.read(path)
        let genesis = LedgerGenesis(consensus: file.genesis, admins: file.admins)
        let dir = l.dataDir ?? settings.dataDir
        let storePath = (dir as NSString).appendingPathComponent(LedgerStore.fileName)
        let store: LedgerStore
        let ledger: Ledger
        var recent: [ServedBlock] = []
        let config = LedgerServiceConfig(role: l.role, genesis: genesis)
        do {
            try DataDirectory.create(dir)
            store = try LedgerStore(path: storePath)
            if let stored = try store.genesis() {
                guard stored == genesis else {
                    throw RuntimeError("\(storePath) holds the ledger of another genesis (chain id \(Hex.encode(stored.chainID.prefix(8)))…, not \(Hex.encode(genesis.chainID.prefix(8)))… from \(path)); point [ledger] data at an empty directory or use that chain's genesis")
                }
            } else {
                try store.apply(LedgerRows.genesisOps(genesis))
            }
            ledger = try store.load(genesis: genesis)
            // The last blocks, to serve replicas that sync and to collect late header votes.
            let low = ledger.height > UInt64(config.serveWindow) ? ledger.height - UInt64(config.serveWindow) + 1 : 1
            if ledger.height >= 1 {
                for h in low...ledger.height {
                    guard let hb = try store.headerBytes(at: h), let header = try? LedgerHeader.decode(hb) else { continue }
                    let payloads = try store.txBytes(at: h).map { try LedgerRows.decodeTxValue($0).payload }
                    recent.append(ServedBlock(height: h, header: hb, hash: header.hash(chainID: genesis.chainID), payloads: payloads,
                                              certificate: try store.headerCertificate(at: h)))
                }
            }
        } catch let e as RuntimeError {
            throw e
        } catch {
            throw RuntimeError("ledger store \(storePath): \(error); `iotaf ledger verify --data \(dir)` names the first bad height")
        }
        do {
            return (try LedgerService(config: config, identity: identity, ledger: ledger, recent: recent), store)
        } catch let e as ConsensusServiceError {
            throw RuntimeError("\(path): \(e) (or run it with [ledger] role = \"replica\")")
        }
    }

    /// The ledger service as it is now, if this node keeps a ledger.
    public var ledger: LedgerService? { core.service(LedgerService.self) }

    static func isLedgerBatch(_ batch: PersistBatch) -> Bool {
        guard let first = batch.ops.first else { return false }
        switch first {
        case let .put(table, _, _), let .delete(table, _), let .replace(table, _): return table.hasPrefix("ledger.")
        }
    }

    static func json(_ object: [String: Any]) -> [UInt8] { ledgerJSON(object) }

    /// Arguments as the CLI sends them: a JSON array of hex strings, in one string field.
    static func ledgerArgs(_ fields: [String: Any]) -> [[UInt8]]? {
        guard let text = fields["args"] as? String else { return [] }
        guard let list = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String] else { return nil }
        var out: [[UInt8]] = []
        for a in list {
            if a.isEmpty { out.append([]); continue }
            guard let b = Hex.decode(a.lowercased()) else { return nil }
            out.append(b)
        }
        return out
    }

    /// `ledger_submit`: answered when the ledger service says (accepted with `wait` = "0",
    /// committed, refused or timed out).
    func startLedgerSubmit(_ fields: [String: Any], reply: @escaping ControlServer.Reply) {
        guard let service = ledger else { reply(Array(ControlJSON.error("this node keeps no ledger (no [ledger] role in its config)"))); return }
        if let h = service.halted { reply(Array(ControlJSON.error("the ledger is halted: \(h)"))); return }
        let wait = (fields["wait"] as? String) != "0"
        let request: LedgerRequest
        let id = nextLedgerRequest
        nextLedgerRequest += 1
        if (fields["kind"] as? String) == "deploy" {
            // A contract deploy signed by this node: `chaincode` = the contract's name, `module` = the module in hex.
            guard let name = fields["chaincode"] as? String, let hex = fields["module"] as? String, let module = Hex.decode(hex.lowercased()) else {
                reply(Array(ControlJSON.error("a deploy needs \"chaincode\" (the contract's name) and \"module\" (the WebAssembly binary in hex)")))
                return
            }
            request = .deploy(request: id, name: name, module: module)
        } else if let hex = fields["transaction"] as? String {
            guard let bytes = Hex.decode(hex.lowercased()) else { reply(Array(ControlJSON.error("\"transaction\" must be hex"))); return }
            request = .submitSigned(request: id, transaction: bytes)
        } else {
            guard let chaincode = fields["chaincode"] as? String, let function = fields["function"] as? String else {
                reply(Array(ControlJSON.error("ledger_submit needs \"chaincode\" and \"function\" (and \"args\": a JSON array of hex strings)")))
                return
            }
            guard let args = Self.ledgerArgs(fields) else { reply(Array(ControlJSON.error("\"args\" must be a JSON array of hex strings"))); return }
            request = .submit(request: id, chaincode: chaincode, function: function, args: args)
        }
        pendingLedgerSubmits[id] = PendingLedgerSubmit(reply: reply, wait: wait)
        feed(.command(.service(LedgerService.protocolID, ServicePayload(request))))
        // The node stopped, or nothing answered at once and nothing will (never expected).
        if stopping, let p = pendingLedgerSubmits.removeValue(forKey: id) { p.reply(Array(ControlJSON.error("the node is stopping"))) }
    }

    /// The ledger service's answers to control-socket submissions.
    func ledgerEvent(_ e: LedgerEvent) {
        switch e {
        case let .accepted(request, txID):
            guard let p = pendingLedgerSubmits[request], !p.wait else { return }
            pendingLedgerSubmits[request] = nil
            p.reply(Self.json(["tx": Hex.encode(txID), "status": "accepted"]))
        case let .committed(request, txID, height, result):
            guard let p = pendingLedgerSubmits.removeValue(forKey: request) else { return }
            var fields: [String: Any] = ["tx": Hex.encode(txID), "height": height, "status": "committed"]
            switch result {
            case .ok(let out):
                fields["ok"] = true
                fields["output_hex"] = Hex.encode(out)
                fields["output"] = String(validating: out, as: UTF8.self) ?? ""
            case .refused(let r):
                fields["ok"] = false
                fields["reason"] = "\(r.reason)"
                fields["detail"] = "refused by the ledger at height \(height): \(r.detail)"
            }
            p.reply(Self.json(fields))
        case let .refused(request, _, reason):
            guard let p = pendingLedgerSubmits.removeValue(forKey: request) else { return }
            p.reply(Array(ControlJSON.error(reason)))
        case let .timedOut(request, txID):
            guard let p = pendingLedgerSubmits.removeValue(forKey: request) else { return }
            p.reply(Array(ControlJSON.error("transaction \(Hex.encode(txID)) was not committed within \(ledger.map { "\($0.config.submitTimeout)" } ?? "the timeout"); it may still be: `iotaf ledger tx \(Hex.encode(txID))` later, and check `iotaf consensus status` on the validators")))
        case let .halted(why):
            logger.error("ledger halted: \(why)")
        case .applied, .certified:
            break
        }
    }

    /// Answers every waiting submission: the node is stopping.
    func finishLedgerSubmits() {
        let pending = pendingLedgerSubmits
        pendingLedgerSubmits = [:]
        for (_, p) in pending.sorted(by: { $0.key < $1.key }) { p.reply(Array(ControlJSON.error("the node stopped before the transaction was committed"))) }
    }

    func answerLedger(_ command: String, _ fields: [String: Any], reply: @escaping ControlServer.Reply) {
        guard let service = ledger else { reply(Array(ControlJSON.error("this node keeps no ledger (no [ledger] role in its config)"))); return }
        switch command {
        case "ledger_query":
            guard let chaincode = fields["chaincode"] as? String, let function = fields["function"] as? String else {
                reply(Array(ControlJSON.error("ledger_query needs \"chaincode\" and \"function\" (and \"args\": a JSON array of hex strings)")))
                return
            }
            guard let args = Self.ledgerArgs(fields) else { reply(Array(ControlJSON.error("\"args\" must be a JSON array of hex strings"))); return }
            // A deployed contract may be asked as a caller (`caller`, a key in hex) and at an older version (`height`).
            var caller: [UInt8] = []
            if let c = fields["caller"] as? String, !c.isEmpty {
                guard let k = Hex.decode(c.lowercased()), k.count == 32 else { reply(Array(ControlJSON.error("\"caller\" must be a 64-hex-digit identity key"))); return }
                caller = k
            }
            let at = (fields["height"] as? String).flatMap { UInt64($0) }
            let prove = (fields["prove"] as? String) == "1"
            let contract = BuiltIns.named(chaincode) == nil
            guard contract || (caller.isEmpty && at == nil) else { reply(Array(ControlJSON.error("\"caller\" and \"height\" are for deployed contracts"))); return }
            guard !prove || (caller.isEmpty && at == nil) else {
                reply(Array(ControlJSON.error("a proof is of an anonymous query at the head (no \"caller\", no \"height\")")))
                return
            }
            let head = service.ledger, certificate = service.headCertificate, callerKey = caller, store = ledgerStore
            guard at.map({ $0 <= head.height }) ?? true else {
                reply(Array(ControlJSON.error("height \(at!) is above this node's head, \(head.height)")))
                return
            }
            // The answer (and its proof) from a snapshot of the replica: a contract runs on the
            // thread pool (its fuel may take a while to burn), a built-in's lookup on the loop. At
            // an older height the stored blocks are re-executed up to it first (`LedgerStore.ledger(at:)`).
            let work: @Sendable () -> [UInt8] = {
                var ledger = head
                if let at, at < head.height, let store {
                    var start = Ledger(genesis: head.genesis)
                    start.contracts = head.contracts
                    do { ledger = try store.ledger(at: at, from: start) } catch {
                        return Array(ControlJSON.error("the ledger at height \(at): \(error)"))
                    }
                }
                let answer = contract ? ledger.queryContract(chaincode, function: function, args: args, caller: callerKey, height: at)
                    ?? ledger.query(chaincode: chaincode, function: function, args: args) : ledger.query(chaincode: chaincode, function: function, args: args)
                var out: [String: Any] = ["height": ledger.height]
                switch answer.result {
                case .ok(let o):
                    out["ok"] = true; out["output_hex"] = Hex.encode(o); out["output"] = String(validating: o, as: UTF8.self) ?? ""
                case .refused(let r):
                    out["ok"] = false; out["reason"] = "\(r.reason)"; out["detail"] = r.detail
                }
                if prove {
                    guard let certificate else {
                        return Array(ControlJSON.error("no proof: the header certificate of height \(ledger.height) (the head) has not formed here yet; retry in a moment"))
                    }
                    guard let p = ledger.prove(chaincode: chaincode, function: function, args: args, answer: answer, headerCertificate: certificate) else {
                        return Array(ControlJSON.error("no proof: no block yet, nothing to prove against"))
                    }
                    out["proof_hex"] = Hex.encode(p.encoded)
                }
                return ledgerJSON(out)
            }
            if contract { loop.offload(work, completion: reply) } else { reply(work()) }
        case "ledger_history":
            guard let key = fields["key"] as? String else { reply(Array(ControlJSON.error("ledger_history needs \"key\" (a kv key, UTF-8)"))); return }
            guard let store = ledgerStore else { reply(Array(ControlJSON.error("no ledger store"))); return }
            let chaincode = (fields["chaincode"] as? String) ?? "kv"
            loop.offload({ () -> Result<[LedgerStore.HistoryEntry], LedgerError> in
                do { return .success(try store.history(chaincode: chaincode, key: Array(key.utf8))) } catch {
                    return .failure(LedgerError("\(error)"))
                }
            }, completion: { result in
                switch result {
                case .success(let entries):
                    reply(Self.json(["key": key, "chaincode": chaincode, "entries": entries.map(\.fields)]))
                case .failure(let e):
                    reply(Array(ControlJSON.error("history of \(key): \(e)")))
                }
            })
        default:
            let l = service.ledger
            var c: [String: Int] = [
                "blocks_applied": service.counters.blocksApplied, "commits_already_applied": service.counters.commitsAlreadyApplied,
                "commit_gaps": service.counters.commitGaps, "bad_blocks": service.counters.badBlocks,
                "header_mismatches": service.counters.headerMismatches, "votes_sent": service.counters.votesSent,
                "votes_counted": service.counters.votesCounted, "certificates_formed": service.counters.certificatesFormed,
                "certificates_received": service.counters.certificatesReceived, "submitted": service.counters.submitted,
                "submits_refused": service.counters.submitsRefused, "submits_timed_out": service.counters.submitsTimedOut,
                "forwarded": service.counters.forwarded, "forwards_taken": service.counters.forwardsTaken,
                "sync_requests": service.counters.syncRequests, "sync_served": service.counters.syncServed,
                "sync_blocks_received": service.counters.syncBlocksReceived, "persist_failures": service.counters.persistFailures,
                "blocks_off_loop": service.counters.blocksOffLoop,
            ]
            for (k, v) in service.counters.drops { c["drop_" + k] = v }
            var out: [String: Any] = ["role": service.config.role.rawValue, "height": l.height, "durable_height": service.durableHeight,
                                      "head": Hex.encode(l.headHash), "state_root": Hex.encode(l.state.root), "rows": l.state.rows.count,
                                      "certified_height": service.certifiedHeight, "pending_submissions": service.pendingSubmissions,
                                      "chain_id": Hex.encode(l.genesis.chainID), "counters": c]
            if let v = service.validatorIndex { out["validator_index"] = v }
            if let h = service.halted { out["halted"] = h }
            if let f = service.farBehind { out["far_behind"] = f }
            reply(Self.json(out))
        }
    }
}

/// A control-socket answer as JSON (sorted keys), callable off the loop.
func ledgerJSON(_ object: [String: Any]) -> [UInt8] {
    (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])).map { Array($0) }
        ?? Array(ControlJSON.error("encoding failed"))
}
