import ArgumentParser
import Foundation
import Runtime

/// `iotaf send`: asks a running node to send a file to a member over a channel, shows progress,
/// and waits for the receiver's verdict (its hash check), exiting non-zero on failure.
struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a file of any size to a member; the receiver writes it to DATA/inbox/<sender-node-id>/<name>.")

    @OptionGroup var target: ControlTarget
    @Option(help: "The receiving member's node id (or a prefix naming exactly one member).")
    var to: String
    @Option(help: "The file to send (the node process reads it).")
    var file: String
    @Option(help: "Channel stream (lower ids take priority; bulk belongs on high ids).")
    var stream: UInt16 = 8
    @Option(help: "Give up waiting after this many seconds.")
    var timeout: Double = 3600

    func run() throws {
        let control = try target.path()
        let path = URL(fileURLWithPath: file).standardizedFileURL.path
        guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError("cannot read \(file); give a readable file") }
        let started = try request(control, ["command": "send", "to": to, "path": path, "stream": String(stream)])
        guard let id = started["transfer"] as? String else { throw CLIError("node at \(control) gave no transfer id") }
        let deadline = Date().addingTimeInterval(timeout)
        let t0 = Date()
        var last: TransferReport?
        while Date() < deadline {
            let data = try fetch(control, ["command": "transfer", "id": id])
            let r = try JSONDecoder().decode(TransferReport.self, from: data)
            last = r
            if r.state == "completed" || r.state == "failed" {
                if !target.json { FileHandle.standardError.write(Data("\n".utf8)) }
                if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)) }
                if r.state == "failed" {
                    throw CLIError("sending \(r.name) to \(r.peer.prefix(16)) failed: \(r.error ?? "unknown reason")")
                }
                if !target.json {
                    let mib = Double(r.size) / 1_048_576
                    print(String(format: "sent %@ (%.1f MiB) to %@ in %.2f s (%.1f MiB/s); the receiver verified its hash",
                                 r.name, mib, String(r.peer.prefix(16)), r.elapsed_s, r.elapsed_s > 0 ? mib / r.elapsed_s : 0))
                }
                return
            }
            if !target.json {
                let pct = r.size > 0 ? Double(r.bytes_done) * 100 / Double(r.size) : 0
                let rate = Double(r.bytes_done) / 1_048_576 / max(Date().timeIntervalSince(t0), 0.001)
                FileHandle.standardError.write(Data(String(format: "\r%@: %.1f / %.1f MiB (%.0f%%) %.1f MiB/s   ", TransferWords.progress(r.state),
                    Double(r.bytes_done) / 1_048_576, Double(r.size) / 1_048_576, pct, rate).utf8))
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw CLIError("transfer \(id) did not finish within \(timeout) s (it was \(last.map { TransferWords.progress($0.state) } ?? "not started")); see `iotaf status`")
    }

    private func fetch(_ control: String, _ body: [String: String]) throws -> Data {
        let data: Data
        do { data = try ControlClient.request(control, body) } catch { throw CLIError("\(error)") }
        // A transfer report has an "error" field of its own; a refusal is an object with "error" alone.
        if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], obj["state"] == nil, let err = obj["error"] as? String {
            throw CLIError("node at \(control) refused: \(err)")
        }
        return data
    }

    private func request(_ control: String, _ body: [String: String]) throws -> [String: Any] {
        let data = try fetch(control, body)
        return (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }
}

/// A transfer's state in the words a person reads (the JSON keeps the state names).
enum TransferWords {
    static func progress(_ state: String) -> String {
        switch state {
        case "hashing": "reading and hashing the file"
        case "sending": "sending"
        case "awaiting_result": "sent; waiting for the receiver to check the hash"
        case "receiving": "receiving"
        case "verifying": "checking the hash"
        case "completed": "done"
        case "failed": "failed"
        default: state
        }
    }
}

/// The channel part of `iotaf status`.
enum ChannelStatus {
    static func print(_ s: StatusReport) {
        func row(_ k: String, _ v: CustomStringConvertible) { Swift.print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        Swift.print("channels")
        for (k, v) in s.channels.sorted(by: { $0.key < $1.key }) { row(k, v) }
        Swift.print("drops (channels)")
        for (k, v) in s.channel_drops.sorted(by: { $0.key < $1.key }) where v > 0 { row(k, v) }
        Swift.print("transfers")
        if s.transfers.isEmpty { Swift.print("  none") }
        for t in s.transfers {
            let what = "\(t.direction == "out" ? "to" : "from") \(t.peer.prefix(16)) \(t.name) \(t.bytes_done)/\(t.size) B"
            row(t.id, "\(t.state) \(what)" + (t.error.map { ": \($0)" } ?? "") + (t.path.map { " -> \($0)" } ?? ""))
        }
    }
}
