import MeshCore

public enum MemberState: String, Sendable, Equatable, Codable, CaseIterable {
    /// Heard of from another member, not yet heard from directly.
    case unknown
    case alive
    case suspect
    case dead
}

/// One row of the member table.
public struct Member: Sendable, Equatable {
    public let identity: PeerIdentity
    public internal(set) var address: UnderlayAddress
    public internal(set) var state: MemberState
    /// Smoothed round-trip time (RFC 6298 weights); nil until a probe is answered.
    public internal(set) var rtt: Duration?
    public internal(set) var lastHeard: Instant?
    public internal(set) var stateSince: Instant
    /// Configured by the operator (a seed): never forgotten.
    public internal(set) var configured: Bool
    var missedProbes = 0
    var lastProbe: Instant?

    public var nodeID: NodeID { identity.nodeID }
}
