import SimulatorKit

/// The simulator's queue: the engine's `EventHeap` (time, then insertion order) of `SimEvent`s.
typealias EventQueue = EventHeap<SimEvent>

/// What can happen in a run, besides what nodes do inside their cores.
enum SimEvent {
    /// Node indices, not addresses: the receiver's handler rebuilds the sender's address, so an
    /// event carries one reference (the bytes) instead of two.
    case deliver(to: Int32, from: Int32, bytes: [UInt8])
    /// A delivery to a CPU-starved node, already held back: handled as it comes.
    case deliverLate(to: Int32, from: Int32, bytes: [UInt8])
    /// A timer `agents[slot]` set for node `node` in incarnation `incarnation` (`NodeAgent`).
    case agent(slot: Int32, node: Int32, incarnation: UInt32)
    /// A signal `agents[agent]` multicast from node `from` reaches node `to`, which is handed the
    /// agent's command for it (`NodeAgent.signal`).
    case signal(to: Int32, from: Int32, agent: Int32)
    /// A node that left gracefully stops, once its goodbyes had time to go out.
    case stop(node: Int32, incarnation: UInt32)
    case wake(node: Int32, at: Int64)
    case sample
    /// Apply firing `firing` of `scenario.timeline[index]`.
    case timeline(index: Int32, firing: Int32)
    /// Undo what an earlier firing did (its `for_s` ran out); the slot holds what to undo.
    case revert(slot: Int32)
    /// The deadline of `crashed_detected_within` for one crash record.
    case crashDeadline(record: Int32)
    /// A workload's timer: `workloads[slot].fire(tag:)`.
    case workload(slot: Int32, tag: Int32)
    /// The oldest persist of node `node` (in incarnation `incarnation`) is done on its disk.
    case diskDone(node: Int32, incarnation: UInt32)
    /// An offloaded job's result is due back at its node (`Simulation.offloads[slot]`): the node's
    /// virtual CPU finished it.
    case offloaded(slot: Int32)
}
