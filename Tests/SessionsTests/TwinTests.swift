@_spi(Adversary) import MeshCore
import Sessions
import Sodium
import Testing

/// Issue 24: an Ed25519 key and its negation convert to the same X25519 key, so whoever holds a
/// node's secret passes Noise with either. Only the canonical one is an identity; the session
/// layer refuses the other in every handshake position, counted as `non_canonical_key`.
@Suite struct TwinTests {
    /// Node 3's secret behind its negated key, built from the secret scalar as an attacker's
    /// modified software would.
    static func twin(of i: Int) throws -> NodeIdentity {
        let id = Pump.identity(i)
        let (scalar, _) = try Ed25519Arithmetic.expand(seed: id.seed)
        let negated = try Ed25519Arithmetic.baseMultiply(scalar: Ed25519Arithmetic.negate(scalar: scalar))
        return try NodeIdentity(seed: id.seed, presenting: negated)
    }

    enum Position: String, CaseIterable { case ikInitiator, xxInitiator, xxResponder }

    @Test(arguments: Position.allCases)
    func negatedTwinIsRefusedInEveryHandshakePosition(_ position: Position) throws {
        var net = Pump()
        net.add(1)
        net.add(2, identity: try Self.twin(of: 3))
        #expect(try Ed25519.curve25519PublicKey(net.key(2).bytes) == Ed25519.curve25519PublicKey(Pump.identity(3).publicKey.bytes))
        switch position {
        case .ikInitiator: net.send(2, 1, "i am node 3 too")
        case .xxInitiator: net.send(2, 1, "i am node 3 too", known: false)
        case .xxResponder: net.send(1, 2, "who is there?", known: false)
        }
        net.run(for: .seconds(20))
        #expect(net.counters(1)[.nonCanonicalKey] >= 1)
        #expect(net.nodes[Pump.address(1)]!.established.isEmpty, "node 1 never holds a session with the twin")
        #expect(net.texts(1).isEmpty && net.texts(2).isEmpty)
        #expect(!net.nodes[Pump.address(1)]!.manager.isEstablished(peerKey: net.key(2), now: net.now))
    }

    /// The canonical holder of the same secret is unaffected, and a twin key handed to `send`
    /// (as a gossip record naming one would) opens nothing.
    @Test func canonicalKeyStillWorksAndATwinKeyIsNoPeer() throws {
        var net = Pump()
        net.add(1); net.add(3)
        net.send(3, 1, "hello")
        net.run(for: .seconds(2))
        #expect(net.texts(1) == ["hello"])
        let out = net.nodes[Pump.address(1)]!.manager.send(Array("x".utf8), to: Pump.address(3), peer: try Self.twin(of: 3).peer, now: net.now)
        #expect(!out.contains { if case .send = $0 { true } else { false } })
        #expect(net.counters(1)[.badPeerKey] == 1)
    }
}
