import Contracts
import Foundation
import Testing

/// Rows in a dictionary, range in key order: the simplest `ContractState`.
struct MemoryState: ContractState {
    var rows: [[UInt8]: [UInt8]] = [:]
    mutating func get(_ key: [UInt8]) -> [UInt8]? { rows[key] }
    mutating func put(_ key: [UInt8], _ value: [UInt8]) { rows[key] = value }
    mutating func delete(_ key: [UInt8]) { rows[key] = nil }
    mutating func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])] {
        Array(rows.filter { !$0.key.lexicographicallyPrecedes(start) && (end.isEmpty || $0.key.lexicographicallyPrecedes(end)) }
            .sorted { $0.key.lexicographicallyPrecedes($1.key) }.prefix(limit).map { (key: $0.key, value: $0.value) })
    }
}

enum Examples {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Docs/examples/contracts").standardized

    static func wat(_ name: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent(name + ".wat"), encoding: .utf8)
    }

    static func module(_ name: String) throws -> [UInt8] { try ContractSource.compile(wat: wat(name)) }
}

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The standard limits with 200,000 fuel: endless loops end quickly in a debug build.
let testLimits: ContractLimits = {
    var l = ContractLimits.standard
    l.fuel = 200_000
    return l
}()

/// `(module (memory (export "memory") 1) BODY)` with the host imports a test needs.
func contract(_ body: String, imports: String = "") throws -> [UInt8] {
    try ContractSource.compile(wat: "(module \(imports) (memory (export \"memory\") 1) \(body))")
}

extension ContractRuntime {
    func call(_ code: [UInt8], _ function: String, _ args: [[UInt8]] = [], state: inout MemoryState, readOnly: Bool = false,
              caller: [UInt8] = [UInt8](repeating: 7, count: 32)) -> Result<ContractResult, ContractError> {
        let m = try! check(code)
        return run(hash: m.hash, code: code, call: ContractCall(function: function, args: args, caller: caller, height: 5, readOnly: readOnly), state: &state)
    }
}

extension Result where Failure == ContractError {
    var failure: ContractError? { if case .failure(let e) = self { e } else { nil } }
    var success: Success? { if case .success(let s) = self { s } else { nil } }
}

@Suite struct ContractRuntimeTests {
    @Test func theExampleContractsPassTheDeployChecks() throws {
        let billing = try ModuleCheck.check(Examples.module("meter-billing"))
        #expect(billing.functions == ["record", "total"])
        let filter = try ModuleCheck.check(Examples.module("permission-filter"))
        #expect(filter.functions == ["grant", "put", "read", "revoke"])
        let counter = try ModuleCheck.check(Examples.module("counter"))
        #expect(counter.functions == ["bump", "value"])
        #expect(counter.hash.count == 32 && counter.hash != filter.hash)
    }

    @Test func aCallReadsAndWritesItsStateAndReturnsItsResult() throws {
        let rt = ContractRuntime()
        let code = try Examples.module("counter")
        var state = MemoryState()
        for expected in 1...3 as ClosedRange<UInt64> {
            let r = try #require(rt.call(code, "bump", [b("k")], state: &state).success)
            #expect(r.output == withUnsafeBytes(of: expected.littleEndian) { Array($0) })
            #expect(r.fuelUsed > 0)
        }
        #expect(state.rows[b("k")] == withUnsafeBytes(of: UInt64(3).littleEndian) { Array($0) })
        // The same call costs the same fuel every time (a warm pool charges nothing extra).
        let f1 = try #require(rt.call(code, "value", [b("k")], state: &state, readOnly: true).success).fuelUsed
        let f2 = try #require(ContractRuntime().call(code, "value", [b("k")], state: &state, readOnly: true).success).fuelUsed
        #expect(f1 == f2)
    }

    @Test func anEndlessLoopRunsOutOfFuelWithAReasonAndTheNextCallStillRuns() throws {
        let rt = ContractRuntime(limits: testLimits)
        let code = try contract("(func (export \"spin\") (loop $l (br $l))) (func (export \"ok\"))")
        var state = MemoryState()
        let e = try #require(rt.call(code, "spin", state: &state).failure)
        #expect(e.kind == .outOfFuel)
        #expect(e.detail == "out of fuel after \(rt.limits.fuel)")
        #expect(rt.call(code, "ok", state: &state).success != nil)
    }

    @Test func aMemoryBombFailsAtThePageLimit() throws {
        let rt = ContractRuntime(limits: testLimits)
        let code = try contract("(func (export \"bomb\") (loop $l (drop (memory.grow (i32.const 1))) (br $l)))")
        var state = MemoryState()
        let e = try #require(rt.call(code, "bomb", state: &state).failure)
        #expect(e.kind == .memoryLimit)
        #expect(e.detail.contains("grow to \(rt.limits.memoryPages + 1) pages"))
        // Declaring more than the limit is refused at deploy.
        #expect(throws: ContractError.self) { try ModuleCheck.check(ContractSource.compile(wat: "(module (memory (export \"memory\") 17))")) }
    }

    @Test func deepRecursionHitsTheStackLimit() throws {
        let rt = ContractRuntime(limits: testLimits)
        let code = try contract("(func $r (param i32) (call $r (i32.add (local.get 0) (i32.const 1)))) (func (export \"deep\") (call $r (i32.const 0)))")
        var state = MemoryState()
        let e = try #require(rt.call(code, "deep", state: &state).failure)
        #expect(e.kind == .stackLimit)
    }

    @Test func writesAreLimitedAndAQueryCannotWrite() throws {
        let imports = "(import \"iotaf\" \"put\" (func $put (param i32 i32 i32 i32)))"
        // 100 puts of a 1 KiB value under 100 keys: past the 64 KiB a call may write.
        let code = try contract("""
            (func (export "flood") (local $i i32)
              (loop $l
                (i32.store8 (i32.const 0) (local.get $i))
                (call $put (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 1024))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $i) (i32.const 100)))))
            (func (export "one") (call $put (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
            """, imports: imports)
        let rt = ContractRuntime()
        var state = MemoryState()
        #expect(rt.call(code, "flood", state: &state).failure?.kind == .writeLimit)
        #expect(rt.call(code, "one", state: &state, readOnly: true).failure?.kind == .readOnly)
        #expect(rt.call(code, "one", state: &state).success != nil)
    }

    @Test func hostCallsOutsideMemoryFailTheCallNotTheHost() throws {
        let imports = "(import \"iotaf\" \"ret\" (func $ret (param i32 i32))) (import \"iotaf\" \"get\" (func $get (param i32 i32 i32 i32) (result i32)))"
        let code = try contract("""
            (func (export "far") (call $ret (i32.const 65530) (i32.const 100)))
            (func (export "huge") (call $ret (i32.const 0) (i32.const -1)))
            (func (export "key") (drop (call $get (i32.const -8) (i32.const 16) (i32.const 0) (i32.const 0))))
            (func (export "oob") (drop (i32.load (i32.const 70000))))
            (func (export "div") (drop (i32.div_u (i32.const 1) (i32.const 0))))
            """, imports: imports)
        let rt = ContractRuntime()
        var state = MemoryState()
        #expect(rt.call(code, "far", state: &state).failure?.kind == .trap)
        #expect(rt.call(code, "huge", state: &state).failure?.kind == .resultLimit)
        #expect(rt.call(code, "key", state: &state).failure?.kind == .trap)
        #expect(rt.call(code, "oob", state: &state).failure?.detail.contains("out of bounds") == true)
        #expect(rt.call(code, "div", state: &state).failure?.detail.contains("divide by zero") == true)
        #expect(rt.call(code, "absent", state: &state).failure?.kind == .noSuchFunction)
    }

    /// A warm instance must not remember the last call: memory and mutable globals are put back,
    /// and a module hiding a mutable global gets a fresh instance every call.
    @Test func everyCallStartsFromTheInitialStateWarmOrCold() throws {
        let imports = "(import \"iotaf\" \"ret\" (func $ret (param i32 i32)))"
        let body = """
            (global $g (export "g") (mut i32) (i32.const 0))
            (global $h (mut i32) (i32.const 0))
            (func (export "tick")
              (global.set $g (i32.add (global.get $g) (i32.const 1)))
              (global.set $h (i32.add (global.get $h) (i32.const 1)))
              (i32.store8 (i32.const 0) (i32.add (i32.load8_u (i32.const 0)) (global.get $g)))
              (i32.store8 (i32.const 1) (global.get $h))
              (call $ret (i32.const 0) (i32.const 2)))
            """
        let hidden = try contract(body, imports: imports)
        let exported = try contract(body.replacingOccurrences(of: "(global $h (mut i32)", with: "(global $h (export \"h\") (mut i32)"), imports: imports)
        for code in [hidden, exported] {
            let rt = ContractRuntime()
            var state = MemoryState()
            let outputs = (0..<3).map { _ in rt.call(code, "tick", state: &state).success?.output }
            #expect(outputs == [[1, 1], [1, 1], [1, 1]])
        }
        let rt = ContractRuntime()
        var state = MemoryState()
        for _ in 0..<3 { _ = rt.call(exported, "tick", state: &state) }
        #expect(rt.instantiations == 1)
        for _ in 0..<3 { _ = rt.call(hidden, "tick", state: &state) }
        #expect(rt.instantiations == 4)
    }

    @Test(arguments: [
        ("floats", "(module (memory (export \"memory\") 1) (func (export \"f\") (drop (f32.add (f32.const 1) (f32.const 2)))))", "f32"),
        ("float local", "(module (memory (export \"memory\") 1) (func (export \"f\") (local f64)))", "f64"),
        ("float conversion", "(module (memory (export \"memory\") 1) (func (export \"f\") (drop (i32.trunc_f32_s (f32.const 1)))))", "f32Const"),
        ("start", "(module (memory (export \"memory\") 1) (func $s) (start $s))", "start function"),
        ("foreign import", "(module (import \"env\" \"clock\" (func)) (memory (export \"memory\") 1))", "only from the host API"),
        ("unknown host function", "(module (import \"iotaf\" \"random\" (func (result i32))) (memory (export \"memory\") 1))", "does not have"),
        ("wrong signature", "(module (import \"iotaf\" \"get\" (func (param i32))) (memory (export \"memory\") 1))", "another signature"),
        ("no memory", "(module (func (export \"f\")))", "exported as \"memory\""),
        ("big memory", "(module (memory (export \"memory\") 17))", "at most 16"),
        ("big table", "(module (memory (export \"memory\") 1) (table 5000 funcref))", "at most 1024"),
    ])
    func aModuleBreakingARuleIsRefusedAtDeployWithTheRule(_ name: String, _ wat: String, _ reason: String) throws {
        let error = #expect(throws: ContractError.self) { try ModuleCheck.check(ContractSource.compile(wat: wat)) }
        #expect(error?.kind == .invalidModule, "\(name)")
        #expect(error?.detail.contains(reason) == true, "\(name): \(error?.detail ?? "")")
    }

    @Test func simdAndThreadsAreRefused() throws {
        // The text parser already refuses them without their proposals; the binary checks refuse
        // their operators and shared memory when they arrive as bytes.
        #expect(throws: ContractError.self) {
            try ModuleCheck.check(ContractSource.compile(wat: "(module (memory (export \"memory\") 1) (func (export \"f\") (drop (v128.const i32x4 0 0 0 0))))"))
        }
        #expect(throws: ContractError.self) {
            try ModuleCheck.check(ContractSource.compile(wat: "(module (memory (export \"memory\") 1 1 shared))"))
        }
        // Shared memory as bytes: magic, version, memory section (1 memory, flags 3 = shared with max, 1, 1).
        let shared: [UInt8] = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 4, 1, 3, 1, 1, 7, 10, 1, 6, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 2, 0]
        #expect(throws: ContractError.self) { try ModuleCheck.check(shared) }
        // A v128.const operator (0xfd 0x0c) as bytes.
        var simd: [UInt8] = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1]
        simd += [7, 10, 1, 6, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 2, 0]
        let body: [UInt8] = [0] + [0xfd, 0x0c] + [UInt8](repeating: 0, count: 16) + [0x1a, 0x0b]
        simd += [10, UInt8(body.count + 2), 1, UInt8(body.count)] + body
        let e = #expect(throws: ContractError.self) { try ModuleCheck.check(simd) }
        #expect(e?.kind == .invalidModule)
    }

    @Test func anOversizedModuleIsRefused() throws {
        let big = try ContractSource.compile(wat: "(module (memory (export \"memory\") 1) (data (i32.const 0) \"\(String(repeating: "x", count: 15_000))\"))")
        let e = #expect(throws: ContractError.self) { try ModuleCheck.check(big) }
        #expect(e?.detail.contains("at most \(ContractLimits.standard.moduleBytes)") == true)
    }

    /// Random and mutated module bytes: every one is refused with a reason or runs to a verdict;
    /// none crashes the host. (The libFuzzer target Fuzz/run-contracts.sh does this at length.)
    @Test func randomModuleBytesNeverCrashTheHost() throws {
        var rng = SplitMix(seed: 0x5eed)
        let seeds = try ["counter", "meter-billing", "permission-filter"].map(Examples.module)
        let rt = ContractRuntime(limits: testLimits)
        var accepted = 0
        for i in 0..<400 {
            var bytes = seeds[i % seeds.count]
            switch i % 4 {
            case 0: for _ in 0..<(1 + Int(rng.next() % 4)) { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
            case 1: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
            case 2: bytes = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0] + (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count)))
            }
            guard let m = try? rt.check(bytes) else { continue }
            accepted += 1
            var state = MemoryState()
            for f in m.functions {
                _ = rt.run(hash: m.hash, code: bytes, call: ContractCall(function: f, args: [b("a"), b("1"), b("2"), b("3")], caller: [UInt8](repeating: 1, count: 32), height: 1, readOnly: false), state: &state)
            }
        }
        #expect(accepted > 0)
    }
}

/// A small deterministic generator for the mutation test.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

@Suite struct FuzzSeedTests {
    /// Fuzz/corpus/contracts holds each example compiled (the fuzz target's seeds); with
    /// WRITE_FUZZ_SEEDS=1 this writes them.
    @Test func theFuzzSeedsAreTheCompiledExamples() throws {
        let corpus = Examples.directory.appendingPathComponent("../../../Fuzz/corpus/contracts").standardized
        let write = ProcessInfo.processInfo.environment["WRITE_FUZZ_SEEDS"] != nil
        for name in ["counter", "meter-billing", "permission-filter"] {
            let module = try Examples.module(name)
            let path = corpus.appendingPathComponent(name + ".wasm")
            if write { try Data(module).write(to: path) }
            #expect(FileManager.default.contents(atPath: path.path).map { [UInt8]($0) } == module, "\(name).wasm")
        }
    }
}
