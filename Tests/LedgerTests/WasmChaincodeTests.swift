import Contracts
import Foundation
import Testing
import Consensus
import Ledger
import LedgerStore
import MeshCore

enum ContractExamples {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Docs/examples/contracts").standardized

    static func module(_ name: String) -> [UInt8] {
        try! ContractSource.compile(wat: String(contentsOf: directory.appendingPathComponent(name + ".wat"), encoding: .utf8))
    }

    /// A contract whose `spin` never ends and whose `ok` returns VERSION.
    static func spinner(_ version: String = "v1") -> [UInt8] {
        try! ContractSource.compile(wat: """
            (module (import "iotaf" "ret" (func $ret (param i32 i32)))
              (memory (export "memory") 1) (data (i32.const 0) "\(version)")
              (func (export "spin") (loop $l (br $l)))
              (func (export "ok") (call $ret (i32.const 0) (i32.const \(version.utf8.count)))))
            """)
    }
}

extension Ledger {
    /// Contract limits for tests: the standard ones with 200,000 fuel, so that endless loops end
    /// quickly in a debug build (every executor of a test uses the same limits, as validators must).
    static let testLimits: ContractLimits = {
        var l = ContractLimits.standard
        l.fuel = 200_000
        return l
    }()

    static func forTests(_ genesis: LedgerGenesis, poolsInstances: Bool = true) -> Ledger {
        var l = Ledger(genesis: genesis)
        l.contracts = ContractRuntime(limits: testLimits, poolsInstances: poolsInstances)
        return l
    }
}

extension TransactionSigner {
    mutating func deploy(_ f: Fixture, _ name: String, _ module: [UInt8]) -> [UInt8] {
        try! sign(.deploy, name, WasmChaincode.deployFunction, [module], chainID: f.chainID).encoded
    }
}

extension TxResult {
    var contractOutput: [UInt8]? {
        guard case .ok(let bytes) = self, let r = ContractResult.decode(bytes) else { return nil }
        return r.output
    }
    var refusal: Refusal? { if case .refused(let r) = self { r } else { nil } }
}

@Suite struct WasmChaincodeTests {
    /// Deploys, invokes of three contracts with fuel limits hit in the middle of blocks, an
    /// upgrade and refused deploys, over several blocks.
    static func workload(_ f: inout Fixture, spins: Bool = true) -> [CommittedBlock] {
        var blocks: [CommittedBlock] = []
        blocks.append(f.chain.next([
            f.admin.deploy(f, "counter", ContractExamples.module("counter")),
            f.alice.deploy(f, "billing", ContractExamples.module("meter-billing")),
            f.bob.deploy(f, "spinner", ContractExamples.spinner()),
            f.alice.invoke(f, "registry", "register", "collector", "fd00::7", "role=collector"),
            f.bob.deploy(f, "bad", [0, 0x61, 0x73, 0x6d, 9, 9]),
        ]))
        blocks.append(f.chain.next([
            f.alice.invoke(f, "counter", "bump", "x"),
            f.bob.invoke(f, "spinner", spins ? "spin" : "ok"),
            f.alice.invoke(f, "billing", "record", "meter-1", "peak", "1200", "interval-1"),
            f.bob.invoke(f, "counter", "bump", "x"),
            f.bob.invoke(f, "spinner", spins ? "spin" : "ok"),
            f.alice.invoke(f, "billing", "record", "meter-1", "peak", "300", "interval-2"),
            f.alice.invoke(f, "billing", "record", "meter-1", "peak", "300", "interval-2"),
            f.bob.invoke(f, "billing", "record", "meter-1", "peak", "999", "interval-3"),
        ]))
        blocks.append(f.chain.next([
            f.alice.deploy(f, "spinner", ContractExamples.spinner("v2")),
            f.bob.deploy(f, "spinner", ContractExamples.spinner("v2")),
            f.alice.invoke(f, "counter", "bump", "x"),
            f.bob.invoke(f, "spinner", spins ? "spin" : "ok"),
            f.alice.invoke(f, "counter", "bump", "y"),
        ]))
        return blocks
    }

    @Test func fourExecutorsReachTheSameStateRootWithFuelLimitsHitMidBlock() throws {
        var f = Fixture()
        let blocks = Self.workload(&f)
        // Independent executors; one drops every instance after each call (always a cold start).
        var ledgers = (0..<4).map { Ledger.forTests(f.genesis, poolsInstances: $0 != 3) }
        var outOfFuel = 0
        for block in blocks {
            let executed = try ledgers.indices.map { try #require(try ledgers[$0].apply(block)) }
            for e in executed.dropFirst() {
                #expect(e.header.stateRoot == executed[0].header.stateRoot)
                #expect(e.results == executed[0].results)
                #expect(e.hash == executed[0].hash)
            }
            outOfFuel += executed[0].results.filter { $0.refusal?.detail.hasPrefix("out of fuel after") == true }.count
        }
        #expect(outOfFuel == 3)
        let l = ledgers[0]
        #expect(l.query(chaincode: "counter", function: "value", args: [Fixture.b("x")]).result.contractOutput == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(l.query(chaincode: "billing", function: "total", args: [Fixture.b("meter-1"), Fixture.b("peak")]).result.contractOutput == Fixture.b("1500"))
    }

    /// Every limit (fuel, memory pages, stack, bytes written, result size) fails its transaction
    /// with a reason, mid-block, the same on four executors (one always cold); the calls around
    /// them run, and a failed call's writes are dropped everywhere.
    @Test func everyLimitFailsItsTransactionAloneAndAlikeOnFourExecutors() throws {
        var f = Fixture()
        let limits = try ContractSource.compile(wat: """
            (module
              (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
              (import "iotaf" "ret" (func $ret (param i32 i32)))
              (memory (export "memory") 1)
              (func $r (param i32) (call $r (i32.add (local.get 0) (i32.const 1))))
              (func (export "spin") (call $put (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)) (loop $l (br $l)))
              (func (export "bomb") (loop $l (drop (memory.grow (i32.const 1))) (br $l)))
              (func (export "deep") (call $r (i32.const 0)))
              (func (export "flood") (local $i i32)
                (loop $l
                  (i32.store8 (i32.const 0) (local.get $i))
                  (call $put (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 1024))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const 100)))))
              (func (export "huge") (call $ret (i32.const 0) (i32.const 5000)))
              (func (export "ok") (call $put (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)) (call $ret (i32.const 16) (i32.const 4))))
            """)
        let block = f.chain.next([
            f.alice.deploy(f, "limits", limits),
            f.alice.invoke(f, "limits", "ok"),
            f.alice.invoke(f, "limits", "spin"),
            f.bob.invoke(f, "limits", "bomb"),
            f.alice.invoke(f, "limits", "deep"),
            f.bob.invoke(f, "limits", "flood"),
            f.alice.invoke(f, "limits", "huge"),
            f.bob.invoke(f, "limits", "ok"),
        ])
        var ledgers = (0..<4).map { Ledger.forTests(f.genesis, poolsInstances: $0 != 3) }
        let executed = try ledgers.indices.map { try #require(try ledgers[$0].apply(block)) }
        for e in executed.dropFirst() {
            #expect(e.header.stateRoot == executed[0].header.stateRoot)
            #expect(e.results == executed[0].results)
        }
        let details = executed[0].results.map { $0.refusal?.detail }
        #expect(details[0] == nil && details[1] == nil && details[7] == nil)
        #expect(details[2] == "out of fuel after \(Ledger.testLimits.fuel)")
        #expect(details[3]?.hasPrefix("memory limit: grow to 17 pages; at most 16") == true, "\(String(describing: details[3]))")
        #expect(details[4]?.hasPrefix("stack limit: call stack exhausted") == true, "\(String(describing: details[4]))")
        #expect(details[5]?.hasPrefix("wrote ") == true && details[5]?.contains("at most 65536 a call") == true, "\(String(describing: details[5]))")
        #expect(details[6] == "a result of 5000 bytes; at most 4096")
        // Only the two `ok` calls wrote (the same row); the spin's and the flood's writes were dropped.
        let rows = ledgers[0].state.rows.keys.filter { $0.starts(with: Array("wasm/limits".utf8) + [0]) }
        #expect(rows.count == 1)
    }

    @Test func theResultsSayWhyAndTheWritesOfAFailedCallAreDropped() throws {
        var f = Fixture()
        let blocks = Self.workload(&f)
        var l = Ledger.forTests(f.genesis)
        let e1 = try #require(try l.apply(blocks[0]))
        #expect(e1.reasons == [nil, nil, nil, nil, .invalidContract])
        let e2 = try #require(try l.apply(blocks[1]))
        #expect(e2.reasons == [nil, .contractFailed, nil, nil, .contractFailed, nil, .contractFailed, .contractFailed])
        #expect(e2.results[1].refusal?.detail == "out of fuel after \(Ledger.testLimits.fuel)")
        #expect(e2.results[6].refusal?.detail.contains("already recorded") == true)
        #expect(e2.results[7].refusal?.detail.contains("role=collector") == true)
        #expect(e2.results[5].contractOutput == Fixture.b("1500"))
        // The billing contract's rows are under its own namespace, covered by the state root.
        let billingRows = l.state.rows.keys.filter { $0.starts(with: Array("wasm/billing".utf8) + [0]) }
        #expect(billingRows.count == 3)  // two intervals seen, one total
        let e3 = try #require(try l.apply(blocks[2]))
        // Alice may not upgrade Bob's contract; Bob may.
        #expect(e3.reasons == [.notOwner, nil, nil, .contractFailed, nil])
    }

    @Test func anUpgradeRunsFromItsHeightAndOldHeightsQueryTheOldVersion() throws {
        var f = Fixture()
        var l = Ledger.forTests(f.genesis)
        let d1 = try #require(try l.apply(f.chain.next([f.bob.deploy(f, "svc", ContractExamples.spinner("v1"))])))
        guard case .ok(let out) = d1.results[0] else { Issue.record("deploy refused: \(d1.results[0])"); return }
        #expect(out.count == 36 && Array(out.suffix(4)) == [0, 0, 0, 1])
        _ = try l.apply(f.chain.next([]))
        let d3 = try #require(try l.apply(f.chain.next([
            f.alice.deploy(f, "svc", ContractExamples.spinner("v2")),
            f.admin.deploy(f, "svc", ContractExamples.spinner("v2")),
            f.bob.deploy(f, "svc", ContractExamples.spinner("v2")),
            f.bob.invoke(f, "svc", "ok"),
        ])))
        #expect(d3.reasons == [.notOwner, nil, .alreadyExists, nil])
        #expect(d3.results[3].contractOutput == Fixture.b("v2"))
        #expect(l.queryContract("svc", function: "ok", args: [])?.result.contractOutput == Fixture.b("v2"))
        #expect(l.queryContract("svc", function: "ok", args: [], height: 2)?.result.contractOutput == Fixture.b("v1"))
        #expect(l.queryContract("svc", function: "ok", args: [], height: 1)?.result.contractOutput == Fixture.b("v1"))
        #expect(l.queryContract("svc", function: "ok", args: [], height: 0)?.result.refusal?.reason == .notFound)
        // The admin's upgrade kept Bob as the owner.
        #expect(WasmChaincode.record("svc", in: l.state)?.owner == f.bob.publicKey)
        #expect(WasmChaincode.record("svc", in: l.state)?.versions == 2)
        // Names of built-ins and malformed deploys are refused.
        let bad = try #require(try l.apply(f.chain.next([
            f.bob.deploy(f, "kv", ContractExamples.spinner()),
            f.bob.deploy(f, "Bad Name", ContractExamples.spinner()),
            try f.bob.sign(.deploy, "other", "install", [ContractExamples.spinner()], chainID: f.chainID).encoded,
        ])))
        #expect(bad.reasons == [.deployUnsupported, .badArguments, .badArguments])
    }

    @Test func thePermissionFilterAnswersOwnersGrantedReadersAndAdminsOnly() throws {
        var f = Fixture()
        var l = Ledger.forTests(f.genesis)
        let e = try #require(try l.apply(f.chain.next([
            f.alice.deploy(f, "filter", ContractExamples.module("permission-filter")),
            f.alice.invoke(f, "filter", "put", "plan", "secret"),
            f.bob.invoke(f, "filter", "put", "plan", "mine now"),
            f.bob.invoke(f, "filter", "grant", "plan", f.bob.hex),
            f.alice.invoke(f, "filter", "grant", "plan", "zz"),
        ])))
        #expect(e.reasons == [nil, nil, .contractFailed, .contractFailed, .contractFailed])
        let read = { (caller: [UInt8]) in l.query(chaincode: "filter", function: "read", args: [Fixture.b("plan")], caller: caller).result }
        #expect(read(f.alice.publicKey).contractOutput == Fixture.b("secret"))
        #expect(read(f.bob.publicKey).refusal?.detail.contains("not permitted") == true)
        #expect(read([]).refusal?.reason == .contractFailed)
        #expect(read(f.admin.publicKey).contractOutput == Fixture.b("secret"))
        _ = try l.apply(f.chain.next([f.alice.invoke(f, "filter", "grant", "plan", f.bob.hex)]))
        #expect(read(f.bob.publicKey).contractOutput == Fixture.b("secret"))
        _ = try l.apply(f.chain.next([f.alice.invoke(f, "filter", "revoke", "plan", f.bob.hex)]))
        #expect(read(f.bob.publicKey).refusal?.reason == .contractFailed)
        // A query never writes.
        #expect(l.query(chaincode: "filter", function: "put", args: [Fixture.b("q"), Fixture.b("v")], caller: f.bob.publicKey).result.refusal?.detail.contains("query") == true)
    }

    /// The store keeps contract rows like any other, and `verify` re-executes the contracts from
    /// genesis to the same roots (with the standard limits, as the verifier uses: no endless loops
    /// here, they would take seconds each in a debug build).
    @Test func aStoredLedgerWithContractsVerifiesByReExecution() throws {
        let dir = NSTemporaryDirectory() + "wasm-ledger-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var f = Fixture()
        let store = try LedgerStore(path: dir + "/" + LedgerStore.fileName)
        try store.apply(LedgerRows.genesisOps(f.genesis))
        var l = Ledger(genesis: f.genesis)
        for block in Self.workload(&f, spins: false) {
            let e = try #require(try l.apply(block))
            try store.apply(LedgerRows.ops(for: e))
            try store.apply(LedgerRows.ops(for: f.chain.certify(e)))
        }
        #expect(try store.verify() == 3)
        let reloaded = try store.load()
        #expect(reloaded.state.root == l.state.root)
        #expect(reloaded.query(chaincode: "counter", function: "value", args: [Fixture.b("x")]).result.contractOutput == [3, 0, 0, 0, 0, 0, 0, 0])
    }
}
