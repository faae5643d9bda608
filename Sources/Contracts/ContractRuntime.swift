import Synchronization
@_spi(Fuzzing) import WasmKit
import WAT

/// Runs contract calls deterministically: one WasmKit engine with fuel metering, modules checked
/// once per version hash, and instances pooled per version. An instance goes back to the pool only
/// after a call that succeeded, and only once its memory bytes and mutable globals are put back to
/// what instantiation left, so every call starts from the same state whether the pool was warm or
/// cold (a validator that just restarted reaches the same verdicts). A call that fails, grows
/// memory, or whose module hides a mutable global, drops its instance.
public final class ContractRuntime: Sendable {
    public let limits: ContractLimits
    /// Whether instances are kept for later calls (off: every call instantiates, which is what
    /// `iotaf bench chaincode` measures as the instantiation cost).
    public let poolsInstances: Bool
    let engine: Engine
    private let cache = Mutex(Cache())

    struct Cache {
        var modules: [[UInt8]: ContractModule] = [:]
        var idle: [[UInt8]: [LiveInstance]] = [:]
        var instantiations = 0
    }

    static let maxModules = 64
    static let maxIdlePerVersion = 4

    public init(limits: ContractLimits = .standard, poolsInstances: Bool = true) {
        self.limits = limits
        self.poolsInstances = poolsInstances
        engine = Engine(configuration: EngineConfiguration(stackSize: limits.stackBytes, features: [],
                                                           memoryBoundsChecking: .software, fuelMetering: true))
    }

    /// Instances created so far (a warm pool creates none per call).
    public var instantiations: Int { cache.withLock { $0.instantiations } }

    /// The deploy checks; a module that passes is cached under its hash.
    public func check(_ bytes: [UInt8]) throws(ContractError) -> ContractModule {
        let m = try ModuleCheck.check(bytes, limits: limits)
        remember(m)
        return m
    }

    /// Runs `call.function` of the module `code` (whose hash is `hash`) over `state`. On success the
    /// writes are in `state`; on failure the caller drops them. Never traps the host.
    public func run<S: ContractState>(hash: [UInt8], code: [UInt8], call: ContractCall, state: inout S) -> Result<ContractResult, ContractError> {
        let live: LiveInstance
        do { live = try checkout(hash: hash, code: code) } catch { return .failure(error) }
        guard let function = live.functions[call.function] else {
            checkin(live, hash: hash)
            return .failure(ContractError(.noSuchFunction, "the contract has no function \(call.function) (callable: \(live.functionNames.joined(separator: ", ")))"))
        }
        live.store.fuel = Fuel(remaining: limits.fuel)
        var failure: ContractError?
        // The host functions reach the caller's state in place (no boxed copy, so its storage is
        // never copied on the first write), for the length of the call only.
        withUnsafeMutablePointer(to: &state) { p in
            live.context.begin(call, StateRef(p))
            do { try function.invoke([], on: &live.stack) } catch { failure = describe(error, remaining: live.store.fuel?.remaining ?? 0) }
            live.context.state = nil
        }
        let used = limits.fuel - (live.store.fuel?.remaining ?? 0)
        if let failure { return .failure(failure) }
        let result = ContractResult(output: live.context.output, events: live.context.events, fuelUsed: used)
        if live.reset() { checkin(live, hash: hash) }
        return .success(result)
    }

    /// A failure's deterministic reason (WasmKit's trap text without its backtrace).
    func describe(_ error: any Error, remaining: UInt64) -> ContractError {
        if let e = error as? ContractError { return e }
        let text = ModuleCheck.firstLine(error)
        if text.contains("out of fuel") { return ContractError(.outOfFuel, "out of fuel after \(limits.fuel - remaining)") }
        if text.contains("call stack exhausted") {
            return ContractError(.stackLimit, "stack limit: call stack exhausted (an interpreter stack of \(limits.stackBytes / 1024) KiB)")
        }
        let reason = text.hasPrefix("Trap: ") ? String(text.dropFirst(6)) : text
        return ContractError(.trap, "trap: \(reason)")
    }

    private func remember(_ m: ContractModule) {
        cache.withLock { c in
            if c.modules[m.hash] == nil, c.modules.count >= Self.maxModules {
                c.modules.removeAll()
                c.idle.removeAll()
            }
            c.modules[m.hash] = m
        }
    }

    private func checkout(hash: [UInt8], code: [UInt8]) throws(ContractError) -> LiveInstance {
        let (cached, idle) = cache.withLock { c in (c.modules[hash], c.idle[hash]?.popLast()) }
        if let idle { return idle }
        let module: ContractModule
        if let cached {
            module = cached
        } else {
            module = try ModuleCheck.check(code, limits: limits)
            remember(module)
        }
        cache.withLock { $0.instantiations += 1 }
        return try LiveInstance(module, engine: engine, limits: limits)
    }

    private func checkin(_ live: LiveInstance, hash: [UInt8]) {
        guard poolsInstances else { return }
        cache.withLock { c in
            guard c.modules[hash] != nil, c.idle[hash, default: []].count < Self.maxIdlePerVersion else { return }
            c.idle[hash, default: []].append(live)
        }
    }
}

/// One instance of one contract version with its store, host functions and initial state.
/// `@unchecked Sendable`: the runtime hands it to one call at a time (out of the pool, back in).
final class LiveInstance: @unchecked Sendable {
    let store: Store
    let context: CallContext
    let memory: Memory
    let functions: [String: Function]
    let functionNames: [String]
    let resettable: Bool
    let initialMemory: [UInt8]
    let initialGlobals: [(Global, Value)]
    /// The interpreter stack, kept with the instance rather than allocated per call.
    var stack: ExecutionStack

    init(_ module: ContractModule, engine: Engine, limits: ContractLimits) throws(ContractError) {
        store = Store(engine: engine)
        store.resourceLimiter = PageLimiter(pages: limits.memoryPages)
        context = CallContext(limits: limits)
        stack = ExecutionStack(engine: engine)
        let instance: Instance
        do { instance = try module.module.instantiate(store: store, imports: HostAPI.imports(store: store, context: context)) } catch {
            throw ContractError(.trap, "instantiation failed: \(ModuleCheck.firstLine(error))")
        }
        guard let memory = instance.exports[memory: "memory"] else { throw ContractError(.trap, "the contract exports no memory") }
        self.memory = memory
        context.memory = memory
        var functions: [String: Function] = [:]
        for name in module.functions { functions[name] = instance.exports[function: name] }
        self.functions = functions
        functionNames = module.functions
        resettable = module.resettable
        initialMemory = memory.byteCount == 0 ? [] : memory.withUnsafeBufferPointer(offset: 0, count: memory.byteCount) { Array($0) }
        initialGlobals = module.mutableGlobalExports.compactMap { name in instance.exports[global: name].map { ($0, $0.value) } }
    }

    /// The host functions (held by the store's allocator) reach the call context, and the context
    /// reaches the memory, which holds the allocator: a cycle that kept every dropped instance's
    /// store and linear memory alive (found by the fuzz target's leak checker). Cut it here.
    deinit {
        context.memory = nil
        context.state = nil
    }

    /// Puts memory and mutable globals back to their initial values; false when that cannot be
    /// done (memory grew, or a mutable global is not exported) and the instance must be dropped.
    func reset() -> Bool {
        guard resettable, memory.byteCount == initialMemory.count else { return false }
        if !initialMemory.isEmpty {
            memory.withUnsafeMutableBufferPointer(offset: 0, count: initialMemory.count) { $0.copyBytes(from: initialMemory) }
        }
        for (global, value) in initialGlobals {
            do { try global.assign(value) } catch { return false }
        }
        return true
    }
}

/// Contract sources: WebAssembly text compiled with WasmKit's WAT parser.
public enum ContractSource {
    /// The binary module of a `.wat` text (no proposals enabled: what a contract may use).
    public static func compile(wat: String) throws(ContractError) -> [UInt8] {
        do { return try wat2wasm(wat, features: []) } catch {
            throw ContractError(.invalidModule, "the WebAssembly text does not compile: \(ModuleCheck.firstLine(error))")
        }
    }

    /// `bytes` as given if they start with the WebAssembly magic number, otherwise compiled as text.
    public static func module(from bytes: [UInt8]) throws(ContractError) -> [UInt8] {
        if bytes.starts(with: [0x00, 0x61, 0x73, 0x6D]) { return bytes }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ContractError(.invalidModule, "neither a WebAssembly binary (\\0asm) nor UTF-8 WebAssembly text")
        }
        return try compile(wat: text)
    }
}
