import MeshCore
import Sodium

/// A sparse Merkle tree over all state, keyed by BLAKE2b-256 of the state key (the shape Diem and
/// Aptos use): a key's place is fixed by its hash, so an update rehashes one path (O(log n)), the
/// root depends only on the set of rows (not the order they were written in), and a proof of absence
/// is one path ending in an empty subtree or in another key's leaf. Compact: a subtree holding one
/// leaf is that leaf, so a path is about log2(n) deep, not 256. Hashes: Docs/ledger.md, "State root".
public struct StateTree: Sendable {
    indirect enum Node: Sendable {
        case empty
        case leaf(keyHash: [UInt8], valueHash: [UInt8], hash: [UInt8])
        case branch(left: Node, right: Node, hash: [UInt8])

        var hash: [UInt8] {
            switch self {
            case .empty: StateTree.emptyHash
            case .leaf(_, _, let h), .branch(_, _, let h): h
            }
        }
    }

    public static let emptyHash = [UInt8](repeating: 0, count: 32)
    private var root: Node = .empty
    public private(set) var count = 0

    public init() {}

    public var rootHash: [UInt8] { root.hash }

    public static func keyHash(_ key: [UInt8]) -> [UInt8] { Blake2b.hash(key, outputLength: 32) }
    public static func valueHash(_ value: [UInt8]) -> [UInt8] { Blake2b.hash(value, outputLength: 32) }
    static func leafHash(keyHash: [UInt8], valueHash: [UInt8]) -> [UInt8] {
        var b = [UInt8](); b.reserveCapacity(65)
        b.append(0); b += keyHash; b += valueHash
        return Blake2b.hash(b, outputLength: 32)
    }
    static func branchHash(_ l: [UInt8], _ r: [UInt8]) -> [UInt8] {
        var b = [UInt8](); b.reserveCapacity(65)
        b.append(1); b += l; b += r
        return Blake2b.hash(b, outputLength: 32)
    }
    static func bit(_ h: [UInt8], _ depth: Int) -> Bool { h[depth >> 3] & (0x80 >> UInt8(depth & 7)) != 0 }

    /// Sets `key` to `value` (insert or replace).
    public mutating func set(_ key: [UInt8], _ value: [UInt8]) {
        let kh = StateTree.keyHash(key), vh = StateTree.valueHash(value)
        var added = false
        root = StateTree.insert(root, kh, vh, 0, &added)
        if added { count += 1 }
    }

    /// Removes `key`; nothing if absent.
    public mutating func remove(_ key: [UInt8]) {
        var removed = false
        root = StateTree.delete(root, StateTree.keyHash(key), 0, &removed)
        if removed { count -= 1 }
    }

    static func makeBranch(_ l: Node, _ r: Node) -> Node { .branch(left: l, right: r, hash: branchHash(l.hash, r.hash)) }

    static func insert(_ n: Node, _ kh: [UInt8], _ vh: [UInt8], _ depth: Int, _ added: inout Bool) -> Node {
        switch n {
        case .empty:
            added = true
            return .leaf(keyHash: kh, valueHash: vh, hash: leafHash(keyHash: kh, valueHash: vh))
        case .leaf(let ok, _, _):
            if ok == kh { return .leaf(keyHash: kh, valueHash: vh, hash: leafHash(keyHash: kh, valueHash: vh)) }
            added = true
            return split(n, ok, .leaf(keyHash: kh, valueHash: vh, hash: leafHash(keyHash: kh, valueHash: vh)), kh, depth)
        case .branch(let l, let r, _):
            return bit(kh, depth) ? makeBranch(l, insert(r, kh, vh, depth + 1, &added))
                                  : makeBranch(insert(l, kh, vh, depth + 1, &added), r)
        }
    }

    /// Two leaves that share the path down to `depth`: branches until their key hashes differ.
    static func split(_ a: Node, _ ak: [UInt8], _ b: Node, _ bk: [UInt8], _ depth: Int) -> Node {
        let ba = bit(ak, depth), bb = bit(bk, depth)
        if ba == bb {
            let below = split(a, ak, b, bk, depth + 1)
            return ba ? makeBranch(.empty, below) : makeBranch(below, .empty)
        }
        return ba ? makeBranch(b, a) : makeBranch(a, b)
    }

    static func delete(_ n: Node, _ kh: [UInt8], _ depth: Int, _ removed: inout Bool) -> Node {
        switch n {
        case .empty: return n
        case .leaf(let ok, _, _):
            if ok == kh { removed = true; return .empty }
            return n
        case .branch(let l, let r, _):
            let nl = bit(kh, depth) ? l : delete(l, kh, depth + 1, &removed)
            let nr = bit(kh, depth) ? delete(r, kh, depth + 1, &removed) : r
            guard removed else { return n }
            // Canonical shape: a subtree with one leaf is that leaf, with none is empty.
            switch (nl, nr) {
            case (.empty, .empty): return .empty
            case (.leaf, .empty): return nl
            case (.empty, .leaf): return nr
            default: return makeBranch(nl, nr)
            }
        }
    }

    /// The proof for `key` against `rootHash`: of inclusion if the key is present, of absence otherwise.
    public func prove(_ key: [UInt8]) -> StateProof {
        let kh = StateTree.keyHash(key)
        var siblings: [[UInt8]] = []
        var n = root, depth = 0
        while true {
            switch n {
            case .empty:
                return StateProof(siblings: siblings, terminal: .empty)
            case .leaf(let ok, let ov, _):
                return StateProof(siblings: siblings, terminal: .leaf(keyHash: ok, valueHash: ov))
            case .branch(let l, let r, _):
                if StateTree.bit(kh, depth) { siblings.append(l.hash); n = r } else { siblings.append(r.hash); n = l }
                depth += 1
            }
        }
    }
}

/// A Merkle path from the root to where `key`'s path ends: the siblings from the root down, and
/// what the path ends in (an empty subtree, or a leaf: `key`'s own, or another key's, which proves
/// `key` absent). Checked with nothing but the root (`verify`).
public struct StateProof: Sendable, Equatable {
    public enum Terminal: Sendable, Equatable {
        case empty
        case leaf(keyHash: [UInt8], valueHash: [UInt8])
    }

    public var siblings: [[UInt8]]
    public var terminal: Terminal

    public init(siblings: [[UInt8]], terminal: Terminal) {
        self.siblings = siblings
        self.terminal = terminal
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case rootMismatch
        case wrongLeaf
        case malformed

        public var description: String {
            switch self {
            case .rootMismatch: "the proof does not lead to the state root"
            case .wrongLeaf: "the proof's leaf does not say what the answer claims"
            case .malformed: "the proof is malformed"
            }
        }
    }

    /// Checks that `key` has `value` (non-nil) or is absent (nil) in the state whose root is `root`.
    public func verify(root: [UInt8], key: [UInt8], value: [UInt8]?) throws(Failure) {
        guard siblings.count <= 256, siblings.allSatisfy({ $0.count == 32 }) else { throw .malformed }
        let kh = StateTree.keyHash(key)
        var current: [UInt8]
        switch terminal {
        case .empty:
            guard value == nil else { throw .wrongLeaf }
            current = StateTree.emptyHash
        case .leaf(let ok, let ov):
            guard ok.count == 32, ov.count == 32 else { throw .malformed }
            if let value {
                guard ok == kh, ov == StateTree.valueHash(value) else { throw .wrongLeaf }
            } else {
                // Another key's leaf where our path ends proves absence only if it really lies on our path.
                guard ok != kh, (0..<siblings.count).allSatisfy({ StateTree.bit(ok, $0) == StateTree.bit(kh, $0) }) else {
                    throw .wrongLeaf
                }
            }
            current = StateTree.leafHash(keyHash: ok, valueHash: ov)
        }
        for depth in stride(from: siblings.count - 1, through: 0, by: -1) {
            current = StateTree.bit(kh, depth) ? StateTree.branchHash(siblings[depth], current)
                                                : StateTree.branchHash(current, siblings[depth])
        }
        guard current == root else { throw .rootMismatch }
    }

    /// `u16 count || count × sibling(32) || u8 terminal (0 empty, 1 leaf) || [key_hash(32) || value_hash(32)]`.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 3 + siblings.count * 32 + 64)
        w.u16(UInt16(siblings.count))
        for s in siblings { w.raw(s) }
        switch terminal {
        case .empty: w.u8(0)
        case .leaf(let k, let v): w.u8(1); w.raw(k); w.raw(v)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(Failure) -> StateProof {
        var r = ByteReader(bytes)
        do {
            let n = Int(try r.u16())
            guard n <= 256 else { throw Failure.malformed }
            var sib: [[UInt8]] = []
            for _ in 0..<n { sib.append(try r.raw(32)) }
            let t: Terminal
            switch try r.u8() {
            case 0: t = .empty
            case 1: t = .leaf(keyHash: try r.raw(32), valueHash: try r.raw(32))
            default: throw Failure.malformed
            }
            guard r.remaining == 0 else { throw Failure.malformed }
            return StateProof(siblings: sib, terminal: t)
        } catch {
            throw .malformed
        }
    }
}
