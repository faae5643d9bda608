import Lacero
import LaceroService
import MeshCore
import Node
import NodeService
import Testing

/// Lacero services of several nodes wired to one another in memory: every `.send` and
/// `.sendReliable` is delivered (in order) to the service it names, persists complete at once.
final class LaceroMesh {
    struct Directory: MemberDirectory {
        var peers: [NodeID: ProvenPeer]
        var live: Set<NodeID>
        func peer(_ id: NodeID) -> ProvenPeer? { live.contains(id) ? peers[id] : nil }
        func isReachable(_ id: NodeID) -> Bool { live.contains(id) }
        func isCulled(_ id: NodeID) -> Bool { false }
        func isNeighbour(_ id: NodeID) -> Bool { live.contains(id) }
    }

    var services: [LaceroService]
    let ids: [NodeID]
    var directory: Directory
    var now = Instant(nanoseconds: 1_000_000_000)
    var events: [(node: Int, event: LaceroEvent)] = []
    var rows: [Int: [[UInt8]: [UInt8]]] = [:]
    var queue: [(from: Int, to: NodeID, bytes: [UInt8], reliable: Bool)] = []
    var ackBytes: [[UInt8]] = []

    /// Node `i` gets `hosts[i]` for operations (put, get, ...); offloaded jobs run inline.
    init(nodes: Int, config: LaceroService.Config, seed: UInt64, hosts: [Int: any LaceroHost] = [:]) {
        let identities = (0..<nodes).map { NodeIdentity.deterministic(runSeed: seed, index: $0) }
        let ids = identities.map(\.nodeID)
        self.ids = ids
        var peers: [NodeID: ProvenPeer] = [:]
        for (i, identity) in identities.enumerated() {
            peers[identity.nodeID] = ProvenPeer(identity: identity.peer, address: UnderlayAddress(high: 0, low: UInt64(i + 1), port: 7000))
        }
        directory = Directory(peers: peers, live: Set(ids))
        services = (0..<nodes).map { LaceroService(me: ids[$0], config: config, rng: SeededGenerator(seed: seed &+ UInt64($0)), host: hosts[$0]) }
        for i in 0..<nodes {
            for j in 0..<nodes where j != i { _ = services[i].handle(.membership(.up(peers[ids[j]]!)), now: now, members: directory) }
        }
    }

    func index(_ id: NodeID) -> Int { ids.firstIndex(of: id)! }

    func run(_ i: Int, _ input: ServiceInput<NodeCommand>) {
        guard directory.live.contains(ids[i]) else { return }
        carry(i, services[i].handle(input, now: now, members: directory))
    }

    func carry(_ i: Int, _ outputs: [ServiceOutput<NodeCommand, NodeEvent>]) {
        for o in outputs {
            switch o {
            case let .send(.member(to), bytes): queue.append((i, to, bytes, false))
            case let .send(.peer(p), bytes): queue.append((i, p.nodeID, bytes, false))
            case let .sendReliable(p, bytes): queue.append((i, p.nodeID, bytes, true))
            case let .persist(batch, then):
                for op in batch.ops {
                    switch op {
                    case let .put(_, key, value): rows[i, default: [:]][key] = value
                    case let .delete(_, key): rows[i, default: [:]][key] = nil
                    default: break
                    }
                }
                carry(i, then)
                run(i, .persisted(batch.ticket, .durable))
            case let .event(.service(_, payload)): if let e = payload.as(LaceroEvent.self) { events.append((i, e)) }
            case let .offload(job): run(i, .offloaded(job.ticket, job.work()))
            default: break
            }
        }
    }

    /// Delivers queued messages until none is left (those to dead nodes are lost).
    func settle() {
        while !queue.isEmpty {
            let m = queue.removeFirst()
            if m.bytes.count > 3, m.bytes[2] == 2 { ackBytes.append(m.bytes) }
            let j = index(m.to)
            guard let from = directory.peers[ids[m.from]] else { continue }
            run(j, .message(from: from, bytes: m.bytes, reliable: m.reliable))
            // The reliable stream's word on it, as the node gives it: acknowledged, or failed when
            // the receiver is gone.
            if m.reliable, directory.live.contains(ids[m.from]) {
                let result: ReliableOutcome.Result = directory.live.contains(m.to) ? .delivered : .failed
                carry(m.from, services[m.from].reliableOutcome(ReliableOutcome(to: m.to, bytes: m.bytes, result: result), now: now, members: directory))
            }
        }
    }

    func advance(_ d: Duration) {
        now = now + d
        for i in services.indices where services[i].deadline.map({ $0 <= now }) ?? false { run(i, .timer) }
        settle()
    }

    func command(_ i: Int, _ c: LaceroCommand) {
        run(i, .command(.service(LaceroService.protocolID, ServicePayload(c))))
        settle()
    }
}

struct LaceroServiceTests {
    static func fragments(_ object: [UInt8], _ p: LaceroParameters) throws -> (LaceroMetadata, [EncodedSegment], [LaceroCommand.Fragment]) {
        let (metadata, segments) = try Shredder.shred(object, parameters: p, key: [UInt8](repeating: 1, count: 32),
                                                      deleteSecret: [UInt8](repeating: 2, count: 32))
        var out: [LaceroCommand.Fragment] = []
        for seg in segments {
            let tag = Array(FragmentHash.hash(seg.ids[0]).prefix(16))
            for i in 0..<p.n {
                out.append(.init(id: seg.ids[i], bytes: Array(seg.fragment(i)), segmentTag: tag,
                                 deleteCheck: LaceroMetadata.deleteCheck(proof: metadata.deleteProof(for: seg.ids[i]))))
            }
        }
        return (metadata, segments, out)
    }

    @Test func storedFragmentsReachTheirThresholdSpreadOneFragmentOfASegmentPerNodeAndAcksNameNoHolder() throws {
        var config = LaceroService.Config()
        config.keepProbability = 0.5
        let mesh = LaceroMesh(nodes: 20, config: config, seed: 11)
        let p = try LaceroParameters(k: 3, n: 5, segmentSize: 300)
        let (_, _, frags) = try Self.fragments(ShredderTests.object(1000, seed: 4), p)
        mesh.command(0, .store(frags, threshold: 2, hops: 16, leaseSeconds: 3600))
        let stored = mesh.events.compactMap { if case let .stored(id, reached, register) = $0.event { (id, reached, register) } else { nil } }
        #expect(stored.count == frags.count)
        #expect(stored.allSatisfy { $0.1 && $0.2 == 2 })
        for f in frags {
            #expect(mesh.services.filter { $0.holds(f.id) }.count == 2, "each fragment kept by exactly the threshold's number of nodes")
        }
        // Never two fragments of one segment on one node.
        for s in mesh.services {
            var tags: [[UInt8]] = []
            for f in frags where s.holds(f.id) { tags.append(f.segmentTag) }
            #expect(Set(tags).count == tags.count)
        }
        // Keep-acks carry token, id, flag and register only: no node id or address inside.
        #expect(!mesh.ackBytes.isEmpty)
        for ack in mesh.ackBytes {
            #expect(ack.count == 2 + 1 + 16 + 32 + 1 + 1)
            for id in mesh.ids {
                let mark = Array(id.bytes.prefix(8))
                #expect(!(0...(ack.count - 8)).contains { Array(ack[$0..<($0 + 8)]) == mark })
            }
        }
    }

    @Test func fetchByIdReturnsVerifiedFragmentsAndTheObjectSurvivesNMinusKHoldersGone() throws {
        var config = LaceroService.Config()
        config.keepProbability = 0.6
        let mesh = LaceroMesh(nodes: 12, config: config, seed: 5)
        let p = try LaceroParameters(k: 2, n: 4, segmentSize: 500)
        let object = ShredderTests.object(900, seed: 6)
        let (metadata, _, frags) = try Self.fragments(object, p)
        mesh.command(0, .store(frags, threshold: 1, hops: 11, leaseSeconds: 3600))
        // Take away the holders of two fragments (n − k) of segment 0.
        for f in frags.prefix(2) {
            for (i, s) in mesh.services.enumerated() where s.holds(f.id) { mesh.directory.live.remove(mesh.ids[i]) }
        }
        mesh.command(0, .fetch(metadata.fragmentIDs, from: []))
        mesh.advance(.seconds(11))
        var got: [[UInt8]: [UInt8]] = [:]
        for e in mesh.events { if case let .fetched(id, bytes) = e.event { got[id] = bytes } }
        var r = try Reassembler(metadata: metadata)
        let back = try r.rebuild { s in
            metadata.segment(s).enumerated().compactMap { i, id in got[id].map { (index: i, bytes: $0[...]) } }
        }
        #expect(back == object)
        #expect(mesh.events.contains { if case .missing = $0.event { true } else { false } }, "the fragments whose holders left are reported missing")
    }

    @Test func deleteNeedsTheProofAndLeasesExpire() throws {
        var config = LaceroService.Config()
        config.keepProbability = 1
        let mesh = LaceroMesh(nodes: 4, config: config, seed: 9)
        let p = try LaceroParameters(k: 2, n: 3, segmentSize: 100)
        let (metadata, _, frags) = try Self.fragments(ShredderTests.object(50, seed: 1), p)
        mesh.command(0, .store(frags, threshold: 1, hops: 3, leaseSeconds: 60))
        let holder = { (id: [UInt8]) in mesh.services.firstIndex { $0.holds(id) } }
        let first = try #require(holder(frags[0].id))
        mesh.command(0, .delete([(id: frags[0].id, proof: [UInt8](repeating: 0, count: 32))], from: []))
        #expect(mesh.services[first].holds(frags[0].id))
        #expect(mesh.services[first].counters.drops["delete_refused"] == 1)
        mesh.command(0, .delete([(id: frags[0].id, proof: metadata.deleteProof(for: frags[0].id))], from: []))
        #expect(!mesh.services[first].holds(frags[0].id))
        #expect(mesh.rows[first]?[frags[0].id] == nil)
        let second = try #require(holder(frags[1].id))
        #expect(mesh.rows[second]?[frags[1].id] != nil, "a kept fragment is a stored row")
        mesh.advance(.seconds(61))
        #expect(!mesh.services[second].holds(frags[1].id), "an unrenewed fragment is collected after its lease")
        #expect(mesh.services[second].counters.expired == 1)
    }

    @Test func aRestartedHolderServesWhatItPersistedAndRefusesBadRows() throws {
        var config = LaceroService.Config()
        config.keepProbability = 1
        let mesh = LaceroMesh(nodes: 3, config: config, seed: 2)
        let p = try LaceroParameters(k: 2, n: 3, segmentSize: 100)
        let (_, _, frags) = try Self.fragments(ShredderTests.object(60, seed: 2), p)
        mesh.command(0, .store([frags[0]], threshold: 1, hops: 2, leaseSeconds: 600))
        let h = try #require(mesh.services.firstIndex { $0.holds(frags[0].id) })
        var reborn = LaceroService(me: mesh.ids[h], config: config, rng: SeededGenerator(seed: 99))
        var rows = mesh.rows[h]!.map { StoredRow(table: LaceroService.table, key: $0.key, value: $0.value) }
        rows.append(StoredRow(table: LaceroService.table, key: [UInt8](repeating: 1, count: 32), value: [1, 2, 3]))
        _ = reborn.handle(.restored(rows), now: .zero, members: NoMembers())
        #expect(reborn.holds(frags[0].id))
        #expect(reborn.fragmentsHeld == 1)
        #expect(reborn.counters.drops["bad_row"] == 1)
    }

    /// Outputs' reliable sends, as (peer, bytes).
    static func reliableSends(_ out: [ServiceOutput<NodeCommand, NodeEvent>]) -> [(to: NodeID, bytes: [UInt8])] {
        var sends: [(to: NodeID, bytes: [UInt8])] = []
        for o in out {
            switch o {
            case let .sendReliable(p, bytes): sends.append((p.nodeID, bytes))
            case let .persist(_, then): sends += reliableSends(then)
            default: break
            }
        }
        return sends
    }

    /// Stores leave only while the bytes towards a peer that the stream has not acknowledged stay
    /// within the window; an acknowledgement lets the next one go. A store the stream refused is
    /// sent again after `refusedRetry`, never dropped; one whose connection failed goes through
    /// another first hop at once.
    @Test func storesArePacedByAcknowledgementsAndRefusedOrFailedOnesAreSentAgain() throws {
        var config = LaceroService.Config()
        config.peerWindowBytes = 150_000
        let mesh = LaceroMesh(nodes: 3, config: config, seed: 3)
        // A sharding node that knows one member, then a second.
        var service = LaceroService(me: mesh.ids[0], config: config, rng: SeededGenerator(seed: 1))
        let one = mesh.directory.peers[mesh.ids[1]]!, two = mesh.directory.peers[mesh.ids[2]]!
        _ = service.handle(.membership(.up(one)), now: mesh.now, members: mesh.directory)
        var frags: [LaceroCommand.Fragment] = []
        for i in 0..<3 {
            let bytes = ShredderTests.object(100_000, seed: UInt64(40 + i))
            frags.append(.init(id: FragmentHash.hash(bytes), bytes: bytes, segmentTag: [UInt8](repeating: UInt8(i), count: 16),
                               deleteCheck: [UInt8](repeating: 0, count: 32)))
        }
        var now = mesh.now
        let first = Self.reliableSends(service.handle(.command(.service(LaceroService.protocolID, ServicePayload(
            LaceroCommand.store(frags, threshold: 1, hops: 4, leaseSeconds: 60)))), now: now, members: mesh.directory))
        // One ~100 KB store fits the 150,000-byte window; the other two wait.
        #expect(first.count == 1 && first[0].to == one.nodeID)
        #expect(service.counters.paced == 2)
        // It is acknowledged: exactly the next one leaves.
        let next = Self.reliableSends(service.reliableOutcome(ReliableOutcome(to: one.nodeID, bytes: first[0].bytes, result: .delivered),
                                                              now: now, members: mesh.directory))
        #expect(next.count == 1 && next[0].to == one.nodeID && next[0].bytes != first[0].bytes)
        // The stream refuses it: nothing goes at once; after `refusedRetry` the same bytes go again.
        let refused = service.reliableOutcome(ReliableOutcome(to: one.nodeID, bytes: next[0].bytes, result: .refused), now: now, members: mesh.directory)
        #expect(Self.reliableSends(refused).isEmpty)
        #expect(service.counters.drops["reliable_refused"] == 1)
        #expect(service.deadline == now + LaceroService.refusedRetry)
        now = now + LaceroService.refusedRetry
        let again = Self.reliableSends(service.handle(.timer, now: now, members: mesh.directory))
        #expect(again.count == 1 && again[0].to == one.nodeID && again[0].bytes == next[0].bytes)
        // A second member comes up and the first's connection fails: the store goes through the
        // second at once, and the one still waiting for the first follows it there when it is retried.
        _ = service.handle(.membership(.up(two)), now: now, members: mesh.directory)
        let failed = Self.reliableSends(service.reliableOutcome(ReliableOutcome(to: one.nodeID, bytes: again[0].bytes, result: .failed),
                                                                now: now, members: mesh.directory))
        #expect(failed.contains { $0.to == two.nodeID && LaceroService.storeToken($0.bytes) == LaceroService.storeToken(again[0].bytes) },
                "\(failed.map(\.to))")
        #expect(service.counters.rerouted == 1)
    }

    @Test func malformedMessagesAreCountedDrops() {
        let mesh = LaceroMesh(nodes: 2, config: .init(), seed: 3)
        let from = mesh.directory.peers[mesh.ids[1]]!
        mesh.run(0, .message(from: from, bytes: [0x69, 0x4C, 0x01, 0x00], reliable: true))
        mesh.run(0, .message(from: from, bytes: [0x69, 0x4C, 0x77], reliable: false))
        #expect(mesh.services[0].counters.drops == ["truncated": 1, "unknown_kind": 1])
    }
}
