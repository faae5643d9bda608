import Gossip
import MeshCore
import Node

/// The floors as measurements: how many gossip rounds a join, leave or cull takes to reach
/// 99.9 % of live nodes; steady-state traffic per node and the largest datagram; whether the
/// survivors' active views form one overlay after a mass crash or a heal; how much of the mesh
/// every node knows (walk discovery).
extension Simulation {
    /// A node that leaves stays up this long after telling the mesh, so its goodbyes (and the
    /// handshakes some of them need) go out; then it stops.
    static let leaveLingerSeconds = 2.0
    /// The share of live nodes a dissemination must reach.
    static let spreadTarget = 0.999

    struct Spread {
        enum Kind: String, CaseIterable { case join, leave, cull }
        var kind: Kind
        var subject: Int
        var at: Int64
        /// Per node: its incarnation when the event fired (UInt32.max: not an observer).
        var observerIncarnation: [UInt32]
        /// When each observer first learned it (-1: not yet).
        var learnedAt: [Int64]
    }

    /// Bytes per node at the start of the steady-state window.
    struct TrafficWindow {
        var startAt: Int64?
        var bytes: [UInt64] = []
        var incarnation: [UInt32] = []
    }

    /// Connected components of the live nodes' active views (as an undirected graph).
    struct OverlayTrack {
        /// The last mass event (a crash firing or a heal) the overlay must recover from.
        var disruptedAt: Int64 = 0
        /// The first sample at or after `disruptedAt` with one component.
        var connectedAt: Int64?
        var components = 0
    }

    func startSpread(_ kind: Spread.Kind, subject: Int, excluding: [Int]) {
        var inc = Array(repeating: UInt32.max, count: nodes.count)
        let id = nodeIDs[subject]
        for i in 0..<nodes.count where isLive(i) {
            // A leave is news only to nodes that hold the leaver as a member (a node that never
            // heard of it has nothing to update); joins and culls are news to everyone.
            if kind == .leave, nodes[i].members[id].map({ $0.state == .alive || $0.state == .suspect }) != true { continue }
            inc[i] = incarnation[i]
        }
        for i in excluding { inc[i] = .max }
        spreads.append(Spread(kind: kind, subject: subject, at: now, observerIncarnation: inc,
                              learnedAt: Array(repeating: -1, count: nodes.count)))
    }

    /// Called for every event a node reports while some dissemination is being tracked.
    func noteSpread(observer i: Int, _ ev: NodeEvent) {
        let kind: Spread.Kind, id: NodeID
        switch ev {
        case let .memberAdded(m, _): kind = .join; id = m
        case let .memberStateChanged(m, _, to, _):
            switch to {
            case .alive: kind = .join
            case .left: kind = .leave
            case .culled: kind = .cull
            default: return
            }
            id = m
        default: return
        }
        guard let subject = indexOfID[id] else { return }
        for k in spreads.indices where spreads[k].subject == subject && spreads[k].kind == kind
            && spreads[k].learnedAt[i] < 0 && spreads[k].observerIncarnation[i] == incarnation[i] {
            spreads[k].learnedAt[i] = now
        }
    }

    /// Gossip rounds until 99.9 % of the observers still live (same incarnation) knew; nil: never.
    func spreadRounds(_ s: Spread) -> (rounds: Double?, reached: Int, observers: Int) {
        var times: [Int64] = []
        for i in 0..<nodes.count where s.observerIncarnation[i] == incarnation[i] && isLive(i) {
            times.append(s.learnedAt[i] < 0 ? .max : s.learnedAt[i])
        }
        guard !times.isEmpty else { return (0, 0, 0) }
        times.sort()
        let need = Int((Self.spreadTarget * Double(times.count)).rounded(.up))
        let reached = times.filter { $0 != .max }.count
        let t = times[need - 1]
        guard t != .max else { return (nil, reached, times.count) }
        let round = Double(scenario.timing.gossipInterval.nanoseconds)
        return (Double(t - s.at) / round, reached, times.count)
    }

    /// A join's admission: gossip rounds from the event until the first observer (in practice the
    /// master) learned of the newcomer; the rest of `spreadRounds` is dissemination. Nil: never.
    func admissionRounds(_ s: Spread) -> Double? {
        var first = Int64.max
        for i in 0..<nodes.count where s.observerIncarnation[i] == incarnation[i] && s.learnedAt[i] >= 0 {
            first = min(first, s.learnedAt[i])
        }
        guard first != .max else { return nil }
        return Double(first - s.at) / Double(scenario.timing.gossipInterval.nanoseconds)
    }

    func markDisruption() {
        overlay.disruptedAt = now
        overlay.connectedAt = nil
    }

    /// Where the steady-state traffic window starts: `traffic_within`'s `from_s`, else half the run.
    var trafficWindowStart: Int64 { trafficFrom ?? Self.nanos(scenario.durationSeconds / 2) }

    /// The share of the live mesh every node must know for discovery (`discovered_within`'s `fraction`).
    var discoveryFraction: Double { discoveryFractionOverride ?? 0.9 }

    /// Per sample: traffic window start, overlay components, discovery progress.
    func sampleExtras(minKnown: Double) {
        let t = Double(now) / 1e9
        if traffic.startAt == nil, now >= trafficWindowStart {
            traffic.startAt = now
            traffic.bytes = nodeBytes
            traffic.incarnation = incarnation
        }
        overlay.components = overlayComponents()
        series.components.append([t, Double(overlay.components)])
        if overlay.components == 1, overlay.connectedAt == nil { overlay.connectedAt = now }
        minKnownFraction = minKnown
        series.minKnown.append([t, minKnown])
        if discoveredAt == nil, minKnown >= discoveryFraction { discoveredAt = t }
    }

    /// Union–find over live nodes, an edge for every active-view entry between two live nodes.
    func overlayComponents() -> Int {
        var parent = Array(0..<nodes.count)
        func find(_ x: Int) -> Int {
            var r = x
            while parent[r] != r { r = parent[r] }
            var y = x
            while parent[y] != r { let next = parent[y]; parent[y] = r; y = next }
            return r
        }
        for i in 0..<nodes.count where isLive(i) {
            for p in nodes[i].gossip.activeView {
                guard let j = index(of: p.address), isLive(j) else { continue }
                let a = find(i), b = find(j)
                if a != b { parent[a] = b }
            }
        }
        var count = 0
        for i in 0..<nodes.count where isLive(i) && find(i) == i { count += 1 }
        return count
    }

    /// Mean and max bytes per second over the nodes live through the whole steady-state window.
    func steadyTraffic() -> (mean: Double, max: Double, nodes: Int, seconds: Double, busiest: Int) {
        guard let start = traffic.startAt, now > start else { return (-1, -1, 0, 0, -1) }
        let seconds = Double(now - start) / 1e9
        var sum = 0.0, peak = 0.0, n = 0, busiest = -1
        for i in 0..<nodes.count where isLive(i) && traffic.incarnation[i] == incarnation[i] {
            let rate = Double(nodeBytes[i] - traffic.bytes[i]) / seconds
            sum += rate
            if rate > peak { peak = rate; busiest = i }
            n += 1
        }
        return (n == 0 ? -1 : sum / Double(n), n == 0 ? -1 : peak, n, seconds, busiest)
    }

    /// Share of live nodes' active-view neighbours on their own LAN (what `nearest` should raise).
    func sameLanNeighbourFraction() -> Double {
        var same = 0, all = 0
        for i in 0..<nodes.count where isLive(i) {
            for p in nodes[i].gossip.activeView {
                guard let j = index(of: p.address) else { continue }
                all += 1
                if lanOf[j] == lanOf[i] { same += 1 }
            }
        }
        return all == 0 ? -1 : Double(same) / Double(all)
    }

    func measureMetrics(_ m: inout [String: Double]) {
        for kind in Spread.Kind.allCases {
            let mine = spreads.filter { $0.kind == kind }
            let results = mine.map { spreadRounds($0) }
            m["dissemination_\(kind.rawValue)_events"] = Double(mine.count)
            // The slowest event of the kind; -1 when there was none or one never reached 99.9 %.
            m["dissemination_\(kind.rawValue)_rounds"] = results.isEmpty || results.contains { $0.rounds == nil }
                ? -1 : results.map { $0.rounds! }.max()!
            if kind == .join {
                // The slowest admission (first observer told); -1 when one was never admitted.
                let admitted = mine.map { admissionRounds($0) }
                m["dissemination_join_admitted_rounds"] = admitted.isEmpty || admitted.contains { $0 == nil }
                    ? -1 : admitted.map { $0! }.max()!
            }
        }
        let tr = steadyTraffic()
        m["traffic_mean_bytes_per_node_s"] = tr.mean
        m["traffic_max_bytes_per_node_s"] = tr.max
        m["traffic_window_s"] = tr.seconds
        m["largest_datagram_bytes"] = Double(largestDatagram)
        m["overlay_components_end"] = Double(overlay.components)
        m["overlay_connected_s"] = overlay.connectedAt.map { Double($0 - overlay.disruptedAt) / 1e9 } ?? -1
        m["discovered_fraction_s"] = discoveredAt ?? -1
        m["min_known_fraction_end"] = minKnownFraction
        m["same_lan_neighbour_fraction"] = sameLanNeighbourFraction()
        m["leaves"] = Double(c.leaves)
        m["culls"] = Double(c.culls)
    }
}
