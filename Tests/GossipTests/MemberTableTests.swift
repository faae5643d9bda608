import Testing
import MeshCore
@testable import Gossip

/// The member table's index (row numbers tagged with bits of the id) finds exactly the rows a
/// plain dictionary would, through growth (the tag's width changes with the index size),
/// removals (the index is rebuilt) and lookups of ids it does not hold.
@Suite struct MemberTableTests {
    static func member(_ i: Int, incarnation: UInt32 = 1) -> GossipMember {
        GossipMember(entry: PeerEntry(peer: Mesh.identity(i), address: Mesh.address(i)), state: .alive,
                     incarnation: incarnation, attributeVersion: 0, stateSince: .zero)
    }

    @Test func findsEveryHeldMemberAndNoOtherThroughGrowthAndRemovals() {
        var table = MemberTable(identities: PeerIdentities())
        var expected: [NodeID: UInt32] = [:]
        let n = 1500
        for i in 0..<n {
            table[Mesh.identity(i).nodeID] = Self.member(i, incarnation: UInt32(i + 1))
            expected[Mesh.identity(i).nodeID] = UInt32(i + 1)
            // Every size the index passes through: all held ids found, with their own rows.
            if i.nonzeroBitCount == 1 || i == n - 1 {
                for k in 0...i { #expect(table.versions(Mesh.identity(k).nodeID)?.incarnation == UInt32(k + 1)) }
            }
        }
        // Ids never inserted are not found.
        for i in n..<(n + 200) { #expect(!table.contains(Mesh.identity(i).nodeID)) }
        // Remove every third member (the index is rebuilt at the same size), then look all up.
        table.removeRows { $0 % 3 == 0 }
        for i in 0..<n where i % 3 == 0 { expected[Mesh.identity(i).nodeID] = nil }
        #expect(table.count == expected.count)
        for i in 0..<(n + 200) {
            let id = Mesh.identity(i).nodeID
            #expect(table.versions(id)?.incarnation == expected[id], "member \(i)")
            let found: NodeID? = table[id]?.nodeID
            let want: NodeID? = expected[id] == nil ? nil : id
            #expect(found == want)
        }
        // Rows keep their first-learned order.
        let kept: [UInt32] = Array(table.values.map(\.incarnation))
        let wanted: [UInt32] = (0..<n).filter { $0 % 3 != 0 }.map { UInt32($0 + 1) }
        #expect(kept == wanted)
    }
}
