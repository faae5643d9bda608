import Testing
import Consensus
import Ledger
import MeshCore
import Sodium

@Suite struct ExecutorTests {
    /// A mixed workload over a few blocks: every chaincode, some refusals.
    static func workload(_ f: inout Fixture) -> [CommittedBlock] {
        var blocks: [CommittedBlock] = []
        blocks.append(f.chain.next([
            f.alice.invoke(f, "kv", "put", "k1", "v1"),
            f.bob.invoke(f, "kv", "put", "k2", "v2"),
            f.alice.invoke(f, "registry", "register", "meter", "fd00::1", "site=north"),
            f.bob.invoke(f, "anchor", "put", "obj-1", String(repeating: "ab", count: 32), "interval", "1700000000"),
        ]))
        blocks.append(f.chain.next([
            f.bob.invoke(f, "kv", "put", "k1", "stolen"),
            f.alice.invoke(f, "kv", "delete", "k1"),
            f.admin.invoke(f, "validators", "add", f.alice.hex, "10"),
        ]))
        blocks.append(f.chain.next([]))
        blocks.append(f.chain.next([f.admin.invoke(f, "cull", "cull", f.bob.hex), f.bob.invoke(f, "kv", "put", "k3", "v3")]))
        return blocks
    }

    @Test func theSameBlocksGiveTheSameResultsRootsAndHeaderHashes() throws {
        var f = Fixture()
        let blocks = Self.workload(&f)
        var a = Ledger(genesis: f.genesis), b = Ledger(genesis: f.genesis)
        var hashes: [[UInt8]] = []
        for block in blocks {
            let ea = try #require(try a.apply(block)), eb = try #require(try b.apply(block))
            #expect(ea.hash == eb.hash && ea.header.stateRoot == eb.header.stateRoot && ea.results == eb.results)
            hashes.append(ea.hash)
        }
        #expect(Set(hashes).count == blocks.count)
        #expect(a.state.root == b.state.root && a.headHash == b.headHash)
        // The header links to the one before it.
        #expect(a.head?.previous == hashes[hashes.count - 2])
    }

    @Test func aChaincodeSeesTheCallersVerifiedIdentityAndKeysBelongToTheirWriter() throws {
        var f = Fixture()
        let blocks = Self.workload(&f)
        var l = Ledger(genesis: f.genesis)
        let e1 = try #require(try l.apply(blocks[0]))
        #expect(e1.reasons == [nil, nil, nil, nil])
        let e2 = try #require(try l.apply(blocks[1]))
        #expect(e2.reasons == [.notOwner, nil, nil])
        #expect(l.query(chaincode: "kv", function: "get", args: [Fixture.b("k1")]).result == .refused(Refusal(.notFound, "no such key")))
        #expect(l.query(chaincode: "kv", function: "get", args: [Fixture.b("k2")]).result == .ok(Fixture.b("v2")))
        // The validator change is handed on with the height it applies at.
        #expect(e2.validatorChanges == [ValidatorChange(atHeight: 10, validators: f.genesis.consensus.validators.keys.map(\.bytes) + [f.alice.publicKey])])
    }

    @Test func aCulledSignersLaterTransactionsAreRefused() throws {
        var f = Fixture()
        var l = Ledger(genesis: f.genesis)
        let blocks = Self.workload(&f)
        for b in blocks.dropLast() { _ = try l.apply(b) }
        let e = try #require(try l.apply(blocks[blocks.count - 1]))
        #expect(e.reasons == [nil, .culledSigner])
        // And stay refused in later blocks.
        let later = try #require(try l.apply(f.chain.next([f.bob.invoke(f, "anchor", "put", "x", String(repeating: "ee", count: 16), "l", "2")])))
        #expect(later.reasons == [.culledSigner])
    }

    /// A meter anchor id names its collector's key: anyone else's put of it is refused, so a
    /// squatter cannot take the id first and keep the collector's own anchor off the ledger.
    @Test func aMeterAnchorIdIsPutOnlyByTheKeyItNames() throws {
        var f = Fixture()
        var l = Ledger(genesis: f.genesis)
        let digest = String(repeating: "ab", count: 32)
        let id = "meter/\(f.alice.hex)/1700000000/0"
        let e = try #require(try l.apply(f.chain.next([
            f.bob.invoke(f, "anchor", "put", id, digest, "meter-interval", "1700000000"),  // the squatter, first
            f.alice.invoke(f, "anchor", "put", id, digest, "meter-interval", "1700000000"),  // the collector
            f.bob.invoke(f, "anchor", "put", "meter/\(f.bob.hex.uppercased())/1/0", digest, "l", "1"),  // not as written
            f.bob.invoke(f, "anchor", "put", "meter/", digest, "l", "1"),  // names no key
            f.bob.invoke(f, "anchor", "put", "meter/\(f.bob.hex)/1/0", digest, "l", "1"),  // its own
            f.bob.invoke(f, "anchor", "put", "meterx/\(f.alice.hex)/1/0", digest, "l", "1"),  // not a meter id
        ])))
        #expect(e.reasons == [.notOwner, nil, .notOwner, .notOwner, nil, nil])
        guard case let .ok(row) = l.query(chaincode: "anchor", function: "get", args: [Fixture.b(id)]).result else {
            Issue.record("the collector's anchor is not on the ledger"); return
        }
        #expect(Array(row.prefix(32)) == f.alice.publicKey)
    }

    /// One transaction for every refusal reason; each comes back with its reason and a sentence.
    @Test func everyRefusalReasonReachesTheResult() throws {
        var f = Fixture()
        var l = Ledger.forTests(f.genesis)
        _ = try l.apply(f.chain.next([f.alice.invoke(f, "kv", "put", "mine", "x"), f.alice.invoke(f, "anchor", "put", "o", String(repeating: "cd", count: 16), "l", "1"),
                                      f.alice.deploy(f, "spinner", ContractExamples.spinner())]))

        var cases: [(RefusalReason, [UInt8])] = []
        let good = f.bob.invoke(f, "kv", "put", "a", "b")
        var flipped = good; flipped[flipped.count - 1] ^= 1
        cases.append((.badSignature, flipped))
        cases.append((.malformed, [9, 9, 9]))
        let big = try f.bob.sign(.invoke, "kv", "put", [Fixture.b("big"), [UInt8](repeating: 7, count: 15_000)], chainID: f.chainID).encoded
        cases.append((.oversized, big + [UInt8](repeating: 0, count: Transaction.maxEncodedBytes)))
        cases.append((.unknownChaincode, f.bob.invoke(f, "nope", "x")))
        cases.append((.unknownFunction, f.bob.invoke(f, "kv", "explode")))
        cases.append((.badArguments, f.bob.invoke(f, "kv", "put", "only-a-key")))
        cases.append((.notOwner, f.bob.invoke(f, "kv", "put", "mine", "y")))
        cases.append((.notAdmin, f.bob.invoke(f, "cull", "cull", f.alice.hex)))
        cases.append((.notFound, f.bob.invoke(f, "kv", "delete", "absent")))
        cases.append((.alreadyExists, f.bob.invoke(f, "anchor", "put", "o", String(repeating: "cd", count: 16), "l", "1")))
        cases.append((.queryInBlock, try f.bob.sign(.query, "kv", "get", [Fixture.b("mine")], chainID: f.chainID).encoded))
        cases.append((.deployUnsupported, try f.bob.sign(.deploy, "kv", WasmChaincode.deployFunction, [[0]], chainID: f.chainID).encoded))
        cases.append((.invalidContract, try f.bob.sign(.deploy, "junk", WasmChaincode.deployFunction, [[1, 2, 3]], chainID: f.chainID).encoded))
        cases.append((.contractFailed, f.bob.invoke(f, "spinner", "spin")))
        // A transaction signed for another chain: its signature does not verify here.
        var other = f.bob
        cases.append((.badSignature, try other.sign(.invoke, "kv", "put", [Fixture.b("z"), Fixture.b("z")], chainID: [UInt8](repeating: 1, count: 32)).encoded))
        // Replay: the same bytes twice (the second one is the replay), and a lower nonce.
        let once = f.alice.invoke(f, "kv", "put", "r", "1")
        cases.append((.replayedNonce, once))
        cases.append((.replayedNonce, once))
        cases.append((.culledSigner, f.admin.invoke(f, "cull", "cull", f.bob.hex)))
        cases.append((.culledSigner, f.bob.invoke(f, "kv", "put", "after", "cull")))
        let e = try #require(try l.apply(f.chain.next(cases.map(\.1))))
        var expected = cases.map(\.0) as [RefusalReason?]
        expected[expected.count - 4] = nil  // the first `once` goes through
        expected[expected.count - 2] = nil  // the cull itself goes through
        #expect(e.reasons == expected)
        for case .refused(let r) in e.results { #expect(!r.detail.isEmpty) }
        #expect(Set(e.reasons.compactMap { $0 }) == Set(RefusalReason.allCases))
    }

    @Test func aBlockThatDoesNotCheckChangesNothing() throws {
        var f = Fixture()
        var l = Ledger(genesis: f.genesis)
        _ = try l.apply(f.chain.next([f.alice.invoke(f, "kv", "put", "a", "1")]))
        let root = l.state.root
        let next = f.chain.next([f.alice.invoke(f, "kv", "put", "b", "2")])
        // A payload changed after the fact: the block no longer hashes to what the quorum signed.
        let altered = CommittedBlock(height: next.height, epoch: next.epoch, round: next.round, hash: next.hash,
                                     payloads: [f.bob.invoke(f, "kv", "put", "b", "3")], certificate: next.certificate,
                                     proposer: next.proposer, justify: next.justify)
        #expect(throws: LedgerError.self) { try l.apply(altered) }
        // Too few signers.
        let weak = QuorumCertificate(epoch: 0, round: next.round, blockHash: next.hash,
                                     signers: SignerBitmap(count: 4, signers: [0, 1]), signatures: Array(next.certificate.signatures.prefix(2)))
        let unsigned = CommittedBlock(height: next.height, epoch: next.epoch, round: next.round, hash: next.hash, payloads: next.payloads,
                                      certificate: weak, proposer: next.proposer, justify: next.justify)
        #expect(throws: LedgerError.self) { try l.apply(unsigned) }
        // A gap.
        let later = f.chain.next([])
        #expect(throws: LedgerError.self) { try l.apply(later) }
        #expect(l.height == 1 && l.state.root == root)
        // The genuine block still applies; an old height is ignored.
        #expect(try l.apply(next) != nil)
        #expect(try l.apply(next) == nil)
    }

    @Test func validatorChangesOnlyByAdminsAndOnlyForALaterHeight() throws {
        var f = Fixture()
        var l = Ledger(genesis: f.genesis)
        let e = try #require(try l.apply(f.chain.next([
            f.admin.invoke(f, "validators", "add", f.bob.hex, "1"),
            f.alice.invoke(f, "validators", "add", f.bob.hex, "5"),
            f.admin.invoke(f, "validators", "remove", Hex.encode(f.genesis.consensus.validators.keys[0].bytes.prefix(6)), "5"),
            f.admin.invoke(f, "validators", "remove", Hex.encode(f.genesis.consensus.validators.keys[0].bytes), "5"),
        ])))
        #expect(e.reasons == [.badArguments, .notAdmin, .badArguments, nil])
        #expect(e.validatorChanges.first?.atHeight == 5)
        #expect(e.validatorChanges.first?.validators.count == 3)
    }
}
