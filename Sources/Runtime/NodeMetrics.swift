import Channels
import Foundation
import CoreMetrics
import Gossip
import MeshCore
import Node
import Prometheus

/// A node's metrics in the Prometheus text format (`iotaf metrics`, `[metrics] listen`).
///
/// Two kinds of figures, both through swift-metrics handles backed by swift-prometheus:
/// - every counter and gauge of `iotaf status`, copied from the status report at each scrape
///   (the cores keep their counters as plain fields; a scrape every few seconds costs less than a
///   handle call on every datagram), counters advanced by the difference since the last scrape;
/// - latency histograms recorded as their events happen: gossip's probe round trips and users'
///   channel messages from queued to acknowledged.
///
/// Each node has its own registry and factory (swift-metrics' `factory:` initialisers, no global
/// `MetricsSystem.bootstrap`), so a process may run several nodes (tests, `bench`). Names and
/// types are fixed by this file and listed in Docs/operations.md; a name that would change type or
/// labelling (which the registry answers with a fatal error) is skipped and counted instead.
public final class NodeMetrics {
    public let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    /// Histogram buckets for round trips and deliveries: from a LAN's 100 µs to a radio mesh's 10 s.
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let probeRTTName = "iotaf_gossip_probe_rtt_seconds"
    static let deliveryName = "iotaf_channel_delivery_seconds"

    private let cpuSeconds: CoreMetrics.FloatingPointCounter
    private var lastCPU = 0.0
    private let probeRTT: CoreMetrics.Timer
    private let delivery: CoreMetrics.Timer
    /// When each users' channel message was queued, until it is delivered or fails. Bounded: past
    /// `maxTracked` messages in flight the newest go unmeasured (counted) rather than grow memory.
    private var queuedAt: [MessageID: Instant] = [:]
    static let maxTracked = 4096
    public private(set) var deliveriesUnmeasured: UInt64 = 0

    private struct Series: Hashable {
        let name: String
        let labels: [String]
    }
    private enum Kind: Equatable { case counter(labelled: Bool), gauge(labelled: Bool), histogram }
    private var kinds: [String: Kind] = [:]
    private var counters: [Series: (handle: CoreMetrics.Counter, last: UInt64)] = [:]
    private var gauges: [Series: CoreMetrics.Gauge] = [:]
    /// Series refused because their name was already used with another type or labelling.
    public private(set) var skippedSeries: UInt64 = 0

    public init() {
        var f = PrometheusMetricsFactory(registry: registry)
        f.durationHistogramBuckets = [Self.probeRTTName: Self.latencyBuckets, Self.deliveryName: Self.latencyBuckets]
        factory = f
        probeRTT = CoreMetrics.Timer(label: Self.probeRTTName, factory: f)
        delivery = CoreMetrics.Timer(label: Self.deliveryName, factory: f)
        cpuSeconds = CoreMetrics.FloatingPointCounter(label: "iotaf_process_cpu_seconds_total", factory: f)
        kinds[Self.probeRTTName] = .histogram
        kinds[Self.deliveryName] = .histogram
        kinds["iotaf_process_cpu_seconds_total"] = .counter(labelled: false)
    }

    // MARK: - Events

    /// Records what an event measures; called for every core event on the loop thread.
    public func observe(_ event: NodeEvent, now: @autoclosure () -> Instant) {
        switch event {
        case let .membership(.probeRoundTrip(_, rtt)):
            probeRTT.recordNanoseconds(rtt.nanoseconds)
        case let .messageQueued(id, _, _):
            if queuedAt.count < Self.maxTracked { queuedAt[id] = now() } else { deliveriesUnmeasured += 1 }
        case let .messageDelivered(id, _):
            if let t = queuedAt.removeValue(forKey: id) { delivery.recordNanoseconds((now() - t).nanoseconds) }
        case let .messageFailed(id, _, _):
            queuedAt[id] = nil
        default:
            break
        }
    }

    // MARK: - Scrape

    /// The Prometheus text of every metric, after copying in the status report's figures.
    public func render(_ s: StatusReport, consensus: ConsensusReport? = nil) -> String {
        gauge("iotaf_node_info", ["node_id": s.node_id, "overlay_address": s.overlay_address, "network_id": s.network_id, "listen": s.listen], 1)
        gauge("iotaf_uptime_seconds", [:], s.uptime_s)
        let p = ProcessFigures.read()
        if let rss = p.residentBytes { gauge("iotaf_process_resident_memory_bytes", [:], Double(rss)) }
        if p.cpuSeconds > lastCPU { cpuSeconds.increment(by: p.cpuSeconds - lastCPU); lastCPU = p.cpuSeconds }
        for (state, n) in s.members { gauge("iotaf_members", ["state": state], Double(n)) }
        var seedStates = ["waiting": 0, "answered": 0, "not_answering": 0]
        for seed in s.seeds { seedStates[seed.state, default: 0] += 1 }
        for (state, n) in seedStates { gauge("iotaf_seeds", ["state": state], Double(n)) }

        var node = s.counters
        for (key, n) in s.counters where key.hasPrefix("sessions_opened_") {
            node[key] = nil
            counter("iotaf_node_sessions_opened_total", ["purpose": String(key.dropFirst("sessions_opened_".count))], n)
        }
        node["unmeasured_deliveries"] = deliveriesUnmeasured
        node["skipped_metric_series"] = skippedSeries
        section("node", node, gauges: ["udp_gso_enabled"], drops: s.drops)
        section("gossip", s.gossip, gauges: ["incarnation", "awareness", "active_view", "passive_view", "culls", "queued_updates"],
                drops: s.gossip_drops)
        section("sessions", s.sessions, gauges: ["peers"], drops: s.session_drops)
        section("channels", s.channels, gauges: ["peers", "send_buffered_bytes", "receive_buffered_bytes"], drops: s.channel_drops)
        if let fd = s.file_drops { section("files", [:], gauges: [], drops: fd) }
        if !s.beacon.isEmpty {
            section("beacon", s.beacon, gauges: ["interfaces", "port", "private", "interval_ms"], drops: s.beacon_drops)
        }
        var transfers: [String: Int] = [:]
        for t in s.transfers { transfers[t.state, default: 0] += 1 }
        for (state, n) in transfers { gauge("iotaf_file_transfers", ["state": state], Double(n)) }
        if let c = consensus {
            for (k, v) in [("validators", c.validators), ("quorum", c.quorum), ("index", c.index), ("leader", c.leader), ("mempool", c.mempool)] {
                gauge("iotaf_consensus_\(k)", [:], Double(v))
            }
            for (k, v) in [("height", c.height), ("round", c.round), ("last_voted_round", c.last_voted_round), ("high_qc_round", c.high_qc_round)] {
                gauge("iotaf_consensus_\(k)", [:], Double(v))
            }
            gauge("iotaf_consensus_halted", [:], c.halted == nil ? 0 : 1)
            section("consensus", c.counters.mapValues { UInt64(max(0, $0)) }, gauges: [], drops: c.drops.mapValues { UInt64(max(0, $0)) })
        }
        return registry.emitToString()
    }

    /// One status section: `iotaf_SECTION_KEY_total` counters (gauges as `iotaf_SECTION_KEY`) and
    /// its drops as `iotaf_SECTION_drops_total{reason}`. The section's `drops_total` sum is left
    /// out: Prometheus sums the reasons (`sum(iotaf_gossip_drops_total)`).
    private func section(_ name: String, _ values: [String: UInt64], gauges gaugeKeys: Set<String>, drops: [String: UInt64]) {
        for (key, v) in values where key != "drops_total" {
            if gaugeKeys.contains(key) { gauge("iotaf_\(name)_\(key)", [:], Double(v)) } else { counter("iotaf_\(name)_\(key)_total", [:], v) }
        }
        for (reason, n) in drops { counter("iotaf_\(name)_drops_total", ["reason": reason], n) }
    }

    private func admit(_ name: String, _ kind: Kind) -> Bool {
        if let k = kinds[name] { if k == kind { return true }; skippedSeries += 1; return false }
        kinds[name] = kind
        return true
    }

    private func counter(_ name: String, _ labels: [String: String], _ value: UInt64) {
        guard admit(name, .counter(labelled: !labels.isEmpty)) else { return }
        let pairs = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let key = Series(name: name, labels: pairs.map { "\($0.0)=\($0.1)" })
        if let entry = counters[key] {
            let (handle, last) = entry
            // The cores' counters only grow within a life; a smaller value is never expected, and
            // a counter must not go back, so it is then left where it is.
            if value > last { handle.increment(by: Int64(clamping: value - last)); counters[key] = (handle, value) }
        } else {
            let handle = CoreMetrics.Counter(label: name, dimensions: pairs, factory: factory)
            if value > 0 { handle.increment(by: Int64(clamping: value)) }
            counters[key] = (handle, value)
        }
    }

    private func gauge(_ name: String, _ labels: [String: String], _ value: Double) {
        guard admit(name, .gauge(labelled: !labels.isEmpty)) else { return }
        let pairs = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let key = Series(name: name, labels: pairs.map { "\($0.0)=\($0.1)" })
        let handle: CoreMetrics.Gauge
        if let g = gauges[key] {
            handle = g
        } else {
            handle = CoreMetrics.Gauge(label: name, dimensions: pairs, factory: factory)
            gauges[key] = handle
        }
        handle.record(value)
    }
}

/// This process's resident memory (/proc/self/statm) and CPU time (user and system), for the
/// footprint panels; what `bench footprint` reads from outside through /proc/PID.
enum ProcessFigures {
    static func read() -> (residentBytes: UInt64?, cpuSeconds: Double) {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        let cpu = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        var resident: UInt64?
        if let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = text.split(separator: " ")
            if fields.count > 1, let pages = UInt64(fields[1]) { resident = pages * UInt64(sysconf(Int32(_SC_PAGESIZE))) }
        }
        return (resident, cpu)
    }
}
