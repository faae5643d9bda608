import MeshCore
import Node

/// Gossip's LAN beacons (mode `nearest`) as the simulator plays them: while a node is up and not
/// leaving, it multicasts a beacon every `[gossip] beacon_every_s` (its first at a random instant
/// of the first period, drawn per node and incarnation), and each node of its LAN that hears one is
/// handed `NodeCommand.beaconHeard(sender's address)`, as the runtime's `MulticastBeacon` hands it.
/// Metrics: `beacons` (sent), `beacons_heard`.
final class LANBeacons: NodeAgent {
    static let kind = AgentKind(name: "lan_beacons") { LANBeacons(scenario: $0, root: $1) }

    /// Size of a LAN beacon on the wire (a multicast datagram sent once, heard by the whole LAN).
    static let beaconBytes = 48

    let signal = AgentSignal(name: "beacon heard") { .beaconHeard($0) }
    let every: Double
    let enabled: Bool
    let root: SeededGenerator
    private(set) var sent: UInt64 = 0

    init(scenario: Scenario, root: SeededGenerator) {
        every = scenario.beaconEverySeconds
        enabled = every > 0 && scenario.modes.contains(.nearest)
        self.root = root
    }

    func booted(_ i: Int, _ sim: Simulation) {
        guard enabled else { return }
        let inc = sim.incarnationOf(i)
        var g = root.derived(0x6265_6163_6f6e_0000 ^ (UInt64(i) << 8) ^ UInt64(inc))
        sim.schedule(self, node: i, at: sim.now + Simulation.nanos(g.unit() * every))
    }

    func fire(node i: Int, incarnation inc: UInt32, _ sim: Simulation) {
        guard sim.incarnationOf(i) == inc, sim.isLive(i) else { return }
        sent += 1
        sim.multicast(self, from: i, bytes: Self.beaconBytes)
        sim.schedule(self, node: i, at: sim.now + Simulation.nanos(every))
    }

    func metrics(into m: inout [String: Double], heard: UInt64, _ sim: Simulation) {
        m["beacons"] = Double(sent)
        m["beacons_heard"] = Double(heard)
    }
}
