import MeshCore
import Node

/// What `iotaf status` and `iotaf send` show of one transfer.
public struct TransferReport: Codable, Sendable, Equatable {
    public var id: String
    /// "out" (this node sends) or "in".
    public var direction: String
    public var peer: String
    public var name: String
    public var size: UInt64
    /// Out: bytes the receiver acknowledged. In: bytes written.
    public var bytes_done: UInt64
    /// hashing, sending, awaiting_result, receiving, verifying, completed, failed.
    public var state: String
    public var error: String?
    /// In: where the file was written.
    public var path: String?
    public var stream: UInt16
    public var elapsed_s: Double

    /// A transfer id as reports and the control socket write it.
    public static func hex(_ id: UInt64) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 16)
        for k in 0..<16 { out[k] = digits[Int((id >> UInt64(60 - 4 * k)) & 0xf)] }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A transfer's state; the raw values are what reports show (`iotaf send` puts them in words).
public enum TransferState: String, Sendable {
    case hashing, sending
    case awaitingResult = "awaiting_result"
    case receiving, verifying, completed, failed

    var isOver: Bool { self == .completed || self == .failed }
}

/// Commands of the file-transfer service, carried in `NodeCommand.service(FileTransferService.protocolID, …)`.
public enum FileCommand: Sendable, Equatable {
    /// Send the file at `path` (in the node's `FileStore`) to member `to` on channel stream `stream`.
    /// Answered at once with `.accepted` or `.refused`.
    case send(path: String, to: NodeID, stream: UInt16)
}

/// Events of the file-transfer service, carried in `NodeEvent.service(FileTransferService.protocolID, …)`.
public enum FileEvent: Sendable, Equatable {
    /// A `.send` command was taken: its transfer id.
    case accepted(transfer: UInt64, to: NodeID, name: String)
    /// A `.send` command was refused: why, in words.
    case refused(to: NodeID, reason: String)
    /// The receiver verified the file's hash and kept it.
    case delivered(transfer: UInt64, to: NodeID, name: String, size: UInt64)
    /// A file arrived whole, its hash verified, and was placed at `path`.
    case received(transfer: UInt64, from: NodeID, path: String, size: UInt64, hash: [UInt8])
    /// A transfer ended without the file arriving; `outgoing` says which side this node was.
    case failed(transfer: UInt64, peer: NodeID, outgoing: Bool, name: String, reason: String)
}

/// Why the service dropped a message, counted by reason.
public enum FileDropReason: String, Sendable, CaseIterable {
    /// A transfer message that does not decode (`TransferWire.decode`).
    case malformed
    /// A chunk or result for a transfer this node does not know (finished, failed, or never offered).
    case unknownTransfer = "unknown_transfer"
    /// A channel message on the transfer endpoint that is not a transfer message.
    case notATransfer = "not_a_transfer"
    case fromSelf = "from_self"
    /// A frame to a peer that is no longer a member.
    case noRoute = "no_route"
}
