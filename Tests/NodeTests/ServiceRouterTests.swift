import MeshCore
@testable import Node
import Sodium
import Testing

/// A service added from outside the node: it sends a datagram and a large reliable message when
/// told to, reports what it receives, wakes once a second, and records membership changes.
private struct EchoService: NodeService {
    static let id = ProtocolID(0x7e)
    struct Say: Sendable, Equatable { var to: NodeID; var text: String; var large: Int }
    struct Heard: Sendable, Equatable { var from: NodeID; var bytes: Int; var reliable: Bool }
    struct Ticked: Sendable, Equatable { var at: Instant }
    struct Changed: Sendable, Equatable { var change: MembershipChange }

    var protocolIDs: [ProtocolID] { [Self.id] }
    var deadline: Instant?

    func takes(_ command: NodeCommand) -> Bool {
        if case .service(Self.id, _) = command { return true }
        return false
    }

    mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case .start:
            deadline = now + .seconds(1)
            return []
        case .timer:
            guard let d = deadline, now >= d else { return [] }
            deadline = now + .seconds(1)
            return [.event(.service(Self.id, ServicePayload(Ticked(at: now))))]
        case let .command(.service(_, payload)):
            guard let say = payload.as(Say.self), let peer = members.peer(say.to) else { return [] }
            return [.send(.member(say.to), bytes: [0x7e] + Array(say.text.utf8)),
                    .sendReliable(to: peer, bytes: [0x7e] + [UInt8](repeating: 0xab, count: say.large))]
        case let .message(from, bytes, reliable):
            return [.event(.service(Self.id, ServicePayload(Heard(from: from.nodeID, bytes: bytes.count, reliable: reliable))))]
        case let .membership(change):
            return [.event(.service(Self.id, ServicePayload(Changed(change: change))))]
        case .command, .persisted, .offloaded, .restored, .stop:
            return []
        }
    }
}

/// A service that sends bulk reliable messages and asks for their outcomes: what the node tells it.
private struct BulkService: NodeService {
    static let id = ProtocolID(0x7d)
    struct Push: Sendable, Equatable { var to: NodeID; var sizes: [Int] }
    struct Told: Sendable, Equatable { var to: NodeID; var bytes: Int; var result: ReliableOutcome.Result }

    var protocolIDs: [ProtocolID] { [Self.id] }
    var deadline: Instant? { nil }
    var reliableUse: ReliableUse { ReliableUse(bulk: true, outcomes: true) }

    func takes(_ command: NodeCommand) -> Bool {
        if case .service(Self.id, _) = command { return true }
        return false
    }

    mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        guard case let .command(.service(_, payload)) = input, let push = payload.as(Push.self), let peer = members.peer(push.to) else { return [] }
        return push.sizes.map { .sendReliable(to: peer, bytes: [0x7d] + [UInt8](repeating: 0x5a, count: $0 - 1)) }
    }

    mutating func reliableOutcome(_ outcome: ReliableOutcome, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        [.event(.service(Self.id, ServicePayload(Told(to: outcome.to, bytes: outcome.bytes.count, result: outcome.result))))]
    }
}

@Suite struct ServiceRouterTests {
    private func pump() throws -> Pump {
        var p = Pump(count: 2)
        for i in 0..<2 { try p.cores[i].add(EchoService()) }
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(3))
        #expect(p.state(1, of: 0) == .alive && p.state(0, of: 1) == .alive)
        return p
    }

    private func echoEvents<T>(_ p: Pump, at node: Int, _ type: T.Type) -> [T] {
        p.events.compactMap { if $0.0 == node, case let .service(EchoService.id, payload) = $0.1 { return payload.as(T.self) } else { return nil } }
    }

    /// Adding a service touches no other: its datagrams and its reliable messages reach its twin
    /// on the other node by protocol id, its deadline joins the node's one wake, and it hears
    /// membership changes.
    @Test func anAddedServiceGetsItsMessagesTimerAndMembershipChanges() throws {
        var p = try pump()
        // Its deadline drove the node's wake: a tick a second on each node.
        #expect(echoEvents(p, at: 0, EchoService.Ticked.self).count >= 2)
        let to = p.cores[0].identity.nodeID
        p.feed(1, .command(.service(EchoService.id, ServicePayload(EchoService.Say(to: to, text: "hello", large: 20_000)))))
        p.run(for: .seconds(1))
        let heard = echoEvents(p, at: 0, EchoService.Heard.self)
        #expect(heard.contains(.init(from: p.cores[1].identity.nodeID, bytes: 6, reliable: false)))
        #expect(heard.contains(.init(from: p.cores[1].identity.nodeID, bytes: 20_001, reliable: true)), "\(heard)")
        // The other services saw nothing of it.
        #expect(p.cores[0].counters.drops[.unknownProtocol] == nil)
        #expect(p.cores[0].channels.stats.framesOut == 0)

        // Node 1 goes away: node 0's echo service hears it went down.
        p.down.insert(1)
        p.run(for: .seconds(15))
        #expect(p.state(0, of: 1) == .dead)
        let changes = echoEvents(p, at: 0, EchoService.Changed.self).map(\.change)
        #expect(changes.contains(.down(p.cores[1].identity)), "\(changes)")
    }

    /// A service that asks is told what became of each reliable message: acknowledged by the
    /// peer, refused at once when the stream's buffer towards the peer is full (never dropped
    /// silently), failed when the peer goes away with it unacknowledged. Its messages travel on
    /// the bulk stream.
    @Test func aServiceThatAsksIsToldEachReliableMessagesOutcome() throws {
        var p = Pump(count: 2)
        for i in 0..<2 { try p.cores[i].add(BulkService()) }
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(3))
        #expect(p.state(1, of: 0) == .alive && p.state(0, of: 1) == .alive)
        func told(_ node: Int) -> [BulkService.Told] {
            p.events.compactMap { if $0.0 == node, case let .service(BulkService.id, payload) = $0.1 { return payload.as(BulkService.Told.self) } else { return nil } }
        }
        let to = p.cores[0].identity.nodeID
        // Five of 250,000 bytes: the fifth does not fit the 1 MiB the stream holds per peer.
        p.feed(1, .command(.service(BulkService.id, ServicePayload(BulkService.Push(to: to, sizes: Array(repeating: 250_000, count: 5))))))
        #expect(told(1) == [.init(to: to, bytes: 250_000, result: .refused)], "refused at once: \(told(1))")
        p.run(for: .seconds(2))
        #expect(told(1).filter { $0.result == .delivered }.count == 4, "\(told(1))")
        #expect(p.cores[1].reliable.stats.messagesSent >= 4)

        // A message in flight when the peer goes away fails (the node closes the connection).
        p.down.insert(0)
        p.feed(1, .command(.service(BulkService.id, ServicePayload(BulkService.Push(to: to, sizes: [200_000])))))
        p.run(for: .seconds(20))
        #expect(p.state(1, of: 0) == .dead)
        #expect(told(1).filter { $0.result == .failed } == [.init(to: to, bytes: 200_000, result: .failed)], "\(told(1))")
        // Nothing is left tracked once every message has its outcome.
        #expect(p.cores[1].reliableTracked.isEmpty)
    }

    @Test func aClashingProtocolIDIsRefused() throws {
        var p = Pump(count: 1)
        try p.cores[0].add(EchoService())
        #expect(throws: ServiceClash.self) { try p.cores[0].add(EchoService()) }
        // A prefix of gossip's `iG` and the reliable stream's byte are taken too.
        struct Named: NodeService {
            var protocolIDs: [ProtocolID]
            var deadline: Instant? { nil }
            func takes(_ command: NodeCommand) -> Bool { false }
            mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] { [] }
        }
        #expect(throws: ServiceClash.self) { try p.cores[0].add(Named(protocolIDs: [ProtocolID(0x69)])) }
        #expect(throws: ServiceClash.self) { try p.cores[0].add(Named(protocolIDs: [ProtocolID(NodeCore.reliablePrefix)])) }
        try p.cores[0].add(Named(protocolIDs: [ProtocolID(0x69, 0x51)]))
    }

    /// A command no service takes is counted, not lost silently.
    @Test func anUnclaimedCommandIsCounted() {
        var p = Pump(count: 1)
        p.feed(0, .command(.service(ProtocolID(0x55), ServicePayload(1))))
        #expect(p.cores[0].counters.drops[.unclaimedCommand] == 1)
    }
}

/// Gossip's self record (incarnation, attribute version) is a `.persist` output whose `then`
/// holds the sends that announce it: nothing leaves before the number is durable.
@Suite struct PersistBeforeSendTests {
    /// With a disk that answers later (the runtime's), the announcement of new attributes, made in
    /// the next gossip rounds, waits behind the write: those rounds' sends leave inside persists
    /// (barriers with no ops) until the write is answered.
    @Test func anAttributeChangeIsPersistedBeforeItIsAnnounced() throws {
        var p = Pump(count: 2)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(3))
        p.cores[0].persistsCompleteAtOnce = false
        let out = p.cores[0].handle(.command(.membership(.setAttributes(try Attributes([("type", "meter")])))), now: p.now)
        guard let i = out.firstIndex(where: { if case .persist = $0 { return true } else { return false } }),
              case let .persist(batch, _) = out[i] else {
            Issue.record("no persist in \(out)")
            return
        }
        #expect(batch.ops == [.put(table: "gossip.self", key: [], value: [0, 0, 0, 0, 0, 0, 0, 1])])
        #expect(!out.contains { if case .send = $0 { return true } else { return false } })
        // The gossip rounds until the answer: every gossip send waits inside a persist with no ops.
        var barriers = 0
        for step in 1...5 {
            for o in p.cores[0].handle(.timer, now: p.now + .milliseconds(250 * step)) {
                if case let .persist(b, then) = o {
                    #expect(b.ops.isEmpty)
                    if !then.isEmpty { barriers += 1 }
                }
            }
        }
        #expect(barriers > 0)
        // Answered (the write, then each barrier): sends leave on their own again.
        for seq in batch.ticket.sequence...(batch.ticket.sequence + UInt64(barriers)) {
            _ = p.cores[0].handle(.persisted(PersistTicket(service: batch.ticket.service, sequence: seq), .durable), now: p.now + .seconds(2))
        }
        var sent = false
        for step in 1...5 {
            for o in p.cores[0].handle(.timer, now: p.now + .seconds(2) + .milliseconds(250 * step)) {
                // A barrier (a persist with no ops) would mean sends still wait; the peer
                // snapshot the gossip service takes 5 s after start is a write of its own.
                if case let .persist(b, _) = o, b.ops.isEmpty { Issue.record("still waiting: \(o)") }
                if case .send = o { sent = true }
            }
        }
        #expect(sent)
    }

    @Test func aRestoredRecordResumesAboveTheLastLife() {
        var p = Pump(count: 1)
        p.feed(0, .restored([StoredRow(table: "gossip.self", key: [], value: [0, 0, 0, 4, 0, 0, 0, 9])]))
        #expect(p.cores[0].gossip.incarnation == 5 && p.cores[0].gossip.attributeVersion == 10)
        // And the new numbers are persisted at once.
        #expect(p.disk.last?.1.ops == [.put(table: "gossip.self", key: [], value: [0, 0, 0, 5, 0, 0, 0, 10])])
        // A record that does not decode is not trusted, and is replaced.
        var q = Pump(count: 1)
        q.feed(0, .restored([StoredRow(table: "gossip.self", key: [], value: [1, 2, 3])]))
        #expect(q.cores[0].gossip.incarnation == 0)
        #expect(q.cores[0].membership.counters.badSelfRecords == 1)
        #expect(q.disk.last?.1.ops == [.put(table: "gossip.self", key: [], value: [0, 0, 0, 0, 0, 0, 0, 0])])
    }

    /// A snapshot whose rows did not change is not written again: an idle node in a stable mesh
    /// writes nothing (Docs/operations.md, "Footprint"); a change is written at the next one.
    @Test func anUnchangedPeerSnapshotIsNotWrittenAgain() {
        var p = Pump(count: 3)
        for i in 1..<3 { p.feed(i, .command(.addSeed(p.addresses[0]))) }
        for i in 0..<3 { p.feed(i, .start) }
        func peerWrites(_ node: Int) -> Int {
            p.disk.filter { n, batch in n == node && batch.ops.contains { if case .replace(GossipService.peersTable, _) = $0 { true } else { false } } }.count
        }
        p.run(for: .seconds(40))
        let settled = peerWrites(1)
        #expect(settled >= 1)
        p.run(for: .seconds(120))  // four more snapshot times, nothing changed
        #expect(peerWrites(1) == settled, "no rewrite of unchanged rows")
        #expect(p.cores[1].membership.counters.unchangedSnapshotsSkipped >= 4)
        p.feed(1, .stop)
        #expect(peerWrites(1) == settled, "nor at stop")
    }

    /// Gossip snapshots the members it heard from (every 30 s and at `.stop`); a node restarted
    /// with no seed finds the mesh again through them.
    @Test func rememberedPeersBringARestartedNodeBack() throws {
        var p = Pump(count: 2)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(31))
        func snapshot(_ node: Int) -> [StoredRow]? {
            for (n, batch) in p.disk.reversed() where n == node {
                for case let .replace(GossipService.peersTable, rows) in batch.ops { return rows }
            }
            return nil
        }
        let rows = try #require(snapshot(1))
        #expect(rows.map(\.key) == [p.cores[0].identity.publicKey.bytes])
        p.feed(0, .stop)
        #expect(snapshot(0)?.map(\.key) == [p.cores[1].identity.publicKey.bytes])

        p.restart(1)
        p.feed(1, .restored(rows))
        p.feed(1, .start)
        p.run(for: .seconds(5))
        #expect(p.state(1, of: 0) == .alive)
        #expect(p.cores[1].unansweredSeeds.isEmpty, "no seed was configured")
    }
}

/// A service that hashes what it is given off the loop: `.offload` out, `.offloaded` back.
struct HashingService: NodeService {
    static let id = ProtocolID(0x7d)
    struct Hash: Sendable, Equatable { var bytes: [UInt8] }
    struct Hashed: Sendable, Equatable { var digest: [UInt8] }

    var protocolIDs: [ProtocolID] { [Self.id] }
    var deadline: Instant? { nil }
    var next: UInt64 = 1

    func takes(_ command: NodeCommand) -> Bool {
        if case .service(Self.id, _) = command { return true }
        return false
    }

    mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case let .command(.service(_, payload)):
            guard let h = payload.as(Hash.self) else { return [] }
            let bytes = h.bytes
            defer { next += 1 }
            return [.offload(OffloadJob(ticket: JobTicket(service: Self.id, sequence: next), cost: .milliseconds(3)) {
                .bytes(Blake2b.hash(bytes, outputLength: 32))
            })]
        case let .offloaded(_, .bytes(digest)):
            return [.event(.service(Self.id, ServicePayload(Hashed(digest: digest))))]
        default:
            return []
        }
    }
}

@Suite struct OffloadTests {
    @Test func anOffloadIsHandedToTheDriverAndItsResultComesBack() throws {
        var p = Pump(count: 1)
        try p.cores[0].add(HashingService())
        let data: [UInt8] = Array("hello".utf8)
        let out = p.cores[0].handle(.command(.service(HashingService.id, ServicePayload(HashingService.Hash(bytes: data)))), now: p.now)
        guard case let .offload(job)? = out.first(where: { if case .offload = $0 { return true } else { return false } }) else {
            Issue.record("no offload in \(out)")
            return
        }
        #expect(job.cost == .milliseconds(3))
        let back = p.cores[0].handle(.offloaded(job.ticket, job.work()), now: p.now)
        #expect(back.contains(.event(.service(HashingService.id, ServicePayload(HashingService.Hashed(digest: Blake2b.hash(data, outputLength: 32)))))))
    }

    /// The simulator's way: the node runs the job in the same call and counts its cost.
    @Test func anInlineOffloadIsAnsweredInTheSameCallAndCharged() throws {
        var p = Pump(count: 1)
        p.cores[0].offloadsRunInline = true
        try p.cores[0].add(HashingService())
        let out = p.cores[0].handle(.command(.service(HashingService.id, ServicePayload(HashingService.Hash(bytes: [1, 2, 3])))), now: p.now)
        #expect(!out.contains { if case .offload = $0 { return true } else { return false } })
        #expect(out.contains(.event(.service(HashingService.id, ServicePayload(HashingService.Hashed(digest: Blake2b.hash([1, 2, 3], outputLength: 32)))))))
        #expect(p.cores[0].counters.offloadCost == .milliseconds(3))
    }
}
