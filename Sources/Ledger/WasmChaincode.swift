import Contracts
import MeshCore

/// Deployed WebAssembly chaincode (Docs/chaincode.md): a deploy installs a module under its hash
/// and records its owner; invokes run its exports through `Contracts` over the contract's own rows,
/// which the executor applies like a built-in's, so the state root covers them; queries run the
/// version that was current at the asked height.
///
/// Rows in namespace `wasm`:
/// - `code/‹hash(32)›` = the module bytes (one row per distinct module, shared by contracts);
/// - `contract/‹name›` = `owner(32) || u32 versions || hash(32)` (the current version);
/// - `version/‹name› 0x00 ‹u32 n›` = `u64 from_height || hash(32)` for n = 1…versions.
///
/// A contract's own rows live in namespace `wasm/‹name›`.
public enum WasmChaincode {
    public static let namespace = "wasm"
    /// The function a deploy transaction names; its one argument is the module.
    public static let deployFunction = "wasm"
    static let reservedNames: Set<String> = ["ledger", "wasm"]

    public static func dataNamespace(_ name: String) -> String { "wasm/" + name }

    /// 1 to 64 bytes of `a-z 0-9 - _ .`, not a built-in's name nor `ledger` or `wasm`.
    public static func isValidName(_ name: String) -> Bool {
        let b = Array(name.utf8)
        guard (1...64).contains(b.count), !reservedNames.contains(name), BuiltIns.named(name) == nil else { return false }
        return b.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
    }

    static func codeKey(_ hash: [UInt8]) -> [UInt8] { StateKey.make(namespace, Array("code/".utf8) + hash) }
    static func contractKey(_ name: String) -> [UInt8] { StateKey.make(namespace, Array("contract/".utf8) + Array(name.utf8)) }
    static func versionKey(_ name: String, _ n: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.raw(Array("version/".utf8)); w.raw(Array(name.utf8)); w.u8(0); w.u32(n)
        return StateKey.make(namespace, w.bytes)
    }

    /// A contract's current version and owner.
    public struct Record: Sendable, Equatable {
        public let owner: [UInt8]
        public let versions: UInt32
        public let hash: [UInt8]

        var encoded: [UInt8] {
            var w = ByteWriter()
            w.raw(owner); w.u32(versions); w.raw(hash)
            return w.bytes
        }

        static func decode(_ b: [UInt8]) -> Record? {
            var r = ByteReader(b)
            guard let owner = try? r.raw(32), let n = try? r.u32(), let hash = try? r.raw(32), r.remaining == 0 else { return nil }
            return Record(owner: owner, versions: n, hash: hash)
        }
    }

    /// One version: the height from which it runs and its module's hash.
    public struct Version: Sendable, Equatable {
        public let fromHeight: UInt64
        public let hash: [UInt8]

        var encoded: [UInt8] {
            var w = ByteWriter()
            w.u64(fromHeight); w.raw(hash)
            return w.bytes
        }

        static func decode(_ b: [UInt8]) -> Version? {
            var r = ByteReader(b)
            guard let h = try? r.u64(), let hash = try? r.raw(32), r.remaining == 0 else { return nil }
            return Version(fromHeight: h, hash: hash)
        }
    }

    public static func record(_ name: String, in state: LedgerState) -> Record? {
        state[contractKey(name)].flatMap(Record.decode)
    }

    /// The version that runs at `height` (the last one deployed at or before it).
    public static func version(_ name: String, at height: UInt64, in state: LedgerState) -> (number: UInt32, version: Version)? {
        guard let record = record(name, in: state) else { return nil }
        var n = record.versions
        while n >= 1 {
            if let v = state[versionKey(name, n)].flatMap(Version.decode), v.fromHeight <= height { return (n, v) }
            n -= 1
        }
        return nil
    }

    /// The caller's `registry` attributes (`key=value`), none when unregistered or retired.
    static func attributes(of key: [UInt8], in state: LedgerState) -> [(key: String, value: [UInt8])] {
        guard let row = state[StateKey.make("registry", key)], row.first == 0 else { return [] }
        var r = ByteReader(row, offset: 1)
        guard (try? LedgerCodec.readBytes(&r)) != nil, (try? LedgerCodec.readBytes(&r)) != nil, let n = try? r.u8() else { return [] }
        var out: [(key: String, value: [UInt8])] = []
        for _ in 0..<n {
            guard let a = try? LedgerCodec.readBytes(&r), let eq = a.firstIndex(of: UInt8(ascii: "=")) else { break }
            out.append((String(decoding: a[..<eq], as: UTF8.self), Array(a[(eq + 1)...])))
        }
        return out
    }

    /// A contract failure as the transaction's refusal.
    static func refusal(_ e: ContractError) -> Refusal {
        switch e.kind {
        case .noSuchFunction: Refusal(.unknownFunction, e.detail)
        case .invalidModule: Refusal(.invalidContract, e.detail)
        default: Refusal(.contractFailed, e.detail)
        }
    }

    /// A deploy's output: `hash(32) || u32 version`.
    public static func deployOutput(hash: [UInt8], version: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.raw(hash); w.u32(version)
        return w.bytes
    }
}

/// The view a contract reads and writes through (reads recorded, writes pending).
extension StateView: ContractState {}

extension Ledger {
    typealias Writes = [([UInt8], [UInt8]?)]

    /// A deploy transaction: a new contract (owned by its signer) or a new version of one (by its
    /// owner or an admin). The executor has already checked the signature and advanced the nonce.
    func deployContract(_ tx: Transaction, height: UInt64, writes: Writes) -> (TxResult, Writes) {
        let name = tx.chaincode
        if BuiltIns.named(name) != nil { return (.refused(Refusal(.deployUnsupported, "\(name) is built in")), writes) }
        guard WasmChaincode.isValidName(name) else {
            return (.refused(Refusal(.badArguments, "a contract name is 1 to 64 bytes of a-z, 0-9, '-', '_', '.' and not ledger or wasm")), writes)
        }
        guard tx.function == WasmChaincode.deployFunction, tx.args.count == 1 else {
            return (.refused(Refusal(.badArguments, "a deploy names function \"\(WasmChaincode.deployFunction)\" and carries one argument: the module")), writes)
        }
        let existing = WasmChaincode.record(name, in: state)
        if let existing, existing.owner != tx.signer, state[StateKey.admin(tx.signer)] == nil {
            return (.refused(Refusal(.notOwner, "\(name) belongs to \(Hex.encode(existing.owner.prefix(6)))…; only its owner or an admin deploys a new version")), writes)
        }
        let module: ContractModule
        do { module = try contracts.check(tx.args[0]) } catch { return (.refused(WasmChaincode.refusal(error)), writes) }
        if existing?.hash == module.hash {
            return (.refused(Refusal(.alreadyExists, "this module is already \(name)'s current version")), writes)
        }
        let version = (existing?.versions ?? 0) + 1
        var w = writes
        let codeKey = WasmChaincode.codeKey(module.hash)
        if state[codeKey] == nil { w.append((codeKey, tx.args[0])) }
        w.append((WasmChaincode.contractKey(name), WasmChaincode.Record(owner: existing?.owner ?? tx.signer, versions: version, hash: module.hash).encoded))
        w.append((WasmChaincode.versionKey(name, version), WasmChaincode.Version(fromHeight: height, hash: module.hash).encoded))
        return (.ok(WasmChaincode.deployOutput(hash: module.hash, version: version)), w)
    }

    /// An invoke of a deployed contract, or nil when no contract has that name.
    func invokeContract(_ tx: Transaction, height: UInt64, time: UInt64 = 0, writes: Writes) -> (TxResult, Writes)? {
        guard let record = WasmChaincode.record(tx.chaincode, in: state) else { return nil }
        guard let code = state[WasmChaincode.codeKey(record.hash)] else {
            return (.refused(Refusal(.contractFailed, "the module of \(tx.chaincode)'s current version is missing")), writes)
        }
        let call = ContractCall(function: tx.function, args: tx.args, caller: tx.signer, callerIsAdmin: state[StateKey.admin(tx.signer)] != nil,
                                callerAttributes: WasmChaincode.attributes(of: tx.signer, in: state), height: height,
                                time: time == 0 ? nil : time, readOnly: false)
        var view = StateView(base: state, namespace: WasmChaincode.dataNamespace(tx.chaincode))
        switch contracts.run(hash: record.hash, code: code, call: call, state: &view) {
        case .success(let result):
            var w = writes
            for (k, v) in view.pending.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) { w.append((k, v)) }
            return (.ok(result.encoded), w)
        case .failure(let e):
            return (.refused(WasmChaincode.refusal(e)), writes)
        }
    }

    /// A read-only call of a deployed contract on this replica: the version current at `height`
    /// (default: the head) over the current rows. Nil when no contract has that name.
    public func queryContract(_ name: String, function: String, args: [[UInt8]], caller: [UInt8] = [], height: UInt64? = nil) -> QueryAnswer? {
        // The head's consensus time at the head; an older height's time is not kept (none).
        let at = height ?? self.height
        let time = at == self.height ? head?.time ?? 0 : 0
        return WasmChaincode.query(name, function: function, args: args, caller: caller, height: at, time: time, state: state, contracts: contracts)?.answer
    }
}

extension WasmChaincode {
    /// A read-only call over `state`: the version current at `height`, run on `contracts`. The
    /// answer lists every row read, the contract's record, the version rows looked at and the
    /// module's row first, so a proof of the answer also proves which code ran. With
    /// `provenKeys` (checking a proof), reading any other row is reported. Nil when `state` holds
    /// no contract of that name.
    static func query(_ name: String, function: String, args: [[UInt8]], caller: [UInt8], height: UInt64, time: UInt64, state: LedgerState,
                      contracts: ContractRuntime, provenKeys: Set<[UInt8]>? = nil) -> (answer: QueryAnswer, readUnproven: Bool)? {
        var meta: [QueryAnswer.Read] = []
        func read(_ key: [UInt8]) -> [UInt8]? {
            let v = state[key]
            meta.append(QueryAnswer.Read(key: key, value: v))
            return v
        }
        func answer(_ result: TxResult, _ reads: [QueryAnswer.Read] = []) -> (answer: QueryAnswer, readUnproven: Bool) {
            let all = meta + reads
            return (QueryAnswer(result: result, reads: all), provenKeys.map { p in !all.allSatisfy { p.contains($0.key) } } ?? false)
        }
        guard let record = read(contractKey(name)).flatMap(Record.decode) else { return nil }
        var chosen: Version?
        var n = record.versions
        while n >= 1 {
            if let v = read(versionKey(name, n)).flatMap(Version.decode), v.fromHeight <= height { chosen = v; break }
            n -= 1
        }
        guard let version = chosen else { return answer(.refused(Refusal(.notFound, "\(name) had no version at height \(height)"))) }
        guard let code = read(codeKey(version.hash)) else {
            return answer(.refused(Refusal(.contractFailed, "the module of that version is missing")))
        }
        let call = ContractCall(function: function, args: args, caller: caller, callerIsAdmin: !caller.isEmpty && state[StateKey.admin(caller)] != nil,
                                callerAttributes: caller.isEmpty ? [] : attributes(of: caller, in: state), height: height,
                                time: time == 0 ? nil : time, readOnly: true)
        var view = StateView(base: state, namespace: dataNamespace(name))
        view.provenKeys = provenKeys
        let result: TxResult
        switch contracts.run(hash: version.hash, code: code, call: call, state: &view) {
        case .success(let r): result = .ok(r.encoded)
        case .failure(let e): result = .refused(refusal(e))
        }
        return answer(result, view.reads.map { QueryAnswer.Read(key: $0.key, value: $0.value) })
    }
}
