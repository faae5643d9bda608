import Channels
import FileTransfer
import Foundation
import MeshCore
import Node
import Sessions

/// The JSON a node's control socket answers with; also what `--json` prints.
public struct StatusReport: Codable, Sendable {
    public var node_id: String
    public var overlay_address: String
    public var network_id: String
    public var listen: String
    public var control: String
    public var uptime_s: Double
    public var attributes: [String: String]
    public var members: [String: Int]
    public var counters: [String: UInt64]
    public var drops: [String: UInt64]
    /// Gossip (membership) counters and view sizes (Docs/gossip.md).
    public var gossip: [String: UInt64]
    /// Gossip messages dropped, by reason.
    public var gossip_drops: [String: UInt64]
    /// Noise session counters and table sizes.
    public var sessions: [String: UInt64]
    /// Datagrams the session layer refused, by reason (before or after authentication).
    public var session_drops: [String: UInt64]
    /// Channel counters (frames, messages, retransmissions, buffers).
    public var channels: [String: UInt64]
    /// Channel frames dropped, by reason (Docs/channels.md).
    public var channel_drops: [String: UInt64]
    /// File transfers: active ones and the last finished ones.
    public var transfers: [TransferReport]
    /// File-transfer messages dropped, by reason (`FileDropReason`).
    public var file_drops: [String: UInt64]?
    /// Mode `nearest`'s LAN beacon: sent, heard (handed to gossip), errors, interfaces joined,
    /// port, interval; empty in the other modes.
    public var beacon: [String: UInt64] = [:]
    /// Beacons received and not handed to gossip, by reason (Docs/gossip.md, "nearest").
    public var beacon_drops: [String: UInt64] = [:]
    /// The addresses this node joins through (peers, masters, `iotaf join`) and whether each answered.
    public var seeds: [SeedReport] = []
}

public struct MemberReport: Codable, Sendable, Equatable {
    public var node_id: String
    public var overlay_address: String
    public var address: String
    /// alive, suspect, dead, left or culled (gossip's view).
    public var state: String
    public var incarnation: UInt32
    public var rtt_ms: Double?
    public var last_heard_s_ago: Double?
    /// The member's attributes as this node holds them (fetched over a channel; may lag).
    public var attributes: [String: String]
}

extension StatusReport {
    init(core: NodeCore, settings: NodeSettings, listen: UnderlayAddress, uptime: Duration, sendErrors: UInt64, receiveErrors: UInt64,
         unclaimedMessages: UInt64, transfers: [TransferReport], files: FileTransferService? = nil) {
        node_id = core.identity.nodeID.hex
        overlay_address = core.overlayAddress.description
        network_id = core.network.description
        self.listen = listen.description
        control = settings.resolvedControlPath
        uptime_s = (uptime.secondsDouble * 1000).rounded() / 1000
        // The live set (`iotaf attributes` may have changed the configured one).
        attributes = Dictionary(core.gossip.attributes.pairs.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        var byState: [String: Int] = [:]
        for s in MemberState.allCases { byState[s.description] = 0 }
        for m in core.members.values { byState[m.state.description, default: 0] += 1 }
        members = byState
        let c = core.counters
        counters = [
            "datagrams_in": c.datagramsIn, "bytes_in": c.bytesIn,
            "datagrams_out": c.datagramsOut, "bytes_out": c.bytesOut,
            "pings_sent": c.probesSent, "pings_answered": c.probesAnswered, "pings_missed": c.probesMissed,
            "reliable_out": c.reliableOut, "reliable_in": c.reliableIn,
            "reliable_failed": c.reliableFailed, "channel_resets_after_timeout": c.channelResetsAfterTimeout,
            "send_errors": sendErrors, "receive_errors": receiveErrors,
            "drops_total": c.totalDrops,
        ]
        for (reason, n) in c.sessionsOpened { counters["sessions_opened_\(reason)"] = n }
        var d: [String: UInt64] = [:]
        for r in DropReason.allCases { d[r.rawValue] = c.drops[r] ?? 0 }
        drops = d
        let g = core.gossip.counters
        gossip = [
            "messages_in": g.messagesIn, "messages_out": g.messagesOut, "bytes_in": g.bytesIn, "bytes_out": g.bytesOut,
            "reliable_out": g.reliableOut, "reliable_bytes_out": g.reliableBytesOut,
            "probes": g.probes, "indirect_probes": g.indirectProbes, "suspicions_raised": g.suspicionsRaised,
            "refutations": g.refutations, "exchanges": g.exchanges, "probes_excused_by_traffic": g.probesExcusedByTraffic,
            "incarnation": UInt64(core.gossip.incarnation), "awareness": UInt64(core.gossip.awareness),
            "active_view": UInt64(core.gossip.activeView.count), "passive_view": UInt64(core.gossip.passiveView.count),
            "culls": UInt64(core.gossip.culls.count), "queued_updates": UInt64(core.gossip.queuedUpdates),
            // Culls written to the store, and stored culls refused at start (GossipService); writes
            // that failed and the sends they dropped.
            "cull_writes": core.membership.counters.cullWrites, "bad_cull_records": core.membership.counters.badCullRecords,
            "failed_writes": core.membership.counters.failedWrites, "dropped_sends": core.membership.counters.droppedSends,
            // Peer snapshots left unwritten because nothing changed (an idle node writes nothing).
            "peer_snapshots_unchanged": core.membership.counters.unchangedSnapshotsSkipped,
            "drops_total": g.totalDrops,
        ]
        var gd: [String: UInt64] = [:]
        for r in GossipDropReason.allCases { gd[r.rawValue] = g[r] }
        gossip_drops = gd
        let sc = core.sessions.counters
        let sizes = core.sessions.tableSizes
        sessions = [
            "datagrams_in": sc.datagramsIn, "datagrams_out": sc.datagramsOut,
            "handshakes_initiated": sc.handshakesInitiated, "handshake_retransmits": sc.handshakeRetransmits,
            "handshakes_completed": sc.handshakesCompleted, "handshakes_failed": sc.handshakesFailed,
            "rekeys": sc.rekeys, "cookie_replies_sent": sc.cookieRepliesSent, "cookies_received": sc.cookiesReceived,
            "keepalives_sent": sc.keepalivesSent, "keepalives_received": sc.keepalivesReceived,
            "messages_sent": sc.messagesSent, "messages_delivered": sc.messagesDelivered,
            "messages_queued": sc.messagesQueued, "messages_dropped_on_failure": sc.messagesDroppedOnFailure,
            "stale_session_handshakes": sc.staleSessionHandshakes, "stale_session_confirmations": sc.staleSessionConfirmations,
            "peers": UInt64(sizes.peers), "drops_total": sc.totalDrops,
        ]
        var sd: [String: UInt64] = [:]
        for r in SessionDropReason.allCases { sd[r.rawValue] = sc[r] }
        session_drops = sd
        // Users' data on channels: their messages and their files (the file service's own endpoint).
        let cc = ChannelCounters.sum(core.channels.stats, files?.endpoint.stats)
        let peers = Set(core.channels.peers).union(files?.endpoint.peers ?? [])
        let sendBuffered = core.channels.bufferedSendBytes + (files?.endpoint.bufferedSendBytes ?? 0)
        let receiveBuffered = core.channels.bufferedReceiveBytes + (files?.endpoint.bufferedReceiveBytes ?? 0)
        channels = [
            "frames_in": cc.framesIn, "frames_out": cc.framesOut, "bytes_in": cc.bytesIn, "bytes_out": cc.bytesOut,
            "messages_sent": cc.messagesSent, "messages_delivered": cc.messagesDelivered, "messages_failed": cc.messagesFailed,
            "messages_unclaimed": unclaimedMessages,
            "retransmitted_chunks": cc.retransmittedChunks, "loss_events": cc.lossEvents, "congestion_events": cc.congestionEvents,
            "timeouts": cc.timeouts, "probe_timeouts": cc.probeTimeouts, "probes": cc.probes,
            "resets_sent": cc.resetsSent, "resets_received": cc.resetsReceived,
            "peers": UInt64(peers.count),
            "send_buffered_bytes": UInt64(sendBuffered), "receive_buffered_bytes": receiveBuffered,
            "drops_total": cc.totalDrops,
        ]
        var cd: [String: UInt64] = [:]
        for r in ChannelDropReason.allCases { cd[r.rawValue] = cc.drops(r) }
        channel_drops = cd
        self.transfers = transfers
        if let files {
            var fd: [String: UInt64] = [:]
            for r in FileDropReason.allCases { fd[r.rawValue] = files.counters.drops[r] ?? 0 }
            file_drops = fd
        }
    }
}

extension MemberReport {
    /// Unknown values are written as null rather than left out, so scripts can rely on every key.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(node_id, forKey: .node_id)
        try c.encode(overlay_address, forKey: .overlay_address)
        try c.encode(address, forKey: .address)
        try c.encode(state, forKey: .state)
        try c.encode(incarnation, forKey: .incarnation)
        try c.encode(rtt_ms, forKey: .rtt_ms)
        try c.encode(last_heard_s_ago, forKey: .last_heard_s_ago)
        try c.encode(attributes, forKey: .attributes)
    }

    public init(_ m: Member, network: NetworkID, now: Instant) {
        node_id = m.nodeID.hex
        overlay_address = OverlayAddress(network: network, node: m.nodeID).description
        address = m.address.description
        state = m.state.description
        incarnation = m.incarnation
        rtt_ms = m.rtt.map { ($0.milliseconds * 1000).rounded() / 1000 }
        last_heard_s_ago = m.lastHeard.map { ((now - $0).secondsDouble * 1000).rounded() / 1000 }
        var a: [String: String] = [:]
        for p in m.attributes?.pairs ?? [] { a[p.key] = p.value }
        attributes = a
    }
}

public enum ControlJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) -> Data {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(value)) ?? Data(#"{"error":"encoding failed"}"#.utf8)
    }

    public static func error(_ message: String) -> Data {
        encode(["error": message])
    }
}

extension ChannelCounters {
    /// Two endpoints' counters added up, field by field.
    static func sum(_ a: ChannelCounters, _ b: ChannelCounters?) -> ChannelCounters {
        guard let b else { return a }
        var c = a
        c.framesIn += b.framesIn; c.framesOut += b.framesOut; c.bytesIn += b.bytesIn; c.bytesOut += b.bytesOut
        c.messagesSent += b.messagesSent; c.messagesDelivered += b.messagesDelivered; c.messagesFailed += b.messagesFailed
        c.retransmittedChunks += b.retransmittedChunks; c.lossEvents += b.lossEvents; c.congestionEvents += b.congestionEvents
        c.timeouts += b.timeouts; c.probeTimeouts += b.probeTimeouts; c.probes += b.probes
        c.resetsSent += b.resetsSent; c.resetsReceived += b.resetsReceived
        for (r, n) in b.drops { c.drops[r, default: 0] += n }
        return c
    }
}
