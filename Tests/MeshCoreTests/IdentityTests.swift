import MeshCore
import Sodium
import Testing

@Suite struct IdentityTests {
    /// Expected values computed independently (Python `cryptography` + `hashlib.blake2b`).
    @Test func nodeIDAndOverlayMatchTheDocumentedDerivation() throws {
        let id = try NodeIdentity(seed: Array(0..<32))
        #expect(Hex.encode(id.publicKey) == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
        #expect(id.nodeID.hex == "9ccd26682c1d3eb0ac42b8eaf5933870f2a1309472552ec624e6a281f5038f7e")
        #expect(NetworkID.defaultNetwork.description == "601d6a20afdb1aad149cfc1c9f85a9c7")
        #expect(id.overlayAddress(in: .defaultNetwork).description == "fd83:abcd:5a26:67d0:e1f1:6153:f960:9e98")
    }

    @Test func overlayDependsOnNetworkAndStartsWithFD() throws {
        let id = NodeIdentity.generate()
        let other = NetworkID(hex: "00112233445566778899aabbccddeeff")!
        #expect(id.overlayAddress(in: other) != id.overlayAddress(in: .defaultNetwork))
        #expect(id.overlayAddress(in: other).bytes[0] == 0xfd)
    }

    @Test func signaturesVerifyAndTamperingFails() {
        let id = NodeIdentity.generate()
        let sig = id.sign(Array("hello".utf8))
        #expect(Ed25519.verify(sig, message: Array("hello".utf8), publicKey: id.publicKey))
        #expect(!Ed25519.verify(sig, message: Array("hellp".utf8), publicKey: id.publicKey))
    }

    @Test func deterministicIdentitiesRepeat() {
        #expect(NodeIdentity.deterministic(runSeed: 7, index: 3).nodeID == NodeIdentity.deterministic(runSeed: 7, index: 3).nodeID)
        #expect(NodeIdentity.deterministic(runSeed: 7, index: 3).nodeID != NodeIdentity.deterministic(runSeed: 8, index: 3).nodeID)
    }

    @Test func badSeedLengthIsAnError() {
        #expect(throws: SodiumError.self) { try NodeIdentity(seed: [1, 2, 3]) }
    }
}

@Suite struct CodecTests {
    @Test func hexRoundTripsAndRejectsGarbage() {
        let b: [UInt8] = [0, 1, 0xab, 0xff]
        #expect(Hex.decode(Hex.encode(b)) == b)
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }

    @Test func readerThrowsOnTruncationInsteadOfTrapping() throws {
        var w = ByteWriter()
        w.u16(0x1234); w.u32(0xdeadbeef); w.u64(42)
        var r = ByteReader(w.bytes)
        #expect(try r.u16() == 0x1234)
        #expect(try r.u32() == 0xdeadbeef)
        #expect(try r.u64() == 42)
        #expect(throws: ByteReader.Failure.truncated) { try r.u8() }
        #expect(throws: ByteReader.Failure.truncated) { try r.raw(-1) }
    }

    @Test(arguments: [
        ("[::1]:7400", "[::1]:7400"), ("127.0.0.1:9", "127.0.0.1:9"), ("[fd00::1]:1", "[fd00::1]:1"),
        ("[::]:0", "[::]:0"), ("[::ffff:10.0.0.1]:5", "10.0.0.1:5"),
    ])
    func addressesParse(text: String, printed: String) throws {
        let a = try #require(UnderlayAddress(parsing: text))
        #expect(a.description == printed)
    }

    /// Link-local addresses carry the interface they are reached through (lo is index 1 on Linux).
    @Test func linkLocalScopesParsePrintAndStrip() throws {
        let a = try #require(UnderlayAddress(parsing: "[fe80::1%lo]:7400"))
        #expect(a.scope == 1 && a.isLinkLocal)
        #expect(a.description == "[fe80::1%lo]:7400")
        #expect(UnderlayAddress(parsing: "[fe80::1%1]:7400") == a)
        #expect(a.withoutScope.description == "[fe80::1]:7400" && a.withoutScope.scope == 0)
        #expect(a.withoutScope != a, "the interface is part of the address")
        #expect(a.withoutScope.withScope(1) == a)
        #expect(a.withPort(9).scope == 1 && a.withPort(9).port == 9)
        #expect(try #require(UnderlayAddress(parsing: "[febf::1]:1")).isLinkLocal)
        #expect(try #require(UnderlayAddress(parsing: "[fec0::1]:1")).isLinkLocal == false)
        #expect(try #require(UnderlayAddress(parsing: "[fe80::1]:1")).scope == 0)
    }

    @Test(arguments: ["[fe80::1%no-such-if0]:1", "[fe80::1%]:1", "[fe80::1%0]:1", "[fe80::1%4000000000]:1", "[fd00::1%lo]:1", "[::1%1]:1"])
    func badScopesAreRefused(text: String) {
        #expect(UnderlayAddress(parsing: text) == nil)
    }

    @Test(arguments: ["::1:7400", "[::1]", "[::1]:99999", "host:7400", "[::1]x", "", "1.2.3.4:", "[::1]:-1"])
    func badAddressesAreRefused(text: String) {
        #expect(UnderlayAddress(parsing: text) == nil)
    }

    @Test func seededGeneratorRepeatsAndDerivesIndependentStreams() {
        var a = SeededGenerator(seed: 1), b = SeededGenerator(seed: 1), c = SeededGenerator(seed: 2)
        let xa = (0..<4).map { _ in a.next() }, xb = (0..<4).map { _ in b.next() }, xc = (0..<4).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
        let root = SeededGenerator(seed: 9)
        var d1 = root.derived(1), d2 = root.derived(2)
        #expect(d1.next() != d2.next())
    }
}
