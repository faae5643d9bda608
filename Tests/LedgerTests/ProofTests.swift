import Testing
import Consensus
import Ledger
import MeshCore

@Suite struct ProofTests {
    static func key(_ i: Int) -> [UInt8] { Array("key-\(i)".utf8) }

    @Test func theRootDependsOnlyOnTheRowsNotOnTheOrderTheyWereWritten() {
        var a = StateTree(), b = StateTree()
        for i in 0..<300 { a.set(Self.key(i), [UInt8(i & 0xff)]) }
        for i in (0..<300).reversed() { b.set(Self.key(i), [UInt8(i & 0xff)]) }
        #expect(a.rootHash == b.rootHash && a.count == 300)
        // Deleting rows gives the tree that never had them.
        var c = StateTree()
        for i in 0..<300 where i % 3 != 0 { c.set(Self.key(i), [UInt8(i & 0xff)]) }
        for i in stride(from: 0, to: 300, by: 3) { a.remove(Self.key(i)) }
        #expect(a.rootHash == c.rootHash && a.count == 200)
        // Removing everything leaves the empty root.
        for i in 0..<300 { a.remove(Self.key(i)) }
        #expect(a.rootHash == StateTree.emptyHash && a.count == 0)
        a.set(Self.key(1), [1]); a.set(Self.key(1), [2])
        var d = StateTree(); d.set(Self.key(1), [2])
        #expect(a.rootHash == d.rootHash)
    }

    @Test func inclusionAndNonInclusionProofsCheckAgainstTheRoot() throws {
        var t = StateTree()
        for i in 0..<500 { t.set(Self.key(i), Array("value-\(i)".utf8)) }
        for i in [0, 17, 499] {
            try t.prove(Self.key(i)).verify(root: t.rootHash, key: Self.key(i), value: Array("value-\(i)".utf8))
        }
        var sawEmpty = false, sawOtherLeaf = false
        for i in 500..<600 {
            let p = t.prove(Self.key(i))
            try p.verify(root: t.rootHash, key: Self.key(i), value: nil)
            if case .empty = p.terminal { sawEmpty = true } else { sawOtherLeaf = true }
            // Claiming a value for an absent key fails.
            #expect(throws: StateProof.Failure.self) { try p.verify(root: t.rootHash, key: Self.key(i), value: [1]) }
        }
        #expect(sawEmpty && sawOtherLeaf)
        // A present key cannot be proven absent, nor with another value.
        let p = t.prove(Self.key(3))
        #expect(throws: StateProof.Failure.self) { try p.verify(root: t.rootHash, key: Self.key(3), value: nil) }
        #expect(throws: StateProof.Failure.self) { try p.verify(root: t.rootHash, key: Self.key(3), value: Array("value-4".utf8)) }
        #expect(try StateProof.decode(p.encoded) == p)
    }

    @Test func aTamperedProofFails() throws {
        var t = StateTree()
        for i in 0..<64 { t.set(Self.key(i), [UInt8(i)]) }
        let good = t.prove(Self.key(5))
        try good.verify(root: t.rootHash, key: Self.key(5), value: [5])
        for i in good.siblings.indices {
            var bad = good
            bad.siblings[i][0] ^= 1
            #expect(throws: StateProof.Failure.self) { try bad.verify(root: t.rootHash, key: Self.key(5), value: [5]) }
        }
        var shorter = good; shorter.siblings.removeLast()
        #expect(throws: StateProof.Failure.self) { try shorter.verify(root: t.rootHash, key: Self.key(5), value: [5]) }
        var otherRoot = t; otherRoot.set(Self.key(999), [1])
        #expect(throws: StateProof.Failure.self) { try good.verify(root: otherRoot.rootHash, key: Self.key(5), value: [5]) }
        // Every single-bit flip of the encoding fails to decode or to verify.
        let enc = good.encoded
        for i in 0..<enc.count {
            var e = enc; e[i] ^= 0x10
            if let p = try? StateProof.decode(e) {
                #expect(throws: StateProof.Failure.self) { try p.verify(root: t.rootHash, key: Self.key(5), value: [5]) }
            }
        }
    }

    @Test func aQueryAnswerWithItsProofChecksOfflineAndATamperedOneDoesNot() throws {
        var f = Fixture()
        var l = Ledger(genesis: f.genesis)
        _ = try l.apply(f.chain.next([f.alice.invoke(f, "kv", "put", "temp", "21.5"), f.bob.invoke(f, "kv", "put", "other", "x")]))
        let last = try #require(try l.apply(f.chain.next([f.alice.invoke(f, "registry", "register", "sensor", "fd00::9")])))
        let cert = f.chain.certify(last)

        for (fn, args) in [("get", ["temp"]), ("get", ["absent"])] as [(String, [String])] {
            let a = args.map { Array($0.utf8) }
            let answer = l.query(chaincode: "kv", function: fn, args: a)
            let proof = try #require(l.prove(chaincode: "kv", function: fn, args: a, answer: answer, headerCertificate: cert))
            let decoded = try QueryProof.decode(proof.encoded)
            try decoded.check(genesis: f.genesis)
            #expect(decoded == proof)
        }
        let a = [Array("temp".utf8)]
        let proof = try #require(l.prove(chaincode: "kv", function: "get", args: a, answer: l.query(chaincode: "kv", function: "get", args: a), headerCertificate: cert))
        // A different answer than the proven rows give.
        let lying = QueryProof(header: proof.header, headerCertificate: cert, chaincode: "kv", function: "get", args: a, result: .ok(Array("99".utf8)), reads: proof.reads)
        #expect(throws: LedgerError.self) { try lying.check(genesis: f.genesis) }
        // Any byte of the encoding changed: fails to decode or to check.
        let enc = proof.encoded
        var caught = 0
        for i in stride(from: 0, to: enc.count, by: 3) {
            var e = enc; e[i] ^= 0x01
            if let p = try? QueryProof.decode(e), (try? p.check(genesis: f.genesis)) != nil { continue }
            caught += 1
        }
        #expect(caught == (enc.count + 2) / 3)
        // Another chain's genesis: the certificate does not check.
        let other = try CertifiedChain(validatorSeeds: (10..<14).map { TransactionSigner.testSeed(UInt64($0)) }, admins: [])
        #expect(throws: LedgerError.self) { try proof.check(genesis: other.genesis) }
        // A certificate of another header (an older one): refused.
        let older = QueryProof(header: proof.header, headerCertificate: HeaderCertificate(height: 1, signers: cert.signers, signatures: cert.signatures),
                               chaincode: "kv", function: "get", args: a, result: proof.result, reads: proof.reads)
        #expect(throws: LedgerError.self) { try older.check(genesis: f.genesis) }
    }
}
