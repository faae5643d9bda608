import Gossip
import MeshCore
import Node
import NodeService
import Testing

/// Culls outlive restarts: the gossip service persists each with its admin signature, restores
/// it with the signature checked again, never keeps a culled node as a reconnect target, and the
/// mesh hands it to newcomers.
@Suite struct DurableCullTests {
    static let admin = NodeIdentity.deterministic(runSeed: 77, index: 0)

    static var discovery: Discovery {
        var d = Discovery()
        d.adminKeys = [admin.publicKey]
        return d
    }

    /// What node i's store holds after its batches, applied in order: (table, key) -> value.
    static func stored(_ p: Pump, _ i: Int) -> [StoredRow] {
        var rows: [String: [[UInt8]: [UInt8]]] = [:]
        for (n, batch) in p.disk where n == i {
            for op in batch.ops {
                switch op {
                case let .put(table, key, value): rows[table, default: [:]][key] = value
                case let .delete(table, key): rows[table]?[key] = nil
                case let .replace(table, new): rows[table] = Dictionary(new.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
                }
            }
        }
        return rows.keys.sorted().flatMap { t in rows[t]!.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { StoredRow(table: t, key: $0, value: rows[t]![$0]!) } }
    }

    /// Node i's process restarts with the same key and address and gets its store back.
    static func restart(_ p: inout Pump, _ i: Int, restoring rows: [StoredRow]) throws {
        p.cores[i] = try NodeCore(identity: NodeIdentity.deterministic(runSeed: 5, index: i), network: .defaultNetwork, networkKey: Pump.networkKey,
                                  address: p.addresses[i], discovery: discovery, rng: SeededGenerator(seed: 1000 + UInt64(i)))
        p.cores[i].persistsCompleteAtOnce = true
        p.clearWake(i)
        if !rows.isEmpty { p.feed(i, .restored(rows)) }
    }

    @Test func aCullStaysInForceAfterTheMeshRestartsAndANewcomerLearnsIt() throws {
        var p = Pump(count: 4, discovery: Self.discovery)
        for i in 1..<3 { p.feed(i, .command(.addSeed(p.addresses[0]))) }
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(25))  // past the first peer snapshots (5, 10, 20 s)
        let victim = p.cores[2].identity.nodeID
        let record = CullRecord.sign(subject: victim, issuedAt: 1_800_000_000, network: .defaultNetwork, admin: Self.admin)
        p.feed(0, .command(.membership(.cull(record))))
        p.run(for: .seconds(40))  // a snapshot after the cull
        #expect(p.state(0, of: 2) == .culled && p.state(1, of: 2) == .culled)

        // Both survivors stored the signed record and no culled reconnect target.
        for i in 0..<2 {
            let rows = Self.stored(p, i)
            let culls = rows.filter { $0.table == GossipService.cullsTable }
            #expect(culls.count == 1 && culls.first?.key == victim.bytes && culls.first?.value == record.encoded, "node \(i): \(culls.count) cull rows")
            let peers = rows.filter { $0.table == GossipService.peersTable }
            #expect(!peers.isEmpty, "node \(i) remembers peers")
            #expect(!peers.contains { PeerIdentity(publicKey: $0.key)?.nodeID == victim }, "node \(i) keeps the culled node as a reconnect target")
        }

        // The whole mesh restarts; the culled node comes back too, with its old seed.
        let disks = (0..<2).map { Self.stored(p, $0) }
        for i in 0..<2 { try Self.restart(&p, i, restoring: disks[i]) }
        for i in 0..<2 {
            #expect(p.cores[i].gossip.culls[victim] == record, "node \(i) holds the cull from its store before any message")
            #expect(p.cores[i].membership.counters.badCullRecords == 0)
        }
        try Self.restart(&p, 2, restoring: [])
        p.feed(2, .command(.addSeed(p.addresses[0])))
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(10))
        #expect(p.state(0, of: 1) == .alive && p.state(1, of: 0) == .alive, "the survivors found each other through their stores")
        for i in 0..<2 {
            #expect(p.state(i, of: 2) == nil || p.state(i, of: 2) == .culled, "node \(i) took the culled node back")
            #expect(p.cores[i].membership.counters.cullWrites == 0, "a restored cull is not written again")
        }
        #expect(p.cores[0].counters.drops[.culled] ?? 0 >= 1, "the culled node's plaintext was refused")

        // A newcomer that never heard the cull joins through the node that did not issue it.
        p.feed(3, .command(.addSeed(p.addresses[1])))
        p.feed(3, .start)
        p.run(for: .seconds(60))
        #expect(p.cores[3].gossip.culls[victim] == record, "the newcomer learned the cull")
        #expect(p.state(3, of: 0) == .alive && p.state(3, of: 1) == .alive)
        #expect(p.state(3, of: 2) == nil || p.state(3, of: 2) == .culled)
    }

    /// A stored cull is trusted no more than one from the wire: a row whose signature fails, one
    /// signed by a key no longer trusted, and one that is not a record are dropped, counted and
    /// deleted; a good row beside them still holds.
    @Test func badStoredCullsAreDroppedCountedAndDeleted() throws {
        var p = Pump(count: 1, discovery: Self.discovery)
        let good = CullRecord.sign(subject: NodeID(bytes: [UInt8](repeating: 1, count: 32))!, issuedAt: 1, network: .defaultNetwork, admin: Self.admin)
        var altered = CullRecord.sign(subject: NodeID(bytes: [UInt8](repeating: 2, count: 32))!, issuedAt: 2, network: .defaultNetwork, admin: Self.admin)
        altered.issuedAt += 1
        let untrusted = CullRecord.sign(subject: NodeID(bytes: [UInt8](repeating: 3, count: 32))!, issuedAt: 3, network: .defaultNetwork,
                                        admin: NodeIdentity.deterministic(runSeed: 78, index: 0))
        let rows = [good, altered, untrusted].map { StoredRow(table: GossipService.cullsTable, key: $0.subject.bytes, value: $0.encoded) }
            + [StoredRow(table: GossipService.cullsTable, key: [UInt8](repeating: 4, count: 32), value: [1, 2, 3])]
        p.disk.removeAll()
        p.feed(0, .restored(rows))
        #expect(p.cores[0].gossip.culls.count == 1 && p.cores[0].gossip.culls[good.subject] == good)
        #expect(p.cores[0].membership.counters.badCullRecords == 3)
        let deleted = p.disk.flatMap(\.1.ops).compactMap { op -> [UInt8]? in
            if case let .delete(GossipService.cullsTable, key) = op { return key } else { return nil }
        }
        #expect(Set(deleted) == Set([altered.subject.bytes, untrusted.subject.bytes, [UInt8](repeating: 4, count: 32)]))
    }
}
