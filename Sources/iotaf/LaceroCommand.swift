import ArgumentParser
import Foundation
import LaceroService
import Runtime

/// `iotaf lacero put|get|check|repair|delete|stats`: Lacero operations a running node carries out
/// (Docs/lacero.md). The node opens the files (paths are made absolute here); the CLI starts the
/// operation, shows its progress on a terminal, and prints the outcome (JSON with --json).
struct LaceroCommandGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lacero", abstract: "Put, get, check, repair and delete shredded objects; show a node's Lacero store.",
        subcommands: [LaceroPut.self, LaceroGet.self, LaceroCheck.self, LaceroRepair.self, LaceroDelete.self, LaceroStatsCommand.self])
}

/// Starts an operation and polls it to its end.
enum LaceroOperationRunner {
    static func run(_ target: ControlTarget, _ command: String, _ fields: [String: String], timeout: Double) throws -> (LaceroReport, Data) {
        let control = try target.path()
        let started = try request(control, fields.merging(["command": command]) { $1 })
        guard let op = (try? JSONSerialization.jsonObject(with: started) as? [String: Any])?["op"] as? String else {
            throw CLIError("node at \(control) gave no operation number")
        }
        let deadline = Date().addingTimeInterval(timeout)
        let progress = !target.json && isatty(2) != 0
        var last: LaceroReport?
        while Date() < deadline {
            let data = try request(control, ["command": "lacero_op", "op": op])
            let r = try JSONDecoder().decode(LaceroReport.self, from: data)
            last = r
            if r.state == "done" || r.state == "failed" {
                if progress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                if r.state == "failed" {
                    if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)) }
                    throw CLIError("lacero \(r.kind) \(r.path) failed: \(r.error ?? "no reason given")")
                }
                return (r, data)
            }
            if progress {
                let pct = r.total > 0 ? Double(r.done) * 100 / Double(r.total) : 0
                FileHandle.standardError.write(Data(String(format: "\r\u{1B}[K%@: %ld / %ld %@ (%.0f%%)", r.state, r.done, r.total, r.unit, pct).utf8))
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw CLIError("lacero operation \(op) did not end within \(timeout) s (it was \(last?.state ?? "not started")); `iotaf lacero stats` shows the node's state")
    }

    /// One request; an answer that is an error alone is a refusal (a report has an "error" of its own).
    static func request(_ control: String, _ body: [String: String]) throws -> Data {
        let data: Data
        do { data = try ControlClient.request(control, body) } catch { throw CLIError("\(error)") }
        if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], obj["state"] == nil, let err = obj["error"] as? String {
            throw CLIError("node at \(control) refused: \(err)")
        }
        return data
    }

    static func absolute(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    static func printJSON(_ data: Data) { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)) }

    static func mib(_ bytes: UInt64?) -> String { String(format: "%.2f MiB", Double(bytes ?? 0) / 1_048_576) }
}

struct LaceroPut: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put", abstract: "Encrypt FILE, cut it into k-of-n fragments per segment, place them in the mesh, write the sealed metadata.",
        discussion: "The metadata (META) is the only way back to the object: it is sealed to the node's identity key. Any k fragments of each segment rebuild it.")
    @Argument(help: "The file to put (the node process reads it).")
    var file: String
    @Option(help: "Where the node writes the sealed metadata. Default: FILE.meta.")
    var out: String?
    @Option(help: "Fragments needed to rebuild a segment.")
    var k = 10
    @Option(help: "Fragments made per segment (any n - k may be lost).")
    var n = 14
    @Option(help: "Give up waiting after this many seconds.")
    var timeout: Double = 3600
    @OptionGroup var target: ControlTarget

    func run() throws {
        let path = LaceroOperationRunner.absolute(file)
        guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError("cannot read \(file); give a readable file") }
        let meta = LaceroOperationRunner.absolute(out ?? file + ".meta")
        let (r, data) = try LaceroOperationRunner.run(target, "lacero_put", ["path": path, "out": meta, "k": String(k), "n": String(n)], timeout: timeout)
        if target.json { LaceroOperationRunner.printJSON(data); return }
        print("put \(path) (\(LaceroOperationRunner.mib(r.object_bytes))): \(r.segments ?? 0) segments x \(r.n ?? 0) fragments, any \(r.k ?? 0) rebuild a segment; \(r.fragments_placed ?? 0) of \(r.fragments ?? 0) placed in \(String(format: "%.2f", r.elapsed_s)) s")
        print("metadata  \(meta) (sealed to this node's identity; keep it: nothing else rebuilds the object)")
        print("content   \(r.content_hash ?? "")")
        if let short = r.segments_below_n, !short.isEmpty {
            print("warning: \(short.count) segments have fewer than \(r.n ?? 0) fragments placed; `iotaf lacero repair \(meta)` places the missing ones")
        }
    }
}

struct LaceroGet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Fetch any k fragments per segment by id, check every hash, decode, decrypt, write the object atomically.")
    @Argument(help: "The metadata file `lacero put` wrote.")
    var meta: String
    @Option(help: "Where the node writes the object.")
    var out: String
    @Option(help: "Give up waiting after this many seconds.")
    var timeout: Double = 3600
    @OptionGroup var target: ControlTarget

    func run() throws {
        let dest = LaceroOperationRunner.absolute(out)
        let (r, data) = try LaceroOperationRunner.run(target, "lacero_get", ["meta": LaceroOperationRunner.absolute(meta), "out": dest], timeout: timeout)
        if target.json { LaceroOperationRunner.printJSON(data); return }
        print("got \(dest) (\(LaceroOperationRunner.mib(r.object_bytes)), \(r.segments ?? 0) segments) in \(String(format: "%.2f", r.elapsed_s)) s; every fragment matched its id and every segment authenticated")
    }
}

struct LaceroCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Ask the mesh who holds each fragment; report per segment and renew the leases of those that answer.",
        discussion: "Exits 1 when a segment has fewer than k fragments answering (the object cannot be rebuilt now).")
    @Argument(help: "The metadata file `lacero put` wrote.")
    var meta: String
    @Option(help: "Give up waiting after this many seconds.")
    var timeout: Double = 600
    @OptionGroup var target: ControlTarget

    func run() throws {
        let (r, data) = try LaceroOperationRunner.run(target, "lacero_check", ["meta": LaceroOperationRunner.absolute(meta)], timeout: timeout)
        if target.json { LaceroOperationRunner.printJSON(data) } else { LaceroCheck.render(r) }
        if let below = r.segments_below_k, !below.isEmpty { throw ExitCode(1) }
    }

    static func render(_ r: LaceroReport) {
        let segments = r.check ?? []
        let n = r.n ?? 0, k = r.k ?? 0
        print("\(r.path): \(segments.count) segments, k = \(k), n = \(n); \(r.leases_renewed ?? 0) leases renewed")
        let short = segments.filter { $0.answered < n }
        if short.isEmpty { print("every segment: all \(n) fragments answer") }
        if !short.isEmpty { print("SEGMENT  ANSWERING  HOLDERS  LOSS PROBABILITY") }
        for s in short {
            print(String(format: "%7ld  %5ld/%-3ld  %7ld  %.3g%@", s.segment, s.answered, n, s.holders, s.loss_probability, s.answered < k ? "  BELOW k: cannot be rebuilt" : ""))
        }
        print(String(format: "object loss probability %.3g (each holder assumed lost with probability %.2f before the next check)",
                     r.loss_probability ?? 0, r.assumed_holder_loss ?? 0))
        if !short.isEmpty, short.allSatisfy({ $0.answered >= k }) { print("`iotaf lacero repair \(r.path)` places the missing fragments") }
    }
}

struct LaceroRepair: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair", abstract: "Check, then rebuild each segment's missing fragments from any k and place them on new holders.",
        discussion: "Exits 1 when a segment has fewer than k fragments answering: it cannot be rebuilt.")
    @Argument(help: "The metadata file `lacero put` wrote.")
    var meta: String
    @Option(help: "Give up waiting after this many seconds.")
    var timeout: Double = 3600
    @OptionGroup var target: ControlTarget

    func run() throws {
        let (r, data) = try LaceroOperationRunner.run(target, "lacero_repair", ["meta": LaceroOperationRunner.absolute(meta)], timeout: timeout)
        if target.json { LaceroOperationRunner.printJSON(data) } else {
            print("\(r.path): \(r.fragments_repaired ?? 0) fragments rebuilt and placed in \(String(format: "%.2f", r.elapsed_s)) s (\(r.segments_below_n?.count ?? 0) segments were short of \(r.n ?? 0))")
            if let below = r.segments_below_k, !below.isEmpty {
                print("segments with fewer than \(r.k ?? 0) fragments, beyond repair: \(below.map(String.init).joined(separator: ", "))")
            }
        }
        if let below = r.segments_below_k, !below.isEmpty { throw ExitCode(1) }
    }
}

struct LaceroDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Ask every holder to delete the object's fragments (with the metadata's proofs), then check none answers.")
    @Argument(help: "The metadata file `lacero put` wrote.")
    var meta: String
    @Option(help: "Give up waiting after this many seconds.")
    var timeout: Double = 600
    @OptionGroup var target: ControlTarget

    func run() throws {
        let (r, data) = try LaceroOperationRunner.run(target, "lacero_delete", ["meta": LaceroOperationRunner.absolute(meta)], timeout: timeout)
        if target.json { LaceroOperationRunner.printJSON(data); return }
        print("\(r.path): asked every member to delete \(r.fragments ?? 0) fragments; \(r.still_held ?? 0) still answer")
        if (r.still_held ?? 0) > 0 { print("holders that were away delete theirs when their lease ends; `iotaf lacero delete` again once they are back") }
    }
}

struct LaceroStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show what a node's Lacero store holds and has served.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let data = try target.fetch("lacero_stats")
        if target.json { LaceroOperationRunner.printJSON(data); return }
        let s = try JSONDecoder().decode(LaceroStats.self, from: data)
        print("store            \(s.store ? "on" : "off (this node keeps no fragments; [lacero] store = true)")")
        print("held             \(s.fragments_held) fragments, \(s.bytes_held) bytes of \(s.quota_bytes) quota")
        print("keep probability \(s.keep_probability)")
        print("operations       \(s.operations_running) running")
        print("counters")
        for (k, v) in s.counters.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 24, withPad: " ", startingAt: 0)) \(v)") }
        if !s.drops.isEmpty {
            print("drops")
            for (k, v) in s.drops.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 24, withPad: " ", startingAt: 0)) \(v)") }
        }
    }
}
