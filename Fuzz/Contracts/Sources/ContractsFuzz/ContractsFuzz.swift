// libFuzzer harness for contract modules: arbitrary bytes go through the deploy checks; a module
// that passes has every callable function run with a small fuel budget and a few arguments.
// Properties: nothing traps the host (every refusal and failure is a ContractError with a reason),
// and a call's verdict is the same on a warm instance as on a fresh one.
import Contracts

struct Rows: ContractState {
    var rows: [[UInt8]: [UInt8]] = [:]
    mutating func get(_ key: [UInt8]) -> [UInt8]? { rows[key] }
    mutating func put(_ key: [UInt8], _ value: [UInt8]) { rows[key] = value }
    mutating func delete(_ key: [UInt8]) { rows[key] = nil }
    mutating func range(from start: [UInt8], to end: [UInt8], limit: Int) -> [(key: [UInt8], value: [UInt8])] {
        Array(rows.filter { !$0.key.lexicographicallyPrecedes(start) && (end.isEmpty || $0.key.lexicographicallyPrecedes(end)) }
            .sorted { $0.key.lexicographicallyPrecedes($1.key) }.prefix(limit).map { (key: $0.key, value: $0.value) })
    }
}

let limits: ContractLimits = {
    var l = ContractLimits()
    l.fuel = 200_000
    return l
}()
let warm = ContractRuntime(limits: limits)
let cold = ContractRuntime(limits: limits, poolsInstances: false)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzContract(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))
    guard let module = try? warm.check(bytes) else { return 0 }
    let args: [[UInt8]] = [Array("meter-1".utf8), Array("peak".utf8), Array("42".utf8), Array("interval".utf8)]
    for function in module.functions {
        let call = ContractCall(function: function, args: args, caller: [UInt8](repeating: 3, count: 32), height: 7, readOnly: false)
        var a = Rows(), b = Rows()
        let first = warm.run(hash: module.hash, code: bytes, call: call, state: &a)
        let second = warm.run(hash: module.hash, code: bytes, call: call, state: &b)
        var c = Rows()
        let third = cold.run(hash: module.hash, code: bytes, call: call, state: &c)
        if "\(first)" != "\(second)" || "\(first)" != "\(third)" {
            fatalError("verdicts differ between calls: \(first) / \(second) / \(third)")
        }
        if case .success(let r) = first, ContractResult.decode(r.encoded) != r { fatalError("a result does not decode to itself") }
    }
    return 0
}
