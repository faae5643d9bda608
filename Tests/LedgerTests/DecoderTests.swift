import Testing
import Ledger
import MeshCore

/// Every decoder of the ledger takes any bytes: a value or a reason, never a trap.
@Suite struct DecoderTests {
    @Test func mutatedTransactionsDecodeToARefusalOrToExactlyTheirBytes() {
        var f = Fixture()
        let genuine = [f.alice.invoke(f, "kv", "put", "key", "value"), f.bob.invoke(f, "registry", "register", "meter", "fd00::2", "a=b")]
        var g = SeededGenerator(seed: 17)
        var refused = 0, decoded = 0
        for i in 0..<6000 {
            var b = genuine[i % 2]
            switch i % 3 {
            case 0: b[Int(g.next() % UInt64(b.count))] ^= UInt8(truncatingIfNeeded: g.next() | 1)
            case 1: b = Array(b.prefix(Int(g.next() % UInt64(b.count))))
            default: b = (0..<Int(g.next() % 200)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            }
            do {
                let tx = try Transaction.decode(b)
                #expect(tx.encoded == b)
                decoded += 1
                // A changed byte that still decodes never keeps a valid signature.
                if i % 3 == 0, b != genuine[i % 2] { #expect(!tx.signatureIsValid(chainID: f.chainID)) }
            } catch {
                #expect(!error.detail.isEmpty)
                refused += 1
            }
        }
        #expect(refused > 1000 && decoded > 100)
    }

    @Test func mutatedHeadersResultsAndCertificatesNeverTrap() throws {
        var f = Fixture()
        var l = Ledger(genesis: f.genesis)
        let e = try #require(try l.apply(f.chain.next([f.alice.invoke(f, "kv", "put", "k", "v"), [1, 2, 3]])))
        let samples = [e.header.encoded, e.results[0].encoded, e.results[1].encoded, f.chain.certify(e).encoded]
        var g = SeededGenerator(seed: 5)
        for i in 0..<4000 {
            var b = samples[i % samples.count]
            if i % 2 == 0 { b[Int(g.next() % UInt64(b.count))] ^= 0x20 } else { b = Array(b.prefix(Int(g.next() % UInt64(b.count)))) }
            _ = try? LedgerHeader.decode(b)
            _ = try? TxResult.decode(b)
            _ = try? HeaderCertificate.decode(b)
            _ = try? QueryProof.decode(b)
            _ = try? StateProof.decode(b)
            _ = try? LedgerRows.decodeTxValue(b)
        }
    }
}
