import Contracts
import Foundation
import Ledger

/// `iotaf bench chaincode`: a deployed contract's calls beside the same logic written in Swift, in
/// the same run, over the same state:
///
/// 1. the floor row: the counter contract (Docs/examples/contracts/counter.wat, embedded below)
///    `bump KEY` — read one key, add one, write one key, return the value — as the executor runs
///    an invoke (`ContractRuntime.run` through a fresh `StateView` over a `LedgerState`, the result
///    encoded; fuel metering, host calls, the instance pool and the per-call reset included),
///    beside `CounterChaincode`, the same logic as a built-in `Chaincode` run the way the executor
///    runs built-ins (a fresh `StateView` over the same `LedgerState`). Neither side's writes are
///    applied to the tree (that part is the same for both). Floor: ratio >= 0.1.
/// 2. the raw row: the same contract over a bare dictionary of rows beside `swiftBump`, a Swift
///    function over the same dictionary (no state view): the interpreter against the least a
///    counter can cost. Informative; no floor.
/// 3. instantiation: one call on a fresh instance each time (a runtime that pools nothing)
///    beside a call on a pooled instance.
///
/// Each pair ends with the same rows or outputs (checked), so they did the same work.
public enum ChaincodeBench {
    /// Docs/examples/contracts/counter.wat, without its comments.
    public static let counterWAT = """
        (module
          (import "iotaf" "arg_len" (func $arg_len (param i32) (result i32)))
          (import "iotaf" "arg_read" (func $arg_read (param i32 i32) (result i32)))
          (import "iotaf" "get" (func $get (param i32 i32 i32 i32) (result i32)))
          (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
          (import "iotaf" "ret" (func $ret (param i32 i32)))
          (import "iotaf" "abort" (func $abort (param i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 256) "takes one KEY of 1 to 64 bytes")
          (func $load (result i32)
            (local $kl i32)
            (local.set $kl (call $arg_len (i32.const 0)))
            (if (i32.or (i32.lt_s (local.get $kl) (i32.const 1)) (i32.gt_s (local.get $kl) (i32.const 64)))
              (then (call $abort (i32.const 256) (i32.const 30)) (unreachable)))
            (drop (call $arg_read (i32.const 0) (i32.const 0)))
            (if (i32.ne (call $get (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8)) (i32.const 8))
              (then (i64.store (i32.const 128) (i64.const 0))))
            (local.get $kl))
          (func (export "bump")
            (local $kl i32)
            (local.set $kl (call $load))
            (i64.store (i32.const 128) (i64.add (i64.load (i32.const 128)) (i64.const 1)))
            (call $put (i32.const 0) (local.get $kl) (i32.const 128) (i32.const 8))
            (call $ret (i32.const 128) (i32.const 8)))
          (func (export "value")
            (drop (call $load))
            (call $ret (i32.const 128) (i32.const 8)))
        )
        """

    /// Rows in a dictionary: what both sides read and write.
    struct Rows: ContractState {
        var rows: [[UInt8]: [UInt8]] = [:]
        mutating func get(_ key: [UInt8]) -> [UInt8]? { rows[key] }
        mutating func put(_ key: [UInt8], _ value: [UInt8]) { rows[key] = value }
        mutating func delete(_ key: [UInt8]) { rows[key] = nil }
        mutating func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])] { [] }
    }

    struct BenchFailure: Error, CustomStringConvertible { let description: String }

    /// The counter's `bump` as a built-in chaincode would be written (Sources/Ledger/Chaincodes.swift).
    struct CounterChaincode: Chaincode {
        let name = "counter"
        let invokes: Set<String> = ["bump"]
        let queries: Set<String> = []

        func run(_ call: Invocation, state: inout StateView, effects: inout Effects) throws(Refusal) -> [UInt8] {
            guard call.args.count >= 1, (1...64).contains(call.args[0].count) else { throw Refusal(.badArguments, "takes one KEY of 1 to 64 bytes") }
            var v: UInt64 = 0
            if let old = state.get(call.args[0]), old.count == 8 {
                v = old.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            }
            v &+= 1
            let out = withUnsafeBytes(of: v.littleEndian) { Array($0) }
            state.put(call.args[0], out)
            return out
        }
    }

    /// The counter's `bump` as a built-in chaincode would write it.
    static func swiftBump(_ args: [[UInt8]], _ state: inout Rows) throws -> [UInt8] {
        guard args.count >= 1, (1...64).contains(args[0].count) else { throw BenchFailure(description: "takes one KEY of 1 to 64 bytes") }
        var v: UInt64 = 0
        if let old = state.get(args[0]), old.count == 8 {
            v = old.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        }
        v &+= 1
        let out = withUnsafeBytes(of: v.littleEndian) { Array($0) }
        state.put(args[0], out)
        return out
    }

    public static func run(invokes: Int, trials: Int, progress: ((String) -> Void)?) throws -> BenchResult {
        let code = try ContractSource.compile(wat: counterWAT)
        let pooled = ContractRuntime(), fresh = ContractRuntime(poolsInstances: false)
        let hash = try pooled.check(code).hash
        _ = try fresh.check(code)
        let caller = [UInt8](repeating: 0x11, count: 32)
        let keys = (0..<64).map { Array("key-\($0)".utf8) }
        let calls = keys.map { ContractCall(function: "bump", args: [$0], caller: caller, height: 1, readOnly: false) }
        let invocations = keys.map { Invocation(caller: caller, callerIsAdmin: false, height: 1, function: "bump", args: [$0]) }
        // The executor's state: each counter already at 41, under the contract's and the built-in's namespaces.
        let builtIn = CounterChaincode()
        let wasmNamespace = WasmChaincode.dataNamespace("counter")
        var ledgerState = LedgerState()
        for k in keys {
            let v = withUnsafeBytes(of: UInt64(41).littleEndian) { Array($0) }
            ledgerState.set(StateKey.make(wasmNamespace, k), v)
            ledgerState.set(StateKey.make(builtIn.name, k), v)
        }
        let n = max(1, invokes), freshN = max(50, n / 20)
        progress?("chaincode: \(n) calls of counter.bump (\(code.count)-byte module) per trial and side, \(freshN) on fresh instances; \(trials) trials")

        var best = (ours: 0.0, builtIn: 0.0, raw: 0.0, swift: 0.0, fresh: Double.infinity, pooled: Double.infinity)
        var fuel: UInt64 = 0
        for t in 1...max(1, trials) {
            // 1. Through the executor's state view: contract beside built-in.
            var sink = 0
            let c0 = ContinuousClock.now
            for i in 0..<n {
                var view = StateView(base: ledgerState, namespace: wasmNamespace)
                switch pooled.run(hash: hash, code: code, call: calls[i & 63], state: &view) {
                case .success(let r): sink &+= r.encoded.count &+ view.writes.count; fuel = r.fuelUsed
                case .failure(let e): throw BenchFailure(description: "the contract failed: \(e)")
                }
            }
            let ours = Double(n) / seconds(ContinuousClock.now - c0)
            var effects = Effects()
            let c1 = ContinuousClock.now
            for i in 0..<n {
                var view = StateView(base: ledgerState, namespace: builtIn.name)
                let out = try builtIn.run(invocations[i & 63], state: &view, effects: &effects)
                sink &+= out.count &+ view.writes.count
            }
            let builtInRate = Double(n) / seconds(ContinuousClock.now - c1)
            // Per contract call: its encoded result (u64 fuel, u32 length, 8 bytes, u16 events) and one write; per built-in call: 8 bytes and one write.
            guard sink == n * (22 + 1) + n * (8 + 1) else { throw BenchFailure(description: "the contract and the built-in did not do the same work") }
            try sameAnswer(pooled, hash, code, calls[5], builtIn, invocations[5], ledgerState, wasmNamespace)

            // 2. Raw: over a bare dictionary, beside a Swift function.
            var wasmRows = Rows(), swiftRows = Rows()
            let c2 = ContinuousClock.now
            for i in 0..<n {
                if case .failure(let e) = pooled.run(hash: hash, code: code, call: calls[i & 63], state: &wasmRows) {
                    throw BenchFailure(description: "the contract failed: \(e)")
                }
            }
            let raw = Double(n) / seconds(ContinuousClock.now - c2)
            let c3 = ContinuousClock.now
            for i in 0..<n { _ = try swiftBump(calls[i & 63].args, &swiftRows) }
            let swift = Double(n) / seconds(ContinuousClock.now - c3)
            guard wasmRows.rows == swiftRows.rows else { throw BenchFailure(description: "the contract and the Swift baseline ended with different rows") }

            // 3. Instantiation.
            var scratch = Rows()
            let c4 = ContinuousClock.now
            for i in 0..<freshN { _ = fresh.run(hash: hash, code: code, call: calls[i & 63], state: &scratch) }
            let freshCost = seconds(ContinuousClock.now - c4) / Double(freshN) * 1e6
            let pooledCost = 1e6 / raw
            best = (max(best.ours, ours), max(best.builtIn, builtInRate), max(best.raw, raw), max(best.swift, swift),
                    min(best.fresh, freshCost), min(best.pooled, pooledCost))
            progress?(String(format: "  trial %d: contract %.0f calls/s (%llu fuel each) beside built-in %.0f (ratio %.3f); raw: contract %.0f, Swift %.0f; fresh instance %.1f µs a call, pooled %.2f µs",
                             t, ours, fuel, builtInRate, ours / builtInRate, raw, swift, freshCost, pooledCost))
        }
        return BenchResult(bench: "chaincode", results: [
            .init(metric: "invokes through the executor's state view, read one key and write one: counter contract beside the same logic as a built-in chaincode",
                  unit: "calls/s", ours: best.ours, baseline: best.builtIn, higherIsBetter: true),
            .init(metric: "raw: counter contract over a dictionary beside a Swift function over the same dictionary", unit: "calls/s",
                  ours: best.raw, baseline: best.swift, higherIsBetter: true),
            .init(metric: "a call on a fresh instance (instantiation included) beside a pooled one", unit: "us/call", ours: best.fresh, baseline: best.pooled, higherIsBetter: false),
        ])
    }

    /// The contract and the built-in answer one call alike and write the same row.
    static func sameAnswer(_ runtime: ContractRuntime, _ hash: [UInt8], _ code: [UInt8], _ call: ContractCall, _ builtIn: CounterChaincode,
                           _ invocation: Invocation, _ state: LedgerState, _ wasmNamespace: String) throws {
        var a = StateView(base: state, namespace: wasmNamespace), b = StateView(base: state, namespace: builtIn.name)
        var effects = Effects()
        guard case .success(let r) = runtime.run(hash: hash, code: code, call: call, state: &a),
              let out = try? builtIn.run(invocation, state: &b, effects: &effects), r.output == out,
              Array(a.writes.values) == Array(b.writes.values), a.writes.count == 1 else {
            throw BenchFailure(description: "the contract and the built-in answered differently")
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
