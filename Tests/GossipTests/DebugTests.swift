import Testing
import MeshCore
@testable import Gossip

@Suite struct DebugTests {
    @Test func trace() {
        var mesh = Mesh(nodes: 300, seed: 1, config: Mesh.defaultConfig())
        mesh.logEvents = false
        mesh.startAll(over: .seconds(5))
        for _ in 0..<45 {
            mesh.run(for: .seconds(1))
            var missing = 0, notAlive = 0
            for o in mesh.live {
                for s in mesh.live where s != o {
                    switch mesh.state(of: s, at: o) {
                    case nil: missing += 1
                    case .alive?: break
                    default: notAlive += 1
                    }
                }
            }
            let q = mesh.live.map { mesh.cores[$0]!.queuedUpdates }.max()!
            print("t=\(mesh.now) missing=\(missing) notAlive=\(notAlive) maxQueue=\(q) comps=\(mesh.components()) dgrams=\(mesh.datagrams)")
            if missing + notAlive == 0 { break }
        }
    }
}
