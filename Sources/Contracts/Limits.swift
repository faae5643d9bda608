/// What one contract call may use. The same on every validator (they are ledger rules, not
/// settings): a call that exceeds one fails with a reason, and every validator reaches the same
/// verdict because each limit is counted in units the interpreter and the host count alike.
public struct ContractLimits: Sendable, Equatable {
    /// Largest module a deploy may carry (it travels in one transaction of at most 16 KiB).
    public var moduleBytes = 14 * 1024
    /// Fuel per call: one unit per Wasm operator (WasmKit's metering), plus what host calls charge.
    public var fuel: UInt64 = 5_000_000
    /// Linear memory, in 64 KiB pages: declared minimum at deploy, growth at run time.
    public var memoryPages = 16
    /// The interpreter's stack (locals, operands and frames of Wasm calls), which bounds call depth.
    public var stackBytes = 128 * 1024
    /// Key and value bytes a call may write (puts) in total.
    public var bytesWritten = 64 * 1024
    /// Bytes a call may return (`ret`).
    public var resultBytes = 4 * 1024
    /// Events a call may emit, and bytes of each event's data.
    public var events = 32
    public var eventBytes = 1024
    /// A state key, a state value.
    public var keyBytes = 1024
    public var valueBytes = 16 * 1024
    /// Rows one `range` call returns at most.
    public var rangeRows = 1000
    /// Table entries a module may declare (tables cannot grow: `table.grow` is refused at deploy).
    public var tableEntries = 1024

    public init() {}

    /// The ledger's limits (Docs/chaincode.md, "Limits").
    public static let standard = ContractLimits()
}

/// Why a contract was refused at deploy or a call failed. `detail` is deterministic (no addresses,
/// no timings): it becomes part of the transaction's stored result.
public struct ContractError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The module broke a deploy rule (Docs/chaincode.md, "What a module may contain").
        case invalidModule = "invalid_module"
        /// No exported function of that name that takes and returns nothing.
        case noSuchFunction = "no_such_function"
        case outOfFuel = "out_of_fuel"
        case memoryLimit = "memory_limit"
        case stackLimit = "stack_limit"
        case writeLimit = "write_limit"
        case resultLimit = "result_limit"
        /// A Wasm trap (unreachable, out-of-bounds access, division by zero, …) or a bad host call.
        case trap
        /// The contract called `abort` with its own reason.
        case aborted
        /// A query tried to write.
        case readOnly = "read_only"
    }

    public let kind: Kind
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { detail }
}
