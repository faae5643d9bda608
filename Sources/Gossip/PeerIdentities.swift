import MeshCore

/// Interns peer entries (identity and address) so that a member row stores a 4-byte index instead
/// of the entry itself (two arrays and an address: 72 bytes, plus 160 heap bytes when decoded).
/// A simulator running thousands of cores in one process hands them all one table, so each
/// identity is stored once for the whole run; a node's single core gets a table of its own.
///
/// Append-only: an index stays valid for the table's life. A node's own table therefore grows
/// with every (member, address) pair it ever held; forgotten members are not reclaimed.
///
/// Not locked (it is read on every member lookup): every core sharing one table must run on one
/// thread, as a simulation does. Interning returns an index to an equal entry, so sharing cannot
/// change what a core decides. For the same reason its stored properties skip the runtime's
/// dynamic exclusivity checks (`@exclusivity(unchecked)`): every member lookup and every decoded
/// key reads them, and no access to them ever overlaps another (no method calls out while it
/// holds one).
public final class PeerIdentities: @unchecked Sendable {
    @exclusivity(unchecked) private var entries: [PeerEntry] = []
    /// For each entry, the first entry of its node: a dense per-node key.
    @exclusivity(unchecked) private var first: [UInt32] = []
    /// The first entry held for each node; `next` chains its others (after address changes).
    @exclusivity(unchecked) private var byNode: [NodeID: UInt32] = [:]
    @exclusivity(unchecked) private var next: [UInt32] = []
    /// The first entry of each node by its public key: the decoder's way to a known identity
    /// without the BLAKE2b that derives a node id.
    @exclusivity(unchecked) private var byKey: [PublicKey: UInt32] = [:]
    private static let none = UInt32.max

    public init() {}

    /// The index of an entry equal to `e` (stored on first sight, sharing the identity's arrays
    /// with an earlier entry of the same node).
    public func intern(_ e: PeerEntry) -> UInt32 {
        let i = UInt32(entries.count)
        precondition(i < Self.none, "peer identity table full")
        if let head = byNode[e.nodeID] {
            var k = head
            while true {
                if entries[Int(k)].address == e.address { return k }
                if next[Int(k)] == Self.none { break }
                k = next[Int(k)]
            }
            entries.append(PeerEntry(peer: entries[Int(head)].peer, address: e.address))
            first.append(head)
            next.append(Self.none)
            next[Int(k)] = i
            return i
        }
        entries.append(e)
        first.append(i)
        next.append(Self.none)
        byNode[e.nodeID] = i
        byKey[e.peer.publicKey] = i
        return i
    }

    /// The first entry held for `p`'s node (made, with an unspecified address, if none is):
    /// what the gossip queue stores for updates that carry an identity but no address.
    func intern(identity p: PeerIdentity) -> UInt32 {
        if let head = byNode[p.nodeID] { return head }
        return intern(PeerEntry(peer: p, address: UnderlayAddress(high: 0, low: 0, port: 0)))
    }

    /// The identity held for this public key, if any (equal to `PeerIdentity(publicKey:)`, and
    /// sharing the held arrays).
    public func identity(forKey key: PublicKey) -> PeerIdentity? {
        byKey[key].map { entries[Int($0)].peer }
    }

    /// The first entry index of a node already held, if any: a per-node key.
    func firstEntry(of id: NodeID) -> UInt32? { byNode[id] }

    @inline(__always) func nodeKey(_ i: UInt32) -> UInt32 { first[Int(i)] }
    @inline(__always) func identity(_ i: UInt32) -> PeerIdentity { entries[Int(i)].peer }
    @inline(__always) func entry(_ i: UInt32) -> PeerEntry { entries[Int(i)] }
    @inline(__always) func nodeID(_ i: UInt32) -> NodeID { entries[Int(i)].peer.nodeID }
    @inline(__always) func address(_ i: UInt32) -> UnderlayAddress { entries[Int(i)].address }

    /// The entry at an index returned by `intern` (the simulator maps addresses to its nodes once per index).
    public func entry(at i: UInt32) -> PeerEntry { entries[Int(i)] }

    /// Entries held (one per node and address seen).
    public var count: Int { entries.count }
}
