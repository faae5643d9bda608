import Foundation
import MeshCore
@testable import Simulator
import Testing

/// Convergence sampling counts each node's members from the table's kept count and the rows of
/// nodes that are down or have odd entries (MembershipSampling.swift): it must give what a walk
/// over every row gives.
@Suite struct SamplingTests {
    @Test func countingWithoutTheWalkGivesTheWalksFigures() throws {
        // Byzantine nodes (one lies about where members live: entries at another node's address),
        // and three nodes crashed for good, so both kinds of special row are there at the end.
        var s = try scenario("byzantine.toml")
        s.durationSeconds = 40
        var crash = TimelineEvent(kind: .crash, atSeconds: 25)
        crash.nodes = .list([3, 17, 22])
        s.timeline.append(crash)
        let sim = Simulation(scenario: s, seed: 5, threads: 2)
        _ = sim.run()
        for t in sim.peerTables.indices { sim.extendEntryMap(t) }
        let live = sim.life.indices.map { sim.isLive($0) }
        let down = sim.life.indices.filter { !live[$0] }.map { sim.nodeIDs[$0] }
        #expect(down.count == 3)
        var staleSeen = 0, compared = 0
        for i in sim.nodes.indices where live[i] {
            let fast = sim.memberCounts(i, live: live, down: down)
            let walk = sim.memberCounts(i, live: live, down: down, walk: true)
            #expect(fast == walk, "node \(i)")
            staleSeen += walk.staleDown
            compared += 1
        }
        #expect(compared == 27)
        #expect(staleSeen > 0)
        #expect(sim.entryMaps.contains { !$0.odd.isEmpty })
    }
}
