import Testing
import Ledger
import Meters
import MeshCore
import Sodium

@Suite struct MerkleTests {
    static func hashes(_ n: Int) -> [[UInt8]] { (0..<n).map { Blake2b.hash([UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)], outputLength: 32) } }

    @Test func everyLeafOfEveryTreeSizeProvesAndNoOtherLeafDoes() {
        for n in 1...40 {
            let t = MeterMerkleTree(readHashes: Self.hashes(n).reversed())
            // The same shape as the ledger's payload root over the sorted hashes (RFC 6962).
            #expect(t.root == MerkleRoot.of(t.leaves))
            for i in 0..<n {
                let p = t.path(i)
                #expect(MeterMerkleTree.verify(readHash: t.leaves[i], index: i, count: n, path: p, root: t.root))
                #expect(!MeterMerkleTree.verify(readHash: t.leaves[(i + 1) % n], index: i, count: n, path: p, root: t.root) || n == 1)
                if n > 1 {
                    #expect(!MeterMerkleTree.verify(readHash: t.leaves[i], index: (i + 1) % n, count: n, path: p, root: t.root))
                }
            }
        }
    }

    @Test func theRootNamesASetNotAnOrder() {
        let h = Self.hashes(9)
        let a = MeterMerkleTree(readHashes: h)
        let b = MeterMerkleTree(readHashes: h.reversed() + [h[3]])
        #expect(a.root == b.root && b.count == 9)
        #expect(a.index(of: h[4]) != nil && a.index(of: Blake2b.hash([1, 2, 3], outputLength: 32)) == nil)
        #expect(MeterMerkleTree(readHashes: []).root == MerkleRoot.of([]))
    }

    @Test func aTamperedPathFails() {
        let t = MeterMerkleTree(readHashes: Self.hashes(13))
        var p = t.path(6)
        p[1][0] ^= 1
        #expect(!MeterMerkleTree.verify(readHash: t.leaves[6], index: 6, count: 13, path: p, root: t.root))
        #expect(!MeterMerkleTree.verify(readHash: t.leaves[6], index: 6, count: 13, path: t.path(6).dropLast(), root: t.root))
        #expect(!MeterMerkleTree.verify(readHash: t.leaves[6], index: 6, count: 13, path: t.path(6) + [t.root], root: t.root))
    }
}
