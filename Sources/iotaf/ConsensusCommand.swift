import ArgumentParser
import Foundation
import MeshCore
import Runtime

struct ConsensusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "consensus", abstract: "A running validator: its consensus state, and payloads to order.",
                                                    subcommands: [ConsensusStatusCommand.self, ConsensusSubmitCommand.self])
}

struct ConsensusStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Height, round, leader, safety state and counters of a running validator.")
    @OptionGroup var target: ControlTarget
    @Option(help: "Also show the hash of the block committed at this height (if this life of the validator committed it).")
    var height: UInt64?

    func run() throws {
        var fields: [String: String] = [:]
        if let height { fields["height"] = String(height) }
        let data = try target.fetch("consensus_status", fields)
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        let s = try JSONDecoder().decode(ConsensusReport.self, from: data)
        if let h = s.halted { print("HALTED           \(h)") }
        print("validator        \(s.index) of \(s.validators) (quorum \(s.quorum))")
        print("height           \(s.height)")
        print("round            \(s.round) (leader \(s.leader))")
        print("safety           last voted round \(s.last_voted_round), high QC round \(s.high_qc_round)")
        print("mempool          \(s.mempool) payloads")
        print("committed        \(s.payloads_committed) payloads in this life")
        if let height { print("block \(height)".padding(toLength: 17, withPad: " ", startingAt: 0) + (s.block?.hash ?? "not committed in this life (or no longer remembered)")) }
        print("counters")
        for (k, v) in s.counters.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
        print("drops")
        for (k, v) in s.drops.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)") }
    }
}

struct ConsensusSubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "submit", abstract: "Hand a running validator one payload to order.")
    @OptionGroup var target: ControlTarget
    @Option(help: "The payload as hex.")
    var hex: String?
    @Option(help: "The payload as UTF-8 text.")
    var text: String?

    func run() throws {
        let bytes: [UInt8]
        switch (hex, text) {
        case let (h?, nil):
            guard let b = Hex.decode(h.lowercased()), !b.isEmpty else { throw CLIError("--hex: not hex digits (an even number, at least 2)") }
            bytes = b
        case let (nil, t?):
            guard !t.isEmpty else { throw CLIError("--text is empty") }
            bytes = Array(t.utf8)
        default:
            throw CLIError("give the payload as --hex HEX or --text TEXT (one of them)")
        }
        let data = try target.fetch("consensus_submit", ["payload": Hex.encode(bytes)])
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        print("submitted \(bytes.count) bytes")
    }
}
