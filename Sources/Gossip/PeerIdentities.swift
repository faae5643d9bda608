import Foundation
import MeshCore

/// Shares identities' key and node id arrays between member tables. A simulator running thousands
/// of cores in one process hands them all one table: every core then stores a reference to one copy
/// of each identity instead of its own decoded arrays (about 160 heap bytes a row). A single node
/// needs none (its rows already share their key with the table's index).
///
/// Thread-safe; interning returns an equal value, so it cannot change what a core decides.
public final class PeerIdentities: @unchecked Sendable {
    private var byID: [NodeID: PeerIdentity] = [:]
    private let lock = NSLock()

    public init() {}

    /// The shared copy of `p` (stored on first sight).
    public func intern(_ p: PeerIdentity) -> PeerIdentity {
        lock.lock()
        defer { lock.unlock() }
        if let known = byID[p.nodeID] { return known }
        byID[p.nodeID] = p
        return p
    }

    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return byID.count
    }
}
