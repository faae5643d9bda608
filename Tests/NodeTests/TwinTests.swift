@_spi(Adversary) import MeshCore
import Node
import Sessions
import Sodium
import Testing

/// Issue 24 through the sans-IO node core: a node's secret presented under its negated Ed25519
/// key (the same X25519 key, so Noise alone would accept it) never becomes a member, whether the
/// node it mirrors was culled or is alive.
@Suite struct NodeTwinTests {
    /// Built from the secret scalar, as an attacker's modified software would.
    static func negatedTwin(of id: NodeIdentity) throws -> NodeIdentity {
        let (scalar, _) = try Ed25519Arithmetic.expand(seed: id.seed)
        let negated = try Ed25519Arithmetic.baseMultiply(scalar: Ed25519Arithmetic.negate(scalar: scalar))
        return try NodeIdentity(seed: id.seed, presenting: negated)
    }

    /// Whether any honest node holds a member row under the twin's key.
    static func holdsKey(_ p: Pump, _ key: PublicKey, among nodes: Range<Int>) -> Bool {
        nodes.contains { i in p.cores[i].members.values.contains { $0.entry.peer.publicKey == key } }
    }

    @Test func negatedTwinOfACulledNodeIsRefused() throws {
        let admin = NodeIdentity.deterministic(runSeed: 77, index: 0)
        var discovery = Discovery()
        discovery.adminKeys = [admin.publicKey]
        var p = Pump(count: 3, discovery: discovery)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        let victim = NodeIdentity.deterministic(runSeed: 5, index: 2)  // as Pump made node 2
        p.feed(0, .command(.membership(.cull(CullRecord.sign(subject: victim.nodeID, issuedAt: 1_800_000_000,
                                                               network: .defaultNetwork, admin: admin)))))
        p.run(for: .seconds(3))
        #expect(p.state(0, of: 2) == .culled && p.state(1, of: 2) == .culled)

        // The culled node's operator comes back with the same secret under the other encoding.
        p.down.insert(2)
        let twin = try Self.negatedTwin(of: victim)
        #expect(twin.publicKey != victim.publicKey)
        #expect(twin.nodeID == victim.nodeID, "the pair has one node id, so the cull names both")
        let t = p.add(twin, discovery: discovery)
        p.feed(t, .command(.addSeed(p.addresses[0])))
        p.feed(t, .command(.addSeed(p.addresses[1])))
        p.feed(t, .start)
        p.run(for: .seconds(10))

        #expect(p.cores[0].sessions.counters[.nonCanonicalKey] >= 1)
        #expect(p.cores[1].sessions.counters[.nonCanonicalKey] >= 1)
        for i in 0..<2 {
            #expect(p.cores[i].members.count == 2, "node \(i) holds only the other honest node and the culled row")
            #expect(p.state(i, of: 2) == .culled)
        }
        #expect(!Self.holdsKey(p, twin.publicKey, among: 0..<2))
        #expect(!p.cores[t].members.values.contains { $0.state == .alive }, "the twin heard from nobody")
    }

    @Test func negatedTwinOfALiveMemberCannotJoinAsASecondMember() throws {
        var p = Pump(count: 3)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        let original = NodeIdentity.deterministic(runSeed: 5, index: 2)  // as Pump made node 2
        let twin = try Self.negatedTwin(of: original)
        let t = p.add(twin)
        p.feed(t, .command(.addSeed(p.addresses[0])))
        p.feed(t, .command(.addSeed(p.addresses[1])))
        p.feed(t, .start)
        p.run(for: .seconds(10))

        for i in 0..<2 {
            #expect(p.cores[i].sessions.counters[.nonCanonicalKey] >= 1, "node \(i) refused the twin's handshakes")
            #expect(p.cores[i].members.count == 2)
            #expect(p.cores[i].members[original.nodeID]?.entry.peer.publicKey == original.publicKey)
            #expect(p.state(i, of: 2) == .alive, "the original stays the member")
        }
        #expect(!Self.holdsKey(p, twin.publicKey, among: 0..<3))
        #expect(!p.cores[t].members.values.contains { $0.state == .alive })
    }
}

extension Pump {
    /// One more node with an identity of the test's choosing, at the next address.
    mutating func add(_ identity: NodeIdentity, discovery: Discovery = Discovery()) -> Int {
        let i = cores.count
        let address = UnderlayAddress(parsing: "[fd00::\(i + 1)]:7400")!
        cores.append(try! NodeCore(identity: identity, network: .defaultNetwork, networkKey: Pump.networkKey,
                                   address: address, discovery: discovery, rng: SeededGenerator(seed: UInt64(i))))
        addresses.append(address)
        net.addNode()
        return i
    }
}
