import Ledger
import LedgerService
import MeshCore
import Meters
import Node
import NodeService

/// Anchors each closed batch on the ledger through the node's own `LedgerService`: an invoke of
/// `anchor put <object id> <digest hex> meter-interval <interval start>` signed with the
/// collector's identity (`LedgerRequest.submitFor`, so the ledger service answers this service,
/// not the control socket). The ledger service hands it to consensus (a validator) or forwards it
/// to a validator (a replica); its answer comes back once the block holding it is durable on this
/// node. The object id names the collector's key, and the row the chaincode writes names the
/// signer, so a proof checks that the collector itself anchored it (`LedgerAnchorSource`).
public struct LedgerAnchorer: Anchorer {
    public init() {}
    public var name: String { "ledger" }
    public var confirms: Bool { true }

    public func anchor(_ anchor: MeterAnchor, request: UInt64, now: Instant) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        let args: [[UInt8]] = [Array(anchor.objectID.utf8), Array(Hex.encode(anchor.digest).utf8), Array(MeterAnchor.label.utf8),
                               Array(String(anchor.intervalStart).utf8)]
        let r = LedgerRequest.submitFor(replyTo: MeterService.protocolID, request: request, chaincode: "anchor", function: "put", args: args)
        return [.command(.service(LedgerService.protocolID, ServicePayload(r)))]
    }

    public func answer(_ payload: ServicePayload) -> AnchorAnswer? {
        guard let e = payload.as(LedgerEvent.self) else { return nil }
        switch e {
        case .accepted, .applied, .certified, .halted:
            return .noted
        case let .committed(request, _, height, .ok):
            return .onLedger(request: request, height: height)
        case let .committed(request, _, height, .refused(r)):
            // Write-once: an earlier submission of the same anchor (timed out here, committed
            // later) got there first. It is this collector's own: the chaincode lets only the key
            // a `meter/<key>/…` id names put it (no squatter can take the id first).
            if r.reason == .alreadyExists { return .onLedger(request: request, height: height) }
            return .retry(request: request, reason: "refused by the ledger at height \(height): \(r.reason)")
        case let .refused(request, _, reason):
            return .retry(request: request, reason: reason)
        case let .timedOut(request, _):
            return .retry(request: request, reason: "not committed in time")
        }
    }
}

/// The row the `anchor` chaincode keeps under an object id:
/// `signer(32) || u32 n || hash (n) || u32 m || label (m) || u64 time || u64 height`.
public struct AnchorRow: Sendable, Equatable {
    public var signer: [UInt8]
    public var hash: [UInt8]
    public var label: [UInt8]
    public var time: UInt64
    /// The block the anchor was put in.
    public var height: UInt64

    public static func decode(_ bytes: [UInt8]) -> AnchorRow? {
        var r = ByteReader(bytes)
        guard let signer = try? r.raw(32), let n = try? r.u32(), n <= 64, let hash = try? r.raw(Int(n)), let m = try? r.u32(), m <= 256,
              let label = try? r.raw(Int(m)), let time = try? r.u64(), let height = try? r.u64(), r.remaining == 0 else { return nil }
        return AnchorRow(signer: signer, hash: hash, label: label, time: time, height: height)
    }
}

/// Anchors as the ledger holds them: each object id's `anchor get` answer, proven against a
/// header certified by a quorum of the genesis' validators (`QueryProof.check`). A digest counts
/// only when the row's signer is the collector the object id names.
public struct LedgerAnchorSource: AnchorSource, Sendable {
    public struct Entry: Sendable, Equatable {
        public var digest: [UInt8]
        /// The block that anchored it.
        public var anchoredAt: UInt64
        /// The certified header the proof was read at, and how many validators signed it.
        public var provenAt: UInt64
        public var signers: Int
    }

    public private(set) var entries: [String: Entry] = [:]

    public init() {}

    /// Adds one proof after checking it: certified by the genesis' validators, an `anchor get`
    /// of a meter object id, answered with a row the object id's collector signed.
    /// - Throws: `LedgerError` saying which part failed.
    public mutating func add(_ proof: QueryProof, genesis: LedgerGenesis) throws {
        try proof.check(genesis: genesis)
        guard proof.chaincode == "anchor", proof.function == "get", proof.args.count == 1,
              let id = String(validating: proof.args[0], as: UTF8.self) else {
            throw LedgerError("the proof is not of an `anchor get` query")
        }
        guard case let .ok(bytes) = proof.result else { throw LedgerError("the ledger holds nothing under \(id) (the proof says: \(proof.result))") }
        guard let row = AnchorRow.decode(bytes) else { throw LedgerError("the row under \(id) is not an anchor row") }
        let parts = id.split(separator: "/")
        guard parts.count == 4, parts[0] == "meter", String(parts[1]) == Hex.encode(row.signer) else {
            throw LedgerError("\(id) was anchored by \(Hex.encode(row.signer.prefix(8)))…, not by the collector it names")
        }
        entries[id] = Entry(digest: row.hash, anchoredAt: row.height, provenAt: proof.header.height,
                            signers: proof.headerCertificate.signatures.count)
    }

    public func anchoredDigest(_ objectID: String) -> [UInt8]? { entries[objectID]?.digest }
}

/// A ledger's current state as an anchor source (the simulator's checker reads a node's ledger
/// directly; a proof for someone else carries `QueryProof`s instead).
public struct LedgerStateAnchors: AnchorSource {
    let ledger: Ledger
    public init(_ ledger: Ledger) { self.ledger = ledger }

    public func row(_ objectID: String) -> AnchorRow? {
        guard case let .ok(bytes) = ledger.query(chaincode: "anchor", function: "get", args: [Array(objectID.utf8)]).result else { return nil }
        return AnchorRow.decode(bytes)
    }

    public func anchoredDigest(_ objectID: String) -> [UInt8]? {
        guard let r = row(objectID) else { return nil }
        let parts = objectID.split(separator: "/")
        guard parts.count == 4, String(parts[1]) == Hex.encode(r.signer) else { return nil }
        return r.hash
    }
}
