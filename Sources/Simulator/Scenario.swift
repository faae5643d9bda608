import Foundation
import MeshCore
import Node
import TOMLKit

/// A simulation scenario, read from TOML. Simulations/README.md documents the format.
public struct Scenario: Sendable {
    public var name = "unnamed"
    public var nodes = 10
    public var durationSeconds = 60.0
    public var network = NetworkModel()
    /// How each node is seeded: "first" (every node knows node 0), "ring" (node i knows i-1), "random:K".
    public var seeding = "first"
    public var timing = NodeTiming()
    public var checks: [CheckSpec] = []
    /// Seconds between membership samples for convergence tracking and plots.
    public var sampleEverySeconds = 1.0

    public init() {}

    public struct NetworkModel: Sendable {
        public var latencyMs = 10.0
        public var jitterMs = 0.0
        public var loss = 0.0
        /// Per-link overrides, keyed by (from, to) node index, in both directions when `symmetric`.
        public var links: [LinkKey: LinkModel] = [:]
        public init() {}
    }

    public struct LinkKey: Hashable, Sendable { public var from: Int; public var to: Int }
    public struct LinkModel: Sendable, Equatable { public var latencyMs: Double; public var jitterMs: Double; public var loss: Double }

    public struct CheckSpec: Sendable, Equatable {
        public var kind: String
        public var withinSeconds: Double?
    }

    public static let checkKinds = ["membership_converged", "no_false_dead", "all_alive_at_end"]
}

public struct ScenarioError: Error, CustomStringConvertible {
    public let description: String
}

extension Scenario {
    public static func load(path: String) throws -> Scenario {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ScenarioError(description: "cannot read scenario \(path); check the path")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> Scenario {
        let t: TOMLTable
        do { t = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ScenarioError(description: "\(file):\(e.source.begin.line): not valid TOML: \(e.description)")
        }
        func fail(_ key: String, _ msg: String) -> ScenarioError { ScenarioError(description: "\(file): \(key): \(msg)") }
        let known: Set = ["name", "nodes", "duration_s", "seeding", "sample_every_s", "network", "timing", "checks", "links"]
        for k in t.keys where !known.contains(k) {
            throw fail(k, "unknown key; known keys are \(known.sorted().joined(separator: ", "))")
        }
        var s = Scenario()
        func num(_ table: TOMLTable, _ k: String, _ path: String) throws -> Double? {
            guard let v = table[k] else { return nil }
            if let i = v.int { return Double(i) }
            if let d = v.double { return d }
            throw fail(path, "must be a number")
        }
        if let v = t["name"] { guard let n = v.string else { throw fail("name", "must be a string") }; s.name = n }
        if let v = t["nodes"] {
            guard let n = v.int, n >= 1, n <= 200_000 else { throw fail("nodes", "must be an integer from 1 to 200000") }
            s.nodes = n
        }
        if let d = try num(t, "duration_s", "duration_s") {
            guard d > 0 else { throw fail("duration_s", "must be positive") }
            s.durationSeconds = d
        }
        if let d = try num(t, "sample_every_s", "sample_every_s") {
            guard d > 0 else { throw fail("sample_every_s", "must be positive") }
            s.sampleEverySeconds = d
        }
        if let v = t["seeding"] {
            guard let m = v.string, m == "first" || m == "ring" || (m.hasPrefix("random:") && Int(m.dropFirst(7)).map { $0 > 0 } == true) else {
                throw fail("seeding", "must be \"first\", \"ring\" or \"random:K\"")
            }
            s.seeding = m
        }
        if let n = t["network"]?.table {
            for k in n.keys where !["latency_ms", "jitter_ms", "loss"].contains(k) { throw fail("network.\(k)", "unknown key; known: latency_ms, jitter_ms, loss") }
            if let v = try num(n, "latency_ms", "network.latency_ms") { guard v >= 0 else { throw fail("network.latency_ms", "must be >= 0") }; s.network.latencyMs = v }
            if let v = try num(n, "jitter_ms", "network.jitter_ms") { guard v >= 0 else { throw fail("network.jitter_ms", "must be >= 0") }; s.network.jitterMs = v }
            if let v = try num(n, "loss", "network.loss") { guard v >= 0, v <= 1 else { throw fail("network.loss", "must be between 0 and 1") }; s.network.loss = v }
        }
        if let links = t["links"]?.array {
            for (i, item) in links.enumerated() {
                guard let l = item.table, let from = l["from"]?.int, let to = l["to"]?.int, from >= 0, to >= 0, from < s.nodes, to < s.nodes else {
                    throw fail("links[\(i)]", "needs integer from and to, node indices below nodes")
                }
                let model = LinkModel(latencyMs: try num(l, "latency_ms", "links[\(i)].latency_ms") ?? s.network.latencyMs,
                                      jitterMs: try num(l, "jitter_ms", "links[\(i)].jitter_ms") ?? s.network.jitterMs,
                                      loss: try num(l, "loss", "links[\(i)].loss") ?? s.network.loss)
                guard model.loss >= 0, model.loss <= 1 else { throw fail("links[\(i)].loss", "must be between 0 and 1") }
                s.network.links[LinkKey(from: from, to: to)] = model
                if l["symmetric"]?.bool ?? true { s.network.links[LinkKey(from: to, to: from)] = model }
            }
        }
        if let tm = t["timing"]?.table {
            let ms: [String: WritableKeyPath<NodeTiming, Duration>] = [
                "tick_ms": \.tickInterval, "probe_timeout_ms": \.probeTimeout, "suspicion_timeout_ms": \.suspicionTimeout,
                "dead_retry_ms": \.deadRetryInterval, "seed_retry_ms": \.seedRetryInterval,
            ]
            let ints: [String: WritableKeyPath<NodeTiming, Int>] = [
                "probes_per_tick": \.probesPerTick, "suspect_after_misses": \.suspectAfterMisses,
                "max_members": \.maxMembers, "sample_size": \.sampleSize,
            ]
            for k in tm.keys {
                if let kp = ms[k] {
                    guard let v = tm[k]?.int, v > 0 else { throw fail("timing.\(k)", "must be a positive integer") }
                    s.timing[keyPath: kp] = .milliseconds(v)
                } else if let kp = ints[k] {
                    guard let v = tm[k]?.int, v >= 0 else { throw fail("timing.\(k)", "must be a non-negative integer") }
                    s.timing[keyPath: kp] = v
                } else {
                    throw fail("timing.\(k)", "unknown key; known: \((Array(ms.keys) + Array(ints.keys)).sorted().joined(separator: ", "))")
                }
            }
        }
        if let checks = t["checks"]?.array {
            for (i, item) in checks.enumerated() {
                guard let c = item.table, let kind = c["kind"]?.string, Scenario.checkKinds.contains(kind) else {
                    throw fail("checks[\(i)]", "needs kind = one of \(Scenario.checkKinds.joined(separator: ", "))")
                }
                s.checks.append(CheckSpec(kind: kind, withinSeconds: try num(c, "within_s", "checks[\(i)].within_s")))
            }
        }
        return s
    }
}
