import Gossip
import MeshCore

/// Applying the scenario's timeline: each firing picks its nodes with a generator of its own
/// (derived from the event's position and firing number), so adding an event to a scenario
/// changes no other event's picks.
extension Simulation {
    func fire(_ k: Int, firing: Int) {
        let e = scenario.timeline[k]
        var rng = root.derived(0x7469_6d65_0000_0000 ^ (UInt64(k) << 24) ^ UInt64(firing))
        let picked = select(e, &rng)
        var what = "\(e.kind.rawValue) \(Self.listNodes(picked))"
        var revert: Revert?
        switch e.kind {
        case .join:
            let joining = picked.filter { life[$0] == .waiting }
            for i in joining { startSpread(.join, subject: i, excluding: joining) }
            for i in joining { boot(i, remembered: []); c.joins += 1 }
            lastJoinAt = now
            c.convergedAt = nil
        case .leave:
            // Graceful: the node tells the mesh it leaves, and stops once its goodbyes are out.
            let going = picked.filter { isLive($0) }
            for i in going { leaving[i] = true }
            for i in going { startSpread(.leave, subject: i, excluding: going) }
            for i in going {
                c.leaves += 1
                apply(i, nodes[i].handle(.command(.membership(.leave)), now: Instant(nanoseconds: now)))
                queue.push(now + Self.nanos(Self.leaveLingerSeconds), .stop(node: Int32(i), incarnation: incarnation[i]))
            }
        case .crash:
            for i in picked { crash(i) }
            markDisruption()
            revert = .restart(picked, remember: true)
        case .cull:
            let subjects = picked.filter { isLive($0) }
            var isSubject = Array(repeating: false, count: nodes.count)
            for i in subjects { isSubject[i] = true }
            guard let admin, let via = e.via.flatMap({ isLive($0) && !isSubject[$0] ? $0 : nil })
                    ?? (0..<nodes.count).first(where: { isLive($0) && !isSubject[$0] }) else {
                what = "cull: no admin key or no live node to hand it to"
                break
            }
            for i in subjects { startSpread(.cull, subject: i, excluding: subjects) }
            for i in subjects {
                c.culls += 1
                let record = CullRecord.sign(subject: nodeIDs[i], issuedAt: UInt64(now / 1_000_000_000) + 1, network: networkID, admin: admin)
                apply(via, nodes[via].handle(.command(.membership(.cull(record))), now: Instant(nanoseconds: now)))
            }
            // The culled devices are switched off: a cull is meant for nodes removed for good.
            for i in subjects { shutDown(i, crashRecord: false) }
            what = "cull \(Self.listNodes(subjects)) via node \(via)"
        case .starve:
            let lo = e.delayMs, hi = e.maxDelayMs ?? e.delayMs
            for i in picked { cpu.starve(i, delay: Self.nanos((lo + rng.unit() * (hi - lo)) / 1000)) }
            what += String(format: " input delayed %.0f–%.0f ms", lo, hi)
            revert = .feed(picked)
        case .feed:
            for i in picked { cpu.feed(i) }
        case .disk:
            for i in picked {
                disk.arm(e.diskFault, on: i)
                // A node that cannot persist cannot speak (its sends wait for its writes): its
                // peers rightly declare it dead until the disk is healthy again and a grace after.
                if e.diskFault == .ioError { disturbedUntil[i] = .max }
            }
            what += " \(e.diskFault.rawValue)"
            revert = .repairDisks(picked, e.diskFault)
        case .restart:
            for i in picked { restart(i, remember: e.rememberPeers) }
            if !e.rememberPeers { what += " (peer store wiped)" }
        case .partition:
            var g = Array(repeating: Int32(0), count: nodes.count)
            if e.groups.isEmpty {
                for i in picked { g[i] = 1 }
            } else {
                for (n, members) in e.groups.enumerated() { for i in members { g[i] = Int32(n + 1) } }
                what = "partition into \(e.groups.count) groups (" + e.groups.map { Self.listNodes($0) }.joined(separator: " | ") + ") and the rest"
            }
            net.partition(g)
            revert = .heal
        case .heal:
            healNow()
            what = "heal"
        case .degrade:
            if let link = e.link {
                var undo: [(Scenario.LinkKey, Scenario.LinkModel?)] = [(link, net.setLink(link, e.model))]
                if e.symmetric {
                    let back = Scenario.LinkKey(from: link.to, to: link.from)
                    undo.append((back, net.setLink(back, e.model)))
                }
                what = "degrade link \(link.from)→\(link.to)\(e.symmetric ? " both ways" : "")"
                revert = .restoreLinks(undo)
            } else {
                for i in picked { net.setNode(i, e.model) }
                revert = .restoreNodes(picked)
            }
            if let m = e.model { what += String(format: " to latency %.1f ms, jitter %.1f ms, loss %.3f", m.latencyMs, m.jitterMs, m.loss) }
        case .restore:
            if let link = e.link {
                var undo: [(Scenario.LinkKey, Scenario.LinkModel?)] = [(link, nil)]
                if e.symmetric { undo.append((Scenario.LinkKey(from: link.to, to: link.from), nil)) }
                restoreLinks(undo)
                what = "restore link \(link.from)→\(link.to)"
            } else {
                restoreNodes(picked)
            }
        case .byzantine:
            for i in picked {
                byzantine[i] = Byzantine(e, rng: root.derived(0x6279_7a00_0000_0000 ^ (UInt64(i) << 20) ^ UInt64(k)))
                serviceLies[i].behaviour = e.behaviour
                if e.behaviour == .equivocate {
                    let tally = Equivocator.Tally()
                    equivocationTallies.append(tally)
                    nodes[i].gossipRewriter = Equivocator(addresses: addresses, rng: root.derived(0x6571_7569_0000_0000 ^ (UInt64(i) << 20) ^ UInt64(k)),
                                                          tally: tally)
                }
            }
            what += " \(e.behaviour.rawValue) p=\(e.probability)"
            revert = .honest(picked)
        case .honest:
            for i in picked { byzantine[i] = nil; serviceLies[i].behaviour = nil; nodes[i].gossipRewriter = nil; disturbedUntil[i] = now + grace }
        }
        note(what)
        if let r = revert, let d = e.forSeconds {
            reverts.append(r)
            queue.push(now + Self.nanos(d), .revert(slot: Int32(reverts.count - 1)))
        }
        if let every = e.everySeconds {
            let next = Self.nanos(e.atSeconds + Double(firing + 1) * every)
            if next <= Self.nanos(e.untilSeconds ?? scenario.durationSeconds) {
                queue.push(next, .timeline(index: Int32(k), firing: Int32(firing + 1)))
            }
        }
    }

    func undo(_ slot: Int) {
        switch reverts[slot] {
        case let .restart(list, remember):
            for i in list { restart(i, remember: remember) }
            note("restart \(Self.listNodes(list)) (end of crash)")
        case .heal:
            healNow()
            note("heal (end of partition)")
        case let .restoreLinks(undo):
            restoreLinks(undo)
            note("restore links (end of degrade)")
        case let .restoreNodes(list):
            restoreNodes(list)
            note("restore \(Self.listNodes(list)) (end of degrade)")
        case let .honest(list):
            for i in list { byzantine[i] = nil; serviceLies[i].behaviour = nil; disturbedUntil[i] = now + grace }
            note("honest \(Self.listNodes(list)) (end of byzantine)")
        case let .feed(list):
            for i in list { cpu.feed(i) }
            note("feed \(Self.listNodes(list)) (end of starvation)")
        case let .repairDisks(list, fault):
            for i in list {
                disk.disarm(fault, on: i)
                if fault == .ioError { disturbedUntil[i] = now + grace }
            }
            note("disk \(Self.listNodes(list)) healthy again (end of \(fault.rawValue))")
        }
    }

    private func healNow() {
        guard net.partitioned else { return }
        net.heal()
        markDisruption()
        everyoneDisturbedUntil = now + grace
        heals.append(HealRecord(at: now, healedAt: nil))
    }

    private func restoreLinks(_ undo: [(Scenario.LinkKey, Scenario.LinkModel?)]) {
        for (key, old) in undo {
            _ = net.setLink(key, old)
            disturbedUntil[key.from] = now + grace
            disturbedUntil[key.to] = now + grace
        }
    }

    private func restoreNodes(_ list: [Int]) {
        for i in list { net.setNode(i, nil); disturbedUntil[i] = now + grace }
    }

    private func note(_ what: String) {
        trackFaults()
        let line = String(format: "%.3fs ", Double(now) / 1e9) + what
        timelineLog.append(line)
        series.markers.append([Double(now) / 1e9])
        log(nil, "TIMELINE " + what)
    }

    /// The nodes an event applies to, in ascending order.
    func select(_ e: TimelineEvent, _ rng: inout SeededGenerator) -> [Int] {
        let eligible: (Int) -> Bool
        switch e.kind {
        case .join: eligible = { self.life[$0] == .waiting }
        case .leave, .crash, .cull, .starve: eligible = { self.isLive($0) }
        case .restart: eligible = { self.life[$0] == .down }
        default: eligible = { _ in true }
        }
        var excluded = Array(repeating: false, count: nodes.count)
        for i in e.exclude { excluded[i] = true }
        var candidates: [Int] = []
        for i in 0..<nodes.count where !excluded[i] && eligible(i) { candidates.append(i) }
        switch e.nodes {
        case let .list(l):
            var want = Array(repeating: false, count: nodes.count)
            for i in l { want[i] = true }
            return candidates.filter { want[$0] }
        case .all:
            return candidates
        case .crashed:
            return candidates.filter { life[$0] == .down }
        case let .count(n):
            return Self.pick(min(n, candidates.count), from: candidates, &rng)
        case let .fraction(f):
            return Self.pick(Int((f * Double(candidates.count)).rounded()), from: candidates, &rng)
        }
    }

    /// k distinct elements by a partial Fisher–Yates shuffle, returned sorted.
    static func pick(_ k: Int, from candidates: [Int], _ rng: inout SeededGenerator) -> [Int] {
        var a = candidates
        for n in 0..<k {
            let r = n + Int(rng.next() % UInt64(a.count - n))
            a.swapAt(n, r)
        }
        return a.prefix(k).sorted()
    }

    static func listNodes(_ l: [Int]) -> String {
        if l.isEmpty { return "no nodes" }
        let shown = l.prefix(12).map(String.init).joined(separator: ",")
        return l.count > 12 ? "nodes \(shown),… (\(l.count) nodes)" : (l.count == 1 ? "node \(shown)" : "nodes \(shown)")
    }
}
