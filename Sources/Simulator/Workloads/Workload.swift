import MeshCore
import Node

/// Workloads drive a protocol from outside the nodes, as its users would (FoundationDB composes
/// its simulation tests the same way): a workload issues commands to nodes at instants of its
/// choosing and watches the events the nodes report. A scenario names them by kind
/// (`[[workloads]] kind = "…"`, kinds from the `SimulationRegistry`); each protocol brings its
/// own, with the checkers that judge it, in its own file.
///
/// Workloads run on the driver's thread only: at their own timers (global events, between
/// windows) and when a node's event is carried out, in the run's deterministic order.
protocol Workload: AnyObject {
    var spec: Scenario.WorkloadSpec { get }
    /// At 0 s, once the nodes up at the start have booted.
    func start(_ sim: Simulation)
    /// A timer this workload set with `Simulation.schedule(_:after:tag:)` is due.
    func fire(tag: Int, _ sim: Simulation)
    /// A node reported an event.
    func observe(node: Int, _ event: NodeEvent, _ sim: Simulation)
    /// Services node `i` runs besides the node's own (the protocol this workload drives), built
    /// each time the node is (at start and at every restart, with its new incarnation).
    func services(node: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>]
    /// Its figures for the report (keys prefixed by the workload's kind).
    func metrics(into m: inout [String: Double], _ sim: Simulation)
}

extension Workload {
    func observe(node: Int, _ event: NodeEvent, _ sim: Simulation) {}
    func services(node: Int, incarnation: UInt32, _ sim: Simulation) -> [any NodeService<NodeCommand, NodeEvent>] { [] }
}

/// A kind of workload: its name, the keys of its `[[workloads]]` entry, and how to build one.
/// `make` gets the spec and a generator of the workload's own, derived from the run seed and
/// the workload's position, so adding a workload changes no other draw of the run.
struct WorkloadKind: Sendable {
    let name: String
    let required: [String]
    let optional: [String]
    let make: @Sendable (Scenario.WorkloadSpec, SeededGenerator) -> any Workload
}

/// What a workload may do to the run. Nothing here reads a clock or a global generator.
extension Simulation {
    /// Hands node `i` a command now, as its control socket would; ignored when the node is not live.
    /// Returns whether the node took it.
    @discardableResult
    func command(_ i: Int, _ c: NodeCommand) -> Bool {
        guard isLive(i) else { return false }
        apply(i, nodes[i].handle(.command(c), now: Instant(nanoseconds: now)))
        return true
    }

    /// Calls `workload.fire(tag:)` after `delay` nanoseconds of virtual time.
    func schedule(_ workload: any Workload, after delay: Int64, tag: Int) {
        guard let slot = workloads.firstIndex(where: { $0 === workload }) else { return }
        queue.push(now + max(0, delay), .workload(slot: Int32(slot), tag: Int32(tag)))
    }

    /// The first workload of this type in the scenario, for its checkers.
    func workload<W: Workload>(_ type: W.Type) -> W? {
        for w in workloads { if let mine = w as? W { return mine } }
        return nil
    }

    /// Node count, its live nodes and their incarnations: what a workload may look at.
    var nodeCount: Int { nodes.count }
    func incarnationOf(_ i: Int) -> UInt32 { incarnation[i] }
    func nodeIndex(of id: NodeID) -> Int? { indexOfID[id] }
    func nodeID(_ i: Int) -> NodeID { nodeIDs[i] }
}
