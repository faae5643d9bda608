import MeshCore
import Testing
@testable import Gossip

/// Culls are held for good and reach every node, newcomers too; how many a node holds is bounded
/// and a cull past the bound is refused with its own reason.
@Suite struct CullTests {
    static let admin = NodeIdentity.deterministic(runSeed: 5, index: 99)

    static func config(maxCulls: Int = 4096) -> (Int) -> GossipConfig {
        { i in
            var c = Mesh.defaultConfig()(i)
            c.adminKeys = [admin.publicKey]
            c.maxCulls = maxCulls
            return c
        }
    }

    /// A node id no mesh member has: culls of devices that are not (or no longer) members.
    static func stranger(_ i: Int) -> NodeID {
        var b = [UInt8](repeating: 0xc0, count: 32)
        b[0] = UInt8(i >> 8)
        b[1] = UInt8(i & 0xff)
        return NodeID(bytes: b)!
    }

    static func cull(_ i: Int) -> CullRecord {
        CullRecord.sign(subject: stranger(i), issuedAt: 1_800_000_000 + UInt64(i), network: Mesh.network, admin: admin)
    }

    @Test func aCullPastTheBoundIsRefusedAndCountedAsSuch() {
        var mesh = Mesh(nodes: 1, seed: 3, config: Self.config(maxCulls: 3))
        mesh.start(0, at: .zero)
        mesh.run(for: .milliseconds(10))
        for i in 0..<4 { mesh.command(0, .cull(Self.cull(i))) }
        let core = mesh.cores[0]!
        #expect(core.culls.count == 3)
        #expect(core.culls[Self.stranger(3)] == nil, "the fourth cull is the one refused")
        #expect(core.counters[.cullTableFull] == 1)
        #expect(core.counters[.tableFull] == 0, "a full cull table is told apart from a full member table")
        #expect(core.cullOrder == (0..<3).map(Self.stranger))
    }

    /// A delta carries at most `GossipWire.maxDeltaCulls` culls; a newcomer that joins after the
    /// culls' gossip has died down still learns every one of them by anti-entropy, more than one
    /// delta's worth included.
    @Test func aNewcomerLearnsEveryCullByAntiEntropyBeyondOneDelta() {
        let total = GossipWire.maxDeltaCulls + 44
        var mesh = Mesh(nodes: 4, seed: 11, config: Self.config())
        for i in 0..<3 { mesh.start(i, at: .zero + .milliseconds(Int64(i) * 100)) }
        mesh.run(for: .seconds(3))
        for i in 0..<total { mesh.command(0, .cull(Self.cull(i))) }
        // Long enough that every cull reached nodes 1 and 2 and left the broadcast queues.
        mesh.run(for: .seconds(90))
        #expect(mesh.cores[1]!.culls.count == total && mesh.cores[2]!.culls.count == total)
        #expect(mesh.cores.prefix(3).allSatisfy { $0!.queuedUpdates == 0 }, "the culls' piggybacked gossip is over")

        mesh.start(3, at: mesh.now)
        let learned = mesh.runUntil(limit: .seconds(180), step: .seconds(1)) { $0.cores[3]!.culls.count == total }
        #expect(learned != nil, "the newcomer holds \(mesh.cores[3]!.culls.count) of \(total) culls")
        #expect(mesh.cores[3]!.counters.exchanges > 0)
    }
}
