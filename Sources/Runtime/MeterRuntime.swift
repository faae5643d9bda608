import Foundation
import Ledger
import LedgerService
import MeshCore
import MeterService
import Meters
import Node

/// `[meter]`: this node's part in the meter network (Docs/meters.md).
public struct MeterSettings: Sendable, Equatable {
    public var role: MeterRole
    /// The collectors' node ids: each meter's reads are anchored by one of them.
    public var collectors: [NodeID] = []
    /// Operator keys whose commands this node's meters obey.
    public var operatorKeys: [PublicKey] = []
    public var intervalSeconds: UInt32 = 900
    public var anchorGraceSeconds: Int = 60

    public init(role: MeterRole) { self.role = role }
}

/// The runtime's side of the meter service: building it from `[meter]`, and the control socket's
/// `meter_status`, `meter_record`, `meter_host`, `meter_submit`, `meter_command`, `meter_proof`.
extension NodeRuntime {
    static func meterService(settings: NodeSettings, identity: NodeIdentity, seed: UInt64, loopNow: Instant) -> MeterService? {
        guard let m = settings.meter else { return nil }
        var config = MeterService.Config(role: m.role)
        config.collectors = m.collectors
        config.operatorKeys = m.operatorKeys
        config.intervalSeconds = m.intervalSeconds
        config.anchorGrace = .seconds(m.anchorGraceSeconds)
        // The one wall-clock fact the core gets: unix seconds at the loop's instant 0.
        let unixNow = UInt64(max(0, Date().timeIntervalSince1970))
        config.unixAtZero = unixNow - UInt64(max(0, loopNow.nanoseconds / 1_000_000_000))
        // A collector on a node that keeps a ledger anchors on it (through its ledger service);
        // without one, its anchors are its own record (Docs/meters.md, "Anchoring").
        let anchorer: any Anchorer = m.role == .collector && settings.ledger != nil ? LedgerAnchorer() : RecordingAnchorer()
        return MeterService(identity: identity, config: config, anchorer: anchorer, rng: SeededGenerator(seed: seed ^ 0x6d65_7465_7200))
    }

    /// The meter service as it is now, if this node runs one.
    public var meters: MeterService? { core.service(MeterService.self) }

    func answerMeter(_ command: String, _ parsed: [String: Any]) -> [UInt8] {
        guard let service = meters else {
            return Array(ControlJSON.error("this node runs no meter service (no [meter] role in its config)"))
        }
        func give(_ c: MeterCommand) { feed(.command(.service(MeterService.protocolID, ServicePayload(c)))) }
        // The CLI's control client sends strings only: lists come comma-separated, numbers as text.
        func hexList(_ key: String) -> [[UInt8]]? {
            guard let a = (parsed[key] as? [String]) ?? (parsed[key] as? String).map({ $0.split(separator: ",").map(String.init) }) else { return nil }
            let out = a.compactMap { Hex.decode($0.lowercased()) }
            return out.count == a.count ? out : nil
        }
        func number(_ key: String) -> NSNumber? {
            if let n = parsed[key] as? NSNumber { return n }
            if let t = parsed[key] as? String, let v = Int64(t) { return NSNumber(value: v) }
            return nil
        }
        switch command {
        case "meter_record":
            // {"registers": [{"obis": "1.0.1.8.0.255", "unit": "Wh", "scaler": 0, "value": 123}], "start": UNIX, "duration": S, "meter": HEX?}
            let regsValue = parsed["registers"] ?? []
            let regsParsed = (regsValue as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } ?? regsValue
            guard let regs = regsParsed as? [[String: Any]], !regs.isEmpty, regs.count <= MeterRead.maxRegisters else {
                return Array(ControlJSON.error("meter_record needs \"registers\": 1 to \(MeterRead.maxRegisters) of {obis, unit, scaler, value}"))
            }
            var registers: [RegisterValue] = []
            for r in regs {
                guard let o = r["obis"] as? String, let obis = ObisCode(o) else { return Array(ControlJSON.error("a register's \"obis\" must be A.B.C.D.E.F, e.g. 1.0.1.8.0.255")) }
                guard let u = r["unit"] as? String, let unit = MeterUnit.code(u) else { return Array(ControlJSON.error("a register's \"unit\" must be Wh, W, varh, V, A, Hz, VA, VAh, var or a DLMS unit code")) }
                guard let v = (r["value"] as? NSNumber)?.int64Value ?? (r["value"] as? String).flatMap({ Int64($0) }) else { return Array(ControlJSON.error("a register's \"value\" must be an integer")) }
                let scaler = (r["scaler"] as? NSNumber)?.intValue ?? 0
                guard (-128...127).contains(scaler) else { return Array(ControlJSON.error("a register's \"scaler\" is -128...127")) }
                registers.append(RegisterValue(obis: obis, unit: unit, scaler: Int8(scaler), value: v))
            }
            let duration = number("duration").map { UInt32(clamping: $0.int64Value) } ?? service.config.intervalSeconds
            guard duration > 0 else { return Array(ControlJSON.error("\"duration\" must be at least 1 second")) }
            let interval = UInt64(service.config.intervalSeconds)
            let start = number("start").map { UInt64(clamping: $0.int64Value) } ?? (UInt64(Date().timeIntervalSince1970) / interval * interval)
            var meter: PublicKey?
            if let m = parsed["meter"] as? String {
                guard let b = Hex.decode(m.lowercased()), let k = PublicKey(b) else { return Array(ControlJSON.error("\"meter\" must be a meter's public key (64 hex digits)")) }
                meter = k
            }
            guard service.hostedMeters.contains(meter ?? identity.publicKey) else {
                return Array(ControlJSON.error("this node hosts no meter \(meter?.hex ?? "of its own") (role \(service.config.role.rawValue)); a meter node records its own reads, `iotaf meter simulate` hosts others"))
            }
            let before = service.counters.recorded
            give(.record(meter: meter, intervalStart: start, durationSeconds: duration, registers: registers))
            guard let after = meters, after.counters.recorded == before + 1 else { return Array(ControlJSON.error("the read was refused: \(meters?.counters.drops ?? [:])")) }
            return Array(ControlJSON.encode(["recorded": String(after.lastRecorded?.sequence ?? 0)]))
        case "meter_host":
            guard let seeds = hexList("seeds"), seeds.allSatisfy({ $0.count == 32 }) else {
                return Array(ControlJSON.error("meter_host needs \"seeds\": 32-byte Ed25519 seeds as hex"))
            }
            give(.host(seeds: seeds))
            return Array(ControlJSON.encode(["hosted": meters?.hostedMeters.count ?? 0]))
        case "meter_submit":
            guard let raw = hexList("reads") else { return Array(ControlJSON.error("meter_submit needs \"reads\": encoded reads as hex")) }
            var reads: [MeterRead] = []
            for (i, b) in raw.enumerated() {
                do { reads.append(try MeterRead.decode(b)) } catch { return Array(ControlJSON.error("read \(i) refused: \(error.rawValue) (\(error))")) }
            }
            give(.submit(reads))
            return Array(ControlJSON.encode(["submitted": reads.count]))
        case "meter_command":
            guard let h = parsed["command_hex"] as? String, let b = Hex.decode(h.lowercased()) else {
                return Array(ControlJSON.error("meter_command needs \"command_hex\": an operator command signed by `iotaf meter command`"))
            }
            let c: OperatorCommand
            do { c = try OperatorCommand.decode(b) } catch { return Array(ControlJSON.error("command refused: \(error.rawValue) (\(error))")) }
            give(.operatorCommand(c))
            return Array(ControlJSON.encode(["sent": Hex.encode(c.hash)]))
        case "meter_proof":
            guard service.config.role == .collector else { return Array(ControlJSON.error("only a collector keeps reads and anchors; ask the collector")) }
            let hash: [UInt8]
            if let h = parsed["read"] as? String {
                guard let b = Hex.decode(h.lowercased()), b.count == 32 else { return Array(ControlJSON.error("\"read\" must be a read's hash (64 hex digits)")) }
                hash = b
            } else if let m = parsed["meter"] as? String, let seq = number("sequence") {
                guard let b = Hex.decode(m.lowercased()), let key = PublicKey(b) else { return Array(ControlJSON.error("\"meter\" must be a meter's public key (64 hex digits)")) }
                guard let r = service.storedRead(meter: key, sequence: UInt64(clamping: seq.int64Value)) else {
                    return Array(ControlJSON.error("this collector has no read \(seq) of meter \(m.prefix(16)) (`iotaf meter status` lists missing ones)"))
                }
                hash = r.hash
            } else {
                return Array(ControlJSON.error("meter_proof needs \"read\" (the read's hash) or \"meter\" and \"sequence\""))
            }
            let h = Hex.encode(hash)
            guard service.storedRead(hash) != nil else { return Array(ControlJSON.error("this collector has no read \(h)")) }
            guard let proof = service.proof(of: hash) else {
                return Array(ControlJSON.error("read \(h) is not anchored yet (anchors close \(service.config.anchorGrace) after each interval), or the read before it is not"))
            }
            var file = MeterProofFile(proof, anchorer: service.anchorer.name, book: service.anchorBook)
            if service.anchorer.confirms {
                // On the ledger: each anchor's `anchor get`, proven against a certified header.
                guard let ledger else { return Array(ControlJSON.error("this collector anchors on a ledger but keeps none")) }
                var proofs: [String: String] = [:], heights: [String: UInt64] = [:]
                for inc in [proof.inclusion] + (proof.predecessor.map { [$0] } ?? []) {
                    let id = inc.anchor.objectID
                    guard let height = service.ledgerHeight(of: id) else {
                        return Array(ControlJSON.error("anchor \(id) is not on the ledger yet (\(service.anchorsUnconfirmedCount) anchors wait for their block\(service.lastAnchorRetry.map { "; last retry: \($0)" } ?? "")); retry in a moment"))
                    }
                    switch ledger.prove(chaincode: "anchor", function: "get", args: [Array(id.utf8)]) {
                    case .success(let q):
                        guard case .ok = q.result else { return Array(ControlJSON.error("this node's ledger (height \(ledger.ledger.height)) does not hold anchor \(id) yet; retry in a moment")) }
                        proofs[id] = Hex.encode(q.encoded)
                    case .failure(let e):
                        return Array(ControlJSON.error("no ledger proof of \(id) yet: \(e)"))
                    }
                    heights[id] = height
                }
                file.ledger_proofs = proofs
                file.anchored_at = heights
            }
            return Array(ControlJSON.encode(file))
        default:
            return Array(ControlJSON.encode(MeterStatusReport(service)))
        }
    }
}

/// `iotaf meter status --json`.
public struct MeterStatusReport: Codable, Sendable {
    public struct Missing: Codable, Sendable { public var meter: String; public var sequences: [UInt64] }
    public var role: String
    public var rank: UInt16
    public var parent: String?
    public var held: Int
    public var in_flight: Int
    public var hosted_meters: Int
    public var reads_stored: Int
    public var reads_pending_anchor: Int
    public var anchors: Int
    /// Anchors the ledger holds (its block durable here), and those still waiting for a block.
    public var anchors_on_ledger: Int
    public var anchors_unconfirmed: Int
    public var anchorer: String
    public var missing: [Missing]
    public var counters: [String: UInt64]
    public var drops: [String: UInt64]

    init(_ s: MeterService) {
        role = s.config.role.rawValue
        rank = s.rank
        parent = s.parent?.hex
        held = s.heldCount
        in_flight = s.inFlightCount
        hosted_meters = s.hostedMeters.count
        reads_stored = s.storedCount
        reads_pending_anchor = s.pendingCount
        anchors = s.anchors.count
        anchors_on_ledger = s.anchorsOnLedgerCount
        anchors_unconfirmed = s.anchorsUnconfirmedCount
        anchorer = s.anchorer.name
        missing = s.missing().map { Missing(meter: $0.meter.hex, sequences: $0.missing) }
        let c = s.counters
        counters = ["recorded": c.recorded, "received": c.received, "forwarded": c.forwarded, "duplicates": c.duplicates,
                    "accepted": c.accepted, "batches_sent": c.batchesSent, "retransmissions": c.retransmissions,
                    "parent_changes": c.parentChanges, "anchors": c.anchors, "commands_forwarded": c.commandsForwarded,
                    "anchors_on_ledger": c.anchorsOnLedger, "anchor_submissions": c.anchorSubmissions, "anchor_retries": c.anchorRetries]
        drops = c.drops
    }
}

/// What `iotaf meter proof` writes and `iotaf meter verify` reads: the proof's canonical encoding,
/// the read in words, and the anchor as the collector recorded it (with which anchorer).
public struct MeterProofFile: Codable, Sendable {
    public struct Register: Codable, Sendable { public var obis: String; public var unit: String; public var scaler: Int; public var value: Int64 }
    public var proof: String
    public var read_hash: String
    public var meter: String
    public var sequence: UInt64
    public var interval_start: UInt64
    public var duration_s: UInt32
    public var registers: [Register]
    public var anchor_object: String
    /// The anchor digests this proof's anchors were recorded with, by object id.
    public var anchors: [String: String]
    /// Who recorded them: "local-record" (the collector's own store) or "ledger".
    public var anchorer: String
    /// With the ledger anchorer: per anchor object id, the `anchor get` query proof (hex of
    /// `QueryProof.encoded`) against a header a quorum of validators certified, and the height of
    /// the block that anchored it. What `meter verify --genesis` checks.
    public var ledger_proofs: [String: String]?
    public var anchored_at: [String: UInt64]?

    public init(_ p: MeterProof, anchorer: String, book: AnchorBook) {
        proof = Hex.encode(p.encode())
        read_hash = Hex.encode(p.read.hash)
        meter = p.read.meter.hex
        sequence = p.read.sequence
        interval_start = p.read.intervalStart
        duration_s = p.read.durationSeconds
        registers = p.read.registers.map { Register(obis: $0.obis.description, unit: MeterUnit.name($0.unit), scaler: Int($0.scaler), value: $0.value) }
        anchor_object = p.inclusion.anchor.objectID
        var a: [String: String] = [:]
        for inc in [p.inclusion] + (p.predecessor.map { [$0] } ?? []) {
            if let d = book.anchoredDigest(inc.anchor.objectID) { a[inc.anchor.objectID] = Hex.encode(d) }
        }
        anchors = a
        self.anchorer = anchorer
    }
}
