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

    // Mutating helpers: called as `members.values[i].method()`, they change the row in place
    // (the dictionary's modify accessor), where reading `members.values[i].field` copies the
    // whole row (two arrays retained, the struct copied) for each field read.

    /// A probe goes out: notes when and returns what the probe needs from the row.
    mutating func probed(at now: Instant) -> (publicKey: [UInt8], rtt: Duration?) {
        lastProbe = now
        return (identity.publicKey, rtt)
    }

    /// A message came from the member at `address`; returns whether it moved and whether it was alive.
    mutating func heard(from address: UnderlayAddress, at now: Instant) -> (moved: Bool, wasAlive: Bool) {
        lastHeard = now
        missedProbes = 0
        let moved = self.address != address
        if moved { self.address = address }
        return (moved, state == .alive)
    }

    /// A probe was answered after `sample`: folds it into the smoothed round-trip time.
    mutating func answered(after sample: Duration, sampleNanos: Int64, configured: Bool) {
        if configured { self.configured = true }
        if let old = rtt {
            rtt = .nanoseconds((old.nanoseconds * 7 + sampleNanos) / 8)
        } else {
            rtt = sample
        }
    }
}
