import Foundation
import Gossip
import MeshCore
import Node
import Sessions

/// Turning a finished run into the report: metrics (always the same keys for the same
/// workloads, so reports diff cleanly), the checkers' verdicts, and the plot series.
extension Simulation {
    func report(wallSeconds: Double) -> SimReport {
        var drops = retiredDrops
        var gossipDrops = retiredGossipDrops
        var sessionDrops = retiredSessionDrops
        var handshakes = retiredHandshakes
        // Sessions opened per purpose of the message that needed them (live nodes only).
        var opened: [String: UInt64] = [:]
        var initiated: UInt64 = 0
        // What the protocol itself did (live nodes only): why the traffic is what it is.
        let protocolKeys = Self.protocolCounterKeys
        var protocolCounts = [UInt64](repeating: 0, count: protocolKeys.count)
        for i in nodes.indices where life[i] != .waiting {
            for (k, (_, path)) in protocolKeys.enumerated() { protocolCounts[k] += nodes[i].gossip.counters[keyPath: path] }
            for (reason, n) in nodes[i].counters.sessionsOpened { opened[reason, default: 0] += n }
            initiated += nodes[i].sessions.counters.handshakesInitiated - nodes[i].sessions.counters.rekeys
            for (reason, n) in nodes[i].counters.drops { drops[reason, default: 0] += n }
            for (reason, n) in nodes[i].sessions.counters.drops { sessionDrops[reason, default: 0] += n }
            handshakes += nodes[i].sessions.counters.handshakesCompleted
            gossipDrops += nodes[i].gossip.counters.totalDrops
        }
        let detect = c.detectSeconds.sorted()
        let up = life.indices.filter { isLive($0) }.count
        var metrics: [String: Double] = [
            "datagrams_sent": Double(c.sent), "datagrams_delivered": Double(c.delivered), "datagrams_lost": Double(c.lost),
            "datagrams_partitioned": Double(c.partitioned), "datagrams_queue_dropped": Double(c.queueDropped),
            "datagrams_to_down_nodes": Double(c.toDown), "datagrams_unroutable": Double(c.unroutable),
            "datagrams_duplicated": Double(c.duplicated), "datagrams_reordered": Double(net.reordered),
            "bytes_sent": Double(c.bytesSent),
            "bytes_per_node_per_s": Double(c.bytesSent) / Double(max(1, nodes.count)) / scenario.durationSeconds,
            "max_queue_delay_ms": Double(net.maxQueueDelay) / 1e6,
            "byzantine_dropped": Double(c.byzDropped), "byzantine_delayed": Double(c.byzDelayed),
            "byzantine_corrupted": Double(c.byzCorrupted), "byzantine_replayed": Double(c.byzReplayed),
            "byzantine_equivocated": Double(c.byzEquivocated + equivocationTallies.reduce(0) { $0 + $1.lies }),
            "false_dead_declarations": Double(c.falseDead), "expected_dead_declarations": Double(c.expectedDead),
            "crashes": Double(c.crashes), "restarts": Double(c.restarts), "joins": Double(c.joins),
            "crash_detect_p50_s": detect.isEmpty ? -1 : detect[detect.count / 2],
            "crash_detect_max_s": detect.last ?? -1,
            "alive_fraction_end": series.alive.last?[1] ?? 0,
            "stale_views_end": series.staleViews.last?[1] ?? 0,
            "convergence_s": c.convergedAt ?? -1,
            "nodes_up_end": Double(up),
            "gossip_drops_total": Double(gossipDrops),
            // Both layers: what the sessions refused and what the protocol refused after them.
            "drops_total": Double(drops.values.reduce(0, +) + sessionDrops.values.reduce(0, +)),
            "session_drops_total": Double(sessionDrops.values.reduce(0, +)),
            "handshakes_completed": Double(handshakes),
            // 0: the sequential loop; else the width of the parallel windows (ParallelWindow.swift).
            "parallel_lookahead_ms": Double(lookahead) / 1e6,
        ]
        metrics["sessions_initiated"] = Double(initiated)
        for (k, (name, _)) in protocolKeys.enumerated() { metrics["gossip_\(name)"] = Double(protocolCounts[k]) }
        for reason in GossipSendPurpose.allCases.map(\.rawValue) + ["node_probe"] {
            metrics["sessions_opened_\(reason)"] = Double(opened[reason] ?? 0)
        }
        metrics["sessions_opened_unattributed"] = Double(initiated - opened.values.reduce(0, +))
        for reason in SessionDropReason.allCases { metrics["session_drops_\(reason.rawValue)"] = Double(sessionDrops[reason] ?? 0) }
        for reason in DropReason.allCases { metrics["drops_\(reason.rawValue)"] = Double(drops[reason] ?? 0) }
        measureMetrics(&metrics)
        let diskCounters = disk.diskCounters
        metrics["disk_writes"] = Double(diskCounters.writes)
        metrics["disk_syncs"] = Double(diskCounters.syncs)
        metrics["disk_io_errors"] = Double(diskCounters.ioErrors)
        metrics["disk_lost_writes"] = Double(diskCounters.lostWrites)
        metrics["disk_torn_writes"] = Double(diskCounters.tornWrites)
        metrics["cpu_jobs"] = Double(cpu.jobs)
        metrics["cpu_charged_s"] = Double(cpu.charged) / 1e9
        // When the last fault healed (0: no fault; -1: one was still active at the end).
        metrics["faults_healed_s"] = faultsHealedAt.map { Double($0) / 1e9 } ?? -1
        for w in workloads { w.metrics(into: &metrics, self) }
        for (k, a) in agents.enumerated() { a.metrics(into: &metrics, heard: signalsHeard[k], self) }

        let checks = verdicts()
        return SimReport(scenario: scenario.name, seed: seed, nodes: nodes.count, virtual_seconds: scenario.durationSeconds,
                         wall_seconds: wallSeconds, events: events, metrics: metrics, checks: checks,
                         series: ["alive_fraction": series.alive, "messages_per_node_s": series.msgsPerNode,
                                  "bytes_per_node_s": series.bytesPerNode, "max_bytes_one_node_s": series.maxBytesNode,
                                  "stale_views_of_down_nodes": series.staleViews, "false_dead_cumulative": series.falseDead,
                                  "nodes_up": series.upNodes, "markers": series.markers,
                                  "overlay_components": series.components, "min_known_fraction": series.minKnown],
                         timeline: timelineLog)
    }

    static var protocolCounterKeys: [(String, KeyPath<GossipCounters, UInt64>)] {
        [("messages_out", \.messagesOut), ("probes", \.probes), ("indirect_probes", \.indirectProbes),
         ("suspicions_raised", \.suspicionsRaised), ("refutations", \.refutations), ("deaths_averted", \.deathsAverted),
         ("news_pushed", \.newsPushed), ("wide_probes", \.wideProbes), ("exchanges", \.exchanges)]
    }
}
