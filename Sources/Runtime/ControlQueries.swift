import Foundation
import MeshCore
import Node
import Sodium

/// What `iotaf query` gets back: every answer that arrived within the timeout.
public struct QueryReport: Codable, Sendable {
    public var query: String
    /// exact, prefix or substring (from the query's `*` wildcards).
    public var match: String
    public var mode: String
    public var hops: Int
    public var timeout_s: Double
    /// Sorted by hops, then node id. This node answers too (hops 0) when it matches.
    public var answers: [QueryAnswerReport]
}

public struct QueryAnswerReport: Codable, Sendable, Equatable {
    public var node_id: String
    public var overlay_address: String
    /// The underlay address the answer came from.
    public var address: String
    /// How many hops from the asking node the query travelled to reach this node.
    public var hops: Int
    public var key: String
    public var value: String
}

/// What the control socket answers to `cull`.
public struct CullReply: Codable, Sendable {
    public var culled: String
    /// False when this node already held a cull of that node (nothing new was spread).
    public var new: Bool
    /// Whether this node knew the culled node as a member.
    public var was_member: Bool
}

/// One `query` request waiting for its timeout.
final class PendingQuery {
    let report: QueryReport
    let reply: ControlServer.Reply
    var answers: [NodeID: QueryAnswerReport] = [:]
    var timer: LoopTimer?

    init(report: QueryReport, reply: @escaping ControlServer.Reply) {
        self.report = report
        self.reply = reply
    }

    func finish() {
        timer?.close()
        timer = nil
        var r = report
        r.answers = answers.values.sorted { ($0.hops, $0.node_id) < ($1.hops, $1.node_id) }
        reply(Array(ControlJSON.encode(r)))
    }
}

/// Control requests that take time (`query`) or check signatures (`cull`); the others are
/// answered at once by `NodeRuntime.answer`.
extension NodeRuntime {
    /// Longest `query` timeout accepted: the client's socket waits this long plus a margin.
    public static let maxQueryTimeout = 60.0

    func answerLater(_ request: [UInt8], reply: @escaping ControlServer.Reply) {
        let parsed = (try? JSONSerialization.jsonObject(with: Data(request))) as? [String: Any]
        switch parsed?["command"] as? String {
        case "query":
            if let error = startQuery(parsed ?? [:], reply: reply) { reply(Array(ControlJSON.error(error))) }
        case "cull":
            reply(cull(parsed ?? [:]))
        case "ledger_submit":
            startLedgerSubmit(parsed ?? [:], reply: reply)
        case "ledger_history", "ledger_query":
            // A history scan, and a contract's query, run on the thread pool.
            answerLedger(parsed?["command"] as? String ?? "", parsed ?? [:], reply: reply)
        case "meter_record":
            // Answered once the read is durable on this node (the service tells `recorded` then).
            let before = meters?.lastRecorded
            let answer = answerMeter("meter_record", parsed ?? [:])
            guard let read = meters?.lastRecorded, read != before else { reply(answer); return }
            pendingRecords[read.hash] = reply
        default:
            reply(answer(request))
        }
    }

    /// Sends the query into the mesh; answers are collected by `collectAnswer` until the timer
    /// fires. Returns an error message for a bad request.
    private func startQuery(_ fields: [String: Any], reply: @escaping ControlServer.Reply) -> String? {
        guard let text = fields["query"] as? String else { return "query needs \"query\": key=value, key=prefix* or key=*substring*" }
        guard let q = AttributeQuery(parsing: text) else {
            return "bad query \"\(text)\": use key=value (exact), key=value* (prefix) or key=*value* (substring); key at most \(GossipWire.maxKeyLength) bytes, value at most \(GossipWire.maxQueryValueLength)"
        }
        let mode: DiscoveryMode
        if let m = fields["mode"] as? String {
            guard let parsedMode = DiscoveryMode(name: m) else { return "unknown mode \"\(m)\"; use nearest, master or walk" }
            mode = parsedMode
        } else {
            mode = settings.discovery.modes.first ?? .master
        }
        let hopsText = (fields["hops"] as? String) ?? "3"
        guard let hops = Int(hopsText), (1...255).contains(hops) else { return "hops must be 1...255, not \"\(hopsText)\"" }
        let timeoutText = (fields["timeout"] as? String) ?? "2"
        guard let timeout = Double(timeoutText), timeout > 0, timeout <= Self.maxQueryTimeout else {
            return "timeout must be more than 0 and at most \(Int(Self.maxQueryTimeout)) seconds, not \"\(timeoutText)\""
        }
        var id: UInt64 = 0
        for b in Sodium.randomBytes(8) { id = id << 8 | UInt64(b) }
        let report = QueryReport(query: text, match: "\(q.match)", mode: mode.name, hops: hops, timeout_s: timeout, answers: [])
        let pending = PendingQuery(report: report, reply: reply)
        pendingQueries[id] = pending
        let t = LoopTimer(loop: loop) { [unowned self] in
            if let p = pendingQueries.removeValue(forKey: id) { p.finish() }
        }
        pending.timer = t
        t.schedule(at: loop.now + .nanoseconds(Int64(timeout * 1e9)))
        logger.debug("query sent", metadata: ["query": "\(text)", "mode": "\(mode.name)", "hops": "\(hops)"])
        command(.membership(.query(id: id, q, mode: mode, hopLimit: UInt8(hops))))
        return nil
    }

    /// An answer to one of our queries; the nearest answer from each node is kept.
    func collectAnswer(_ id: UInt64, from: NodeID, address: UnderlayAddress, hops: UInt8, pairs: [AttributePair]) {
        guard let p = pendingQueries[id], let pair = pairs.first else { return }
        if let old = p.answers[from], old.hops <= Int(hops) { return }
        p.answers[from] = QueryAnswerReport(node_id: from.hex, overlay_address: OverlayAddress(network: core.network, node: from).description,
                                            address: usableText(address), hops: Int(hops), key: pair.key, value: pair.value)
    }

    /// An address as someone could use it: this node's own answer carries the address it listens
    /// on, `[::]:PORT` on most boxes, shown instead as one of the host's addresses with that port;
    /// a link-local address gets the interface it was heard on (`[fe80::1%eth0]:7400`).
    func usableText(_ address: UnderlayAddress) -> String {
        if address.isUnspecified { return LocalAddresses.usable(for: address).description }
        if address.isLinkLocal, let a = scoped(address) { return a.description }
        return address.description
    }

    /// On stop: every waiting query is answered with what it has.
    func finishPendingQueries() {
        let waiting = pendingQueries.keys.sorted()
        for id in waiting { pendingQueries.removeValue(forKey: id)?.finish() }
    }

    /// Checks an admin-signed cull against this node's admin keys before it is spread, so the
    /// admin hears why a cull would be refused instead of it silently dying in the mesh.
    private func cull(_ fields: [String: Any]) -> [UInt8] {
        func field(_ name: String, bytes: Int) -> [UInt8]? {
            guard let t = fields[name] as? String, let b = Hex.decode(t), b.count == bytes else { return nil }
            return b
        }
        guard let subjectBytes = field("subject", bytes: 32), let subject = NodeID(bytes: subjectBytes),
              let adminBytes = field("admin_key", bytes: 32), let adminKey = PublicKey(raw: adminBytes), let signature = field("signature", bytes: 64),
              let issuedText = fields["issued_at"] as? String, let issuedAt = UInt64(issuedText) else {
            return Array(ControlJSON.error("cull needs \"subject\" (64 hex digits), \"issued_at\" (Unix seconds), \"admin_key\" (64 hex digits) and \"signature\" (128 hex digits); `iotaf cull` writes them"))
        }
        guard subject != identity.nodeID else {
            return Array(ControlJSON.error("node \(subject.short) is this node: a node does not cull itself; hand the cull to another node's control socket"))
        }
        let record = CullRecord(subject: subject, issuedAt: issuedAt, adminKey: adminKey, signature: signature)
        switch record.verify(network: core.network, adminKeys: settings.discovery.adminKeys) {
        case .unknownAdmin?:
            if settings.discovery.adminKeys.isEmpty {
                return Array(ControlJSON.error("this node trusts no admin keys ([gossip] admin_keys or --admin-key), so it refuses every cull"))
            }
            return Array(ControlJSON.error("the cull is signed by key \(adminKey.hex), which is not an admin key this node trusts ([gossip] admin_keys / --admin-key); the mesh refuses it"))
        case .badSignature?:
            return Array(ControlJSON.error("the cull's signature does not verify for network \(core.network) (signed for another network or altered)"))
        case let other?:
            return Array(ControlJSON.error("cull refused: \(other.rawValue)"))
        case nil:
            break
        }
        let isNew = core.gossip.culls[subject] == nil
        let bound = core.gossip.config.maxCulls
        if isNew, core.gossip.culls.count >= bound {
            return Array(ControlJSON.error("cull refused: this node already holds \(core.gossip.culls.count) culls, the most a node keeps (\(bound), Docs/gossip.md); the mesh would refuse it too"))
        }
        let wasMember = core.members[subject] != nil
        if isNew {
            logger.notice("cull accepted", metadata: ["peer": "\(subject.short)", "admin": "\(adminKey.hex.prefix(16))"])
            command(.membership(.cull(record)))
        }
        return Array(ControlJSON.encode(CullReply(culled: subject.hex, new: isNew, was_member: wasMember)))
    }
}
