@_spi(Fuzzing) import WasmKit
import WasmParser
import Sodium

/// A module that passed the deploy checks, ready to instantiate. The checks are a pure function of
/// the bytes, so every validator accepts or refuses a deploy alike.
public struct ContractModule: Sendable {
    /// BLAKE2b-256 of the module bytes: the version's name in the ledger and the instance cache.
    public let hash: [UInt8]
    public let byteCount: Int
    /// Exported functions a transaction may call (no parameters, no results), sorted.
    public let functions: [String]
    let module: Module
    /// Every mutable global is exported, so a used instance can be put back to its initial state
    /// (otherwise each call gets a fresh instance).
    let resettable: Bool
    let mutableGlobalExports: [String]
}

/// The deploy checks (Docs/chaincode.md, "What a module may contain"): size, imports only from
/// the host API with its signatures, one memory exported as `memory` within the page limit, no
/// start function, and integer operators only. Floats are refused rather than canonicalised: a
/// contract that never touches a float has no NaN bit patterns to disagree on.
public enum ModuleCheck {
    public static func check(_ bytes: [UInt8], limits: ContractLimits = .standard) throws(ContractError) -> ContractModule {
        guard bytes.count <= limits.moduleBytes else {
            throw ModuleCheck.invalid("the module is \(bytes.count) bytes; at most \(limits.moduleBytes)")
        }
        var scan = Scan(limits: limits)
        do {
            var parser = WasmParser.Parser(bytes: bytes, features: [])
            while let payload = try parser.parseNext() { try scan.take(payload) }
        } catch let e as ContractError {
            throw e
        } catch {
            throw ModuleCheck.invalid("not a valid WebAssembly module: \(firstLine(error))")
        }
        let (functions, mutableExports, resettable) = try scan.finish()

        let module: Module
        do {
            module = try parseWasm(bytes: bytes, features: [])
            // Instantiating with eager compilation validates and translates every function body
            // now (no code runs: there is no start function), so a call never meets a bad body.
            let store = Store(engine: validationEngine(limits))
            store.resourceLimiter = PageLimiter(pages: limits.memoryPages)
            let context = CallContext(limits: limits)
            _ = try module.instantiate(store: store, imports: HostAPI.imports(store: store, context: context))
        } catch let e as ContractError {
            throw ModuleCheck.invalid(e.detail)
        } catch {
            throw ModuleCheck.invalid("the module does not validate: \(firstLine(error))")
        }
        return ContractModule(hash: Blake2b.hash(bytes, outputLength: 32), byteCount: bytes.count, functions: functions,
                              module: module, resettable: resettable, mutableGlobalExports: mutableExports)
    }

    static func validationEngine(_ limits: ContractLimits) -> Engine {
        Engine(configuration: EngineConfiguration(compilationMode: .eager, stackSize: limits.stackBytes, features: [],
                                                  memoryBoundsChecking: .software, fuelMetering: true))
    }

    static func invalid(_ detail: String) -> ContractError { ContractError(.invalidModule, detail) }

    static func firstLine(_ error: any Error) -> String {
        String("\(error)".prefix { $0 != "\n" }.prefix(200))
    }

    static func isInteger(_ t: ValueType) -> Bool { t == .i32 || t == .i64 }

    /// `(i32, i32) -> i32`: a signature in refusals.
    static func text(_ ft: FunctionType) -> String {
        "(" + ft.parameters.map { "\($0)" }.joined(separator: ", ") + ") -> (" + ft.results.map { "\($0)" }.joined(separator: ", ") + ")"
    }

    /// Walks the sections once, in order, refusing the first thing a contract may not have.
    struct Scan {
        let limits: ContractLimits
        var types: [FunctionType] = []
        var importTypes: [FunctionType] = []
        var functionTypes: [FunctionType] = []
        var memories = 0
        var globals = 0
        var mutableGlobals: Set<UInt32> = []
        var exports: [Export] = []

        init(limits: ContractLimits) { self.limits = limits }

        mutating func take(_ payload: ParsingPayload) throws(ContractError) {
            switch payload {
            case .header, .customSection, .elementSection, .dataSection, .dataCount:
                return
            case .typeSection(let groups):
                for group in groups {
                    for sub in group.types {
                        guard case .function(let ft) = sub.body else { throw ModuleCheck.invalid("only function types are allowed") }
                        guard (ft.parameters + ft.results).allSatisfy(ModuleCheck.isInteger) else {
                            throw ModuleCheck.invalid("a function type \(ModuleCheck.text(ft)); contracts use i32 and i64 only (no floats, SIMD or references)")
                        }
                        types.append(ft)
                    }
                }
            case .importSection(let imports):
                for i in imports {
                    guard i.module == HostAPI.module else {
                        throw ModuleCheck.invalid("imports \"\(i.module)\".\"\(i.name)\"; a contract imports only from the host API module \"\(HostAPI.module)\"")
                    }
                    guard case .function(let ti) = i.descriptor else { throw ModuleCheck.invalid("imports \(HostAPI.module).\(i.name) as a non-function") }
                    guard let expected = HostAPI.signatures[i.name] else {
                        throw ModuleCheck.invalid("imports \(HostAPI.module).\(i.name), which the host API does not have (it has \(HostAPI.signatures.keys.sorted().joined(separator: ", ")))")
                    }
                    guard Int(ti) < types.count, types[Int(ti)] == expected else {
                        throw ModuleCheck.invalid("imports \(HostAPI.module).\(i.name) with another signature than the host API's \(ModuleCheck.text(expected))")
                    }
                    importTypes.append(expected)
                }
            case .functionSection(let indices):
                for ti in indices {
                    guard Int(ti) < types.count else { throw ModuleCheck.invalid("a function names type \(ti), which does not exist") }
                    functionTypes.append(types[Int(ti)])
                }
            case .tableSection(let tables):
                for t in tables {
                    guard t.type.elementType == .funcRef, !t.type.limits.isMemory64 else { throw ModuleCheck.invalid("tables hold funcref only") }
                    guard t.type.limits.min <= UInt64(limits.tableEntries) else {
                        throw ModuleCheck.invalid("a table of \(t.type.limits.min) entries; at most \(limits.tableEntries)")
                    }
                }
            case .memorySection(let mems):
                memories += mems.count
                guard memories <= 1 else { throw ModuleCheck.invalid("more than one memory") }
                for m in mems {
                    guard !m.type.shared else { throw ModuleCheck.invalid("shared memory (threads) is not allowed") }
                    guard !m.type.isMemory64 else { throw ModuleCheck.invalid("64-bit memory is not allowed") }
                    guard m.type.min <= UInt64(limits.memoryPages) else {
                        throw ModuleCheck.invalid("memory of \(m.type.min) pages; at most \(limits.memoryPages) (\(limits.memoryPages * 64) KiB)")
                    }
                }
            case .globalSection(let gs):
                for g in gs {
                    guard ModuleCheck.isInteger(g.type.valueType) else { throw ModuleCheck.invalid("a global of type \(g.type.valueType); contracts use i32 and i64 only") }
                    if g.type.mutability == .variable { mutableGlobals.insert(UInt32(globals)) }
                    globals += 1
                }
            case .tagSection:
                throw ModuleCheck.invalid("exception tags are not allowed")
            case .exportSection(let e):
                exports = e
            case .startSection:
                throw ModuleCheck.invalid("a start function is not allowed (instantiating must run no code)")
            case .codeSection(let codes):
                for code in codes {
                    for l in code.locals where !ModuleCheck.isInteger(l) {
                        throw ModuleCheck.invalid("a local of type \(l); contracts use i32 and i64 only (no floats, SIMD or references)")
                    }
                    var operators = OperatorScan(types: types)
                    var expression = ExpressionParser(code: code)
                    do {
                        while let visit = try expression.parse() { try visit(visitor: &operators) }
                    } catch let e as ContractError {
                        throw e
                    } catch {
                        throw ModuleCheck.invalid("a function body does not parse: \(ModuleCheck.firstLine(error))")
                    }
                }
            }
        }

        /// The callable functions, the exported mutable globals, and whether every mutable global is exported.
        func finish() throws(ContractError) -> ([String], [String], Bool) {
            guard memories == 1, exports.contains(where: { $0.name == "memory" && $0.descriptor == .memory(0) }) else {
                throw ModuleCheck.invalid("a contract has one memory, exported as \"memory\" (arguments and results pass through it)")
            }
            let allTypes = importTypes + functionTypes
            var functions: [String] = []
            var mutableExports: [String] = []
            var exportedGlobals: Set<UInt32> = []
            for e in exports {
                switch e.descriptor {
                case .function(let fi):
                    if Int(fi) < allTypes.count, allTypes[Int(fi)].parameters.isEmpty, allTypes[Int(fi)].results.isEmpty { functions.append(e.name) }
                case .global(let gi) where mutableGlobals.contains(gi):
                    mutableExports.append(e.name)
                    exportedGlobals.insert(gi)
                default:
                    break
                }
            }
            return (functions.sorted(), mutableExports.sorted(), exportedGlobals == mutableGlobals)
        }
    }

    /// Allows the integer operators of WebAssembly 1.0 with sign extension and bulk `memory.copy`
    /// and `memory.fill`; refuses everything else (floats, SIMD, atomics, references, tables'
    /// mutation, passive segments, exceptions, tail calls, GC) by name.
    struct OperatorScan: AnyInstructionVisitor {
        typealias VisitorError = ContractError
        var binaryOffset = 0
        let types: [FunctionType]

        mutating func visit(_ instruction: WasmParser.Instruction) throws(ContractError) {
            switch instruction {
            case .unreachable, .nop, .else, .end, .br, .brIf, .brTable, .return, .call, .callIndirect, .drop, .select,
                 .localGet, .localSet, .localTee, .globalGet, .globalSet, .memorySize, .memoryGrow, .i32Const, .i64Const,
                 .i32Eqz, .i64Eqz, .memoryCopy, .memoryFill:
                return
            case .block(blockType: let t), .loop(blockType: let t), .if(blockType: let t):
                switch t {
                case .empty: return
                case .type(let v): if ModuleCheck.isInteger(v) { return }
                case .funcType(let i): if Int(i) < types.count { return }
                }
                throw refuse("a block of type \(t)")
            case .typedSelect(type: let v):
                if ModuleCheck.isInteger(v) { return }
                throw refuse("select of \(v)")
            case .load(let op, _):
                let n = "\(op)"
                if n.hasPrefix("i32Load") || n.hasPrefix("i64Load") { return }
                throw refuse(n)
            case .store(let op, _):
                let n = "\(op)"
                if n.hasPrefix("i32Store") || n.hasPrefix("i64Store") { return }
                throw refuse(n)
            case .cmp(let op):
                if !"\(op)".hasPrefix("f") { return }
                throw refuse("\(op)")
            case .unary(let op):
                if !"\(op)".hasPrefix("f") { return }
                throw refuse("\(op)")
            case .binary(let op):
                if !"\(op)".hasPrefix("f") { return }
                throw refuse("\(op)")
            case .conversion(let op):
                if op == .i32WrapI64 || op == .i64ExtendI32S || op == .i64ExtendI32U { return }
                throw refuse("\(op)")
            default:
                throw refuse(String("\(instruction)".prefix { $0 != "(" }))
            }
        }

        func refuse(_ what: String) -> ContractError {
            ModuleCheck.invalid("operator \(what) at byte \(binaryOffset) is not allowed: contracts use integer operators only (no floats, SIMD, atomics, references or exceptions)")
        }
    }
}
