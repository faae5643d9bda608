import Foundation
import MeshCore
import Node
import TOMLKit

extension Scenario {
    public static func load(path: String, registry: SimulationRegistry = .standard) throws -> Scenario {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ScenarioError(description: "cannot read scenario \(path); check the path")
        }
        return try parse(text, file: path, registry: registry)
    }

    /// Check and workload kinds are those of `registry`; each kind says which keys its entry takes.
    public static func parse(_ text: String, file: String, registry: SimulationRegistry = .standard) throws -> Scenario {
        let t: TOMLTable
        do { t = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ScenarioError(description: "\(file):\(e.source.begin.line): not valid TOML: \(e.description)")
        }
        var p = Parser(file: file, registry: registry)
        return try p.scenario(t)
    }
}

/// Reads one scenario table; every error names the file and the key path.
private struct Parser {
    let file: String
    let registry: SimulationRegistry
    var s = Scenario()

    func fail(_ key: String, _ msg: String) -> ScenarioError { ScenarioError(description: "\(file): \(key): \(msg)") }

    func checkKeys(_ table: TOMLTable, _ known: [String], prefix: String) throws {
        for k in table.keys.sorted() where !known.contains(k) {
            throw fail(prefix + k, "unknown key; known keys are \(known.sorted().joined(separator: ", "))")
        }
    }

    func num(_ table: TOMLTable, _ k: String, _ path: String) throws -> Double? {
        guard let v = table[k] else { return nil }
        if let i = v.int { return Double(i) }
        if let d = v.double { return d }
        throw fail(path, "must be a number")
    }

    func probability(_ table: TOMLTable, _ k: String, _ path: String) throws -> Double? {
        guard let v = try num(table, k, path) else { return nil }
        guard v >= 0, v <= 1 else { throw fail(path, "must be between 0 and 1") }
        return v
    }

    func nonNegative(_ table: TOMLTable, _ k: String, _ path: String) throws -> Double? {
        guard let v = try num(table, k, path) else { return nil }
        guard v >= 0 else { throw fail(path, "must be >= 0") }
        return v
    }

    func nodeIndex(_ v: Int, _ path: String) throws -> Int {
        guard v >= 0, v < s.nodes else { throw fail(path, "node index \(v) out of range 0..\(s.nodes - 1)") }
        return v
    }

    /// A list of node indices: an array of integers and "a..b" ranges, or one "a..b" string.
    func nodeList(_ v: any TOMLValueConvertible, _ path: String) throws -> [Int] {
        if let text = v.string { return try range(text, path) }
        guard let arr = v.array else { throw fail(path, "must be a list of node indices or a range \"a..b\"") }
        var out: [Int] = []
        for (i, item) in arr.enumerated() {
            if let n = item.int { out.append(try nodeIndex(n, "\(path)[\(i)]")) }
            else if let text = item.string { out += try range(text, "\(path)[\(i)]") }
            else { throw fail("\(path)[\(i)]", "must be a node index or a range \"a..b\"") }
        }
        return out
    }

    func range(_ text: String, _ path: String) throws -> [Int] {
        let parts = text.components(separatedBy: "..")
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a <= b else {
            throw fail(path, "\"\(text)\" is not a range \"a..b\" (inclusive, a <= b)")
        }
        return Array(try nodeIndex(a, path)...(try nodeIndex(b, path)))
    }

    mutating func scenario(_ t: TOMLTable) throws -> Scenario {
        try checkKeys(t, ["name", "nodes", "duration_s", "seeding", "sample_every_s", "network", "timing", "checks",
                          "links", "events", "storage", "gossip", "start", "workloads"], prefix: "")
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
        if let v = t["start"] {
            guard let m = v.string, m == "cold" || m == "converged" else { throw fail("start", "must be \"cold\" or \"converged\"") }
            s.startConverged = m == "converged"
        }
        if let v = t["seeding"] {
            guard let m = v.string, m == "first" || m == "ring" || (m.hasPrefix("random:") && Int(m.dropFirst(7)).map { $0 > 0 } == true) else {
                throw fail("seeding", "must be \"first\", \"ring\" or \"random:K\"")
            }
            s.seeding = m
        }
        if let v = t["storage"] {
            guard let st = v.table else { throw fail("storage", "must be a table") }
            try checkKeys(st, ["sync_every_s"], prefix: "storage.")
            if let d = try num(st, "sync_every_s", "storage.sync_every_s") {
                guard d > 0 else { throw fail("storage.sync_every_s", "must be positive") }
                s.storageSyncSeconds = d
            }
        }
        if let v = t["network"] {
            guard let n = v.table else { throw fail("network", "must be a table") }
            try network(n)
        }
        if let v = t["links"] {
            guard let links = v.array else { throw fail("links", "must be an array of tables ([[links]])") }
            for (i, item) in links.enumerated() { try link(item, i) }
        }
        if let v = t["timing"] {
            guard let tm = v.table else { throw fail("timing", "must be a table") }
            try timing(tm)
        }
        if let v = t["gossip"] {
            guard let g = v.table else { throw fail("gossip", "must be a table") }
            try checkKeys(g, ["modes", "masters", "admin", "beacon_every_s", "lan_size", "uplink_kbps"], prefix: "gossip.")
            if let v = g["uplink_kbps"] {
                guard let n = v.int, n >= 0 else { throw fail("gossip.uplink_kbps", "must be a non-negative integer (kbit/s; 0: unknown)") }
                s.uplinkKbps = n
            }
            if let v = g["admin"] {
                guard let b = v.bool else { throw fail("gossip.admin", "must be true or false") }
                s.adminKey = b
            }
            if let d = try nonNegative(g, "beacon_every_s", "gossip.beacon_every_s") { s.beaconEverySeconds = d }
            if let v = g["lan_size"] {
                guard let n = v.int, n >= 0 else { throw fail("gossip.lan_size", "must be a non-negative integer (0: a LAN is a region)") }
                s.lanSize = n
            }
            if let mv = g["modes"] {
                guard let arr = mv.array, !arr.isEmpty else { throw fail("gossip.modes", "must be a non-empty array of \"master\", \"walk\", \"nearest\"") }
                s.modes = try arr.map { item in
                    switch item.string {
                    case "master": return .master
                    case "walk": return .walk
                    case "nearest": return .nearest
                    default: throw fail("gossip.modes", "unknown mode; use \"master\", \"walk\" or \"nearest\"")
                    }
                }
            }
            if let mv = g["masters"] {
                guard let arr = mv.array else { throw fail("gossip.masters", "must be an array of node indices") }
                s.masters = try arr.map { item in
                    guard let i = item.int, i >= 0, i < s.nodes else { throw fail("gossip.masters", "every master must be a node index below nodes") }
                    return i
                }
            }
        }
        if let v = t["events"] {
            guard let events = v.array else { throw fail("events", "must be an array of tables ([[events]])") }
            for (i, item) in events.enumerated() { s.timeline.append(try event(item, "events[\(i)]")) }
        }
        if let v = t["checks"] {
            guard let checks = v.array else { throw fail("checks", "must be an array of tables ([[checks]])") }
            for (i, item) in checks.enumerated() { s.checks.append(try check(item, "checks[\(i)]")) }
        }
        if let v = t["workloads"] {
            guard let list = v.array else { throw fail("workloads", "must be an array of tables ([[workloads]])") }
            for (i, item) in list.enumerated() { s.workloads.append(try workload(item, "workloads[\(i)]")) }
        }
        if let k = s.timeline.firstIndex(where: { $0.kind == .cull }), !s.adminKey {
            throw fail("events[\(k)]", "a cull needs an admin key: set admin = true in [gossip]")
        }
        return s
    }

    /// One `[[checks]]` entry: its kind's keys from the registry, each value checked by its meaning.
    func check(_ item: any TOMLValueConvertible, _ path: String) throws -> Scenario.CheckSpec {
        let kinds = registry.checkKinds
        guard let c = item.table, let name = c["kind"]?.string, let kind = registry.checkers[name] else {
            throw fail(path, "needs kind = one of \(kinds.joined(separator: ", "))")
        }
        try checkKeys(c, ["kind"] + kind.required + kind.optional, prefix: "\(path).")
        for k in kind.required where c[k] == nil {
            throw fail("\(path).\(k)", "\(name) needs \(k)" + (kind.hint.isEmpty ? "" : " (\(kind.hint))"))
        }
        var spec = Scenario.CheckSpec(kind: name, withinSeconds: try nonNegative(c, "within_s", "\(path).within_s"),
                                      withinRounds: try nonNegative(c, "within_rounds", "\(path).within_rounds"),
                                      maxBytes: try nonNegative(c, "max_bytes", "\(path).max_bytes"),
                                      fraction: try probability(c, "fraction", "\(path).fraction"),
                                      fromSeconds: try nonNegative(c, "from_s", "\(path).from_s"))
        for k in c.keys.sorted() where !Self.commonCheckKeys.contains(k) {
            guard let v = try num(c, k, "\(path).\(k)") else { continue }
            spec.params[k] = v
        }
        return spec
    }

    /// Keys every check kind reads the same way; any other key of a kind is a number in `params`.
    static let commonCheckKeys = ["kind", "within_s", "within_rounds", "max_bytes", "fraction", "from_s"]

    /// One `[[workloads]]` entry: a kind from the registry and numeric settings it declares.
    func workload(_ item: any TOMLValueConvertible, _ path: String) throws -> Scenario.WorkloadSpec {
        guard let w = item.table, let name = w["kind"]?.string, let kind = registry.workloads[name] else {
            throw fail(path, "needs kind = one of \(registry.workloadKinds.joined(separator: ", "))")
        }
        try checkKeys(w, ["kind"] + kind.required + kind.optional, prefix: "\(path).")
        var spec = Scenario.WorkloadSpec(kind: name)
        for k in kind.required where w[k] == nil { throw fail("\(path).\(k)", "\(name) needs \(k)") }
        for k in w.keys.sorted() where k != "kind" {
            guard let v = try nonNegative(w, k, "\(path).\(k)") else { continue }
            spec.params[k] = v
        }
        return spec
    }

    mutating func network(_ n: TOMLTable) throws {
        try checkKeys(n, ["latency_ms", "jitter_ms", "loss", "duplicate", "reorder", "reorder_ms", "bandwidth_kbps",
                          "queue_limit_ms", "regions", "region_latency_ms", "region_assign"], prefix: "network.")
        if let v = try nonNegative(n, "latency_ms", "network.latency_ms") { s.network.latencyMs = v }
        if let v = try nonNegative(n, "jitter_ms", "network.jitter_ms") { s.network.jitterMs = v }
        if let v = try probability(n, "loss", "network.loss") { s.network.loss = v }
        if let v = try probability(n, "duplicate", "network.duplicate") { s.network.duplicate = v }
        if let v = try probability(n, "reorder", "network.reorder") { s.network.reorder = v }
        if let v = try nonNegative(n, "reorder_ms", "network.reorder_ms") { s.network.reorderMs = v }
        if let v = try nonNegative(n, "bandwidth_kbps", "network.bandwidth_kbps") { s.network.bandwidthKbps = v }
        if let v = try nonNegative(n, "queue_limit_ms", "network.queue_limit_ms") { s.network.queueLimitMs = v }
        if let v = n["region_assign"] {
            guard let a = v.string, a == "blocks" || a == "round_robin" else {
                throw fail("network.region_assign", "must be \"blocks\" or \"round_robin\"")
            }
            s.network.regionAssign = a
        }
        if let v = n["regions"] {
            guard let arr = v.array, arr.count >= 1 else { throw fail("network.regions", "must be a list of region names") }
            s.network.regions = try arr.enumerated().map { i, item in
                guard let name = item.string else { throw fail("network.regions[\(i)]", "must be a string") }
                return name
            }
            let r = s.network.regions.count
            guard let rows = n["region_latency_ms"]?.array, rows.count == r else {
                throw fail("network.region_latency_ms", "needs \(r) rows of \(r) one-way latencies (ms), one per region")
            }
            s.network.regionLatencyMs = try rows.enumerated().map { i, row in
                guard let cells = row.array, cells.count == r else { throw fail("network.region_latency_ms[\(i)]", "needs \(r) numbers") }
                return try cells.enumerated().map { j, c in
                    guard let d = c.double ?? c.int.map(Double.init), d >= 0 else {
                        throw fail("network.region_latency_ms[\(i)][\(j)]", "must be a number >= 0")
                    }
                    return d
                }
            }
        } else if n["region_latency_ms"] != nil {
            throw fail("network.region_latency_ms", "needs network.regions too")
        }
    }

    mutating func link(_ item: any TOMLValueConvertible, _ i: Int) throws {
        let path = "links[\(i)]"
        guard let l = item.table, let from = l["from"]?.int, let to = l["to"]?.int else {
            throw fail(path, "needs integer from and to, node indices below nodes")
        }
        try checkKeys(l, ["from", "to", "latency_ms", "jitter_ms", "loss", "symmetric"], prefix: "\(path).")
        _ = try nodeIndex(from, "\(path).from"); _ = try nodeIndex(to, "\(path).to")
        let model = Scenario.LinkModel(latencyMs: try nonNegative(l, "latency_ms", "\(path).latency_ms") ?? s.network.latencyMs,
                                       jitterMs: try nonNegative(l, "jitter_ms", "\(path).jitter_ms") ?? s.network.jitterMs,
                                       loss: try probability(l, "loss", "\(path).loss") ?? s.network.loss)
        s.network.links[Scenario.LinkKey(from: from, to: to)] = model
        if l["symmetric"]?.bool ?? true { s.network.links[Scenario.LinkKey(from: to, to: from)] = model }
    }

    mutating func timing(_ tm: TOMLTable) throws {
        // The same keys as a node's config file [timing] section (Docs/gossip.md, "Timers").
        let ms: [(String, WritableKeyPath<NodeTiming, Duration>)] = [
            ("probe_interval_ms", \.probeInterval), ("probe_timeout_ms", \.probeTimeout),
            ("gossip_interval_ms", \.gossipInterval), ("suspicion_min_ms", \.suspicionMin),
            ("suspicion_max_ms", \.suspicionMax), ("dead_retry_ms", \.deadRetryInterval), ("join_retry_ms", \.joinRetryInterval),
        ]
        let ints: [(String, WritableKeyPath<NodeTiming, Int>)] = [("max_members", \.maxMembers)]
        for k in tm.keys.sorted() {
            if let kp = ms.first(where: { $0.0 == k })?.1 {
                guard let v = tm[k]?.int, v > 0 else { throw fail("timing.\(k)", "must be a positive integer") }
                s.timing[keyPath: kp] = .milliseconds(v)
            } else if let kp = ints.first(where: { $0.0 == k })?.1 {
                guard let v = tm[k]?.int, v >= 0 else { throw fail("timing.\(k)", "must be a non-negative integer") }
                s.timing[keyPath: kp] = v
            } else {
                throw fail("timing.\(k)", "unknown key; known: \((ms.map(\.0) + ints.map(\.0)).sorted().joined(separator: ", "))")
            }
        }
    }

    func event(_ item: any TOMLValueConvertible, _ path: String) throws -> TimelineEvent {
        guard let e = item.table else { throw fail(path, "must be a table") }
        guard let kindText = e["kind"]?.string, let kind = TimelineEvent.Kind(rawValue: kindText) else {
            throw fail("\(path).kind", "needs kind = one of \(TimelineEvent.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try checkKeys(e, TimelineEvent.commonKeys + TimelineEvent.extraKeys(kind), prefix: "\(path).")
        guard let at = try nonNegative(e, "at_s", "\(path).at_s") else { throw fail("\(path).at_s", "every event needs at_s") }
        var ev = TimelineEvent(kind: kind, atSeconds: at)
        if let v = try num(e, "every_s", "\(path).every_s") {
            guard v > 0 else { throw fail("\(path).every_s", "must be positive") }
            ev.everySeconds = v
        }
        ev.untilSeconds = try nonNegative(e, "until_s", "\(path).until_s")
        if let v = try num(e, "for_s", "\(path).for_s") {
            guard v > 0 else { throw fail("\(path).for_s", "must be positive") }
            guard [.crash, .partition, .degrade, .byzantine, .starve, .disk].contains(kind) else {
                throw fail("\(path).for_s", "only crash, partition, degrade, byzantine, starve and disk events can be undone after for_s")
            }
            ev.forSeconds = v
        }
        let selectors = ["nodes", "count", "fraction"].filter { e[$0] != nil }
        if selectors.count > 1 { throw fail("\(path).\(selectors[1])", "give only one of nodes, count, fraction") }
        if let v = e["nodes"] {
            switch v.string {
            case "all": ev.nodes = .all
            case "crashed": ev.nodes = .crashed
            default: ev.nodes = .list(try nodeList(v, "\(path).nodes"))
            }
        } else if let v = e["count"] {
            guard let c = v.int, c >= 1 else { throw fail("\(path).count", "must be a positive integer") }
            ev.nodes = .count(c)
        } else if let f = try probability(e, "fraction", "\(path).fraction") {
            ev.nodes = .fraction(f)
        } else if kind == .restart {
            ev.nodes = .crashed
        } else if kind == .feed {
            ev.nodes = .all
        } else if [.heal, .honest].contains(kind) || (kind == .partition && e["groups"] != nil)
                    || ([.degrade, .restore].contains(kind) && e["from"] != nil) {
            ev.nodes = .all
        } else {
            throw fail(path, "\(kind.rawValue) needs nodes (list, \"a..b\", \"all\" or \"crashed\"), count or fraction")
        }
        if let v = e["exclude"] { ev.exclude = try nodeList(v, "\(path).exclude") }
        if kind == .join {
            guard case .list = ev.nodes else { throw fail("\(path).nodes", "join needs explicit nodes, so they can wait until then") }
        }
        if let v = e["groups"] {
            guard let arr = v.array, !arr.isEmpty else { throw fail("\(path).groups", "must be a list of node lists") }
            var seen = Set<Int>()
            for (i, g) in arr.enumerated() {
                let list = try nodeList(g, "\(path).groups[\(i)]")
                for n in list where !seen.insert(n).inserted { throw fail("\(path).groups[\(i)]", "node \(n) is in two groups") }
                ev.groups.append(list)
            }
        }
        if let from = e["from"] {
            guard let f = from.int, let to = e["to"]?.int else { throw fail("\(path).from", "a link needs integer from and to") }
            ev.link = Scenario.LinkKey(from: try nodeIndex(f, "\(path).from"), to: try nodeIndex(to, "\(path).to"))
        } else if e["to"] != nil {
            throw fail("\(path).to", "a link needs from as well")
        }
        ev.symmetric = e["symmetric"]?.bool ?? true
        if kind == .degrade {
            ev.model = Scenario.LinkModel(latencyMs: try nonNegative(e, "latency_ms", "\(path).latency_ms") ?? s.network.latencyMs,
                                          jitterMs: try nonNegative(e, "jitter_ms", "\(path).jitter_ms") ?? s.network.jitterMs,
                                          loss: try probability(e, "loss", "\(path).loss") ?? s.network.loss)
        }
        if let v = e["remember_peers"] {
            guard let b = v.bool else { throw fail("\(path).remember_peers", "must be true or false") }
            ev.rememberPeers = b
        }
        if let v = e["behaviour"] {
            guard let text = v.string, let b = TimelineEvent.Behaviour(rawValue: text) else {
                throw fail("\(path).behaviour", "must be one of \(TimelineEvent.Behaviour.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            ev.behaviour = b
        } else if kind == .byzantine {
            throw fail("\(path).behaviour", "byzantine needs behaviour = one of \(TimelineEvent.Behaviour.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let v = try probability(e, "probability", "\(path).probability") { ev.probability = v }
        if let v = try nonNegative(e, "delay_ms", "\(path).delay_ms") { ev.delayMs = v }
        if let v = try nonNegative(e, "max_delay_ms", "\(path).max_delay_ms") {
            guard v >= ev.delayMs else { throw fail("\(path).max_delay_ms", "must be at least delay_ms (\(ev.delayMs))") }
            ev.maxDelayMs = v
        }
        if let v = e["mode"] {
            guard let text = v.string, let m = FaultyDisk.Fault(rawValue: text) else {
                throw fail("\(path).mode", "must be one of \(FaultyDisk.Fault.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            ev.diskFault = m
        } else if kind == .disk {
            throw fail("\(path).mode", "disk needs mode = one of \(FaultyDisk.Fault.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let v = e["via"] {
            guard let n = v.int else { throw fail("\(path).via", "must be a node index") }
            ev.via = try nodeIndex(n, "\(path).via")
        }
        return ev
    }
}
