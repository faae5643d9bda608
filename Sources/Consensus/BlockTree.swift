/// The blocks a validator knows: a recent window of the committed chain (to serve validators that
/// are behind) and the uncommitted blocks above it, which may fork. Genesis is a node without a block.
struct BlockTree {
    struct Node {
        let hash: BlockHash
        let round: UInt64
        let height: UInt64
        let parent: BlockHash?
        let payloadIDs: [PayloadID]
        /// nil only for genesis.
        let block: Block?
    }

    /// Blocks above the committed height.
    private var pending: [BlockHash: Node] = [:]
    /// Committed blocks in the window, the newest being `committed`.
    private var final: [BlockHash: Node] = [:]
    private var finalOrder: [BlockHash] = []
    private var finalHead = 0
    private(set) var committed: Node
    let retain: Int

    init(genesis: Genesis, retain: Int) {
        let g = Node(hash: genesis.blockHash, round: 0, height: 0, parent: nil, payloadIDs: [], block: nil)
        committed = g
        final[g.hash] = g
        finalOrder = [g.hash]
        self.retain = max(retain, 1)
    }

    subscript(hash: BlockHash) -> Node? { pending[hash] ?? final[hash] }

    var pendingCount: Int { pending.count }

    /// Stores a block above the committed height (blocks at or below it are history: ignored).
    mutating func insert(_ b: Block) {
        guard b.height > committed.height, pending[b.hash] == nil else { return }
        pending[b.hash] = Node(hash: b.hash, round: b.round, height: b.height, parent: b.parent,
                               payloadIDs: b.payloads.map(PayloadID.init), block: b)
    }

    /// Payload ids on the path from `hash` down to (excluding) the committed block; nil when that
    /// path does not reach the committed block (a conflicting branch) or a block is missing.
    func uncommittedPayloads(from hash: BlockHash) -> Set<PayloadID>? {
        guard let path = pathFromCommitted(to: hash) else { return nil }
        var out = Set<PayloadID>()
        for n in path { out.formUnion(n.payloadIDs) }
        return out
    }

    /// The path from the committed block (exclusive) up to `hash` (inclusive), oldest first;
    /// nil when a block is missing or the path does not extend the committed block.
    func pathFromCommitted(to hash: BlockHash) -> [Node]? {
        if hash == committed.hash { return [] }
        var path: [Node] = []
        var cursor = pending[hash]
        while let n = cursor {
            path.append(n)
            guard let p = n.parent else { return nil }
            if p == committed.hash { return path.reversed() }
            cursor = pending[p]
        }
        return nil
    }

    /// Whether any block on the uncommitted path to `hash` carries payloads (then empty blocks are
    /// worth proposing promptly: they are what commits those payloads).
    func pathCarriesPayloads(to hash: BlockHash) -> Bool {
        pathFromCommitted(to: hash)?.contains { !$0.payloadIDs.isEmpty } ?? false
    }

    /// Moves `path` (oldest first, extending the committed block) into the committed window and
    /// drops every pending block that no longer extends the new committed block.
    mutating func commit(_ path: [Node]) {
        guard let top = path.last else { return }
        for n in path {
            final[n.hash] = n
            finalOrder.append(n.hash)
            pending[n.hash] = nil
        }
        committed = top
        pending = pending.filter { _, n in n.height > top.height }
        while finalOrder.count - finalHead > retain {
            final[finalOrder[finalHead]] = nil
            finalHead += 1
        }
        if finalHead > 4096 {
            finalOrder.removeFirst(finalHead)
            finalHead = 0
        }
    }
}
