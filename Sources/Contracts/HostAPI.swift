@_spi(Fuzzing) import WasmKit

/// The host API: the only functions a contract may import, all from module `iotaf`. Pointers and
/// lengths are i32 offsets into the contract's exported memory; every access is bounds-checked
/// and every call charges fuel (`baseFuel` plus one unit per `bytesPerFuel` bytes it moves), so
/// a host call is metered like the operators around it. Docs/chaincode.md, "Host API".
enum HostAPI {
    static let module = "iotaf"
    static let baseFuel: UInt64 = 20
    static let bytesPerFuel: UInt64 = 16

    /// Name → signature. A deploy importing anything else, or with another signature, is refused.
    static let signatures: [String: FunctionType] = [
        "arg_count": FunctionType(parameters: [], results: [.i32]),
        "arg_len": FunctionType(parameters: [.i32], results: [.i32]),
        "arg_read": FunctionType(parameters: [.i32, .i32], results: [.i32]),
        "get": FunctionType(parameters: [.i32, .i32, .i32, .i32], results: [.i32]),
        "put": FunctionType(parameters: [.i32, .i32, .i32, .i32], results: []),
        "delete": FunctionType(parameters: [.i32, .i32], results: []),
        "range": FunctionType(parameters: [.i32, .i32, .i32, .i32, .i32, .i32], results: [.i32]),
        "caller": FunctionType(parameters: [.i32], results: [.i32]),
        "caller_is_admin": FunctionType(parameters: [], results: [.i32]),
        "caller_attr": FunctionType(parameters: [.i32, .i32, .i32, .i32], results: [.i32]),
        "height": FunctionType(parameters: [], results: [.i64]),
        "time": FunctionType(parameters: [], results: [.i64]),
        "emit": FunctionType(parameters: [.i32, .i32, .i32, .i32], results: []),
        "ret": FunctionType(parameters: [.i32, .i32], results: []),
        "abort": FunctionType(parameters: [.i32, .i32], results: []),
    ]

    /// The host functions of one instance, bound to its call context.
    static func imports(store: Store, context: CallContext) -> Imports {
        var imports = Imports()
        for (name, type) in signatures.sorted(by: { $0.key < $1.key }) {
            let body = implementation(name, context)
            imports.define(module: module, name: name,
                           Function(store: store, parameters: type.parameters, results: type.results, raw: { caller, params, results in
                               try body(caller.store, params, results)
                           }))
        }
        return imports
    }

    typealias Body = (Store, UnsafeBufferPointer<Value>, UnsafeMutableBufferPointer<Value>) throws -> Void

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    static func implementation(_ name: String, _ c: CallContext) -> Body {
        switch name {
        case "arg_count":
            return { store, _, out in
                try c.charge(store, 0)
                out[0] = .i32(UInt32(c.call.args.count))
            }
        case "arg_len":
            return { store, p, out in
                try c.charge(store, 0)
                let i = Int(p[0].i32)
                out[0] = .i32(i < c.call.args.count ? UInt32(c.call.args[i].count) : UInt32(bitPattern: -1))
            }
        case "arg_read":
            return { store, p, out in
                let i = Int(p[0].i32)
                guard i < c.call.args.count else { try c.charge(store, 0); out[0] = .i32(UInt32(bitPattern: -1)); return }
                let a = c.call.args[i]
                try c.charge(store, a.count)
                try c.write(a, at: p[1].i32)
                out[0] = .i32(UInt32(a.count))
            }
        case "get":
            return { store, p, out in
                let key = try c.key(p[0].i32, p[1].i32)
                let value = c.state!.get(key)
                try c.charge(store, key.count + (value?.count ?? 0))
                out[0] = .i32(try c.copyOut(value, to: p[2].i32, capacity: p[3].i32))
            }
        case "put":
            return { store, p, _ in
                guard !c.call.readOnly else { throw ContractError(.readOnly, "put in a query: a query reads state only") }
                let key = try c.key(p[0].i32, p[1].i32)
                guard Int(p[3].i32) <= c.limits.valueBytes else {
                    throw ContractError(.writeLimit, "a value of \(p[3].i32) bytes; at most \(c.limits.valueBytes)")
                }
                let value = try c.read(p[2].i32, p[3].i32)
                try c.charge(store, key.count + value.count)
                c.written += key.count + value.count
                guard c.written <= c.limits.bytesWritten else {
                    throw ContractError(.writeLimit, "wrote \(c.written) bytes of keys and values; at most \(c.limits.bytesWritten) a call")
                }
                c.state!.put(key, value)
            }
        case "delete":
            return { store, p, _ in
                guard !c.call.readOnly else { throw ContractError(.readOnly, "delete in a query: a query reads state only") }
                let key = try c.key(p[0].i32, p[1].i32)
                try c.charge(store, key.count)
                c.written += key.count
                guard c.written <= c.limits.bytesWritten else {
                    throw ContractError(.writeLimit, "wrote \(c.written) bytes of keys and values; at most \(c.limits.bytesWritten) a call")
                }
                c.state!.delete(key)
            }
        case "range":
            return { store, p, out in
                let start = try c.read(p[0].i32, p[1].i32), end = try c.read(p[2].i32, p[3].i32)
                let rows = c.state!.range(from: start, to: end, limit: c.limits.rangeRows)
                // u32 n || n × (u32 klen || key || u32 vlen || value), little-endian (the guest's byte order).
                var enc: [UInt8] = []
                LittleEndian.u32(UInt32(rows.count), into: &enc)
                for r in rows {
                    LittleEndian.u32(UInt32(r.key.count), into: &enc); enc += r.key
                    LittleEndian.u32(UInt32(r.value.count), into: &enc); enc += r.value
                }
                try c.charge(store, enc.count)
                out[0] = .i32(try c.copyOut(enc, to: p[4].i32, capacity: p[5].i32))
            }
        case "caller":
            return { store, p, out in
                try c.charge(store, c.call.caller.count)
                try c.write(c.call.caller, at: p[0].i32)
                out[0] = .i32(UInt32(c.call.caller.count))
            }
        case "caller_is_admin":
            return { store, _, out in
                try c.charge(store, 0)
                out[0] = .i32(c.call.callerIsAdmin ? 1 : 0)
            }
        case "caller_attr":
            return { store, p, out in
                let name = try c.read(p[0].i32, p[1].i32)
                let value = c.call.callerAttributes.first { Array($0.key.utf8) == name }?.value
                try c.charge(store, name.count + (value?.count ?? 0))
                out[0] = .i32(try c.copyOut(value, to: p[2].i32, capacity: p[3].i32))
            }
        case "height":
            return { store, _, out in
                try c.charge(store, 0)
                out[0] = .i64(c.call.height)
            }
        case "time":
            return { store, _, out in
                try c.charge(store, 0)
                out[0] = .i64(c.call.time ?? UInt64.max)
            }
        case "emit":
            return { store, p, _ in
                guard c.events.count < c.limits.events else {
                    throw ContractError(.resultLimit, "more than \(c.limits.events) events in one call")
                }
                guard Int(p[1].i32) <= 64, Int(p[3].i32) <= c.limits.eventBytes else {
                    throw ContractError(.resultLimit, "an event's topic is at most 64 bytes and its data at most \(c.limits.eventBytes)")
                }
                let topic = try c.read(p[0].i32, p[1].i32), data = try c.read(p[2].i32, p[3].i32)
                try c.charge(store, topic.count + data.count)
                c.events.append(ContractEvent(topic: topic, data: data))
            }
        case "ret":
            return { store, p, _ in
                guard Int(p[1].i32) <= c.limits.resultBytes else {
                    throw ContractError(.resultLimit, "a result of \(p[1].i32) bytes; at most \(c.limits.resultBytes)")
                }
                let bytes = try c.read(p[0].i32, p[1].i32)
                try c.charge(store, bytes.count)
                c.output = bytes
            }
        case "abort":
            return { store, p, _ in
                let n = min(Int(p[1].i32), 256)
                let bytes = try c.read(p[0].i32, UInt32(n))
                try c.charge(store, n)
                throw ContractError(.aborted, "the contract refused: \(String(decoding: bytes, as: UTF8.self))")
            }
        default:
            return { _, _, _ in throw ContractError(.trap, "no host function \(name)") }
        }
    }
}

/// What the host functions of one instance reach: the call being run and its state. An instance
/// runs one call at a time (the pool hands it out exclusively), so this needs no lock.
final class CallContext {
    let limits: ContractLimits
    var memory: Memory?
    var call = ContractCall(function: "", args: [], caller: [], height: 0, readOnly: true)
    var state: (any StateAccess)?
    var written = 0
    var output: [UInt8] = []
    var events: [ContractEvent] = []

    init(limits: ContractLimits) { self.limits = limits }

    func begin(_ call: ContractCall, _ state: any StateAccess) {
        self.call = call
        self.state = state
        written = 0
        output = []
        events = []
    }

    /// Charges a host call: `baseFuel` plus its bytes. Exhaustion fails the call like an operator's.
    func charge(_ store: Store, _ bytes: Int) throws {
        guard let fuel = store.fuel else { return }
        let cost = HostAPI.baseFuel + UInt64(bytes) / HostAPI.bytesPerFuel
        guard fuel.remaining >= cost else {
            throw ContractError(.outOfFuel, "out of fuel after \(limits.fuel - fuel.remaining)")
        }
        store.fuel = Fuel(remaining: fuel.remaining - cost)
    }

    func key(_ ptr: UInt32, _ len: UInt32) throws -> [UInt8] {
        guard len >= 1, Int(len) <= limits.keyBytes else {
            throw ContractError(.trap, "a key is 1 to \(limits.keyBytes) bytes, not \(len)")
        }
        return try read(ptr, len)
    }

    /// Bytes of guest memory; out of bounds fails the call (never a host crash).
    func read(_ ptr: UInt32, _ len: UInt32) throws -> [UInt8] {
        guard let memory else { throw ContractError(.trap, "the contract has no exported memory") }
        let end = UInt64(ptr) + UInt64(len)
        guard end <= UInt64(memory.byteCount) else {
            throw ContractError(.trap, "out of bounds memory access by a host call (\(ptr)+\(len) past \(memory.byteCount))")
        }
        if len == 0 { return [] }
        return memory.withUnsafeBufferPointer(offset: UInt(ptr), count: Int(len)) { Array($0) }
    }

    func write(_ bytes: [UInt8], at ptr: UInt32) throws {
        guard let memory else { throw ContractError(.trap, "the contract has no exported memory") }
        let end = UInt64(ptr) + UInt64(bytes.count)
        guard end <= UInt64(memory.byteCount) else {
            throw ContractError(.trap, "out of bounds memory access by a host call (\(ptr)+\(bytes.count) past \(memory.byteCount))")
        }
        if bytes.isEmpty { return }
        memory.withUnsafeMutableBufferPointer(offset: UInt(ptr), count: bytes.count) { $0.copyBytes(from: bytes) }
    }

    /// Copies `value` to `ptr` if it fits `capacity`; returns its length (or -1 for none). A value
    /// that does not fit is not copied: the guest asks again with a larger buffer.
    func copyOut(_ value: [UInt8]?, to ptr: UInt32, capacity: UInt32) throws -> UInt32 {
        guard let value else { return UInt32(bitPattern: -1) }
        if value.count <= Int(capacity) { try write(value, at: ptr) }
        return UInt32(value.count)
    }
}

/// Refuses memory growth past the contract limit with a reason (rather than `memory.grow`'s -1),
/// so a memory bomb fails its call instead of looping until it runs out of fuel.
final class PageLimiter: ResourceLimiter {
    let pages: Int
    init(pages: Int) { self.pages = pages }

    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        let want = desired / (64 * 1024)
        guard want <= pages else {
            throw ContractError(.memoryLimit, "memory limit: grow to \(want) pages; at most \(pages) (\(pages * 64) KiB)")
        }
        return true
    }

    func limitTableGrowth(to desired: Int) throws -> Bool { false }
}

enum LittleEndian {
    static func u32(_ v: UInt32, into b: inout [UInt8]) {
        b.append(UInt8(truncatingIfNeeded: v)); b.append(UInt8(truncatingIfNeeded: v >> 8))
        b.append(UInt8(truncatingIfNeeded: v >> 16)); b.append(UInt8(truncatingIfNeeded: v >> 24))
    }
}

/// The state a call reads and writes, as the host functions reach it.
protocol StateAccess: AnyObject {
    func get(_ key: [UInt8]) -> [UInt8]?
    func put(_ key: [UInt8], _ value: [UInt8])
    func delete(_ key: [UInt8])
    func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])]
}

/// The caller's `ContractState`, in place, for the length of one call (`ContractRuntime.run`
/// drops it before the pointer's scope ends).
final class StateRef<S: ContractState>: StateAccess {
    let p: UnsafeMutablePointer<S>
    init(_ p: UnsafeMutablePointer<S>) { self.p = p }
    func get(_ key: [UInt8]) -> [UInt8]? { p.pointee.get(key) }
    func put(_ key: [UInt8], _ value: [UInt8]) { p.pointee.put(key, value) }
    func delete(_ key: [UInt8]) { p.pointee.delete(key) }
    func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])] { p.pointee.range(from: start, to: end, limit: limit) }
}
