// The node's member table is the gossip core's: its rows, states (alive, suspect, dead, left,
// culled) and incarnations are part of the node's API, so users of Node see Gossip's types.
@_exported import Gossip
import MeshCore

/// One row of the member table (the gossip core's row).
public typealias Member = GossipMember

extension GossipMember {
    /// Where the member was last heard from (or, if never heard from directly, where others said it is).
    public var address: UnderlayAddress { entry.address }
    public var identity: PeerIdentity { entry.peer }
}
