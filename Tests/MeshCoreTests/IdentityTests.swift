import MeshCore
import Sodium
import Testing

@Suite struct IdentityTests {
    /// Expected values computed independently (Python `cryptography` + `hashlib.blake2b`).
    @Test func nodeIDAndOverlayMatchTheDocumentedDerivation() throws {
        let id = try NodeIdentity(seed: Array(1...32))
        #expect(Hex.encode(id.publicKey.bytes) == "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664")
        #expect(id.nodeID.hex == "25a792fd3a3bea297cd24148a5f7601e2a1fea74ff541f400ea6c87bdd4a9415")
        #expect(NetworkID.defaultNetwork.description == "601d6a20afdb1aad149cfc1c9f85a9c7")
        #expect(id.overlayAddress(in: .defaultNetwork).description == "fdce:3acd:4a04:a746:d553:6c2a:2913:6dcb")
    }

    /// Seed 00..1f gives the key 03a1…b8, whose sign bit is set: the other encoding of a pair, so
    /// no identity; its node id is that of the pair (the key with the bit cleared).
    @Test func aSeedWhoseKeyIsNotCanonicalIsNoIdentity() throws {
        #expect(throws: IdentityError.nonCanonicalKey) { try NodeIdentity(seed: Array(0..<32)) }
        let key = try #require(Hex.decode("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"))
        #expect(!IdentityKey.isCanonical(key))
        #expect(PeerIdentity(publicKey: key) == nil)
        #expect(NodeID(publicKey: key).hex == "3fe3edadc33a6464c5c7534b938fe8433657bdb1b1406ffa52ebba4d88ce19c5")
    }

    /// The attack of issue 24, built as modified software would build it: from the secret scalar,
    /// the negated key, which converts to the same X25519 (Noise static) key.
    @Test func negatedTwinSharesTheX25519KeyAndTheNodeIDButIsNoIdentity() throws {
        for i in 0..<16 {
            let id = NodeIdentity.deterministic(runSeed: 24, index: i)
            let (scalar, _) = try Ed25519Arithmetic.expand(seed: id.seed)
            #expect(try Ed25519Arithmetic.baseMultiply(scalar: scalar) == id.publicKey.bytes, "the scalar is the key's secret")
            let twin = try Ed25519Arithmetic.baseMultiply(scalar: Ed25519Arithmetic.negate(scalar: scalar))
            #expect(twin != id.publicKey.bytes)
            #expect(Ed25519Arithmetic.isValidPoint(twin), "the twin is a perfectly good point")
            #expect(try Ed25519.curve25519PublicKey(twin) == Ed25519.curve25519PublicKey(id.publicKey.bytes))
            // Negation flips the sign bit and nothing else.
            var flipped = id.publicKey.bytes
            flipped[31] ^= 0x80
            #expect(twin == flipped)
            #expect(IdentityKey.isCanonical(id.publicKey.bytes) && !IdentityKey.isCanonical(twin))
            #expect(PeerIdentity(publicKey: twin) == nil)
            #expect(NodeID(publicKey: twin) == id.nodeID, "one pair, one node id (culls and member rows name both)")
        }
    }

    /// One key type: an identity key refuses the twin and wrong lengths, a raw key takes any 32
    /// bytes; keys are equal, hashed and ordered by their bytes, and print as hex.
    @Test func publicKeyChecksCanonicalFormAndOrdersByBytes() throws {
        let id = NodeIdentity.deterministic(runSeed: 24, index: 5)
        var twinBytes = id.publicKey.bytes
        twinBytes[31] ^= 0x80
        #expect(PublicKey(id.publicKey.bytes) == id.publicKey)
        #expect(PublicKey(twinBytes) == nil, "the negated twin is no identity key")
        #expect(PublicKey(Array(id.publicKey.bytes.prefix(31))) == nil)
        #expect(PublicKey(raw: Array(id.publicKey.bytes.prefix(31))) == nil)
        let twin = try #require(PublicKey(raw: twinBytes))
        #expect(!twin.isCanonical && twin.canonical == nil && id.publicKey.canonical == id.publicKey)
        #expect(PeerIdentity(publicKey: twin) == nil)
        #expect(PeerIdentity(publicKey: id.publicKey)?.nodeID == id.nodeID)
        #expect(id.publicKey.description == Hex.encode(id.publicKey.bytes))
        #expect(id.publicKey.short == String(id.publicKey.hex.prefix(16)))
        // Keys that share their first 8 bytes (the hashed part) are still told apart.
        var a = [UInt8](repeating: 1, count: 32), b = a
        b[31] = 2
        a[31] = 1
        let ka = try #require(PublicKey(raw: a)), kb = try #require(PublicKey(raw: b))
        #expect(ka != kb && ka < kb && !(kb < ka))
        #expect(Set([ka, kb, ka]).count == 2)
        #expect([kb, ka].sorted() == [ka, kb])
    }

    /// Keys and node ids hold their bytes inline (issue 26): what they hand back, how they compare
    /// and order, and whether a key is canonical agree with the bytes, for keys that differ in
    /// every word and at the edges of the canonical check; the codec reads and writes keys in place.
    @Test func inlineKeysAndIDsAgreeWithTheirBytes() throws {
        var g = SeededGenerator(seed: 26)
        func bytes() -> [UInt8] { (0..<32).map { _ in UInt8(truncatingIfNeeded: g.next()) } }
        var keys: [(PublicKey, [UInt8])] = []
        for i in 0..<64 {
            var b = bytes()
            if i % 4 != 0 { b = Array(keys[i - 1].1.prefix(8 * (i % 4))) + Array(b.dropFirst(8 * (i % 4))) }
            let k = try #require(PublicKey(raw: b))
            #expect(k.bytes == b && k.hex == Hex.encode(b) && k.isCanonical == IdentityKey.isCanonical(b))
            let id = try #require(NodeID(bytes: b))
            #expect(id.bytes == b && id.hex == Hex.encode(b))
            keys.append((k, b))
        }
        for (a, ab) in keys { for (b, bb) in keys {
            #expect((a < b) == ab.lexicographicallyPrecedes(bb))
            #expect((a == b) == (ab == bb))
            #expect((NodeID(bytes: ab)! < NodeID(bytes: bb)!) == ab.lexicographicallyPrecedes(bb))
        } }
        let p: [UInt8] = [0xed] + Array(repeating: 0xff, count: 30) + [0x7f]
        let belowP: [UInt8] = [0xec] + Array(repeating: 0xff, count: 30) + [0x7f]
        let signed: [UInt8] = Array(repeating: 0, count: 31) + [0x80]
        for b in [p, belowP, signed] { #expect(PublicKey(raw: b)!.isCanonical == IdentityKey.isCanonical(b)) }
        var w = ByteWriter()
        w.u8(7)
        w.raw(keys[3].0)
        var r = ByteReader(w.bytes)
        #expect(try r.u8() == 7)
        #expect(try r.publicKey() == keys[3].0)
        #expect(throws: ByteReader.Failure.truncated) {
            var short = ByteReader(Array(keys[3].1.prefix(31)))
            _ = try short.publicKey()
        }
    }

    /// The twin can sign (with the negated scalar) and libsodium accepts it under the twin key;
    /// signatures by an identity verify only against the canonical key.
    @Test func twinSignaturesDoNotVerifyAsTheIdentitys() throws {
        let id = NodeIdentity.deterministic(runSeed: 24, index: 99)
        let message = Array("iotaf/gossip-cull/v1 anything".utf8)
        let (twinKey, twinSignature) = try signAsNegatedTwin(seed: id.seed, message)
        #expect(Ed25519.verify(twinSignature, message: message, publicKey: twinKey), "a genuine Ed25519 signature")
        #expect(!IdentityKey.verify(twinSignature, message: message, publicKey: twinKey))
        #expect(!IdentityKey.verify(twinSignature, message: message, publicKey: id.publicKey.bytes))
        #expect(IdentityKey.verify(id.sign(message), message: message, publicKey: id.publicKey.bytes))
    }

    @Test func generatedKeysAreCanonicalAndOnlyTheReducedSpellingIs() {
        for i in 0..<64 {
            #expect(IdentityKey.isCanonical(NodeIdentity.generate().publicKey.bytes))
            #expect(IdentityKey.isCanonical(NodeIdentity.deterministic(runSeed: 3, index: i).publicKey.bytes))
        }
        // y = p and y = 2^255 - 1 (both >= p) spell points that have a reduced spelling too.
        let p: [UInt8] = [0xed] + Array(repeating: 0xff, count: 30) + [0x7f]
        let top: [UInt8] = Array(repeating: 0xff, count: 31) + [0x7f]
        let belowP: [UInt8] = [0xec] + Array(repeating: 0xff, count: 30) + [0x7f]
        #expect(!IdentityKey.isCanonical(p) && !IdentityKey.isCanonical(top))
        #expect(IdentityKey.isCanonical(belowP))
        #expect(!IdentityKey.isCanonical(Array(repeating: 0, count: 31)))
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
        #expect(Ed25519.verify(sig, message: Array("hello".utf8), publicKey: id.publicKey.bytes))
        #expect(!Ed25519.verify(sig, message: Array("hellp".utf8), publicKey: id.publicKey.bytes))
    }

    @Test func deterministicIdentitiesRepeat() {
        #expect(NodeIdentity.deterministic(runSeed: 7, index: 3).nodeID == NodeIdentity.deterministic(runSeed: 7, index: 3).nodeID)
        #expect(NodeIdentity.deterministic(runSeed: 7, index: 3).nodeID != NodeIdentity.deterministic(runSeed: 8, index: 3).nodeID)
    }

    @Test func badSeedLengthIsAnError() {
        #expect(throws: SodiumError.self) { try NodeIdentity(seed: [1, 2, 3]) }
    }
}

/// What an attacker's modified software does with a node's seed: sign as the negated key, with
/// the negated secret scalar (RFC 8032 signing, only the scalar changed).
func signAsNegatedTwin(seed: [UInt8], _ message: [UInt8]) throws -> (key: [UInt8], signature: [UInt8]) {
    let (scalar, prefix) = try Ed25519Arithmetic.expand(seed: seed)
    let negated = try Ed25519Arithmetic.negate(scalar: scalar)
    let key = try Ed25519Arithmetic.baseMultiply(scalar: negated)
    let r = try Ed25519Arithmetic.reduce(SHA512.hash(prefix + message))
    let R = try Ed25519Arithmetic.baseMultiply(scalar: r)
    let k = try Ed25519Arithmetic.reduce(SHA512.hash(R + key + message))
    let S = try Ed25519Arithmetic.add(scalar: r, Ed25519Arithmetic.multiply(scalar: k, negated))
    return (key, R + S)
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
