import Contracts
import Foundation

/// `iotaf bench chaincode`: a deployed contract's calls beside the same logic written in Swift, in
/// the same run, over the same kind of state:
///
/// - ours: the counter contract (Docs/examples/contracts/counter.wat, embedded below) `bump KEY`
///   through `ContractRuntime.run`: read one key, add one, write one key, return the value, with
///   fuel metering, host calls, the instance pool and the per-call reset of memory and globals;
/// - baseline: `swiftBump`, the same read-add-write-return as a built-in chaincode would do it,
///   over the same `ContractState` (a dictionary of rows), on the same keys.
///
/// The two end with the same rows (checked). A second row prices instantiation: one call on a
/// fresh instance each time (a runtime that pools nothing) beside a call on a pooled instance.
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
        let calls = (0..<64).map { ContractCall(function: "bump", args: [Array("key-\($0)".utf8)], caller: caller, height: 1, readOnly: false) }
        let n = max(1, invokes), freshN = max(50, n / 20)
        progress?("chaincode: \(n) calls of counter.bump (\(code.count)-byte module) per trial, \(freshN) on fresh instances; \(trials) trials")

        var bestOurs = 0.0, bestSwift = 0.0, bestFresh = Double.infinity, bestPooledCost = Double.infinity
        var fuel: UInt64 = 0
        for t in 1...max(1, trials) {
            var wasmRows = Rows(), swiftRows = Rows()
            let c0 = ContinuousClock.now
            for i in 0..<n {
                switch pooled.run(hash: hash, code: code, call: calls[i & 63], state: &wasmRows) {
                case .success(let r): fuel = r.fuelUsed
                case .failure(let e): throw BenchFailure(description: "the contract failed: \(e)")
                }
            }
            let ours = Double(n) / seconds(ContinuousClock.now - c0)
            let c1 = ContinuousClock.now
            for i in 0..<n { _ = try swiftBump(calls[i & 63].args, &swiftRows) }
            let swift = Double(n) / seconds(ContinuousClock.now - c1)
            guard wasmRows.rows == swiftRows.rows else { throw BenchFailure(description: "the contract and the Swift baseline ended with different rows") }

            var scratch = Rows()
            let c2 = ContinuousClock.now
            for i in 0..<freshN { _ = fresh.run(hash: hash, code: code, call: calls[i & 63], state: &scratch) }
            let freshCost = seconds(ContinuousClock.now - c2) / Double(freshN) * 1e6
            let pooledCost = 1e6 / ours
            bestOurs = max(bestOurs, ours); bestSwift = max(bestSwift, swift)
            bestFresh = min(bestFresh, freshCost); bestPooledCost = min(bestPooledCost, pooledCost)
            progress?(String(format: "  trial %d: contract %.0f calls/s (%llu fuel each), Swift %.0f calls/s; fresh instance %.1f µs a call, pooled %.2f µs",
                             t, ours, fuel, swift, freshCost, pooledCost))
        }
        return BenchResult(bench: "chaincode", results: [
            .init(metric: "contract calls, read one key and write one (counter.bump)", unit: "calls/s", ours: bestOurs, baseline: bestSwift, higherIsBetter: true),
            .init(metric: "a call on a fresh instance (instantiation included) beside a pooled one", unit: "us/call", ours: bestFresh, baseline: bestPooledCost, higherIsBetter: false),
        ])
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
