import Foundation

/// Gossip membership's checkers: convergence, failure detection, dissemination, traffic, the
/// overlay and discovery. They read what the run measured (Measures.swift, the crash and heal
/// records); the details name what was measured against which limit.
enum MembershipCheckers {
    static let kinds: [CheckerKind] = [
        CheckerKind("membership_converged", phase: .liveness, optional: ["within_s"]) { Converged(spec: $0) },
        CheckerKind("no_false_dead", phase: .safety) { NoFalseDead(spec: $0) },
        CheckerKind("all_alive_at_end", phase: .liveness) { AllAliveAtEnd(spec: $0) },
        CheckerKind("crashed_detected_within", phase: .liveness, required: ["within_s"]) { CrashedDetected(spec: $0) },
        CheckerKind("healed_within", phase: .liveness, required: ["within_s"]) { HealedWithin(spec: $0) },
        CheckerKind("disseminated_within", phase: .liveness, required: ["within_rounds"]) { Disseminated(spec: $0) },
        CheckerKind("traffic_within", phase: .liveness, required: ["max_bytes"], optional: ["from_s"],
                    hint: "per node per second") { TrafficWithin(spec: $0) },
        CheckerKind("datagram_fits", phase: .safety, optional: ["max_bytes"]) { DatagramFits(spec: $0) },
        CheckerKind("overlay_connected_within", phase: .liveness, required: ["within_s"]) { OverlayConnected(spec: $0) },
        CheckerKind("discovered_within", phase: .liveness, required: ["within_s"], optional: ["fraction"]) { Discovered(spec: $0) },
    ]
}

private func f(_ d: Double) -> String { String(format: "%.3f", d) }

/// Every live node sees every other live node alive (or suspect), within `within_s` of the last join.
private final class Converged: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let within = spec.withinSeconds ?? sim.scenario.durationSeconds
        let from = Double(sim.lastJoinAt) / 1e9
        let since = from > 0 ? " after the last join at \(f(from)) s" : ""
        if let t = sim.c.convergedAt {
            return .init(name: name, passed: t - from <= within,
                         detail: "every live node saw its full membership alive at \(f(t)) s\(since) (limit \(f(within)) s)")
        }
        return .init(name: name, passed: false,
                     detail: "membership never converged in \(f(sim.scenario.durationSeconds)) s\(since); alive fraction at end \(f(sim.series.alive.last?[1] ?? 0))")
    }
}

/// No node is declared dead while it is up, reachable and honest (outside a fault's grace period).
private final class NoFalseDead: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func violation(_ sim: Simulation) -> String? { sim.c.falseDead > 0 ? (sim.firstFalseDead ?? "a false dead declaration") : nil }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        .init(name: name, passed: sim.c.falseDead == 0,
              detail: "\(sim.c.falseDead) dead declarations of live, reachable, honest nodes (\(sim.c.expectedDead) of crashed, partitioned or faulty ones not counted)")
    }
}

private final class AllAliveAtEnd: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let frac: Double = sim.series.alive.last?[1] ?? 0
        return .init(name: name, passed: frac >= 1, detail: "alive fraction among live nodes at end \(String(format: "%.5f", frac))")
    }
}

/// Every live observer of a crashed node marks it dead within `within_s` (a deadline per crash).
private final class CrashedDetected: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func prepare(_ sim: Simulation) {
        if sim.crashDeadline == nil, let w = spec.withinSeconds { sim.crashDeadline = Simulation.nanos(w) }
    }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let within = spec.withinSeconds ?? 0
        let records = sim.crashRecords
        let done = records.filter { $0.evaluated && !$0.skipped }
        let skipped = records.filter { $0.skipped }.count
        let pending = records.filter { !$0.evaluated }.count
        let stale = done.reduce(0) { $0 + $1.stale }
        let views = done.reduce(0) { $0 + $1.observers.count }
        guard !done.isEmpty else {
            return .init(name: name, passed: false,
                         detail: "no crash could be evaluated (\(records.count) crashes, \(skipped) restarted before \(f(within)) s, \(pending) too close to the end)")
        }
        var detail = "\(done.count) crashes: \(views - stale) of \(views) live observers marked the crashed node dead within \(f(within)) s"
        if let worst = done.max(by: { $0.stale < $1.stale }), worst.stale > 0 {
            detail += "; worst: node \(worst.node) (crashed at \(f(Double(worst.at) / 1e9)) s) still not dead for \(worst.stale)"
        }
        if skipped + pending > 0 { detail += "; \(skipped) restarted before the deadline, \(pending) past the end, not counted" }
        return .init(name: name, passed: stale == 0, detail: detail)
    }
}

/// After every partition heals, membership converges again within `within_s`.
private final class HealedWithin: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let within = spec.withinSeconds ?? 0
        let heals = sim.heals
        guard !heals.isEmpty else { return .init(name: name, passed: false, detail: "no partition healed in this run") }
        var worst = 0.0, never = 0
        for h in heals {
            if let t = h.healedAt { worst = max(worst, Double(t - h.at) / 1e9) } else { never += 1 }
        }
        if never > 0 {
            return .init(name: name, passed: false, detail: "\(never) of \(heals.count) heals never reconverged before the end (limit \(f(within)) s)")
        }
        return .init(name: name, passed: worst <= within,
                     detail: "\(heals.count) heals; membership reconverged at most \(f(worst)) s after a heal (limit \(f(within)) s)")
    }
}

/// Every join, leave and cull reaches 99.9 % of live nodes within `within_rounds` gossip rounds.
private final class Disseminated: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let limit = spec.withinRounds ?? 0
        guard !sim.spreads.isEmpty else { return .init(name: name, passed: false, detail: "no join, leave or cull to measure in this run") }
        var parts: [String] = [], passed = true
        for s in sim.spreads {
            let r = sim.spreadRounds(s)
            let at = f(Double(s.at) / 1e9)
            // A join's time includes the newcomer's own admission (handshake, join): said apart.
            var admission = ""
            if s.kind == .join {
                admission = sim.admissionRounds(s).map { " (admitted after \(String(format: "%.1f", $0)) rounds)" } ?? " (never admitted)"
            }
            if let rounds = r.rounds {
                if rounds > limit { passed = false }
                parts.append("\(s.kind.rawValue) of node \(s.subject) at \(at) s: \(String(format: "%.1f", rounds)) rounds\(admission)")
            } else {
                passed = false
                parts.append("\(s.kind.rawValue) of node \(s.subject) at \(at) s: reached only \(r.reached) of \(r.observers)\(admission)")
            }
        }
        let round = Double(sim.scenario.timing.gossipInterval.nanoseconds) / 1e6
        return .init(name: name, passed: passed,
                     detail: "to 99.9 % of live nodes (limit \(String(format: "%.0f", limit)) rounds of \(String(format: "%.0f", round)) ms): " + parts.joined(separator: "; "))
    }
}

/// Steady-state bytes per second of the busiest node, from `from_s` (default half the run) to the end.
private final class TrafficWithin: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func prepare(_ sim: Simulation) {
        if sim.trafficFrom == nil { sim.trafficFrom = Simulation.nanos(spec.fromSeconds ?? sim.scenario.durationSeconds / 2) }
    }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let limit = spec.maxBytes ?? 0
        let tr = sim.steadyTraffic()
        guard tr.nodes > 0 else { return .init(name: name, passed: false, detail: "no node was live through the steady-state window") }
        return .init(name: name, passed: tr.max <= limit,
                     detail: "from \(f(Double(sim.traffic.startAt ?? 0) / 1e9)) s to the end (\(tr.nodes) nodes): mean \(String(format: "%.0f", tr.mean)) B/s, max \(String(format: "%.0f", tr.max)) B/s per node (node \(tr.busiest)) (limit \(String(format: "%.0f", limit)))")
    }
}

/// No datagram larger than `max_bytes` (default 1,232: the IPv6 minimum MTU less headers) is ever sent.
private final class DatagramFits: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    var limit: Double { spec.maxBytes ?? 1232 }
    func violation(_ sim: Simulation) -> String? {
        Double(sim.largestDatagram) > limit ? "a datagram of \(sim.largestDatagram) B was sent" : nil
    }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        .init(name: name, passed: Double(sim.largestDatagram) <= limit,
              detail: "largest datagram \(sim.largestDatagram) B (limit \(String(format: "%.0f", limit)) B: 1280-byte IPv6 MTU less headers)")
    }
}

/// The live nodes' active views form one overlay within `within_s` of the last mass crash or heal.
private final class OverlayConnected: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let within = spec.withinSeconds ?? 0
        let overlay = sim.overlay
        let from = f(Double(overlay.disruptedAt) / 1e9)
        guard let t = overlay.connectedAt else {
            return .init(name: name, passed: false,
                         detail: "the live nodes' active views never formed one overlay after \(from) s; \(overlay.components) components at the end")
        }
        let took = Double(t - overlay.disruptedAt) / 1e9
        let end = overlay.components == 1
        return .init(name: name, passed: took <= within && end,
                     detail: "one overlay \(f(took)) s after the last crash or heal at \(from) s (limit \(f(within)) s); \(overlay.components) component(s) at the end")
    }
}

/// Every live node knows `fraction` (default 0.9) of the live mesh within `within_s`.
private final class Discovered: Checker {
    let spec: Scenario.CheckSpec
    init(spec: Scenario.CheckSpec) { self.spec = spec }
    func prepare(_ sim: Simulation) {
        if sim.discoveryFractionOverride == nil { sim.discoveryFractionOverride = spec.fraction ?? 0.9 }
    }
    func verdict(_ sim: Simulation) -> SimReport.Check {
        let within = spec.withinSeconds ?? 0
        let frac = sim.discoveryFraction
        guard let t = sim.discoveredAt else {
            return .init(name: name, passed: false,
                         detail: "never did every live node know \(f(frac * 100)) % of the live mesh; least-informed node at the end knew \(f(sim.minKnownFraction * 100)) %")
        }
        return .init(name: name, passed: t <= within,
                     detail: "every live node knew at least \(f(frac * 100)) % of the live mesh at \(f(t)) s (limit \(f(within)) s)")
    }
}
