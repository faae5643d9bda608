import MeshCore

/// The simulated wire between nodes: latency (fixed, jittered, per region or per link), loss,
/// duplication, reordering, uplink bandwidth, partitions and degraded links. It decides, for one
/// datagram, when (and how many times) it arrives; the driver queues the deliveries.
///
/// Every fault source draws from its own generator per sending node, so enabling one fault, or
/// one node sending more, never reshuffles the draws of another.
struct VirtualNetwork {
    struct Streams {
        var loss: SeededGenerator
        var jitter: SeededGenerator
        var duplicate: SeededGenerator
        var reorder: SeededGenerator
    }

    /// What happened to one datagram: nothing (dropped, with the reason), or one or two arrival delays.
    enum Fate {
        case dropped(Drop)
        case arrives(Int64, duplicateAt: Int64?)
    }
    enum Drop { case loss, partition, queue }

    let model: Scenario.NetworkModel
    let nodeCount: Int
    private var streams: [Streams]
    private let region: [Int32]
    /// Partition group of each node; datagrams cross groups never. All zero when healed.
    private(set) var group: [Int32]
    private(set) var partitioned = false
    /// Links changed by `degrade` events; they win over the scenario's static links.
    private var dynamicLinks: [Scenario.LinkKey: Scenario.LinkModel] = [:]
    /// Whole nodes degraded by `degrade` events (every link from or to them).
    private var nodeDegrade: [Scenario.LinkModel?]
    private var degradedNodes = 0
    /// When each node's uplink is free again (bandwidth model).
    private var txFreeAt: [Int64]
    private let nanosPerByte: Double
    private(set) var maxQueueDelay: Int64 = 0
    private(set) var reordered: UInt64 = 0

    init(model: Scenario.NetworkModel, nodes: Int, root: SeededGenerator) {
        self.model = model
        nodeCount = nodes
        streams = (0..<nodes).map { i in
            let base = UInt64(i) << 8
            return Streams(loss: root.derived(0x4C_0000_0000 | base | 1), jitter: root.derived(0x4C_0000_0000 | base | 2),
                           duplicate: root.derived(0x4C_0000_0000 | base | 3), reorder: root.derived(0x4C_0000_0000 | base | 4))
        }
        region = (0..<nodes).map { Int32(model.region(of: $0, nodes: nodes)) }
        group = Array(repeating: 0, count: nodes)
        nodeDegrade = Array(repeating: nil, count: nodes)
        txFreeAt = Array(repeating: 0, count: nodes)
        nanosPerByte = model.bandwidthKbps > 0 ? 8e6 / model.bandwidthKbps : 0
    }

    func regionName(of i: Int) -> String? { model.regions.isEmpty ? nil : model.regions[Int(region[i])] }

    /// The link model from i to j: degraded link, static link, degraded node, region matrix, default.
    func link(_ i: Int, _ j: Int) -> Scenario.LinkModel {
        if !dynamicLinks.isEmpty, let l = dynamicLinks[Scenario.LinkKey(from: i, to: j)] { return l }
        if !model.links.isEmpty, let l = model.links[Scenario.LinkKey(from: i, to: j)] { return l }
        if degradedNodes > 0 {
            if let a = nodeDegrade[i] { return a }
            if let b = nodeDegrade[j] { return b }
        }
        if !model.regionLatencyMs.isEmpty {
            return Scenario.LinkModel(latencyMs: model.regionLatencyMs[Int(region[i])][Int(region[j])],
                                      jitterMs: model.jitterMs, loss: model.loss)
        }
        return Scenario.LinkModel(latencyMs: model.latencyMs, jitterMs: model.jitterMs, loss: model.loss)
    }

    /// Whether i can reach j at all right now (no partition between them, loss below 1).
    func reachable(_ i: Int, _ j: Int) -> Bool {
        group[i] == group[j] && link(i, j).loss < 1 && link(j, i).loss < 1
    }

    func isDegraded(_ i: Int) -> Bool { degradedNodes > 0 && nodeDegrade[i] != nil }

    /// Whether any link or node is degraded right now.
    var anyDegraded: Bool { degradedNodes > 0 || !dynamicLinks.isEmpty }

    mutating func fate(from i: Int, to j: Int, bytes: Int, now: Int64) -> Fate {
        if partitioned, group[i] != group[j] { return .dropped(.partition) }
        let l = link(i, j)
        if l.loss > 0, streams[i].loss.unit() < l.loss { return .dropped(.loss) }
        var delay = latency(l, i)
        if model.reorder > 0, streams[i].reorder.unit() < model.reorder {
            delay += Int64(streams[i].reorder.unit() * model.reorderMs * 1e6)
            reordered += 1
        }
        var depart = now
        if nanosPerByte > 0 {
            let start = max(now, txFreeAt[i])
            let wait = start - now
            if Double(wait) > model.queueLimitMs * 1e6 { return .dropped(.queue) }
            maxQueueDelay = max(maxQueueDelay, wait)
            depart = start + Int64(Double(bytes) * nanosPerByte)
            txFreeAt[i] = depart
        }
        var dup: Int64?
        if model.duplicate > 0, streams[i].duplicate.unit() < model.duplicate { dup = depart - now + latency(l, i) }
        return .arrives(depart - now + delay, duplicateAt: dup)
    }

    private mutating func latency(_ l: Scenario.LinkModel, _ i: Int) -> Int64 {
        var ms = l.latencyMs
        if l.jitterMs > 0 { ms += (streams[i].jitter.unit() * 2 - 1) * l.jitterMs }
        return Int64(max(0, ms) * 1e6)
    }

    // MARK: - Faults

    mutating func partition(_ groups: [Int32]) {
        group = groups
        partitioned = groups.contains { $0 != groups[0] }
    }

    mutating func heal() {
        for i in group.indices { group[i] = 0 }
        partitioned = false
    }

    /// Returns what the link was before, so a later restore puts it back.
    mutating func setLink(_ key: Scenario.LinkKey, _ m: Scenario.LinkModel?) -> Scenario.LinkModel? {
        let old = dynamicLinks[key]
        dynamicLinks[key] = m
        return old
    }

    mutating func setNode(_ i: Int, _ m: Scenario.LinkModel?) {
        if nodeDegrade[i] == nil, m != nil { degradedNodes += 1 }
        if nodeDegrade[i] != nil, m == nil { degradedNodes -= 1 }
        nodeDegrade[i] = m
    }
}
