import Meters
import MeshCore
import Node
import NodeService

/// What a node does in the meter network (`[meter] role`).
public enum MeterRole: String, Sendable, CaseIterable {
    /// Produces reads (its own identity, and any simulated meters it hosts) and forwards them.
    case meter
    /// Keeps reads in custody and forwards them towards a collector.
    case relay
    /// The base station: checks, keeps and anchors reads; sends operators' commands down.
    case collector
}

/// Commands for the meter service, in `NodeCommand.service(MeterService.protocolID, …)`.
public enum MeterCommand: Sendable, Equatable {
    /// Sign and send a read of a meter this node hosts (nil: the node's own identity) for the
    /// interval starting at `intervalStart` (unix seconds).
    case record(meter: PublicKey?, intervalStart: UInt64, durationSeconds: UInt32, registers: [RegisterValue])
    /// Host simulated meters (their Ed25519 seeds): reads recorded for them are signed here, and
    /// commands to them are answered here (`iotaf meter simulate`, the simulator's meter workload).
    case host(seeds: [[UInt8]])
    /// Take custody of reads signed elsewhere (a meter that reached this node by other means).
    case submit([MeterRead])
    /// An operator's command for a meter: sent down the reverse path of its reads (collector).
    case operatorCommand(OperatorCommand)
}

/// What the meter service reports, in `NodeEvent.service(MeterService.protocolID, …)`.
public enum MeterEvent: Sendable, Equatable {
    /// A hosted meter signed a read (custody here until the next hop acknowledges it).
    case recorded(MeterRead)
    /// The collector accepted a read (signature and chain checked, stored).
    case accepted(MeterRead)
    /// The collector closed a batch: the anchor and the read hashes it covers, handed to its `Anchorer`.
    case anchored(MeterAnchor, leaves: [[UInt8]])
    /// The anchor is on the ledger, in the block at `height` (an anchorer that confirms).
    case anchorOnLedger(MeterAnchor, height: UInt64)
    /// This node's preferred parent (nil: none, no route) and its rank changed.
    case parentChanged(NodeID?, rank: UInt16)
    /// A hosted meter acted on an operator's command (or refused it: the ack says why).
    case commandHandled(OperatorCommand, CommandAck.Status)
    /// The acknowledgement of a command this node sent came back.
    case commandAcknowledged(CommandAck)
}

/// How a collector anchors a closed batch (Docs/meters.md, "Anchoring"). `LedgerAnchorer` puts
/// it on the ledger through the node's ledger service and waits for the block; `RecordingAnchorer`
/// keeps the collector's own record and claims nothing more.
public protocol Anchorer: Sendable {
    /// Names the anchorer in status, proofs and reports ("local-record", "ledger").
    var name: String { get }
    /// Whether an anchor waits for an answer (`answer(_:)`) and is retried until it is on the
    /// ledger; false: the collector's record is all there is.
    var confirms: Bool { get }
    /// What anchoring `anchor` takes: outputs for the node (a command to the ledger service).
    /// `request` names the answer.
    func anchor(_ anchor: MeterAnchor, request: UInt64, now: Instant) -> [ServiceOutput<NodeCommand, NodeEvent>]
    /// What a command payload this service was given says about an anchor request (nil: it is
    /// not the anchorer's).
    func answer(_ payload: ServicePayload) -> AnchorAnswer?
}

/// An anchorer's answer about one request.
public enum AnchorAnswer: Sendable, Equatable {
    /// On the ledger, in the block at `height` (durable on this node).
    case onLedger(request: UInt64, height: UInt64)
    /// Not anchored this time (refused, timed out); the collector submits it again.
    case retry(request: UInt64, reason: String)
    /// An answer that needs nothing done (the ledger service accepted the submission).
    case noted
}

/// Records anchors in the collector's own store (table `meter.anchors`) and nowhere else: a proof
/// checked against it shows the read is the one the collector took in, not that a ledger holds it.
public struct RecordingAnchorer: Anchorer {
    public init() {}
    public var name: String { "local-record" }
    public var confirms: Bool { false }
    public func anchor(_ anchor: MeterAnchor, request: UInt64, now: Instant) -> [ServiceOutput<NodeCommand, NodeEvent>] { [] }
    public func answer(_ payload: ServicePayload) -> AnchorAnswer? { nil }
}
