import MeshCore
import Node
import NodeService

/// Offloaded work in the simulator (hashing a file, erasure coding, a batch of signatures): the
/// driver runs a node's `.offload` job at once, on its own thread, and hands the result back when
/// the node's virtual CPU is done with it (`VirtualCPU.charge`: jobs queue on the node's one
/// worker). A node that offloads much, or a slow one, sees its results late.
struct OffloadSlots {
    struct Pending {
        var node: Int32
        var incarnation: UInt32
        var ticket: JobTicket
        var outcome: JobOutcome
    }

    private var slots: [Pending?] = []
    private var free: [Int32] = []

    mutating func put(_ p: Pending) -> Int32 {
        if let s = free.popLast() { slots[Int(s)] = p; return s }
        slots.append(p)
        return Int32(slots.count - 1)
    }

    mutating func take(_ slot: Int) -> Pending? {
        defer { slots[slot] = nil; free.append(Int32(slot)) }
        return slots[slot]
    }
}

extension Simulation {
    /// Runs `job` now and queues its result for when node `i`'s virtual CPU has done it.
    func offload(_ i: Int, _ job: OffloadJob) {
        let outcome = job.work()
        let done = cpu.charge(i, cost: job.cost.nanoseconds, now: now)
        let slot = offloads.put(.init(node: Int32(i), incarnation: incarnation[i], ticket: job.ticket, outcome: outcome))
        queue.push(max(done, mergingUntil), .offloaded(slot: slot))
    }

    /// A job's result reaches its node, unless the node crashed since.
    func offloadDone(_ slot: Int) {
        guard let p = offloads.take(slot) else { return }
        let i = Int(p.node)
        guard life[i] == .up, incarnation[i] == p.incarnation else { return }
        if trace != nil { log(i, "offloaded job \(p.ticket.sequence) of \(p.ticket.service) done") }
        apply(i, nodes[i].handle(.offloaded(p.ticket, p.outcome), now: Instant(nanoseconds: now)))
    }
}
