import Testing
import MeshCore
@testable import Gossip

/// Multi-node behaviour on the in-memory mesh. Sizes are chosen so each test stays within a few
/// seconds in a debug build; Docs/gossip.md lists the figures measured with larger meshes.
@Suite struct ScaleTests {
    static func converged(nodes: Int, seed: UInt64, loss: Double = 0) -> Mesh {
        var mesh = Mesh(nodes: nodes, seed: seed, config: Mesh.defaultConfig())
        mesh.loss = loss
        mesh.logEvents = false
        mesh.startAll(over: .seconds(5))
        _ = mesh.runUntil(limit: .seconds(60), step: .seconds(1)) { $0.everyoneKnowsEveryone() }
        mesh.logEvents = true
        return mesh
    }

    @Test func everyoneConverges() {
        let mesh = Self.converged(nodes: 300, seed: 1)
        #expect(mesh.everyoneKnowsEveryone())
        #expect(mesh.components() == 1)
        let sizes = mesh.live.map { mesh.cores[$0]!.activeView.count }
        #expect(sizes.min()! >= 1)
        #expect(sizes.max()! <= mesh.config.activeViewSize)
        #expect(mesh.largestDatagram <= GossipWire.maxDatagram)
        print("converged 300 nodes at \(mesh.now); datagrams \(mesh.datagrams), bytes \(mesh.datagramBytes)")
    }
}
