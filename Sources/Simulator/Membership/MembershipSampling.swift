import Foundation
import Gossip
import MeshCore
import Node
import Sessions

/// One peer table's entries as the simulator's nodes (convergence sampling).
struct EntryMap {
    /// The node at each entry's address (-1: none), by entry index.
    var nodeOf: [Int32] = []
    /// Nodes with an entry whose address is not their own node's (no node there, another node's,
    /// or the placeholder the gossip queue interns for an update without an address), and ids
    /// that are no node of the run: their rows are counted one by one. In first-seen order.
    var odd: [NodeID] = []
    var oddSeen: Set<NodeID> = []
}

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
    ///
    /// Counted without walking the N² rows: a table keeps how many of its rows are members
    /// (`MemberTable.memberCount`), and only the rows of "special" nodes can count otherwise than
    /// as a member that is up: nodes that are down or leaving, and nodes with a peer entry whose
    /// address is not their own node's (`EntryMap.odd`). Those rows are looked up one by one and
    /// counted exactly as the walk counts them; the walk remains for a table where that would
    /// cost more. Same figures either way.
    func sampleMembership() {
        // Read once per sample: the checks below run per row, and each read of the class's
        // arrays is an exclusivity check.
        let live = life.indices.map { isLive($0) }
        let up = live.reduce(0) { $0 + ($1 ? 1 : 0) }
        let down = life.indices.filter { !live[$0] }.map { nodeIDs[$0] }
        let cap = scenario.timing.maxMembers
        var aliveSum = 0, wantSum = 0, stale = 0
        var converged = up > 0
        var minKnown = up > 0 ? 1.0 : 0.0
        for t in peerTables.indices { extendEntryMap(t) }
        for i in 0..<nodes.count where live[i] {
            let (aliveUp, staleDown, staleHere) = memberCounts(i, live: live, down: down)
            stale += staleHere
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

    /// Node i's rows whose node is up (alive or suspect: members), rows whose node is down or
    /// leaving, and of those the ones still held as members. `walk`: count row by row (tests
    /// compare the two ways).
    func memberCounts(_ i: Int, live: [Bool], down: [NodeID], walk: Bool = false) -> (aliveUp: Int, staleDown: Int, stale: Int) {
        var aliveUp = 0, staleDown = 0, stale = 0
        let map = entryMaps[i % entryMaps.count]
        let table = nodes[i].members
        /// What one row counts for: its node by its entry's address.
        func add(entry e: UInt32, _ state: MemberState) {
            let j = Int(map.nodeOf[Int(e)])
            guard j >= 0 else { return }
            // SWIM: a suspect is still a member (it may refute); only dead, left or culled ones
            // are out. Under loss some member is suspect somewhere at almost any instant in a
            // large mesh, and that is not a failure to converge.
            let member = state == .alive || state == .suspect
            if live[j] {
                if member { aliveUp += 1 }
            } else {
                staleDown += 1
                if member { stale += 1 }
            }
        }
        if !walk, (down.count + map.odd.count) * 4 < table.count {
            aliveUp = table.memberCount
            func special(_ id: NodeID) {
                guard let (e, state) = table.entryAndState(of: id) else { return }
                if state == .alive || state == .suspect { aliveUp -= 1 }  // taken back from `memberCount`
                add(entry: e, state)
            }
            for id in down { special(id) }
            for id in map.odd where indexOfID[id].map({ live[$0] }) ?? true { special(id) }
        } else {
            table.forEachEntry { e, state in add(entry: e, state) }
        }
        return (aliveUp, staleDown, stale)
    }

    /// Maps the entries peer table `t` gained since the last sample to nodes, and notes the odd ones.
    func extendEntryMap(_ t: Int) {
        let table = peerTables[t]
        while entryMaps[t].nodeOf.count < table.count {
            let e = table.entry(at: UInt32(entryMaps[t].nodeOf.count))
            let j = index(of: e.address)
            entryMaps[t].nodeOf.append(Int32(j ?? -1))
            if j == nil || indexOfID[e.nodeID] != j, entryMaps[t].oddSeen.insert(e.nodeID).inserted {
                entryMaps[t].odd.append(e.nodeID)
            }
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
