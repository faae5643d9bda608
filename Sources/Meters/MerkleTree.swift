import Sodium

/// The collector's Merkle tree over the hashes of one batch of reads (RFC 6962 / RFC 9162 shape
/// over BLAKE2b-256, as the ledger's payload root): leaf `H(0x00 ‖ read hash)`, node
/// `H(0x01 ‖ left ‖ right)`, the left subtree holding the largest power of two below n leaves;
/// the empty tree is `H("")`. Leaves are the read hashes sorted bytewise with duplicates removed,
/// so the root names a set of reads, not an arrival order.
public struct MeterMerkleTree: Sendable {
    /// The sorted, distinct read hashes.
    public let leaves: [[UInt8]]
    public let root: [UInt8]
    /// levels[0] = leaf hashes; each level above pairs the one below (an odd last node is carried up).
    private let levels: [[[UInt8]]]

    public init(readHashes: [[UInt8]]) {
        var sorted = readHashes.sorted { $0.lexicographicallyPrecedes($1) }
        var w = 0
        for i in sorted.indices where i == 0 || sorted[i] != sorted[w - 1] { sorted[w] = sorted[i]; w += 1 }
        sorted.removeLast(sorted.count - w)
        leaves = sorted
        var level = sorted.map(Self.leafHash)
        var all = [level]
        // RFC 6962's split (largest power of two below n on the left) is the same tree as pairing
        // left to right level by level and carrying an odd last node up unchanged.
        while level.count > 1 {
            var up: [[UInt8]] = []
            up.reserveCapacity((level.count + 1) / 2)
            var i = 0
            while i + 1 < level.count { up.append(Self.nodeHash(level[i], level[i + 1])); i += 2 }
            if i < level.count { up.append(level[i]) }
            level = up
            all.append(level)
        }
        levels = all
        root = level.first ?? Blake2b.hash([], outputLength: 32)
    }

    public var count: Int { leaves.count }

    /// Where `readHash` is among the leaves; nil when it is not in the tree.
    public func index(of readHash: [UInt8]) -> Int? {
        var lo = 0, hi = leaves.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if leaves[mid].lexicographicallyPrecedes(readHash) { lo = mid + 1 } else { hi = mid }
        }
        return lo < leaves.count && leaves[lo] == readHash ? lo : nil
    }

    /// The audit path of leaf `index`: sibling hashes from the leaf up (RFC 9162 §2.1.3).
    public func path(_ index: Int) -> [[UInt8]] {
        precondition(index >= 0 && index < leaves.count, "leaf index outside the tree")
        var out: [[UInt8]] = []
        var i = index
        for level in levels.dropLast() {
            let sibling = i ^ 1
            if sibling < level.count { out.append(level[sibling]) }
            i /= 2
        }
        return out
    }

    public static func leafHash(_ readHash: [UInt8]) -> [UInt8] { Blake2b.hash([0] + readHash, outputLength: 32) }
    static func nodeHash(_ l: [UInt8], _ r: [UInt8]) -> [UInt8] { Blake2b.hash([1] + l + r, outputLength: 32) }

    /// Whether `path` leads from `readHash` at `index` of a tree of `count` leaves to `root`
    /// (RFC 9162 §2.1.3.2, verifying an inclusion proof).
    public static func verify(readHash: [UInt8], index: Int, count: Int, path: [[UInt8]], root: [UInt8]) -> Bool {
        guard index >= 0, index < count, path.count <= 64 else { return false }
        var fn = index, sn = count - 1
        var r = leafHash(readHash)
        for p in path {
            guard p.count == 32, sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1; sn >>= 1
        }
        return sn == 0 && r == root
    }
}
