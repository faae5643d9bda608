import ArgumentParser
import Foundation
import MeshCore
import Runtime

/// Finds the control socket: --control, else the one the config names, else the packaged and
/// default places (`ControlClient.locate`), saying where it looked when no node answers there.
struct ControlTarget: ParsableArguments {
    @Option(help: "The node's control socket.")
    var control: String?
    @Option(help: "Read the control socket path from this config file.")
    var config: String?
    @Flag(help: "Print JSON.")
    var json = false

    func path() throws -> String {
        if let control { return control }
        if let config {
            guard FileManager.default.isReadableFile(atPath: config) else { throw CLIError("cannot read config file \(config); check the path") }
            guard let p = ConfigLoader.controlPath(ofConfig: config) else { throw CLIError("config error: \(config) is not valid TOML; `iotaf node run --config \(config)` says where") }
            return p
        }
        switch ControlClient.locate() {
        case let .success(p): return p
        case let .failure(why): throw CLIError(why.description)
        }
    }

    func fetch(_ command: String, _ fields: [String: String] = [:], timeoutSeconds: Int = 5) throws -> Data {
        let p = try path()
        let data: Data
        do { data = try ControlClient.request(p, fields.merging(["command": command]) { $1 }, timeoutSeconds: timeoutSeconds) } catch { throw CLIError("\(error)") }
        if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let err = obj["error"] as? String {
            throw CLIError("node at \(p) refused: \(err)")
        }
        return data
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a running node's identity, addresses, uptime and counters.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let data = try target.fetch("status")
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        let s = try JSONDecoder().decode(StatusReport.self, from: data)
        print("node id          \(s.node_id)")
        print("overlay address  \(s.overlay_address)")
        print("network id       \(s.network_id)")
        print("listening on     \(s.listen)")
        print("control socket   \(s.control)")
        print("uptime           \(String(format: "%.1f", s.uptime_s)) s")
        print("members          " + s.members.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        for (i, seed) in s.seeds.enumerated() {
            print((i == 0 ? "seeds            " : "                 ") + SeedLine.render(seed))
        }
        if !s.attributes.isEmpty {
            print("attributes       " + s.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        print("counters")
        for (k, v) in s.counters.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        print("drops (node protocol)")
        for (k, v) in s.drops.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        print("sessions")
        for (k, v) in s.sessions.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        print("drops (sessions)")
        for (k, v) in s.session_drops.sorted(by: { $0.key < $1.key }) where v > 0 { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        if !s.beacon.isEmpty {
            print("beacon (nearest)")
            for (k, v) in s.beacon.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
            print("drops (beacon)")
            for (k, v) in s.beacon_drops.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        }
        ChannelStatus.print(s)
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print a running node's metrics in the Prometheus text format (what [metrics] listen serves at /metrics).")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let data = try target.fetch("metrics")
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let text = obj["metrics"] as? String else {
            throw CLIError("the node answered without metrics (an older iotaf?): \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
    }
}

struct MembersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "members", abstract: "List the members a running node knows.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let data = try target.fetch("members")
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        let members = try JSONDecoder().decode([MemberReport].self, from: data)
        print(MemberTable.render(members))
    }
}

enum MemberTable {
    static func render(_ members: [MemberReport]) -> String {
        var rows = [["NODE", "STATE", "INC", "RTT ms", "ADDRESS", "OVERLAY", "ATTRIBUTES"]]
        for m in members {
            rows.append([String(m.node_id.prefix(16)), m.state, "\(m.incarnation)", m.rtt_ms.map { String(format: "%.2f", $0) } ?? "-", m.address,
                         m.overlay_address, m.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.prefix(24))" }.joined(separator: " ")])
        }
        if members.isEmpty { return "no members yet" }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
        return rows.map { r in r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") }
            .joined(separator: "\n")
    }
}

struct JoinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join", abstract: "Make a running node join the mesh through ADDR (a master or any member) and wait for the outcome.",
        discussion: "Exits 0 once ADDR answered (a session formed: this node is admitted), 1 with the likely reason when it does not answer (another network key, unreachable, wrong port) or when --timeout passes. The node keeps trying either way.")
    @Argument(help: "[IPv6]:port or IPv4:port of a master or a member.")
    var address: String
    @Option(help: "Seconds to wait for the answer.")
    var timeout: Double = 15
    @OptionGroup var target: ControlTarget

    func run() throws {
        guard UnderlayAddress(parsing: address) != nil else { throw CLIError("bad address \"\(address)\": use [IPv6]:port or IPv4:port") }
        let data = try target.fetch("join", ["address": address])
        let joining = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["joining"] as? String ?? address
        if !target.json { FileHandle.standardError.write(Data("joining through \(joining) ...\n".utf8)) }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let status = try JSONDecoder().decode(StatusReport.self, from: target.fetch("status"))
            let seed = status.seeds.last { $0.address == joining }
            if let seed, seed.state != "waiting" {
                if target.json { print(String(decoding: ControlJSON.encode(seed), as: UTF8.self)) }
                guard seed.state == "answered" else { throw CLIError(seed.reason ?? "\(joining) does not answer") }
                if !target.json {
                    print("joined: \(joining) answered" + (seed.answered_after_s.map { " after \($0) s" } ?? "")
                          + "; \(status.members["alive", default: 0]) members alive (`iotaf members` lists them)")
                }
                return
            }
            if Date() >= deadline {
                if target.json, let seed { print(String(decoding: ControlJSON.encode(seed), as: UTF8.self)) }
                throw CLIError("\(joining) has not answered within \(timeout) s; the node keeps trying (`iotaf status` shows the seed)")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }
}

/// One seed in `iotaf status`.
enum SeedLine {
    static func render(_ s: SeedReport) -> String {
        switch s.state {
        case "answered": return "\(s.address) answered" + (s.answered_after_s.map { " after \($0) s" } ?? "")
        case "not_answering": return "\(s.address) NOT ANSWERING (asked \(s.asked_s_ago) s ago): \(s.reason ?? "")"
        default: return "\(s.address) waiting for an answer (asked \(s.asked_s_ago) s ago)"
        }
    }
}

struct LeaveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave", abstract: "Leave the mesh gracefully, then stop the node.",
        discussion: "The mesh marks the node `left` (not `dead`): it is not probed or accused. A node that starts again with the same key joins again with a higher incarnation.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let data = try target.fetch("leave")
        if target.json { print(String(decoding: data, as: UTF8.self)); return }
        print("leaving; the node stops once its neighbours have been told (2 s)")
    }
}

struct AttributesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attributes", abstract: "Show or change a running node's attributes; the mesh learns each new version.",
        discussion: "With no option it prints them. --set and --unset change one key without touching the rest; --clear removes all first. Changes last until the node restarts (then the config's [attributes] and --attribute flags apply).")
    @Option(name: .customLong("set"), help: "KEY=VALUE to add or change (repeatable).")
    var set: [String] = []
    @Option(name: .customLong("unset"), help: "KEY to remove (repeatable).")
    var unset: [String] = []
    @Flag(help: "Remove every attribute (before any --set).")
    var clear = false
    @Argument(help: .hidden)
    var stray: [String] = []
    @OptionGroup var target: ControlTarget

    func run() throws {
        if !stray.isEmpty {
            throw CLIError("`iotaf attributes \(stray.joined(separator: " "))`: give changes as --set KEY=VALUE or --unset KEY (no arguments prints the attributes; --clear removes them all)")
        }
        for p in set {
            guard let eq = p.firstIndex(of: "=") else { throw CLIError("--set \"\(p)\" must be KEY=VALUE") }
            if let problem = AttributeLimits.problem(key: String(p[..<eq]), value: String(p[p.index(after: eq)...])) { throw CLIError("--set \(p.prefix(40)): \(problem)") }
        }
        var fields: [String: String] = [:]
        if clear { fields["clear"] = "true" }
        if !set.isEmpty { fields["put"] = set.joined(separator: "\n") }
        if !unset.isEmpty { fields["unset"] = unset.joined(separator: "\n") }
        let data = try target.fetch("attributes", fields)
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        struct Reply: Decodable { var attributes: [String: String]; var version: UInt32 }
        let r = try JSONDecoder().decode(Reply.self, from: data)
        print(AttributeTable.render(r.attributes, version: r.version))
    }
}

enum AttributeTable {
    static func render(_ attributes: [String: String], version: UInt32) -> String {
        guard !attributes.isEmpty else { return "no attributes (version \(version))" }
        let width = max(3, attributes.keys.map(\.count).max()!)
        return (["KEY".padding(toLength: width, withPad: " ", startingAt: 0) + "  VALUE"]
            + attributes.sorted { $0.key < $1.key }.map { $0.key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.value }
            + ["(version \(version))"]).joined(separator: "\n")
    }
}
