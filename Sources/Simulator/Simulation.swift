import Foundation
import MeshCore
import Node

/// The deterministic driver: the same `NodeCore` the libuv runtime runs, on a virtual clock
/// and a virtual network. A run is fully determined by its scenario and seed.
public final class Simulation {
    public let scenario: Scenario
    public let seed: UInt64
    private(set) var nodes: [NodeCore] = []
    private var addresses: [UnderlayAddress] = []
    private var indexOf: [UnderlayAddress: Int] = [:]
    private var wakeAt: [Int64]
    private var queue = EventQueue()
    private var networkRNG: SeededGenerator
    private var now: Int64 = 0
    public private(set) var events: UInt64 = 0

    // Measurements.
    private var sent: UInt64 = 0, delivered: UInt64 = 0, lost: UInt64 = 0, unroutable: UInt64 = 0, bytesSent: UInt64 = 0
    private var falseDead: UInt64 = 0
    private var convergedAt: Double?
    private(set) var aliveSeries: [(Double, Double)] = []
    private var trace: ((String) -> Void)?

    public init(scenario: Scenario, seed: UInt64) {
        self.scenario = scenario
        self.seed = seed
        let root = SeededGenerator(seed: seed)
        networkRNG = root.derived(0x6e65_7477_6f72_6b)
        wakeAt = Array(repeating: -1, count: scenario.nodes)
        let network = NetworkID(bytes: Array(Blake2bSeed.networkBytes(seed: seed)))!
        for i in 0..<scenario.nodes {
            let identity = NodeIdentity.deterministic(runSeed: seed, index: i)
            nodes.append(NodeCore(identity: identity.peer, network: network, timing: scenario.timing, rng: root.derived(UInt64(i) + 1)))
            let addr = Self.virtualAddress(i)
            addresses.append(addr)
            indexOf[addr] = i
        }
    }

    /// Virtual node i lives at [fd51:a7e::i]:7400 (a ULA never routed anywhere).
    static func virtualAddress(_ i: Int) -> UnderlayAddress {
        var ip: [UInt8] = [0xfd, 0x51, 0x0a, 0x7e] + [UInt8](repeating: 0, count: 8)
        ip += [UInt8((i >> 24) & 0xff), UInt8((i >> 16) & 0xff), UInt8((i >> 8) & 0xff), UInt8(i & 0xff)]
        return UnderlayAddress(ip: ip, port: 7400)
    }

    /// Runs to the scenario's end. `progress` is called now and then with (virtual seconds, events).
    public func run(progress: ((Double, UInt64) -> Void)? = nil, trace: ((String) -> Void)? = nil) -> SimReport {
        let wallStart = Date()
        self.trace = trace
        let end = Int64(scenario.durationSeconds * 1e9)
        let sampleStep = Int64(scenario.sampleEverySeconds * 1e9)
        for i in 0..<nodes.count {
            for seedIndex in seedsFor(i) { apply(i, nodes[i].handle(.command(.addSeed(addresses[seedIndex])), now: Instant(nanoseconds: 0))) }
            apply(i, nodes[i].handle(.start, now: Instant(nanoseconds: 0)))
        }
        queue.push(0, .sample)
        while let e = queue.pop(), e.time <= end {
            now = e.time
            events += 1
            switch e.kind {
            case let .deliver(to, from, bytes):
                delivered += 1
                trace?("\(Instant(nanoseconds: now)) deliver \(bytes.count)B \(from) -> node \(to)")
                apply(to, nodes[to].handle(.datagram(from: from, bytes: bytes), now: Instant(nanoseconds: now)))
            case let .wake(node, at):
                guard wakeAt[node] == at else { continue }
                wakeAt[node] = -1
                apply(node, nodes[node].handle(.timer, now: Instant(nanoseconds: now)))
            case .sample:
                sampleMembership()
                if let progress, events > 0 { progress(Double(now) / 1e9, events) }
                queue.push(now + sampleStep, .sample)
            }
        }
        now = end
        sampleMembership()
        return report(wallSeconds: Date().timeIntervalSince(wallStart))
    }

    private func seedsFor(_ i: Int) -> [Int] {
        switch scenario.seeding {
        case "ring": return i == 0 ? [] : [i - 1]
        case let m where m.hasPrefix("random:"):
            let k = Int(m.dropFirst(7)) ?? 1
            guard i > 0 else { return [] }
            var rng = SeededGenerator(seed: seed).derived(0x5eed_0000 &+ UInt64(i))
            return (0..<min(k, i)).map { _ in Int(rng.next() % UInt64(i)) }
        default: return i == 0 ? [] : [0]
        }
    }

    private func apply(_ i: Int, _ outputs: [NodeOutput]) {
        for o in outputs {
            switch o {
            case let .send(to, bytes): transmit(from: i, to: to, bytes: bytes)
            case let .wake(at):
                if wakeAt[i] != at.nanoseconds {
                    wakeAt[i] = at.nanoseconds
                    queue.push(max(at.nanoseconds, now), .wake(node: i, at: at.nanoseconds))
                }
            case let .event(ev):
                if case let .memberStateChanged(id, _, to) = ev, to == .dead {
                    // No node crashes in these scenarios yet, so every death is a false one.
                    falseDead += 1
                    trace?("\(Instant(nanoseconds: now)) node \(i) declared \(id.short) dead")
                }
            }
        }
    }

    private func transmit(from i: Int, to address: UnderlayAddress, bytes: [UInt8]) {
        sent += 1
        bytesSent += UInt64(bytes.count)
        guard let j = indexOf[address] else { unroutable += 1; return }
        let link = scenario.network.links[Scenario.LinkKey(from: i, to: j)]
            ?? Scenario.LinkModel(latencyMs: scenario.network.latencyMs, jitterMs: scenario.network.jitterMs, loss: scenario.network.loss)
        if link.loss > 0, networkRNG.unit() < link.loss { lost += 1; return }
        var latency = link.latencyMs
        if link.jitterMs > 0 { latency += (networkRNG.unit() * 2 - 1) * link.jitterMs }
        let delay = Int64(max(0, latency) * 1e6)
        queue.push(now + delay, .deliver(to: j, from: addresses[i], bytes: bytes))
    }

    /// The share of (observer, member) pairs that are alive, against the best possible.
    private func sampleMembership() {
        let target = min(nodes.count - 1, scenario.timing.maxMembers)
        var alive = 0
        var converged = true
        for n in nodes {
            var a = 0
            for m in n.members.values where m.state == .alive { a += 1 }
            alive += min(a, target)
            if a < target { converged = false }
        }
        let fraction = target == 0 ? 1 : Double(alive) / Double(target * nodes.count)
        let t = Double(now) / 1e9
        aliveSeries.append((t, fraction))
        if converged, convergedAt == nil { convergedAt = t }
    }

    private func report(wallSeconds: Double) -> SimReport {
        var metrics: [String: Double] = [
            "datagrams_sent": Double(sent), "datagrams_delivered": Double(delivered), "datagrams_lost": Double(lost),
            "datagrams_unroutable": Double(unroutable), "bytes_sent": Double(bytesSent),
            "false_dead_declarations": Double(falseDead),
            "alive_fraction_end": aliveSeries.last?.1 ?? 0,
            "convergence_s": convergedAt ?? -1,
            "bytes_per_node_per_s": Double(bytesSent) / Double(max(1, nodes.count)) / scenario.durationSeconds,
        ]
        var drops: UInt64 = 0
        for n in nodes { drops += n.counters.totalDrops }
        metrics["drops_total"] = Double(drops)

        var checks: [SimReport.Check] = []
        for spec in scenario.checks {
            switch spec.kind {
            case "membership_converged":
                let within = spec.withinSeconds ?? scenario.durationSeconds
                if let c = convergedAt {
                    checks.append(.init(name: "membership_converged", passed: c <= within,
                                        detail: "every node saw its full membership alive at \(fmt(c)) s (limit \(fmt(within)) s)"))
                } else {
                    checks.append(.init(name: "membership_converged", passed: false,
                                        detail: "membership never converged in \(fmt(scenario.durationSeconds)) s; alive fraction at end \(fmt(metrics["alive_fraction_end"]!))"))
                }
            case "no_false_dead":
                checks.append(.init(name: "no_false_dead", passed: falseDead == 0, detail: "\(falseDead) dead declarations of live nodes"))
            case "all_alive_at_end":
                let f = aliveSeries.last?.1 ?? 0
                checks.append(.init(name: "all_alive_at_end", passed: f >= 1, detail: "alive fraction at end \(fmt(f))"))
            default: break
            }
        }
        return SimReport(scenario: scenario.name, seed: seed, nodes: nodes.count, virtual_seconds: scenario.durationSeconds,
                         wall_seconds: wallSeconds, events: events, metrics: metrics, checks: checks,
                         series: ["alive_fraction": aliveSeries.map { [$0.0, $0.1] }])
    }

    private func fmt(_ d: Double) -> String { String(format: "%.3f", d) }
}

enum Blake2bSeed {
    /// The simulated mesh's network id, from the seed, so runs with different seeds are different meshes.
    static func networkBytes(seed: UInt64) -> [UInt8] {
        var g = SeededGenerator(seed: seed ^ 0x6e65_7469_64)
        var out: [UInt8] = []
        for _ in 0..<2 { let v = g.next(); for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8((v >> UInt64(s)) & 0xff)) } }
        return out
    }
}
