import MeshCore

/// The member table, compact because every node holds a row per member and a simulator holds
/// N² of them: rows live in an array in insertion order (the order every scan walks), each a
/// 24-byte record whose peer entry is a 4-byte index into `PeerIdentities`; a node id finds its
/// row through an open-addressing index of 4-byte slots, each the row number in its low bits and a
/// tag of the id in the bits the row number cannot use, so a probe past another member's slot
/// costs no read of its row or identity (those are cache misses on tables of thousands of rows). The fields only members in direct
/// contact need (RTT, last heard, fetched attributes) live beside the rows, for the few that have
/// them. Anti-entropy's bucket digest is kept up to date on every change, so an exchange does not
/// walk the table.
///
/// Readers get `GossipMember` values (built from the row on each read); the core writes them
/// back through the subscript. Nothing here is iterated in hash order.
public struct MemberTable {
    struct Row {
        var stateSinceNanos: Int64
        var entry: UInt32
        var incarnation: UInt32
        var attributeVersion: UInt32
        var state: MemberState
        var hasContact: Bool
    }

    /// What a member in direct contact has beyond its row; absent (all defaults) for the rest.
    struct Contact: Equatable {
        var heldAttributeVersion: UInt32 = 0
        var requestedAttributeVersion: UInt32 = 0
        var attributes: Attributes?
        var rttNanos = Int64.min
        var lastHeardNanos = Int64.min
        var lastToldNanos = Int64.min

        init() {}
        init(_ m: GossipMember) {
            heldAttributeVersion = m.heldAttributeVersion
            requestedAttributeVersion = m.requestedAttributeVersion
            attributes = m.attributes
            rttNanos = m.rttNanos
            lastHeardNanos = m.lastHeardNanos
            lastToldNanos = m.lastToldNanos
        }
        var isEmpty: Bool { self == Contact() }
    }

    private(set) var rows: [Row] = []
    /// Row numbers by node id, open addressing with linear probing; `empty` marks a free slot.
    /// A slot is the row number (`rowMask` bits: the index holds at most 3/4 as many rows as
    /// slots, so a row number always fits, and never has all its bits set) or'ed with the id's
    /// tag (`tag(_:)`, the bits above).
    private var index: [UInt32] = []
    private var rowMask: UInt32 = 0
    private static let empty = UInt32.max
    /// Looked up by node id only, never iterated.
    private var contacts: [NodeID: Contact] = [:]
    let identities: PeerIdentities
    /// Anti-entropy's 64 bucket sums over the rows (wrapping, so order-independent).
    private(set) var digestBuckets = [UInt64](repeating: 0, count: GossipWire.bucketCount)
    /// Rows whose state is alive or suspect (still members, in SWIM's sense), kept on every
    /// change: a driver's convergence sampling reads it instead of walking the rows.
    public private(set) var memberCount = 0

    init(identities: PeerIdentities) { self.identities = identities }

    public var count: Int { rows.count }
    public var isEmpty: Bool { rows.isEmpty }

    /// Members in the order they were first learned.
    public var values: LazyMapSequence<Range<Int>, GossipMember> {
        (0..<rows.count).lazy.map { [self] in member(at: $0) }
    }

    public internal(set) subscript(id: NodeID) -> GossipMember? {
        get { find(id).map(member(at:)) }
        set {
            if let r = find(id) {
                if let m = newValue { update(row: r, to: m) } else { removeRows { $0 == r } }
            } else if let m = newValue {
                insert(m)
            }
        }
    }

    public func contains(_ id: NodeID) -> Bool { find(id) != nil }

    /// A member's incarnation, attribute version and state, read from its row without building a
    /// `GossipMember`: enough to refuse an update that is old news.
    func versions(_ id: NodeID) -> (incarnation: UInt32, attributeVersion: UInt32, state: MemberState)? {
        guard let r = find(id) else { return nil }
        let row = rows[r]
        return (row.incarnation, row.attributeVersion, row.state)
    }
    func nodeID(atRow r: Int) -> NodeID { identities.nodeID(rows[r].entry) }
    func entry(atRow r: Int) -> PeerEntry { identities.entry(rows[r].entry) }

    /// `id`'s peer entry (key, id, address), without building a `GossipMember`: what routing a
    /// message to a member needs, on every send.
    public func entry(of id: NodeID) -> PeerEntry? {
        guard let r = find(id) else { return nil }
        return identities.entry(rows[r].entry)
    }

    /// The peer entry index and state of `id`'s row, without building a `GossipMember`.
    public func entryAndState(of id: NodeID) -> (entry: UInt32, state: MemberState)? {
        guard let r = find(id) else { return nil }
        return (rows[r].entry, rows[r].state)
    }

    /// A member's smoothed round-trip time in nanoseconds (`Int64.min`: none measured), nil for
    /// no member: what view maintenance sorts peers by, without building a `GossipMember` each time.
    func rttNanos(of id: NodeID) -> Int64? {
        guard let r = find(id) else { return nil }
        guard rows[r].hasContact, let c = contacts[id] else { return .min }
        return c.rttNanos
    }

    @inline(__always) static func isMember(_ s: MemberState) -> Bool { s == .alive || s == .suspect }

    /// The row's peer entry index and state, for a driver that maps entries to its own nodes
    /// (the simulator's convergence sampling) without building a `GossipMember` per row.
    public func forEachEntry(_ body: (UInt32, MemberState) -> Void) {
        for r in rows { body(r.entry, r.state) }
    }

    func member(at r: Int) -> GossipMember {
        let row = rows[r]
        var m = GossipMember(entry: identities.entry(row.entry), state: row.state, incarnation: row.incarnation,
                             attributeVersion: row.attributeVersion, stateSince: Instant(nanoseconds: row.stateSinceNanos))
        if row.hasContact, let c = contacts[m.nodeID] {
            m.heldAttributeVersion = c.heldAttributeVersion
            m.requestedAttributeVersion = c.requestedAttributeVersion
            m.attributes = c.attributes
            m.rttNanos = c.rttNanos
            m.lastHeardNanos = c.lastHeardNanos
            m.lastToldNanos = c.lastToldNanos
        }
        return m
    }

    // MARK: - Changes

    mutating func insert(_ m: GossipMember) {
        let id = m.nodeID
        if (rows.count + 1) * 4 > index.count * 3 { grow() }
        let r = rows.count
        let c = Contact(m)
        rows.append(Row(stateSinceNanos: m.stateSince.nanoseconds, entry: identities.intern(m.entry), incarnation: m.incarnation,
                        attributeVersion: m.attributeVersion, state: m.state, hasContact: !c.isEmpty))
        if !c.isEmpty { contacts[id] = c }
        if Self.isMember(m.state) { memberCount += 1 }
        place(id, row: r)
        digestBuckets[Self.bucket(id)] &+= GossipCore.rowHash(id, incarnation: m.incarnation, state: m.state)
    }

    mutating func update(row r: Int, to m: GossipMember) {
        var row = rows[r]
        let id = m.nodeID
        if row.incarnation != m.incarnation || row.state != m.state {
            let b = Self.bucket(id)
            digestBuckets[b] &-= GossipCore.rowHash(id, incarnation: row.incarnation, state: row.state)
            digestBuckets[b] &+= GossipCore.rowHash(id, incarnation: m.incarnation, state: m.state)
        }
        if Self.isMember(row.state) != Self.isMember(m.state) { memberCount += Self.isMember(m.state) ? 1 : -1 }
        if identities.address(row.entry) != m.entry.address { row.entry = identities.intern(m.entry) }
        row.incarnation = m.incarnation
        row.attributeVersion = m.attributeVersion
        row.state = m.state
        row.stateSinceNanos = m.stateSince.nanoseconds
        let c = Contact(m)
        if c.isEmpty {
            if row.hasContact { contacts[id] = nil }
            row.hasContact = false
        } else {
            contacts[id] = c
            row.hasContact = true
        }
        rows[r] = row
    }

    /// A member's smoothed round-trip time, set in place: every probe answer does this.
    mutating func setRTTNanos(_ id: NodeID, _ nanos: Int64) {
        guard let r = find(id) else { return }
        contacts[id, default: Contact()].rttNanos = nanos
        rows[r].hasContact = true
    }

    /// Direct contact with an alive member at the address we hold: only its last-heard time
    /// changes, set in place (every received message did this through a `GossipMember` built and
    /// written back). False when the caller must take the general path.
    mutating func noteHeardAlive(_ id: NodeID, address: UnderlayAddress, nanos: Int64) -> Bool {
        guard let r = find(id), rows[r].state == .alive, identities.address(rows[r].entry) == address else { return false }
        contacts[id, default: Contact()].lastHeardNanos = nanos
        rows[r].hasContact = true
        return true
    }

    /// Removes the rows whose numbers satisfy `drop`, keeping the others in order.
    mutating func removeRows(where drop: (Int) -> Bool) {
        var kept: [Row] = []
        kept.reserveCapacity(rows.count)
        for (r, row) in rows.enumerated() {
            if drop(r) {
                let id = identities.nodeID(row.entry)
                digestBuckets[Self.bucket(id)] &-= GossipCore.rowHash(id, incarnation: row.incarnation, state: row.state)
                if row.hasContact { contacts[id] = nil }
                if Self.isMember(row.state) { memberCount -= 1 }
            } else {
                kept.append(row)
            }
        }
        guard kept.count != rows.count else { return }
        rows = kept
        rebuildIndex(capacity: index.count)
    }

    // MARK: - Index

    static func bucket(_ id: NodeID) -> Int { Int(id.leadingWord >> 58) }

    /// The id's bits kept in its slot beside the row number: bits 32+k..<64 of its leading word,
    /// k being log2 of the index size. The probe starts at bits 0..<k xor 29..<29+k, so the tag
    /// tells apart ids that start at the same slot.
    @inline(__always) private func tag(_ w: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: w >> 32) & ~rowMask }

    private func find(_ id: NodeID) -> Int? {
        guard !index.isEmpty else { return nil }
        let mask = index.count - 1
        let w = id.leadingWord
        let t = tag(w)
        var i = Int(truncatingIfNeeded: w ^ (w >> 29)) & mask
        while true {
            let s = index[i]
            if s == Self.empty { return nil }
            // The full id is compared only when the tag agrees: one read of a row and its identity.
            if s & ~rowMask == t {
                let r = Int(s & rowMask)
                if identities.nodeID(rows[r].entry) == id { return r }
            }
            i = (i + 1) & mask
        }
    }

    private mutating func place(_ id: NodeID, row: Int) {
        let mask = index.count - 1
        let w = id.leadingWord
        var i = Int(truncatingIfNeeded: w ^ (w >> 29)) & mask
        while index[i] != Self.empty { i = (i + 1) & mask }
        index[i] = UInt32(row) | tag(w)
    }

    private mutating func grow() { rebuildIndex(capacity: max(16, index.count * 2)) }

    /// `capacity` is a power of two of at least 16, at most 2^32 slots (rows are numbered in 32 bits).
    private mutating func rebuildIndex(capacity: Int) {
        index = [UInt32](repeating: Self.empty, count: capacity)
        rowMask = UInt32(truncatingIfNeeded: capacity - 1)
        for r in rows.indices { place(identities.nodeID(rows[r].entry), row: r) }
    }
}
