import MeshCore

/// All state: rows of bytes under keys of bytes, and the sparse Merkle tree over them. A row's key
/// is its namespace (a chaincode's name, or `ledger` for the executor's own rows), a zero byte,
/// then the chaincode's key (`StateKey`), so chaincodes never see each other's rows.
public struct LedgerState: Sendable {
    public private(set) var rows: [[UInt8]: [UInt8]] = [:]
    public private(set) var tree = StateTree()

    public init() {}

    public var root: [UInt8] { tree.rootHash }
    public subscript(key: [UInt8]) -> [UInt8]? { rows[key] }

    public mutating func set(_ key: [UInt8], _ value: [UInt8]?) {
        if let value {
            rows[key] = value
            tree.set(key, value)
        } else if rows.removeValue(forKey: key) != nil {
            tree.remove(key)
        }
    }

    /// The proof of `key`'s row (or of its absence) against `root`.
    public func prove(_ key: [UInt8]) -> StateProof { tree.prove(key) }

    /// The state a genesis starts with: the admins, and the validator set as the `validators` chaincode keeps it.
    public static func initial(_ genesis: LedgerGenesis) -> LedgerState {
        var s = LedgerState()
        for a in genesis.admins { s.set(StateKey.admin(a), [1]) }
        s.set(StateKey.make("validators", Array("set".utf8)), ValidatorsChaincode.encodeSet(genesis.consensus.validators.keys.map(\.bytes)))
        return s
    }
}

public enum StateKey {
    public static func make(_ namespace: String, _ key: [UInt8]) -> [UInt8] { Array(namespace.utf8) + [0] + key }
    public static func nonce(_ signer: [UInt8]) -> [UInt8] { make("ledger", Array("nonce/".utf8) + signer) }
    static func admin(_ key: [UInt8]) -> [UInt8] { make("ledger", Array("admin/".utf8) + key) }
    public static func culled(_ key: [UInt8]) -> [UInt8] { make("cull", key) }

    /// Splits a state key into its namespace and the chaincode's key (nil if it has no zero byte).
    public static func split(_ key: [UInt8]) -> (namespace: String, key: [UInt8])? {
        guard let z = key.firstIndex(of: 0) else { return nil }
        return (String(decoding: key[..<z], as: UTF8.self), Array(key[(z + 1)...]))
    }
}

/// Reads through pending writes to the state; what a chaincode gets. Writes stay pending until
/// the executor applies them (a refused transaction's writes are dropped).
public struct StateView {
    let base: LedgerState
    let namespace: String
    var pending: [[UInt8]: [UInt8]?] = [:]
    /// Every row read, in order, with what was read: a query's answer is proven by these.
    public private(set) var reads: [(key: [UInt8], value: [UInt8]?)] = []
    /// The writes so far (full state keys; nil: a delete), as the executor applies them.
    public var writes: [[UInt8]: [UInt8]?] { pending }
    /// Set when checking a proof: the rows the proof covers; reading any other sets `readUnproven`.
    var provenKeys: Set<[UInt8]>?
    var readUnproven = false

    /// The view the executor gives one call over `base`, inside `namespace` (public for
    /// `iotaf bench chaincode`, which runs built-in-style chaincode and contracts through it).
    public init(base: LedgerState, namespace: String) {
        self.base = base
        self.namespace = namespace
    }

    public mutating func get(_ key: [UInt8]) -> [UInt8]? {
        let full = StateKey.make(namespace, key)
        let v = pending[full] ?? base[full]
        if let provenKeys, !provenKeys.contains(full) { readUnproven = true }
        reads.append((full, v))
        return v
    }

    public mutating func put(_ key: [UInt8], _ value: [UInt8]) { pending[StateKey.make(namespace, key)] = .some(value) }
    public mutating func delete(_ key: [UInt8]) { pending[StateKey.make(namespace, key)] = .some(nil) }

    /// Rows of this namespace with start <= key < end (end empty: no bound), in key order, at most `limit`.
    public mutating func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])] {
        let prefix = Array(namespace.utf8) + [0]
        var keys = Set(base.rows.keys.filter { $0.starts(with: prefix) })
        for k in pending.keys where k.starts(with: prefix) { keys.insert(k) }
        let sorted = keys.map { Array($0.dropFirst(prefix.count)) }
            .filter { !$0.lexicographicallyPrecedes(start) && (end.isEmpty || $0.lexicographicallyPrecedes(end)) }
            .sorted { $0.lexicographicallyPrecedes($1) }
        var out: [(key: [UInt8], value: [UInt8])] = []
        for k in sorted {
            guard out.count < limit else { break }
            if let v = get(k) { out.append((k, v)) }
        }
        return out
    }

    /// Whether `key` is an admin (an executor row, read through the ledger namespace).
    func isAdmin(_ key: [UInt8]) -> Bool { base[StateKey.admin(key)] != nil }
    func isCulled(_ key: [UInt8]) -> Bool { (pending[StateKey.culled(key)] ?? base[StateKey.culled(key)]) != nil }
}
