import MeshCore
import Node
import SimulatorKit
import Testing

/// A tiny in-test driver on the test kit (SimulatorKit's `SimNet`: the engine's clock, event
/// queue and one pending wake per node): delivers every send after a fixed latency unless the
/// node is down.
struct Pump {
    struct Datagram { let from: UnderlayAddress; let bytes: [UInt8] }
    var cores: [NodeCore]
    var addresses: [UnderlayAddress]
    var net: SimNet<Datagram>
    var now: Instant { net.now }
    var down: Set<Int> = []
    var events: [(Int, NodeEvent)] = []
    /// Every `.persist` batch, by node, in order.
    var disk: [(Int, PersistBatch)] = []

    static let networkKey = [UInt8](repeating: 7, count: 32)

    init(count: Int, network: NetworkID = .defaultNetwork, networkKey: [UInt8] = Pump.networkKey, timing: NodeTiming = NodeTiming(),
         discovery: Discovery = Discovery()) {
        let addresses = (0..<count).map { UnderlayAddress(parsing: "[fd00::\($0 + 1)]:7400")! }
        cores = (0..<count).map { i in
            try! NodeCore(identity: NodeIdentity.deterministic(runSeed: 5, index: i), network: network, networkKey: networkKey,
                          address: addresses[i], timing: timing, discovery: discovery, rng: SeededGenerator(seed: UInt64(i)))
        }
        // The pump's disk (`disk`) is durable at once.
        for i in cores.indices { cores[i].persistsCompleteAtOnce = true }
        self.addresses = addresses
        net = SimNet(nodes: count, link: LinkProfile(latency: .milliseconds(5)), rng: SeededGenerator(seed: 0x9a9e))
    }

    /// Node i as if its process restarted: same key, no memory.
    mutating func restart(_ i: Int, seed: UInt64 = 99) {
        cores[i] = try! NodeCore(identity: NodeIdentity.deterministic(runSeed: 5, index: i), network: .defaultNetwork,
                                 networkKey: Pump.networkKey, address: addresses[i], rng: SeededGenerator(seed: seed))
        cores[i].persistsCompleteAtOnce = true
        net.clearWake(i)
    }

    /// Forgets node i's pending timer (its process lost it).
    mutating func clearWake(_ i: Int) { net.clearWake(i) }

    /// A node that was down gets its timer back, as a real process's loop would fire it.
    mutating func bringUp(_ i: Int) {
        down.remove(i)
        feed(i, .timer)
    }

    mutating func feed(_ i: Int, _ input: NodeInput) {
        guard !down.contains(i) else { return }
        for o in cores[i].handle(input, now: now) { take(i, o) }
    }

    /// Carries out one output; a persist is durable at once (its batches are kept in `disk`).
    mutating func take(_ i: Int, _ o: NodeOutput) {
        switch o {
        case let .send(to, bytes): transmit(i, to: to, bytes)
        case let .wake(at): net.setWake(i, at: at)
        case let .event(e): events.append((i, e))
        case let .persist(batch, then):
            disk.append((i, batch))
            for t in then { take(i, t) }
        case .offload: break
        }
    }

    /// A datagram to a known address arrives `latency` later.
    mutating func transmit(_ i: Int, to: UnderlayAddress, _ bytes: [UInt8]) {
        guard let j = addresses.firstIndex(of: to) else { return }
        net.transmit(Datagram(from: addresses[i], bytes: bytes), size: bytes.count, from: i, to: j)
    }

    mutating func run(for d: Duration) {
        let end = now + d
        while let due = net.next(until: end) {
            switch due {
            case let .message(to, _, m):
                if !down.contains(to) { feed(to, .datagram(from: m.from, bytes: m.bytes)) }
            case let .wake(i):
                feed(i, .timer)
            }
        }
    }

    func state(_ observer: Int, of subject: Int) -> MemberState? {
        cores[observer].members[cores[subject].identity.nodeID]?.state
    }
}

@Suite struct NodeCoreTests {
    @Test func threeNodesLearnEachOtherThroughOneSeed() {
        var p = Pump(count: 3)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        for a in 0..<3 { for b in 0..<3 where a != b { #expect(p.state(a, of: b) == .alive, "node \(a) sees \(b)") } }
        let rtt = p.cores[1].members[p.cores[0].identity.nodeID]?.rtt
        // Gossip's probes measure it: one round trip is 10 ms here (a handshake's first one more).
        #expect(rtt.map { $0 >= .milliseconds(10) && $0 < .milliseconds(40) } == true, "\(String(describing: rtt))")
        // Gossip is the membership: every node has the others in its active view.
        for a in 0..<3 { #expect(p.cores[a].gossip.activeView.count == 2) }
        #expect(p.events.contains { if case .membership(.joined) = $0.1 { return $0.0 == 1 } else { return false } })
        // Each node counts the sessions it opened by what it was sending: node 1's first was its join.
        #expect(p.cores[1].counters.sessionsOpened["join"] == 1)
        #expect(p.cores[2].counters.sessionsOpened["join"] == 1)
        var total: UInt64 = 0
        for a in 0..<3 {
            let s = p.cores[a].sessions.counters
            let counted = p.cores[a].counters.sessionsOpened.values.reduce(0, +)
            #expect(counted <= s.handshakesInitiated - s.rekeys, "node \(a): \(p.cores[a].counters.sessionsOpened)")
            total += counted
        }
        // The two joins, and whichever of 1 and 2 spoke to the other first.
        #expect(total >= 3)
    }

    /// A cull spreads; the culled node, still talking, is told its cull (bounded: once a second)
    /// and obeys; restarted with the same key it is refused and told again.
    @Test func culledNodeIsToldAndRefusedAfterRestart() throws {
        let admin = NodeIdentity.deterministic(runSeed: 77, index: 0)
        var discovery = Discovery()
        discovery.adminKeys = [admin.publicKey]
        var p = Pump(count: 3, discovery: discovery)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        let victim = p.cores[2].identity.nodeID
        let record = CullRecord.sign(subject: victim, issuedAt: 1_800_000_000, network: .defaultNetwork, admin: admin)
        p.feed(0, .command(.membership(.cull(record))))
        p.run(for: .seconds(3))
        #expect(p.state(0, of: 2) == .culled && p.state(1, of: 2) == .culled)
        func toldCulled() -> Bool {
            p.events.contains { if case let .memberStateChanged(id, _, .culled, _) = $0.1 { return $0.0 == 2 && id == victim } else { return false } }
        }
        #expect(toldCulled(), "the culled node learned it was culled")
        #expect(p.cores[0].counters.drops[.culled] ?? 0 >= 1 || p.cores[1].counters.drops[.culled] ?? 0 >= 1)

        // Same key, no memory, a fresh start: refused, and told again.
        p.events.removeAll()
        p.cores[2] = try NodeCore(identity: NodeIdentity.deterministic(runSeed: 5, index: 2), network: .defaultNetwork, networkKey: Pump.networkKey,
                                  address: p.addresses[2], discovery: discovery, rng: SeededGenerator(seed: 123))
        p.clearWake(2)
        p.feed(2, .command(.addSeed(p.addresses[0])))
        p.feed(2, .start)
        p.run(for: .seconds(5))
        #expect(p.state(0, of: 2) == .culled && p.state(1, of: 2) == .culled)
        #expect(toldCulled(), "the restarted culled node was told again: \(p.cores[0].counters.drops) \(p.cores[1].counters.drops) \(p.cores[2].counters.drops) \(p.cores[2].gossip.counters.drops) \(p.events.filter { $0.0 == 2 }.map { "\($0.1)" })")
    }

    @Test func crashedNodeGoesSuspectThenDeadThenAliveOnRestart() {
        var p = Pump(count: 3)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        p.down.insert(2)
        p.run(for: .seconds(4))
        #expect(p.state(0, of: 2) == .suspect || p.state(0, of: 2) == .dead)
        p.run(for: .seconds(8))
        #expect(p.state(0, of: 2) == .dead)
        #expect(p.state(1, of: 2) == .dead)
        #expect(p.state(0, of: 1) == .alive)
        p.bringUp(2)
        p.run(for: .seconds(15))
        #expect(p.state(0, of: 2) == .alive)
        #expect(p.state(1, of: 2) == .alive)
    }

    @Test func garbageAndStrangersAreDroppedAndCounted() {
        var p = Pump(count: 1)
        // Cleartext node-protocol datagrams are no longer accepted: only sessions carry them.
        let stranger = NodeIdentity.deterministic(runSeed: 9, index: 0)
        let cleartext = PingWire.encode(.init(kind: .ping, network: .defaultNetwork, senderKey: stranger.publicKey.bytes, seq: 1))
        p.feed(0, .datagram(from: p.addresses[0], bytes: cleartext))
        p.feed(0, .datagram(from: p.addresses[0], bytes: [1, 2, 3]))
        p.feed(0, .datagram(from: p.addresses[0], bytes: []))
        p.feed(0, .datagram(from: p.addresses[0], bytes: [UInt8](repeating: 7, count: 2000)))
        #expect(p.cores[0].sessions.counters.totalDrops == 4)
        #expect(p.cores[0].members.isEmpty)
        #expect(p.cores[0].counters.datagramsIn == 4)
    }

    @Test func nodesWithDifferentNetworkKeysNeverMeet() {
        var a = Pump(count: 2)
        // Node 1 gets another mesh's key: same addresses, same protocol, no session.
        a.cores[1] = try! NodeCore(identity: NodeIdentity.deterministic(runSeed: 5, index: 1), network: .defaultNetwork,
                                   networkKey: [UInt8](repeating: 8, count: 32), address: a.addresses[1], rng: SeededGenerator(seed: 1))
        a.feed(1, .command(.addSeed(a.addresses[0])))
        a.feed(0, .command(.addSeed(a.addresses[1])))
        for i in 0..<2 { a.feed(i, .start) }
        a.run(for: .seconds(100))
        #expect(a.cores[0].members.isEmpty)
        #expect(a.cores[1].members.isEmpty)
        #expect((a.cores[0].sessions.counters.drops[.badMac1] ?? 0) > 0)
        #expect(a.events.contains { if case .sessionFailed = $0.1 { return true } else { return false } })
    }

    @Test func restartedPeerIsFoundAgainThroughAFreshSession() {
        var p = Pump(count: 2)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(3))
        #expect(p.state(0, of: 1) == .alive)
        // Node 1 restarts with the same key but no memory: no seeds, no sessions.
        p.restart(1)
        p.feed(1, .start)
        p.run(for: .seconds(25))
        #expect(p.state(0, of: 1) == .alive)
        #expect(p.state(1, of: 0) == .alive)
    }

    @Test func selfSeedNeverBecomesAMember() {
        var p = Pump(count: 1)
        p.feed(0, .command(.addSeed(p.addresses[0])))
        p.feed(0, .start)
        p.run(for: .seconds(3))
        #expect(p.cores[0].members.isEmpty)
        #expect(p.cores[0].gossip.activeView.isEmpty)
    }

    @Test func earlyTimerAsksAgainInsteadOfStalling() throws {
        var core = try NodeCore(identity: NodeIdentity.deterministic(runSeed: 1, index: 1), network: .defaultNetwork,
                                networkKey: Pump.networkKey, address: UnderlayAddress(parsing: "[fd00::1]:7400")!, rng: SeededGenerator(seed: 1))
        _ = core.handle(.command(.addSeed(UnderlayAddress(parsing: "[fd00::2]:7400")!)), now: .zero)
        let first = core.handle(.start, now: .zero)
        let wakes = first.compactMap { if case let .wake(at) = $0 { return at } else { return nil } }
        let wake = try #require(wakes.last)
        #expect(wake > .zero)
        let early = core.handle(.timer, now: Instant(nanoseconds: wake.nanoseconds - 1_000_000))
        #expect(early == [.wake(at: wake)])
    }

    @Test func memberTableIsBounded() {
        var timing = NodeTiming()
        timing.maxMembers = 3
        var p = Pump(count: 6, timing: timing)
        for i in 1..<6 { p.feed(i, .command(.addSeed(p.addresses[0]))) }
        for i in 0..<6 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        #expect(p.cores[0].members.count == 3)
        #expect(p.cores[0].gossip.counters[.tableFull] > 0)
    }

    @Test func movedNodeKeepsItsIdentity() {
        var p = Pump(count: 2)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(3))
        let id1 = p.cores[1].identity.nodeID
        p.addresses[1] = UnderlayAddress(parsing: "[fd00::99]:7400")!
        p.run(for: .seconds(3))
        #expect(p.cores[0].members[id1]?.address == p.addresses[1])
        #expect(p.cores[0].members.count == 1)
    }
}

@Suite struct NodeGossipTests {
    /// Attributes travel as gossip's reliable messages over gossip's own channel endpoint.
    @Test func attributesReachNeighboursOverTheGossipStream() throws {
        var d = Discovery()
        d.attributes = try Attributes([("type", "meter"), ("blob", String(repeating: "x", count: 3000))])
        var p = Pump(count: 3, discovery: d)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(5))
        for a in 0..<3 { for b in 0..<3 where a != b {
            #expect(p.cores[a].members[p.cores[b].identity.nodeID]?.attributes == d.attributes, "node \(a) holds \(b)'s attributes")
        } }
        #expect(p.cores[0].reliable.stats.messagesDelivered > 0)
        #expect(p.cores[0].counters.reliableIn > 0)
        // The users' endpoint carried none of it.
        #expect(p.cores[0].channels.stats.framesOut == 0)
    }
}

/// The ping protocol (`NodeCommand.probe`), which `bench loop` measures: the core sends its
/// ping and pong by rewriting the sequence number of one encoded message, and reads the
/// answers in place.
@Suite struct ProbeTests {
    @Test func probesInFlightTogetherAreEachAnsweredOnce() {
        var p = Pump(count: 2)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(2))
        let target = p.cores[0].identity.nodeID
        #expect(p.state(1, of: 0) == .alive)
        p.events.removeAll()
        // Three pings queued in one instant: the rewritten buffer must not change a ping already handed out.
        for _ in 0..<3 { p.feed(1, .command(.probe(target))) }
        #expect(p.cores[1].pendingProbes == 3)
        p.run(for: .milliseconds(50))
        let answered = p.events.filter { if case .probeAnswered(target, _) = $0.1 { return $0.0 == 1 } else { return false } }
        #expect(answered.count == 3)
        #expect(p.cores[1].pendingProbes == 0)
        #expect(p.cores[1].counters.probesAnswered == 3)
        #expect(p.cores[1].counters.drops[.unexpectedPong] == nil)
        // And again, one at a time, as the bench does.
        for _ in 0..<5 {
            p.feed(1, .command(.probe(target)))
            p.run(for: .milliseconds(20))
        }
        #expect(p.cores[1].counters.probesAnswered == 8)
        #expect(p.cores[1].pendingProbes == 0)
    }
}
