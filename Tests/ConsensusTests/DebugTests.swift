import Testing
import Consensus
import MeshCore

@Suite struct DebugTests {
    @Test func debugStuck() {
        let net = VirtualNet(validators: 4, seed: 1)
        net.start()
        net.workload(count: 200, every: .milliseconds(5), startingAt: Instant(nanoseconds: 10_000_000), targets: Array(0..<4))
        var t = Instant.zero
        while t < Instant(nanoseconds: 5_000_000_000) {
            t = t + .milliseconds(250)
            net.run(until: t)
            var line = "\(t)"
            for s in 0..<4 {
                let c = net.slots[s].core!
                line += " | s\(s) r=\(c.round) hq=\(c.safety.highQC.round) lv=\(c.safety.lastVotedRound) ch=\(c.committedHeight) d=\(c.deadline.map { "\($0)" } ?? "-") drops=\(c.counters.drops.map { "\($0.key.rawValue):\($0.value)" }.sorted())"
            }
            print(line)
        }
    }
}
