/// Whether the run is under a fault right now, and since when it is not: liveness checkers
/// judge what happens once faults heal (`faultsHealedAt`). A fault is anything the timeline did
/// that the protocol must survive: a partition, a degraded link or node, a byzantine node, a
/// starved CPU, a faulty disk, a crashed node not yet restarted. Joins, leaves and culls are the
/// workload's doing, not faults.
extension Simulation {
    func faultsActive() -> Bool {
        if net.partitioned || net.anyDegraded { return true }
        for i in 0..<nodes.count {
            if crashedDown[i] || byzantine[i] != nil || cpu.inputDelay[i] > 0 || !disk.faults(of: i).isEmpty { return true }
        }
        return false
    }

    /// After every timeline step: notes the instant the last active fault healed.
    func trackFaults() {
        if faultsActive() {
            faultsHealedAt = nil
        } else if faultsHealedAt == nil {
            faultsHealedAt = now
        }
    }
}
