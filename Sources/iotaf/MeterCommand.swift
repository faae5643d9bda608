import ArgumentParser
import Foundation
import Ledger
import MeshCore
import MeterService
import Meters
import Runtime
import Sodium

struct MeterCommandGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meter", abstract: "Smart-meter relays: reads, status, proofs, operators' commands (Docs/meters.md).",
        subcommands: [MeterStatusCommand.self, MeterReadCommand.self, MeterProofCommand.self, MeterVerifyCommand.self,
                      MeterSendCommand.self, MeterSimulateCommand.self])
}

struct MeterStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Role, parent, reads held per hop, anchors, missing sequence numbers.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let data = try target.fetch("meter_status")
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        let s = try JSONDecoder().decode(MeterStatusReport.self, from: data)
        print("role             \(s.role)")
        print("rank             \(s.rank == 0xFFFF ? "none (no route to a collector)" : String(s.rank))")
        print("parent           \(s.parent ?? "none")")
        print("held             \(s.held) reads in custody (\(s.in_flight) sent, awaiting the next hop's ack)")
        if s.role == "collector" {
            print("stored           \(s.reads_stored) reads (\(s.reads_pending_anchor) waiting for their interval's anchor)")
            print("anchors          \(s.anchors) (\(s.anchorer): the collector's own record; no ledger anchor yet)")
            for m in s.missing.prefix(20) { print("missing          meter \(m.meter.prefix(16)): \(m.sequences.map(String.init).joined(separator: ", "))") }
        }
        if s.hosted_meters > 0 { print("hosted meters    \(s.hosted_meters)") }
        print("counters")
        for (k, v) in s.counters.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 22, withPad: " ", startingAt: 0)) \(v)") }
        if !s.drops.isEmpty {
            print("drops")
            for (k, v) in s.drops.sorted(by: { $0.key < $1.key }) { print("  \(k.padding(toLength: 22, withPad: " ", startingAt: 0)) \(v)") }
        }
    }
}

/// `OBIS=VALUE:UNIT[:SCALER]`, e.g. `1.0.1.8.0.255=1234:Wh`.
func parseRegister(_ text: String) throws -> [String: Any] {
    let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
    guard parts.count == 2, ObisCode(parts[0]) != nil else { throw CLIError("--value \(text): must be OBIS=VALUE:UNIT[:SCALER], e.g. 1.0.1.8.0.255=1234:Wh") }
    let rest = parts[1].split(separator: ":").map(String.init)
    guard rest.count == 2 || rest.count == 3, let v = Int64(rest[0]), MeterUnit.code(rest[1]) != nil else {
        throw CLIError("--value \(text): must be OBIS=VALUE:UNIT[:SCALER] with an integer value and a unit (Wh, W, varh, V, A, Hz, VA, VAh, var)")
    }
    let scaler = rest.count == 3 ? Int(rest[2]) : 0
    guard let scaler, (-128...127).contains(scaler) else { throw CLIError("--value \(text): the scaler is -128...127") }
    return ["obis": parts[0], "unit": rest[1], "scaler": scaler, "value": v]
}

struct MeterReadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Record one read of this meter node by hand (signed and sent by the node).")
    @OptionGroup var target: ControlTarget
    @Option(name: .customLong("value"), help: "A register: OBIS=VALUE:UNIT[:SCALER], e.g. 1.0.1.8.0.255=1234:Wh (repeat for more).")
    var values: [String] = []
    @Option(help: "A JSON file: an array of {\"obis\", \"unit\", \"scaler\", \"value\"}.")
    var file: String?
    @Option(help: "Interval start, unix seconds (default: the current interval's).")
    var start: UInt64?
    @Option(help: "Interval length in seconds (default: the node's [meter] interval_s).")
    var duration: UInt32?
    @Option(help: "A simulated meter the node hosts (its public key), instead of the node's own.")
    var meter: String?

    func run() throws {
        var registers = try values.map(parseRegister)
        if let file {
            guard let d = FileManager.default.contents(atPath: file), let a = try? JSONSerialization.jsonObject(with: d) as? [[String: Any]] else {
                throw CLIError("\(file): must be a JSON array of {\"obis\": \"1.0.1.8.0.255\", \"unit\": \"Wh\", \"scaler\": 0, \"value\": 1234}")
            }
            registers += a
        }
        guard !registers.isEmpty else { throw CLIError("give at least one register: --value 1.0.1.8.0.255=1234:Wh or --file REGISTERS.json") }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: registers, options: [.sortedKeys]), as: UTF8.self)
        var fields = ["registers": json]
        if let start { fields["start"] = String(start) }
        if let duration { fields["duration"] = String(duration) }
        if let meter { fields["meter"] = meter }
        let data = try target.fetch("meter_record", fields)
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        print("recorded (the node keeps it until its next hop has it; `iotaf meter status`)")
    }
}

struct MeterProofCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "proof", abstract: "Ask a collector for the proof of one anchored read and write it as JSON.")
    @OptionGroup var target: ControlTarget
    @Argument(help: "The read's hash (64 hex digits); or give --meter and --sequence.")
    var read: String?
    @Option(help: "The meter's public key (with --sequence).")
    var meter: String?
    @Option(help: "The read's sequence number (with --meter).")
    var sequence: UInt64?
    @Option(help: "Write the proof here (default: print it).")
    var out: String?

    func run() throws {
        var fields: [String: String] = [:]
        switch (read, meter, sequence) {
        case let (r?, nil, nil): fields["read"] = r
        case let (nil, m?, s?): fields["meter"] = m; fields["sequence"] = String(s)
        default: throw CLIError("give the read's hash, or --meter KEY and --sequence N")
        }
        let data = try target.fetch("meter_proof", fields)
        let pretty = try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: data), options: [.prettyPrinted, .sortedKeys])
        if let out {
            guard FileManager.default.createFile(atPath: out, contents: pretty) else { throw CLIError("cannot write \(out)") }
            print("wrote \(out)")
        } else {
            print(String(decoding: pretty, as: UTF8.self))
        }
    }
}

struct MeterVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Prove one read: its signature, its place in the meter's chain, its Merkle path, its anchor on the ledger.",
        discussion: """
        With --genesis, each anchor the proof names must come with a ledger proof: the `anchor get` answer, proven against a \
        header a quorum of the genesis' validators certified, put there by the collector itself. Without --genesis the anchors \
        are only the collector's own record, and this says so.
        """)
    @Argument(help: "A proof file written by `iotaf meter proof`.")
    var proofFile: String
    @Option(help: "The ledger's genesis file (validator keys): check the anchors on the ledger.")
    var genesis: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        guard let d = FileManager.default.contents(atPath: proofFile) else { throw CLIError("cannot read \(proofFile)") }
        let file: MeterProofFile
        do { file = try JSONDecoder().decode(MeterProofFile.self, from: d) } catch { throw CLIError("\(proofFile) is not a proof file from `iotaf meter proof`: \(error)") }
        var g: LedgerGenesis?
        if let genesis {
            // The file `iotaf network init --validators` writes (as a node reads it), else a ledger genesis text.
            if let file = try? GenesisFile.read(genesis) {
                g = LedgerGenesis(consensus: file.genesis, admins: file.admins)
            } else {
                do { g = try LedgerGenesis.parse(String(contentsOfFile: genesis, encoding: .utf8)) } catch { throw CLIError("genesis \(genesis): \(error)") }
            }
        }
        let (ok, reason) = Self.check(file, genesis: g)
        if json {
            print(String(decoding: ControlJSON.encode(["verified": ok ? "true" : "false", "reason": reason, "anchorer": file.anchorer]), as: UTF8.self))
        } else {
            print(ok ? "VERIFIED  \(reason)" : "FAILED    \(reason)")
        }
        if !ok { throw ExitCode(1) }
    }

    /// Whether the file proves its read, and why (or why not). With a genesis, the anchors must be
    /// on that ledger (certified query proofs in the file); without, the file's record is used.
    static func check(_ file: MeterProofFile, genesis: LedgerGenesis? = nil) -> (Bool, String) {
        guard let bytes = Hex.decode(file.proof.lowercased()) else { return (false, "the proof is not hex") }
        let proof: MeterProof
        do { proof = try MeterProof.decode(bytes) } catch { return (false, "the proof does not decode: \(error.rawValue) (\(error))") }
        let r = proof.read
        // The words in the file must be the signed read's, or an edited copy would read as proven.
        let words = file.registers.map { "\($0.obis)=\($0.value):\($0.unit):\($0.scaler)" }
        let signed = r.registers.map { "\($0.obis)=\($0.value):\(MeterUnit.name($0.unit)):\($0.scaler)" }
        guard words == signed, file.meter == r.meter.hex, file.sequence == r.sequence, file.interval_start == r.intervalStart,
              file.duration_s == r.durationSeconds, file.read_hash == Hex.encode(r.hash) else {
            return (false, "the file's read (meter, sequence, interval, registers or hash) differs from the signed read in its proof: an edited copy")
        }
        let said = "meter \(r.meter.hex.prefix(16)) read \(r.sequence): signature, chain place, Merkle path to root \(Hex.encode(proof.inclusion.anchor.root.prefix(8))) of \(proof.inclusion.anchor.objectID)"
        if let genesis {
            guard let proofs = file.ledger_proofs, !proofs.isEmpty else {
                return (false, "not_on_ledger: the file carries no ledger proof of its anchors (anchorer \(file.anchorer)); ask a collector that anchors on the ledger")
            }
            var source = LedgerAnchorSource()
            for (id, hex) in proofs.sorted(by: { $0.key < $1.key }) {
                do {
                    guard let b = Hex.decode(hex.lowercased()) else { throw LedgerError("not hex") }
                    try source.add(try QueryProof.decode(b), genesis: genesis)
                } catch {
                    return (false, "bad_ledger_proof: the ledger proof of \(id) does not check: \(error)")
                }
            }
            switch proof.verify(anchors: source) {
            case .verified:
                let e = source.entries[proof.inclusion.anchor.objectID]!
                return (true, "\(said); on the ledger: anchored in block \(e.anchoredAt), proven against header \(e.provenAt) certified by \(e.signers) of \(genesis.consensus.validators.count) validators")
            case let .failed(f):
                return (false, "\(f.rawValue): \(f) (checked against the ledger)")
            }
        }
        var book = [String: [UInt8]]()
        for (k, v) in file.anchors { if let b = Hex.decode(v.lowercased()) { book[k] = b } }
        struct Book: AnchorSource { let d: [String: [UInt8]]; func anchoredDigest(_ id: String) -> [UInt8]? { d[id] } }
        switch proof.verify(anchors: Book(d: book)) {
        case .verified:
            return (true, "\(said) (anchor: the collector's record\(file.ledger_proofs == nil ? "" : "; give --genesis to check it on the ledger"))")
        case let .failed(f):
            return (false, "\(f.rawValue): \(f)")
        }
    }
}

struct MeterSendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "command", abstract: "Send an operator-signed command to a meter down the reverse path of its reads (from a collector).")
    @OptionGroup var target: ControlTarget
    @Argument(help: "The meter's public key (64 hex digits).")
    var meter: String
    @Argument(help: "The action, 1-64 bytes (e.g. \"hvac-off 15m\").")
    var action: String
    @Option(help: "The operator's key file (`iotaf keygen`); its public key must be in the meter's [meter] operator_keys.")
    var operatorKey: String
    @Option(help: "The command's number: above the last one this operator sent this meter (default: unix milliseconds).")
    var nonce: UInt64?

    func run() throws {
        guard let b = Hex.decode(meter.lowercased()), let key = PublicKey(b) else { throw CLIError("METER must be a meter's public key: 64 hex digits") }
        let op = try KeyFile.read(operatorKey)
        let now = Date().timeIntervalSince1970
        let cmd: OperatorCommand
        do { cmd = try OperatorCommand(meter: key, operator: op, nonce: nonce ?? UInt64(now * 1000), issuedAt: UInt64(now), action: action) } catch {
            throw CLIError("\(error)")
        }
        let data = try target.fetch("meter_command", ["command_hex": Hex.encode(cmd.encode())])
        if target.json { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return }
        print("sent command \(Hex.encode(cmd.hash).prefix(16)) (nonce \(cmd.nonce)); the meter's ack comes back to this node")
    }
}

struct MeterSimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "simulate", abstract: "Play many meters into a running node: each records a read every interval, sped up.")
    @OptionGroup var target: ControlTarget
    @Option(help: "How many meters.")
    var meters = 20
    @Option(help: "Read interval, e.g. 15m, 60s.")
    var interval = "15m"
    @Option(help: "Speed-up: an interval of 15m at speed 60 passes in 15 s.")
    var speed = 60.0
    @Option(help: "How many intervals to play.")
    var intervals = 4
    @Option(help: "Derive the meters' keys from this number (the same number gives the same meters).")
    var seed: UInt64 = 1

    func run() throws {
        guard meters > 0, meters <= 10_000 else { throw CLIError("--meters is 1...10000") }
        guard let secs = Self.seconds(interval), secs > 0 else { throw CLIError("--interval: a number with s, m or h, e.g. 15m") }
        guard speed > 0 else { throw CLIError("--speed must be above 0") }
        let keys = (0..<meters).map { NodeIdentity.deterministic(runSeed: seed, index: $0) }
        for chunk in stride(from: 0, to: keys.count, by: 200) {
            let seeds = keys[chunk..<min(keys.count, chunk + 200)].map { Hex.encode($0.seed) }.joined(separator: ",")
            _ = try target.fetch("meter_host", ["seeds": seeds])
        }
        var start = UInt64(Date().timeIntervalSince1970) / UInt64(secs) * UInt64(secs)
        for i in 0..<intervals {
            for k in keys {
                let regs = String(decoding: try JSONSerialization.data(withJSONObject: [["obis": "1.0.1.8.0.255", "unit": "Wh", "scaler": 0,
                                                                                          "value": Int64(Sodium.randomBytes(1)[0]) * 10]]), as: UTF8.self)
                _ = try target.fetch("meter_record", ["registers": regs, "meter": k.publicKey.hex, "start": String(start), "duration": String(secs)])
            }
            print("interval \(i + 1)/\(intervals): \(meters) reads recorded (start \(start))")
            start += UInt64(secs)
            if i + 1 < intervals { Thread.sleep(forTimeInterval: Double(secs) / speed) }
        }
    }

    static func seconds(_ text: String) -> Int? {
        guard let unit = text.last else { return nil }
        let mult: Int
        switch unit {
        case "s": mult = 1
        case "m": mult = 60
        case "h": mult = 3600
        default: return Int(text)
        }
        return Int(text.dropLast()).map { $0 * mult }
    }
}
