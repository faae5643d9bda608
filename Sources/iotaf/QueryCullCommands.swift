import ArgumentParser
import Foundation
import MeshCore
import Node
import Runtime

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query", abstract: "Find devices and services by attribute across the mesh; prints who answered and how many hops away.",
        discussion: """
        QUERY is key=value (exact match), key=value* (prefix) or key=*value* (substring); `key=*` matches any value.
        The node sends the query along the mode's path (nearest: to the peers with the lowest RTT; master: flooded \
        over its neighbours; walk: one random walk), at most --hops hops. Every node whose attribute matches answers \
        the asking node directly, also nodes it is not a neighbour of. Answers that arrive within --timeout are printed; \
        the node itself answers with hops 0 when it matches.
        """)
    @Argument(help: "key=value, key=prefix* or key=*substring*.")
    var query: String
    @Option(help: "nearest, master or walk. Default: the node's first discovery mode.")
    var mode: String?
    @Option(help: "Hop limit, 1...255.")
    var hops = 3
    @Option(help: "Seconds to collect answers (at most 60).")
    var timeout = 2.0
    @OptionGroup var target: ControlTarget

    func run() throws {
        guard AttributeQuery(parsing: query) != nil else {
            throw CLIError("bad query \"\(query)\": use key=value (exact), key=value* (prefix) or key=*value* (substring)")
        }
        if let mode, DiscoveryMode(name: mode) == nil { throw CLIError("--mode: unknown mode \"\(mode)\"; use nearest, master or walk") }
        guard (1...255).contains(hops) else { throw CLIError("--hops must be 1...255") }
        guard timeout > 0, timeout <= NodeRuntime.maxQueryTimeout else { throw CLIError("--timeout must be more than 0 and at most \(Int(NodeRuntime.maxQueryTimeout)) s") }
        var fields = ["query": query, "hops": "\(hops)", "timeout": "\(timeout)"]
        if let mode { fields["mode"] = mode }
        let data = try target.fetch("query", fields, timeoutSeconds: Int(timeout.rounded(.up)) + 5)
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        let r = try JSONDecoder().decode(QueryReport.self, from: data)
        guard !r.answers.isEmpty else {
            print("no answers to \(r.query) (\(r.match) match, mode \(r.mode), \(r.hops) hops, \(r.timeout_s) s)")
            return
        }
        var rows = [["NODE", "HOPS", "MATCH", "ADDRESS", "OVERLAY"]]
        for a in r.answers { rows.append([String(a.node_id.prefix(16)), "\(a.hops)", "\(a.key)=\(a.value)", a.address, a.overlay_address]) }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
        for row in rows { print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")) }
        print("\(r.answers.count) answer\(r.answers.count == 1 ? "" : "s") to \(r.query) (\(r.match) match, mode \(r.mode), \(r.hops) hops)")
    }
}

struct CullCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cull", abstract: "Remove a node from the mesh for good with an admin-signed cull.",
        discussion: """
        The admin key is an identity file from `iotaf keygen`; nodes obey culls signed by the public keys in their \
        [gossip] admin_keys (or --admin-key). This command signs the cull here (the secret key never reaches the node) \
        and hands it to the node at --control, which checks it and spreads it. A culled node is refused by every node, \
        whatever incarnation it claims, also after a restart; only a new key brings the device back.
        """)
    @Argument(help: "The node to cull: its node id (64 hex digits) or a prefix naming one member.")
    var node: String
    @Option(name: .customLong("admin-key"), help: "The admin's identity key file (secret; from `iotaf keygen`).")
    var adminKey: String
    @OptionGroup var target: ControlTarget

    func run() throws {
        let admin: NodeIdentity
        do { admin = try KeyFile.read(adminKey) } catch { throw CLIError("--admin-key: \(error)") }
        let status = try JSONDecoder().decode(StatusReport.self, from: try target.fetch("status"))
        guard let network = NetworkID(hex: status.network_id) else { throw CLIError("node reported a bad network id \"\(status.network_id)\"") }
        let subject = try resolve(node)
        let issuedAt = UInt64(max(0, Date().timeIntervalSince1970))
        let record = CullRecord.sign(subject: subject, issuedAt: issuedAt, network: network, admin: admin)
        let data = try target.fetch("cull", ["subject": subject.hex, "issued_at": "\(issuedAt)",
                                             "admin_key": record.adminKey.hex, "signature": Hex.encode(record.signature)])
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        let r = try JSONDecoder().decode(CullReply.self, from: data)
        if r.new {
            print("culled \(r.culled); the mesh learns it by gossip — watch `iotaf members`")
        } else {
            print("\(r.culled) was already culled")
        }
    }

    /// A full node id, or a prefix that names exactly one of the node's members.
    private func resolve(_ text: String) throws -> NodeID {
        let t = text.lowercased()
        if let id = NodeID(hex: t) { return id }
        guard !t.isEmpty, t.allSatisfy(\.isHexDigit) else { throw CLIError("\"\(text)\" is not a node id (64 hex digits, or a prefix of one)") }
        let members = try JSONDecoder().decode([MemberReport].self, from: try target.fetch("members"))
        let matches = members.filter { $0.node_id.hasPrefix(t) }
        guard matches.count == 1, let id = NodeID(hex: matches[0].node_id) else {
            throw CLIError(matches.isEmpty ? "no member's node id starts with \"\(text)\"; check `iotaf members` or give the full id"
                                           : "\"\(text)\" matches \(matches.count) members; give more digits")
        }
        return id
    }
}
