import Consensus
import Contracts
import Foundation
import Ledger
import MeshCore
import Testing

/// Consensus time in contracts (`time()` is the committed block's agreed time, the same on every
/// replica, carried in a version 2 header) and proofs of contract queries (the contract's record,
/// version and module rows are proven with its own rows, so `check` re-runs the same code).
@Suite struct ContractTimeAndProofTests {
    static let clock = try! ContractSource.compile(wat: """
        (module (import "iotaf" "time" (func $time (result i64))) (import "iotaf" "ret" (func $ret (param i32 i32)))
          (import "iotaf" "put" (func $put (param i32 i32 i32 i32)))
          (memory (export "memory") 1) (data (i32.const 16) "t")
          (func (export "stamp") (i64.store (i32.const 0) (call $time)) (call $put (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 8))
            (call $ret (i32.const 0) (i32.const 8)))
          (func (export "now") (i64.store (i32.const 0) (call $time)) (call $ret (i32.const 0) (i32.const 8))))
        """)

    static func u64le(_ b: [UInt8]?) -> UInt64? {
        guard let b, b.count == 8 else { return nil }
        return b.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    @Test func aContractReadsTheBlocksConsensusTimeOnEveryReplica() throws {
        var f = Fixture()
        let t1: UInt64 = 1_767_225_600_000, t2: UInt64 = 1_767_225_601_250
        let blocks = [
            f.chain.next([f.alice.deploy(f, "clock", Self.clock)], time: t1),
            f.chain.next([f.alice.invoke(f, "clock", "stamp")], time: t2),
        ]
        var a = Ledger.forTests(f.genesis), b = Ledger.forTests(f.genesis, poolsInstances: false)
        var last: [ExecutedBlock] = []
        for block in blocks {
            let ea = try #require(try a.apply(block)), eb = try #require(try b.apply(block))
            #expect(ea.hash == eb.hash && ea.results == eb.results)
            last = [ea, eb]
        }
        #expect(Self.u64le(last[0].results[0].contractOutput) == t2)
        #expect(last[0].header.time == t2)
        #expect(Self.u64le(a.queryContract("clock", function: "now", args: [])?.result.contractOutput) == t2)
        // A version 2 header round-trips with its time, and the time is in its hash.
        let header = last[0].header
        let decoded = try LedgerHeader.decode(header.encoded)
        #expect(decoded == header && header.encoded.first == 2)
        let untimed = LedgerHeader(height: header.height, previous: header.previous, epoch: header.epoch, round: header.round, proposer: header.proposer,
                                   consensusHash: header.consensusHash, justify: header.justify, certificate: header.certificate,
                                   txRoot: header.txRoot, resultsRoot: header.resultsRoot, stateRoot: header.stateRoot)
        #expect(untimed.encoded.first == 1 && untimed.hash(chainID: f.chainID) != header.hash(chainID: f.chainID))
        // A version 2 header claiming no time is not a second encoding of a version 1 header.
        var forged = untimed.encoded
        forged[0] = 2
        forged += [UInt8](repeating: 0, count: 8)
        #expect(throws: LedgerError.self) { try LedgerHeader.decode(forged) }
        // The consensus hash covers the time: the same block with another time is another block.
        let other = CommittedBlock(height: blocks[1].height, epoch: 0, round: blocks[1].round, hash: blocks[1].hash, payloads: blocks[1].payloads,
                                   certificate: blocks[1].certificate, proposer: blocks[1].proposer, justify: blocks[1].justify, time: t2 + 1)
        #expect(other.recomputedHash(chainID: f.chainID) != blocks[1].hash)
        // A block without a time gives `time()` -1, as before.
        var c = Fixture()
        var l = Ledger.forTests(c.genesis)
        _ = try l.apply(c.chain.next([c.alice.deploy(c, "clock", Self.clock)]))
        let e = try #require(try l.apply(c.chain.next([c.alice.invoke(c, "clock", "stamp")])))
        #expect(Self.u64le(e.results[0].contractOutput) == UInt64.max && e.header.encoded.first == 1)
    }

    @Test func aContractQueryIsProvenAgainstACertifiedHeader() throws {
        var f = Fixture()
        var l = Ledger.forTests(f.genesis)
        _ = try l.apply(f.chain.next([f.alice.deploy(f, "counter", ContractExamples.module("counter"))], time: 1_767_225_600_000))
        let e = try #require(try l.apply(f.chain.next([f.alice.invoke(f, "counter", "bump", "x"), f.bob.invoke(f, "counter", "bump", "x")], time: 1_767_225_600_500)))
        let cert = f.chain.certify(e)
        let answer = l.query(chaincode: "counter", function: "value", args: [Fixture.b("x")])
        #expect(answer.result.contractOutput == [2, 0, 0, 0, 0, 0, 0, 0])
        let proof = try #require(l.prove(chaincode: "counter", function: "value", args: [Fixture.b("x")], answer: answer, headerCertificate: cert))
        // The record, the version, the module and the contract's own row are all proven.
        #expect(proof.reads.count == 4)
        try QueryProof.decode(proof.encoded).check(genesis: f.genesis)
        // An absent key is proven absent (the contract answers 0).
        let none = l.query(chaincode: "counter", function: "value", args: [Fixture.b("nope")])
        try #require(l.prove(chaincode: "counter", function: "value", args: [Fixture.b("nope")], answer: none, headerCertificate: cert)).check(genesis: f.genesis)
        // A lying answer, or a proof missing the module's row, fails.
        let lie = QueryProof(header: proof.header, headerCertificate: cert, chaincode: "counter", function: "value", args: [Fixture.b("x")],
                             result: .ok(ContractResult(output: [9, 0, 0, 0, 0, 0, 0, 0], events: [], fuelUsed: 1).encoded), reads: proof.reads)
        #expect(throws: LedgerError.self) { try lie.check(genesis: f.genesis) }
        let partial = QueryProof(header: proof.header, headerCertificate: cert, chaincode: "counter", function: "value", args: [Fixture.b("x")],
                                 result: proof.result, reads: proof.reads.filter { $0.read.value?.count ?? 0 < 100 })
        #expect(throws: LedgerError.self) { try partial.check(genesis: f.genesis) }
    }
}
