import Foundation
import MeshCore
import Testing
@testable import Gossip

/// Islands and narrowband uplinks (issue 23, problems 1 and 3), on the in-memory mesh.
@Suite struct HardNetworkTests {
    /// Two groups form apart (every datagram between them lost), each joining through its own
    /// first node, so every view points inward and each table holds only its own group. Then
    /// the network is whole again, and each node of the second group remembers one node of the
    /// first (a peer store, an old seed): its table holds it, nothing else reaches out. Stranger
    /// exchanges find the other side and a bridge links the overlays: one overlay, and every
    /// node knows every node.
    @Test func islandsWithInwardViewsFindEachOther() {
        let n = 40, half = 20
        var mesh = Mesh(nodes: n, seed: 5) { i in
            var c = GossipConfig(network: Mesh.network)
            c.modes = [.walk]
            let first = i < half ? 0 : half
            if i != first { c.seeds = [Mesh.address(first)] }
            return c
        }
        mesh.blocked = { a, b in (a < half) != (b < half) }
        mesh.startAll(over: .seconds(2))
        mesh.run(for: .seconds(30))
        #expect(mesh.components() == 2)
        #expect(mesh.state(of: 3, at: 25) == nil)
        mesh.blocked = nil
        for i in half..<n { mesh.command(i, .restoreMembers([mesh.entries[i - half]])) }
        let took = mesh.runUntil(limit: .seconds(150), step: .seconds(1)) { m in
            m.components() == 1 && m.everyoneKnowsEveryone(allowSuspect: true)
        }
        print("[gossip] islands: one overlay and full membership \(took.map { "\($0)" } ?? "never") after the network was whole")
        #expect(took != nil)
        let bridges = (0..<n).reduce(UInt64(0)) { $0 + mesh.cores[$1]!.counters.bridges }
        let strangers = (0..<n).reduce(UInt64(0)) { $0 + mesh.cores[$1]!.counters.strangerExchanges }
        #expect(bridges > 0 && strangers > 0, "bridges \(bridges), stranger exchanges \(strangers)")
    }

    /// In a mesh that formed as one, stranger exchanges find nothing new: no bridges, no churn.
    @Test func aConnectedMeshBuildsNoBridges() {
        var mesh = Mesh(nodes: 30, seed: 6, config: Mesh.defaultConfig())
        mesh.startAll(over: .seconds(2))
        mesh.run(for: .seconds(150))
        #expect(mesh.components() == 1)
        let bridges = (0..<30).reduce(UInt64(0)) { $0 + mesh.cores[$1]!.counters.bridges }
        let strangers = (0..<30).reduce(UInt64(0)) { $0 + mesh.cores[$1]!.counters.strangerExchanges }
        #expect(strangers > 30)
        #expect(bridges == 0)
    }

    /// A node told its uplink keeps its membership traffic near a quarter of it: 30 nodes on
    /// 16 kbit/s (2,000 B/s, a quarter 500 B/s) through a join and 60 s of steady state, and
    /// nobody declared dead. The pace grows above the start (1,200 / 500 = 2.4) only if needed.
    @Test func membershipKeepsWithinAQuarterOfTheUplink() {
        let n = 30
        var mesh = Mesh(nodes: n, seed: 7) { i in
            var c = Mesh.defaultConfig()(i)
            c.uplinkBytesPerSecond = 2000
            return c
        }
        mesh.startAll(over: .seconds(2))
        mesh.run(for: .seconds(60))
        #expect(mesh.everyoneKnowsEveryone(allowSuspect: true))
        let before = mesh.datagramBytes, datagrams = mesh.datagrams
        mesh.run(for: .seconds(60))
        // Payload plus the session layer's framing, per node per second.
        let rate = Double(mesh.datagramBytes - before + (mesh.datagrams - datagrams) * GossipCore.framingBytes) / Double(n) / 60
        #expect(rate <= 500 * 1.2, "\(rate) B/s per node against a budget of 500")
        let dead = mesh.eventLog.filter { if case .memberStateChanged(_, _, .dead, _) = $0.event { true } else { false } }.count
        #expect(dead == 0)
        #expect(mesh.cores[1]!.pace >= 2.4)
    }

    /// Without an uplink figure nothing is paced: the LAN defaults stay as they were.
    @Test func withoutAnUplinkNothingIsPaced() {
        var mesh = Mesh(nodes: 5, seed: 8, config: Mesh.defaultConfig())
        mesh.startAll(over: .seconds(1))
        mesh.run(for: .seconds(20))
        #expect((0..<5).allSatisfy { mesh.cores[$0]!.pace == 1 })
        #expect(mesh.cores[0]!.paced(.milliseconds(500)) == .milliseconds(500))
    }
}
