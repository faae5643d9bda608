import Foundation
import Gossip
import MeshCore
import Node
import Sessions

/// Membership measured from outside the nodes: false deaths, convergence samples, crash deadlines.
extension Simulation {
    // MARK: - Measuring

    /// A death is false when the dead node is up, reachable and honest, and no fault touching
    /// either side ended within the grace period (probe timeouts plus suspicion).
    func classifyDeath(observer i: Int, _ id: NodeID) {
        guard let j = indexOfID[id] else { c.expectedDead += 1; return }
        if life[j] != .up || leaving[j] {
            c.expectedDead += 1
            if incarnation[j] > 0 { c.detectSeconds.append(Double(now - downSince[j]) / 1e9) }
            return
        }
        let disturbed = max(disturbedUntil[i], disturbedUntil[j], everyoneDisturbedUntil) > now
        if disturbed || byzantine[i] != nil || byzantine[j] != nil || !net.reachable(i, j) || net.isDegraded(i) || net.isDegraded(j) {
            c.expectedDead += 1
            return
        }
        c.falseDead += 1
        if firstFalseDead == nil { firstFalseDead = "node \(i) declared node \(j) dead while it is up and reachable" }
        log(i, "FALSE DEAD: declared node \(j) dead while it is up and reachable")
    }

    /// Per live node: members that are alive (or suspect) and up, against the best possible (every
    /// live node, up to the table size less the slots held by nodes that are down).
    func sampleMembership() {
        var up = 0
        for i in life.indices where isLive(i) { up += 1 }
        let cap = scenario.timing.maxMembers
        var aliveSum = 0, wantSum = 0, stale = 0
        var converged = up > 0
        var minKnown = up > 0 ? 1.0 : 0.0
        for (t, table) in peerTables.enumerated() {
            while nodeOfEntry[t].count < table.count {
                nodeOfEntry[t].append(Int32(index(of: table.entry(at: UInt32(nodeOfEntry[t].count)).address) ?? -1))
            }
        }
        for i in 0..<nodes.count where isLive(i) {
            var aliveUp = 0, staleDown = 0
            let nodeOf = nodeOfEntry[i % nodeOfEntry.count]
            // Rows by peer-table index and state: N² rows per sample at N nodes.
            nodes[i].members.forEachEntry { e, state in
                let j = Int(nodeOf[Int(e)])
                guard j >= 0 else { return }
                if isLive(j) {
                    // SWIM: a suspect is still a member (it may refute); only dead, left or
                    // culled ones are out. Under loss some member is suspect somewhere at
                    // almost any instant in a large mesh, and that is not a failure to converge.
                    if state == .alive || state == .suspect { aliveUp += 1 }
                } else {
                    staleDown += 1
                    if state == .alive || state == .suspect { stale += 1 }
                }
            }
            let want = max(0, min(up - 1, cap - staleDown))
            aliveSum += min(aliveUp, want)
            wantSum += want
            if aliveUp < want { converged = false }
            if want > 0 { minKnown = min(minKnown, Double(min(aliveUp, want)) / Double(want)) }
        }
        sampleExtras(minKnown: minKnown)
        let t = Double(now) / 1e9
        let fraction = wantSum == 0 ? 1 : Double(aliveSum) / Double(wantSum)
        series.alive.append([t, fraction])
        series.staleViews.append([t, Double(stale)])
        series.falseDead.append([t, Double(c.falseDead)])
        series.upNodes.append([t, Double(up)])
        let dt = Double(now - lastSampleAt) / 1e9
        if dt > 0 {
            var maxBytes: UInt32 = 0
            for k in intervalBytes.indices { maxBytes = max(maxBytes, intervalBytes[k]); intervalBytes[k] = 0 }
            let perNode = Double(max(1, up)) * dt
            series.msgsPerNode.append([t, Double(intervalMsgs) / perNode])
            series.bytesPerNode.append([t, Double(intervalBytesTotal) / perNode])
            series.maxBytesNode.append([t, Double(maxBytes) / dt])
            intervalMsgs = 0
            intervalBytesTotal = 0
        }
        lastSampleAt = now
        if converged {
            if c.convergedAt == nil, now >= lastJoinAt { c.convergedAt = t }
            for k in heals.indices where heals[k].healedAt == nil { heals[k].healedAt = now }
        }
    }

    func evaluateCrash(_ r: Int) {
        var rec = crashRecords[r]
        var staleNames: [String] = []
        rec.evaluated = true
        if life[rec.node] != .down || incarnation[rec.node] != rec.incarnation {
            rec.skipped = true
        } else {
            let id = nodeIDs[rec.node]
            for (o, inc) in rec.observers {
                let k = Int(o)
                guard isLive(k), incarnation[k] == inc, let m = nodes[k].members[id], m.state != .dead else { continue }
                rec.stale += 1
                if staleNames.count < 5 { staleNames.append("\(k) (\(m.state))") }
            }
        }
        crashRecords[r] = rec
        let who = staleNames.isEmpty ? "" : ": " + staleNames.joined(separator: ", ")
        log(rec.node, "crash deadline: \(rec.skipped ? "restarted before the deadline" : "\(rec.stale) of \(rec.observers.count) observers still see it not dead\(who)")")
    }
}
