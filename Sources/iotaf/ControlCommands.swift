import ArgumentParser
import Foundation
import MeshCore
import Runtime

/// Finds the control socket: --control, else the one the config names.
struct ControlTarget: ParsableArguments {
    @Option(help: "The node's control socket.")
    var control: String?
    @Option(help: "Read the control socket path from this config file.")
    var config: String?
    @Flag(help: "Print JSON.")
    var json = false

    func path() throws -> String {
        if let control { return control }
        var s = NodeSettings()
        if let config {
            do { try ConfigLoader.load(path: config, into: &s) } catch { throw CLIError("config error: \(error)") }
        }
        return s.resolvedControlPath
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
    static let configuration = CommandConfiguration(commandName: "join", abstract: "Make a running node join the mesh through ADDR (a master or any member).")
    @Argument(help: "[IPv6]:port or IPv4:port of a master or a member.")
    var address: String
    @OptionGroup var target: ControlTarget

    func run() throws {
        guard UnderlayAddress(parsing: address) != nil else { throw CLIError("bad address \"\(address)\": use [IPv6]:port or IPv4:port") }
        let data = try target.fetch("join", ["address": address])
        if target.json { print(String(decoding: data, as: UTF8.self)); return }
        print("joining through \(address); watch `iotaf members`")
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
        commandName: "attributes", abstract: "Replace a running node's attributes (key=value ...); the mesh learns the new version.")
    @Argument(help: "key=value pairs; none clears the attributes.")
    var pairs: [String] = []
    @OptionGroup var target: ControlTarget

    func run() throws {
        for p in pairs where !p.contains("=") { throw CLIError("attribute \"\(p)\" must be key=value") }
        let data = try target.fetch("attributes", ["set": pairs.joined(separator: "\n")])
        print(String(decoding: data, as: UTF8.self))
    }
}
