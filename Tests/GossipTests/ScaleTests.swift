import Testing
import MeshCore
@testable import Gossip

/// Multi-node behaviour on the in-memory mesh. Sizes are chosen so each test stays within a few
/// seconds in a debug build; Docs/gossip.md lists the figures measured with larger meshes.
/// Serialized: the tests start from copies of one converged mesh, and its cores share one
/// `PeerIdentities` table, which (like a simulation's) is not locked.
@Suite(.serialized) struct ScaleTests {
    static let nodes = 200
    static let admin = NodeIdentity.deterministic(runSeed: 5, index: 99)

    static func config() -> (Int) -> GossipConfig {
        { i in
            var c = Mesh.defaultConfig()(i)
            c.adminKeys = [admin.publicKey]
            return c
        }
    }

    /// `nodes` live nodes converged through one master (node 0); the last node is left unstarted
    /// (crashed) so tests can join it.
    static func converge(seed: UInt64, loss: Double = 0) -> Mesh {
        var mesh = Mesh(nodes: nodes + 1, seed: seed, config: config())
        mesh.loss = loss
        mesh.logEvents = false
        mesh.crash(nodes)
        for i in 0..<nodes { mesh.start(i, at: Instant(nanoseconds: Int64(i) * 5_000_000_000 / Int64(nodes))) }
        _ = mesh.runUntil(limit: .seconds(90), step: .seconds(1)) { $0.everyoneKnowsEveryone() }
        mesh.logEvents = true
        return mesh
    }

    nonisolated(unsafe) static let base: Mesh = converge(seed: 1)

    static func rounds(_ d: Duration?) -> String {
        guard let d else { return "never" }
        return "\(d) (\(Int((d.secondsDouble / 0.2).rounded(.up))) gossip rounds)"
    }

    @Test func everyoneConverges() {
        let mesh = Self.base
        #expect(mesh.everyoneKnowsEveryone())
        #expect(mesh.components() == 1)
        let sizes = mesh.live.map { mesh.cores[$0]!.activeView.count }
        #expect(sizes.min()! >= 1)
        #expect(sizes.max()! <= mesh.config.activeViewSize)
        #expect(mesh.largestDatagram <= GossipWire.maxDatagram)
        print("[gossip] converged \(Self.nodes) nodes at \(mesh.now)")
    }

    @Test func crashedNodeIsDeclaredDeadByAll() {
        var mesh = Self.base
        let victim = 57
        mesh.crash(victim)
        let took = mesh.runUntil(limit: .seconds(30), step: .milliseconds(100)) { $0.observers(of: victim, in: .dead) == $0.live.count }
        print("[gossip] crash of 1 in \(Self.nodes): dead at all live nodes after \(Self.rounds(took))")
        #expect(took != nil)
        // Nobody else was declared dead on the way.
        let falseDeaths = mesh.eventLog.filter {
            if case let .memberStateChanged(id, _, .dead, _) = $0.event { return id != mesh.entries[victim].nodeID }
            return false
        }
        #expect(falseDeaths.isEmpty)
    }

    @Test func joinAndLeaveReachEveryone() {
        var mesh = Self.base
        let newcomer = Self.nodes
        mesh.restart(newcomer)
        let joined = mesh.runUntil(limit: .seconds(20), step: .milliseconds(50)) { $0.observers(of: newcomer, in: .alive) == $0.live.count - 1 }
        print("[gossip] join reached all \(Self.nodes) after \(Self.rounds(joined))")
        #expect(joined != nil)
        #expect(joined.map { $0 <= .seconds(4) } ?? false)

        // The join is pushed (one round); let the newcomer learn the older members by anti-entropy
        // first, or it would not know the leaver at all (a `left` about an unknown member is not learned).
        mesh.run(for: .seconds(3))
        let leaver = 33
        mesh.command(leaver, .leave)
        let left = mesh.runUntil(limit: .seconds(20), step: .milliseconds(50)) { m in
            m.live.filter { $0 != leaver && m.state(of: leaver, at: $0) == .left }.count == m.live.count - 1
        }
        print("[gossip] leave reached all after \(Self.rounds(left))")
        #expect(left != nil)
        #expect(left.map { $0 <= .seconds(4) } ?? false)
        // Left, not failed: nobody declares it dead afterwards.
        mesh.crash(leaver)
        mesh.run(for: .seconds(10))
        #expect(mesh.observers(of: leaver, in: .dead) == 0)
    }

    @Test func survivorsOfEightyPercentCrashStayConnected() {
        var mesh = Self.base
        var g = SeededGenerator(seed: 80)
        let order = Array(0..<Self.nodes).shuffled(using: &g)
        for v in order.prefix(Self.nodes * 8 / 10) { mesh.crash(v) }
        let took = mesh.runUntil(limit: .seconds(30), step: .milliseconds(500)) { m in
            m.components() == 1 && m.live.allSatisfy { !m.cores[$0]!.activeView.isEmpty }
        }
        print("[gossip] 80% crash: \(mesh.live.count) survivors form one mesh after \(took.map { "\($0)" } ?? "never")")
        #expect(took != nil)
        mesh.run(for: .seconds(20))
        #expect(mesh.components() == 1)
    }

    @Test func noFalseDeathsWithFivePercentLoss() {
        var mesh = Self.base
        mesh.loss = 0.05
        mesh.eventLog = []
        mesh.run(for: .seconds(60))
        let deaths = mesh.eventLog.filter { if case .memberStateChanged(_, _, .dead, _) = $0.event { return true } else { return false } }
        let suspicions = mesh.eventLog.filter { if case .memberStateChanged(_, _, .suspect, _) = $0.event { return true } else { return false } }
        print("[gossip] 5% loss, 60 s: \(suspicions.count) suspicions (all refuted), \(deaths.count) deaths; \(mesh.datagramBytes / Self.nodes / Int(mesh.now.seconds)) B/s per node overall")
        #expect(deaths.isEmpty)
        let converged = mesh.everyoneKnowsEveryone(allowSuspect: true)
        #expect(converged)
    }

    @Test func steadyStateTrafficIsSmall() {
        var mesh = Self.base
        let bytes0 = mesh.datagramBytes, reliable0 = mesh.reliableMessages
        mesh.run(for: .seconds(60))
        let perNode = Double(mesh.datagramBytes - bytes0) / Double(Self.nodes) / 60
        print("[gossip] steady state: \(Int(perNode)) B/s per node in datagrams, \(mesh.reliableMessages - reliable0) reliable messages in 60 s")
        #expect(perNode < 8000)
    }

    @Test func partitionHeals() {
        var mesh = Self.base
        let half = Self.nodes / 2
        mesh.blocked = { a, b in (a < half) != (b < half) }
        mesh.eventLog = []
        mesh.run(for: .seconds(60))
        // Neighbours across the cut were declared dead (only neighbours probe: the rest of the far
        // side stays as last known, which is what partial views buy).
        let crossDeaths = mesh.eventLog.filter { e in
            if case let .memberStateChanged(id, _, .dead, _) = e.event { return (e.node < half) != (mesh.entries.firstIndex { $0.nodeID == id }! < half) }
            return false
        }
        #expect(!crossDeaths.isEmpty)
        #expect(mesh.components() == 2)
        mesh.blocked = nil
        let healed = mesh.runUntil(limit: .seconds(120), step: .seconds(1)) { $0.everyoneKnowsEveryone() && $0.components() == 1 }
        print("[gossip] partition of 60 s healed after \(healed.map { "\($0)" } ?? "never")")
        #expect(healed != nil)
    }

    @Test func cullIsFinal() {
        var mesh = Self.base
        let victim = 5
        let record = CullRecord.sign(subject: mesh.entries[victim].nodeID, issuedAt: 1_800_000_000, network: Mesh.network, admin: Self.admin)
        // A forged cull (wrong admin) changes nothing.
        let forger = NodeIdentity.deterministic(runSeed: 6, index: 1)
        mesh.command(10, .cull(CullRecord.sign(subject: mesh.entries[7].nodeID, issuedAt: 1, network: Mesh.network, admin: forger)))
        #expect(mesh.cores[10]!.counters[.unknownAdmin] == 1)
        mesh.command(10, .cull(record))
        let took = mesh.runUntil(limit: .seconds(10), step: .milliseconds(100)) { $0.observers(of: victim, in: .culled) == $0.live.count - 1 }
        print("[gossip] cull reached all after \(Self.rounds(took))")
        #expect(took != nil)
        #expect(mesh.observers(of: 7, in: .alive) == mesh.live.count - 1)
        // The culled node restarts and claims a much higher incarnation, directly and through others.
        mesh.restart(victim)
        mesh.feed(12, .received(from: mesh.entries[victim], bytes: GossipWire.encode(.gossip(updates: [.alive(mesh.entries[victim], incarnation: 1000, attributeVersion: 0)]))))
        mesh.feed(12, .received(from: mesh.entries[13], bytes: GossipWire.encode(.gossip(updates: [.alive(mesh.entries[victim], incarnation: 1001, attributeVersion: 0)]))))
        mesh.run(for: .seconds(45)) // two anti-entropy periods
        #expect(mesh.observers(of: victim, in: .culled) == mesh.live.count - 1)
        #expect(mesh.cores[12]!.counters[.fromCulled] >= 1)
        #expect(mesh.cores[victim]!.activeView.isEmpty)
        #expect(mesh.live.allSatisfy { $0 == victim || !mesh.cores[$0]!.activeView.contains { $0.nodeID == mesh.entries[victim].nodeID } })
    }

    @Test func queriesFindMatchingNodesInEachMode() throws {
        var mesh = Self.base
        let meters = [3, 40, 77, 120, 199]
        for m in meters { mesh.command(m, .setAttributes(try Attributes([("type", "meter"), ("serial", "M-\(m)")]))) }
        mesh.command(150, .setAttributes(try Attributes([("type", "collector")])))
        mesh.run(for: .seconds(2))
        func answers(_ id: UInt64) -> [(NodeID, UInt8)] {
            mesh.eventLog.compactMap { if case let .queryAnswer(qid, from, _, hops, _) = $0.event, qid == id { return (from, hops) } else { return nil } }
        }
        let asker = 100
        mesh.command(asker, .query(id: 1, AttributeQuery(key: "type", value: "meter", match: .exact), mode: .master, hopLimit: 10))
        mesh.run(for: .seconds(2))
        let flood = answers(1)
        #expect(Set(flood.map(\.0)) == Set(meters.map { mesh.entries[$0].nodeID }))
        #expect(flood.allSatisfy { $0.1 >= 1 && $0.1 <= 10 })
        print("[gossip] query (master/flood): \(flood.count) answers, hops \(flood.map(\.1))")

        mesh.command(asker, .query(id: 2, AttributeQuery(key: "serial", value: "M-12", match: .prefix), mode: .master, hopLimit: 10))
        mesh.command(asker, .query(id: 3, AttributeQuery(key: "type", value: "llect", match: .substring), mode: .master, hopLimit: 10))
        // A walk visits one node per hop: with 150 hops it finds a meter in a 200-node mesh almost surely.
        mesh.command(asker, .query(id: 4, AttributeQuery(key: "type", value: "meter", match: .exact), mode: .walk, hopLimit: 150))
        mesh.run(for: .seconds(3))
        #expect(Set(answers(2).map(\.0)) == Set([120].map { mesh.entries[$0].nodeID }))
        #expect(answers(3).map(\.0) == [mesh.entries[150].nodeID])
        #expect(!answers(4).isEmpty)
        // Hop limit 1 reaches the asker's neighbours only: one of them becomes a meter too, and the
        // answers are exactly the meters among the neighbours, each one hop away.
        let neighbours = Set(mesh.cores[asker]!.activeView.map(\.nodeID))
        let near = mesh.cores[asker]!.activeView.first { e in !meters.contains { mesh.entries[$0].nodeID == e.nodeID } }!.nodeID
        mesh.command(mesh.entries.firstIndex { $0.nodeID == near }!, .setAttributes(try Attributes([("type", "meter")])))
        mesh.run(for: .seconds(1))
        mesh.command(asker, .query(id: 5, AttributeQuery(key: "type", value: "meter", match: .exact), mode: .master, hopLimit: 1))
        mesh.run(for: .seconds(2))
        let meterIDs = Set(meters.map { mesh.entries[$0].nodeID } + [near])
        #expect(Set(answers(5).map(\.0)) == meterIDs.intersection(neighbours), "\(answers(5))")
        #expect(answers(5).count >= 1 && answers(5).allSatisfy { $0.1 == 1 })
        #expect(mesh.largestDatagram <= GossipWire.maxDatagram)
    }

    @Test func bigAttributesReachNeighboursOverReliableChannels() throws {
        var mesh = Self.base
        let owner = 8
        let big = try Attributes([("type", "gateway"), ("manifest", String(repeating: "abcdefgh", count: 512))])
        #expect(big.encodedSize > 4096)
        let reliable0 = mesh.reliableMessages
        mesh.command(owner, .setAttributes(big))
        mesh.run(for: .seconds(5))
        let neighbours = mesh.live.filter { mesh.cores[$0]!.activeView.contains { $0.nodeID == mesh.entries[owner].nodeID } }
        #expect(!neighbours.isEmpty)
        for n in neighbours { #expect(mesh.cores[n]!.members[mesh.entries[owner].nodeID]?.attributes == big) }
        #expect(mesh.reliableMessages > reliable0)
        #expect(mesh.largestDatagram <= GossipWire.maxDatagram)
        // Everyone else knows the version and can fetch on demand.
        let far = mesh.live.first { n in n != owner && !neighbours.contains(n) && !mesh.cores[n]!.passiveView.contains { $0.nodeID == mesh.entries[owner].nodeID } }!
        #expect(mesh.cores[far]!.members[mesh.entries[owner].nodeID]?.attributeVersion == 1)
        mesh.command(far, .fetchAttributes(mesh.entries[owner].nodeID))
        mesh.run(for: .seconds(1))
        #expect(mesh.cores[far]!.members[mesh.entries[owner].nodeID]?.attributes == big)
    }

    @Test func starvedNodesDoNotAccuseHealthyOnes() {
        var mesh = Self.base
        mesh.loss = 0.05
        var g = SeededGenerator(seed: 5)
        let starved = Array(Array(1..<Self.nodes).shuffled(using: &g).prefix(Self.nodes / 20))
        for s in starved { mesh.inboundDelay[s] = .milliseconds(600) }
        mesh.eventLog = []
        mesh.run(for: .seconds(60))
        let deaths = mesh.eventLog.filter { if case .memberStateChanged(_, _, .dead, _) = $0.event { return true } else { return false } }
        let awareness = starved.map { mesh.cores[$0]!.awareness }
        let starvedIDs = Set(starved.map { mesh.entries[$0].nodeID })
        let healthyDeaths = deaths.filter { if case let .memberStateChanged(id, _, _, _) = $0.event { return !starvedIDs.contains(id) } else { return false } }
        print("[gossip] starved: \(deaths.count - healthyDeaths.count) deaths of starved nodes, \(healthyDeaths.count) of healthy ones")
        print("[gossip] \(starved.count) starved nodes (+600 ms) with 5% loss, 60 s: \(deaths.count) deaths; their awareness \(awareness)")
        #expect(deaths.isEmpty)
    }
}
