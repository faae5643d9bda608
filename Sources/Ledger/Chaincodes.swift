import Consensus
import MeshCore

/// What a chaincode is told about a call: the caller's verified identity (the transaction's
/// signer, whose signature the executor checked), whether it is an admin, and the height.
public struct Invocation {
    public let caller: [UInt8]
    public let callerIsAdmin: Bool
    public let height: UInt64
    public let function: String
    public let args: [[UInt8]]

    public init(caller: [UInt8], callerIsAdmin: Bool, height: UInt64, function: String, args: [[UInt8]]) {
        self.caller = caller
        self.callerIsAdmin = callerIsAdmin
        self.height = height
        self.function = function
        self.args = args
    }
}

/// A built-in chaincode: deterministic functions of the call and the state it reads; no clock,
/// no randomness, no I/O (what made Fabric v0.6 halt). `invokes` may write; `queries` only read.
public protocol Chaincode: Sendable {
    var name: String { get }
    var invokes: Set<String> { get }
    var queries: Set<String> { get }
    /// Runs `call.function`; returns the output, or refuses with a reason. May set `effects`.
    func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8]
}

/// What an invocation changes beyond its rows: a validator-set change to hand to consensus.
public struct Effects: Sendable, Equatable {
    public var validatorChange: ValidatorChange?
    public init() {}
}

/// A new validator set and the height from which it applies.
public struct ValidatorChange: Sendable, Equatable {
    public let atHeight: UInt64
    public let validators: [[UInt8]]

    public init(atHeight: UInt64, validators: [[UInt8]]) {
        self.atHeight = atHeight
        self.validators = validators
    }
}

/// The built-in chaincodes by name.
public enum BuiltIns {
    public static let all: [any Chaincode] = [KVChaincode(), RegistryChaincode(), CullChaincode(), AnchorChaincode(), ValidatorsChaincode()]
    public static func named(_ name: String) -> (any Chaincode)? { all.first { $0.name == name } }
}

// MARK: - argument helpers

enum Args {
    static func count(_ call: Invocation, _ n: ClosedRange<Int>, _ usage: String) throws(Refusal) {
        guard n.contains(call.args.count) else { throw Refusal(.badArguments, "\(call.function) takes \(usage)") }
    }
    static func text(_ b: [UInt8], _ what: String) throws(Refusal) -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw Refusal(.badArguments, "\(what) is not UTF-8 text") }
        return s
    }
    static func key(_ b: [UInt8], _ what: String) throws(Refusal) -> [UInt8] {
        guard let s = String(validating: b, as: UTF8.self), let k = Hex.decode(s), k.count == 32, IdentityKey.isCanonical(k) else {
            throw Refusal(.badArguments, "\(what) must be a 64-hex-digit canonical Ed25519 public key")
        }
        return k
    }
    static func number(_ b: [UInt8], _ what: String) throws(Refusal) -> UInt64 {
        guard let s = String(validating: b, as: UTF8.self), let n = UInt64(s) else { throw Refusal(.badArguments, "\(what) must be a decimal number") }
        return n
    }
}

// MARK: - kv

/// Keys and values; a key belongs to whoever wrote it first: only that signer may overwrite or
/// delete it. Row: `owner(32) || value`.
public struct KVChaincode: Chaincode {
    public static let maxKeyBytes = 1024
    public static let rangeLimit = 1000
    public let name = "kv"
    public let invokes: Set<String> = ["put", "delete"]
    public let queries: Set<String> = ["get", "range"]
    public init() {}

    public func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8] {
        switch call.function {
        case "put":
            try Args.count(call, 2...2, "a key and a value")
            let key = try checkedKey(call.args[0])
            if let row = state.get(key), Array(row.prefix(32)) != call.caller {
                throw Refusal(.notOwner, "key is owned by \(Hex.encode(row.prefix(6)))…")
            }
            state.put(key, call.caller + call.args[1])
            return []
        case "delete":
            try Args.count(call, 1...1, "a key")
            let key = try checkedKey(call.args[0])
            guard let row = state.get(key) else { throw Refusal(.notFound, "no such key") }
            guard Array(row.prefix(32)) == call.caller else { throw Refusal(.notOwner, "key is owned by \(Hex.encode(row.prefix(6)))…") }
            state.delete(key)
            return []
        case "get":
            try Args.count(call, 1...1, "a key")
            guard let row = state.get(try checkedKey(call.args[0])) else { throw Refusal(.notFound, "no such key") }
            return Array(row.dropFirst(32))
        case "range":
            try Args.count(call, 1...2, "a start key and an optional end key (exclusive)")
            let rows = state.range(from: call.args[0], to: call.args.count > 1 ? call.args[1] : [], limit: KVChaincode.rangeLimit)
            var w = ByteWriter()
            w.u32(UInt32(rows.count))
            for r in rows {
                LedgerCodec.bytes(r.key, into: &w)
                LedgerCodec.bytes(Array(r.value.dropFirst(32)), into: &w)
            }
            return w.bytes
        default:
            throw Refusal(.unknownFunction, "kv has put, delete, get, range")
        }
    }

    func checkedKey(_ k: [UInt8]) throws(Refusal) -> [UInt8] {
        guard !k.isEmpty, k.count <= KVChaincode.maxKeyBytes else { throw Refusal(.badArguments, "a key is 1 to \(KVChaincode.maxKeyBytes) bytes") }
        return k
    }
}

// MARK: - registry

/// Devices and services register their own key on first use: kind, overlay address, attributes.
/// The owner (the registered key) or an admin updates or retires a registration.
/// Row under the registered key: `u8 retired || bytes kind || bytes address || u8 n || n × bytes attribute`.
public struct RegistryChaincode: Chaincode {
    public let name = "registry"
    public let invokes: Set<String> = ["register", "update", "retire"]
    public let queries: Set<String> = ["get"]
    public init() {}

    public func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8] {
        switch call.function {
        case "register":
            try Args.count(call, 2...34, "a kind, an overlay address and up to 32 attributes (key=value)")
            guard state.get(call.caller) == nil else { throw Refusal(.alreadyExists, "this key is registered; use update") }
            state.put(call.caller, try record(retired: false, call.args))
            return []
        case "update":
            try Args.count(call, 3...35, "a registered key (hex), a kind, an overlay address and up to 32 attributes")
            let target = try Args.key(call.args[0], "the registered key")
            guard state.get(target) != nil else { throw Refusal(.notFound, "key is not registered") }
            guard target == call.caller || call.callerIsAdmin else { throw Refusal(.notOwner, "only the key itself or an admin updates a registration") }
            state.put(target, try record(retired: false, Array(call.args.dropFirst())))
            return []
        case "retire":
            try Args.count(call, 1...1, "a registered key (hex)")
            let target = try Args.key(call.args[0], "the registered key")
            guard var row = state.get(target) else { throw Refusal(.notFound, "key is not registered") }
            guard target == call.caller || call.callerIsAdmin else { throw Refusal(.notOwner, "only the key itself or an admin retires a registration") }
            row[0] = 1
            state.put(target, row)
            return []
        case "get":
            try Args.count(call, 1...1, "a registered key (hex)")
            guard let row = state.get(try Args.key(call.args[0], "the registered key")) else { throw Refusal(.notFound, "key is not registered") }
            return row
        default:
            throw Refusal(.unknownFunction, "registry has register, update, retire, get")
        }
    }

    func record(retired: Bool, _ a: [[UInt8]]) throws(Refusal) -> [UInt8] {
        let kind = try Args.text(a[0], "kind"), address = try Args.text(a[1], "address")
        guard !kind.isEmpty, kind.utf8.count <= 64 else { throw Refusal(.badArguments, "kind is 1 to 64 bytes") }
        guard address.utf8.count <= 64 else { throw Refusal(.badArguments, "address is at most 64 bytes") }
        var w = ByteWriter()
        w.u8(retired ? 1 : 0)
        LedgerCodec.bytes(a[0], into: &w)
        LedgerCodec.bytes(a[1], into: &w)
        w.u8(UInt8(a.count - 2))
        for attr in a.dropFirst(2) {
            let t = try Args.text(attr, "an attribute")
            guard t.contains("="), attr.count <= 256 else { throw Refusal(.badArguments, "an attribute is key=value, at most 256 bytes") }
            LedgerCodec.bytes(attr, into: &w)
        }
        return w.bytes
    }
}

// MARK: - cull

/// The durable record of a cull: an admin culls a node's key; from the next transaction on the
/// executor refuses that key's transactions (`culled_signer`). Row: `u64 height`.
public struct CullChaincode: Chaincode {
    public let name = "cull"
    public let invokes: Set<String> = ["cull"]
    public let queries: Set<String> = ["get"]
    public init() {}

    public func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8] {
        switch call.function {
        case "cull":
            try Args.count(call, 1...1, "a node's public key (hex)")
            guard call.callerIsAdmin else { throw Refusal(.notAdmin, "only an admin culls") }
            let target = try Args.key(call.args[0], "the node's key")
            guard state.get(target) == nil else { throw Refusal(.alreadyExists, "already culled") }
            var w = ByteWriter(); w.u64(call.height)
            state.put(target, w.bytes)
            return []
        case "get":
            try Args.count(call, 1...1, "a node's public key (hex)")
            guard let row = state.get(try Args.key(call.args[0], "the node's key")) else { throw Refusal(.notFound, "not culled") }
            return row
        default:
            throw Refusal(.unknownFunction, "cull has cull, get")
        }
    }
}

// MARK: - anchor

/// Anchors: an object id, a hash, a label and a time (meter collectors' intervals, Lacero objects).
/// Write-once. Row: `signer(32) || bytes hash || bytes label || u64 time || u64 height`.
/// An object id `meter/<64 hex>/…` names its owner: only the key it names may put it, so nobody
/// can take a collector's anchor id first (write-once would keep the collector's anchor out).
public struct AnchorChaincode: Chaincode {
    public let name = "anchor"
    public let invokes: Set<String> = ["put"]
    public let queries: Set<String> = ["get"]
    public init() {}

    public func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8] {
        switch call.function {
        case "put":
            try Args.count(call, 4...4, "an object id, a hash (hex), a label and a time (unix seconds)")
            let id = call.args[0]
            guard !id.isEmpty, id.count <= 256 else { throw Refusal(.badArguments, "an object id is 1 to 256 bytes") }
            guard let hs = String(validating: call.args[1], as: UTF8.self), let hash = Hex.decode(hs), (16...64).contains(hash.count) else {
                throw Refusal(.badArguments, "the hash is 16 to 64 bytes in hex")
            }
            guard call.args[2].count <= 256 else { throw Refusal(.badArguments, "a label is at most 256 bytes") }
            let time = try Args.number(call.args[3], "the time")
            if let owner = Self.owner(of: id), owner != Hex.encode(call.caller) {
                throw Refusal(.notOwner, "an object id under meter/<key>/ is put only by that key")
            }
            guard state.get(id) == nil else { throw Refusal(.alreadyExists, "object already anchored") }
            var w = ByteWriter()
            w.raw(call.caller)
            LedgerCodec.bytes(hash, into: &w)
            LedgerCodec.bytes(call.args[2], into: &w)
            w.u64(time)
            w.u64(call.height)
            state.put(id, w.bytes)
            return []
        case "get":
            try Args.count(call, 1...1, "an object id")
            guard let row = state.get(call.args[0]) else { throw Refusal(.notFound, "object not anchored") }
            return row
        default:
            throw Refusal(.unknownFunction, "anchor has put, get")
        }
    }

    /// The owner an object id names: the hex key `k` (exactly as written) of `meter/k/…`, nil for
    /// any other id. A `meter/` id whose second part is not 64 hex characters names no owner
    /// any key could match, so it can be put by nobody.
    static func owner(of id: [UInt8]) -> String? {
        let prefix = Array("meter/".utf8)
        guard id.starts(with: prefix) else { return nil }
        let rest = id.dropFirst(prefix.count)
        let key = rest.prefix { $0 != UInt8(ascii: "/") }
        return String(decoding: key, as: UTF8.self)
    }
}

// MARK: - validators

/// Admins add or remove a validator from a later height. Rows: `set` (the latest scheduled set),
/// and `at/u64 height` (the set from that height). The executor hands each change on
/// (`ExecutedBlock.validatorChange`) for consensus to apply at that height.
public struct ValidatorsChaincode: Chaincode {
    public let name = "validators"
    public let invokes: Set<String> = ["add", "remove"]
    public let queries: Set<String> = ["get"]
    public init() {}

    static let setKey = Array("set".utf8)

    public func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8] {
        switch call.function {
        case "add", "remove":
            try Args.count(call, 2...2, "a validator key (hex) and the height from which the change applies")
            guard call.callerIsAdmin else { throw Refusal(.notAdmin, "only an admin changes the validator set") }
            let key = try Args.key(call.args[0], "the validator key")
            let at = try Args.number(call.args[1], "the height")
            guard at > call.height else { throw Refusal(.badArguments, "the change must apply at a later height than \(call.height)") }
            var set = ValidatorsChaincode.decodeSet(state.get(ValidatorsChaincode.setKey) ?? [])
            if call.function == "add" {
                guard !set.contains(key) else { throw Refusal(.alreadyExists, "already a validator") }
                guard set.count < ValidatorSet.maxValidators else { throw Refusal(.badArguments, "at most \(ValidatorSet.maxValidators) validators") }
                set.append(key)
            } else {
                guard let i = set.firstIndex(of: key) else { throw Refusal(.notFound, "not a validator") }
                guard set.count > 1 else { throw Refusal(.badArguments, "the last validator cannot be removed") }
                set.remove(at: i)
            }
            let encoded = ValidatorsChaincode.encodeSet(set)
            state.put(ValidatorsChaincode.setKey, encoded)
            var w = ByteWriter(); w.raw(Array("at/".utf8)); w.u64(at)
            state.put(w.bytes, encoded)
            effects.validatorChange = ValidatorChange(atHeight: at, validators: set)
            return encoded
        case "get":
            try Args.count(call, 0...0, "no arguments")
            return state.get(ValidatorsChaincode.setKey) ?? []
        default:
            throw Refusal(.unknownFunction, "validators has add, remove, get")
        }
    }

    /// `u16 n || n × key(32)`.
    public static func encodeSet(_ keys: [[UInt8]]) -> [UInt8] {
        var w = ByteWriter()
        w.u16(UInt16(keys.count))
        for k in keys { w.raw(k) }
        return w.bytes
    }

    public static func decodeSet(_ b: [UInt8]) -> [[UInt8]] {
        var r = ByteReader(b)
        guard let n = try? r.u16() else { return [] }
        return (0..<Int(n)).compactMap { _ in try? r.raw(32) }
    }
}
