import ArgumentParser
import Foundation
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

    func fetch(_ command: String) throws -> Data {
        let p = try path()
        let data: Data
        do { data = try ControlClient.request(p, ["command": command]) } catch { throw CLIError("\(error)") }
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
        var rows = [["NODE", "STATE", "RTT ms", "ADDRESS", "OVERLAY"]]
        for m in members {
            rows.append([String(m.node_id.prefix(16)), m.state, m.rtt_ms.map { String(format: "%.2f", $0) } ?? "-", m.address, m.overlay_address])
        }
        if members.isEmpty { return "no members yet" }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
        return rows.map { r in r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") }
            .joined(separator: "\n")
    }
}
