import Gossip
import MeshCore
import NodeService

/// Gossip as a node service: the membership protocol (Sources/Gossip, Docs/gossip.md) behind the
/// `NodeService` contract. It owns the `iG` datagrams and gossip's reliable messages (anti-entropy
/// deltas, full attributes, also `iG`-prefixed, carried on the node's reliable stream), it is the
/// node's `MemberDirectory`, and it reports membership changes the other services hear of.
///
/// Besides the gossip core it keeps what joining needs from a node: configured seeds are asked
/// again until an alive member answers from each (`unansweredSeeds`), since gossip stops retrying
/// once it has any neighbour and a node that others joined first would never reach its own seed.
public struct GossipService: NodeService, MemberDirectory {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    public static let protocolID = ProtocolID(GossipWire.magic[0], GossipWire.magic[1])
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }

    public internal(set) var core: GossipCore
    /// Set only by the simulator, to play a byzantine node that lies about the mesh.
    public var rewriter: (any GossipRewriter)?
    /// Configured seeds (masters, `--peer`) with no alive member at their address yet, in order.
    public private(set) var unansweredSeeds: [UnderlayAddress] = []
    private var seedRetryAt: Instant?
    private var coreWake: Instant?
    /// When a culled sender was last sent its cull (`cullNoticeInterval`).
    private var lastCullNotice: Instant?
    private var started = false
    let joinRetryInterval: Duration
    /// The self record last handed to the driver to persist (nil: none yet, or unknown after a
    /// failed write). Nil at first, so a node writes its record with its first call: a restart
    /// then always resumes above its last life, even one that never raised either number.
    private var persistedSelf: SelfRecord?
    private var nextPersist: UInt64 = 1
    /// Persists handed out and not yet answered with `.persisted`.
    private var writesInFlight = 0
    /// Per persist in flight (by ticket sequence, oldest first): how many sends wait for it. A
    /// failed write drops them, and the core hears so (`noteSendsDropped`).
    private var sendsWaiting: [(sequence: UInt64, count: Int)] = []
    /// How many of the core's culls (`cullOrder`, append-only) were handed to the driver to
    /// persist; zero again after a failed write, so every cull is written again (puts are
    /// idempotent).
    private var persistedCulls = 0

    /// What this node last announced about itself: a restart goes on above it (`resume`), so its
    /// first `alive` beats the mesh's `dead` about its last life with no refutation round.
    /// Stored as one row of table `gossip.self` (empty key, value: incarnation u32 BE then
    /// attribute version u32 BE; Docs/encoding.md).
    struct SelfRecord: Equatable {
        var incarnation: UInt32
        var attributeVersion: UInt32

        static let table = "gossip.self"

        var encoded: [UInt8] {
            var w = ByteWriter()
            w.u32(incarnation)
            w.u32(attributeVersion)
            return w.bytes
        }

        init(incarnation: UInt32, attributeVersion: UInt32) {
            self.incarnation = incarnation
            self.attributeVersion = attributeVersion
        }

        init?(_ value: [UInt8]) {
            guard value.count == 8 else { return nil }
            var r = ByteReader(value)
            guard let i = try? r.u32(), let v = try? r.u32() else { return nil }
            self.init(incarnation: i, attributeVersion: v)
        }
    }

    static let cullNoticeInterval: Duration = .seconds(1)

    /// How often the members heard from are persisted (nil: never).
    let peerSnapshotInterval: Duration?
    private var nextPeerSnapshot: Instant?
    /// The first snapshots come sooner than the interval (5, 10, 20 s after start): a box
    /// killed in its first half-minute still rejoins through the members it had met, instead of
    /// through its seeds alone, which may answer with only part of the mesh.
    static let earlyPeerSnapshots: [Duration] = [.seconds(5), .seconds(10), .seconds(20)]
    private var earlySnapshotsTaken = 0
    /// The rows of the last peer snapshot handed out (by key), so an unchanged table is not
    /// written again: an idle node in a stable mesh then writes nothing to disk (Docs/operations.md,
    /// "Footprint"). Nil until the first, and after a failed write (the next one retries).
    private var lastSnapshotRows: [StoredRow]?
    /// Remembered peers kept at most: enough to rejoin through, few enough that a restart does
    /// not knock on every door of a large mesh. The most recently heard are kept.
    static let maxRememberedPeers = 256

    public init(core: GossipCore, joinRetryInterval: Duration, peerSnapshotInterval: Duration? = nil) {
        self.core = core
        self.joinRetryInterval = joinRetryInterval
        self.peerSnapshotInterval = peerSnapshotInterval
    }

    public var deadline: Instant? {
        var d = coreWake
        if let s = seedRetryAt, d.map({ s < $0 }) ?? true { d = s }
        if let s = nextPeerSnapshot, d.map({ s < $0 }) ?? true { d = s }
        return d
    }

    public func takes(_ command: NodeCommand) -> Bool {
        switch command {
        case .addSeed, .rememberPeer, .membership, .beaconHeard, .rttSample: return true
        case .probe, .sendMessage, .service: return false
        }
    }

    public func purpose(ofSent bytes: [UInt8]) -> String? { core.purpose(ofSent: bytes).rawValue }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        var out: [Output] = []
        switch input {
        case .start:
            started = true
            if let i = peerSnapshotInterval { nextPeerSnapshot = now + min(i, Self.earlyPeerSnapshots[0]) }
            absorb(core.handle(.start, now: now), into: &out)
        case .stop:
            if peerSnapshotInterval != nil, let batch = changedPeerSnapshot() { out.append(.persist(batch, then: [])) }
        case .timer:
            if let w = coreWake, now >= w {
                coreWake = nil
                absorb(core.handle(.timer, now: now), into: &out)
            }
            if let w = seedRetryAt, now >= w { retrySeeds(now: now, into: &out) }
            if let w = nextPeerSnapshot, now >= w, let i = peerSnapshotInterval {
                earlySnapshotsTaken += 1
                let early = Self.earlyPeerSnapshots
                nextPeerSnapshot = now + (earlySnapshotsTaken < early.count ? min(i, early[earlySnapshotsTaken] - early[earlySnapshotsTaken - 1]) : i)
                if let batch = changedPeerSnapshot() { out.append(.persist(batch, then: [])) }
            }
        case let .message(from, bytes, reliable):
            let entry = PeerEntry(peer: from.identity, address: from.address)
            absorb(core.handle(reliable ? .reliableReceived(from: entry, bytes: bytes) : .received(from: entry, bytes: bytes), now: now), into: &out)
        case let .command(command):
            apply(command, now: now, into: &out)
        case let .restored(rows):
            // Culls first: a culled node is never a join target, and a cull of this node stops it.
            restoreCulls(rows.filter { $0.table == Self.cullsTable }, now: now, into: &out)
            // Remembered peers are join targets, as seeds are (gossip stops once it has a neighbour).
            let remembered = rows.compactMap { $0.table == Self.peersTable ? Self.decodePeer($0) : nil }
                .filter { $0.nodeID != core.me.nodeID && core.culls[$0.nodeID] == nil }
            if !remembered.isEmpty {
                absorb(core.handle(.command(.join(remembered.map(\.address))), now: now), into: &out)
            }
            for row in rows where row.table == SelfRecord.table {
                guard let last = SelfRecord(row.value) else {
                    // Not trusted; the current record replaces it with this call.
                    counters.badSelfRecords += 1
                    persistedSelf = nil
                    continue
                }
                absorb(core.handle(.command(.resume(incarnation: last.incarnation, attributeVersion: last.attributeVersion)), now: now), into: &out)
            }
        case let .persisted(ticket, outcome) where ticket.sequence == 0:
            // A peer snapshot: the next one retries, whether or not the members changed meanwhile.
            if case .failed = outcome { counters.failedWrites += 1; lastSnapshotRows = nil }
        case let .persisted(ticket, outcome):
            writesInFlight -= 1
            var dropped = 0
            if let k = sendsWaiting.firstIndex(where: { $0.sequence == ticket.sequence }) {
                dropped = sendsWaiting[k].count
                sendsWaiting.remove(at: k)
            }
            // A failed write leaves the record unknown: the next call persists it again. Not this
            // one: a disk that fails at once would otherwise be asked again at the same instant,
            // forever; the next timer or message retries. Every cull is written again then too
            // (puts are idempotent). The sends that waited for it never left: the core counts
            // them lost, so a node that cannot speak does not take its unanswered questions for
            // the members' silence.
            if case .failed = outcome {
                persistedSelf = nil
                persistedCulls = 0
                counters.failedWrites += 1
                counters.droppedSends += UInt64(dropped)
                core.noteSendsDropped(dropped)
                return out
            }
        case .membership, .offloaded:
            break
        }
        persistSelfBeforeSending(&out)
        return out
    }

    /// The remembered peers' table: key, the member's Ed25519 key (32 bytes); value, the address
    /// it was last heard from: IPv6 (16 bytes, IPv4 as IPv4-mapped) then port (u16 BE).
    public static let peersTable = "gossip.peers"

    /// The members heard from, most recent first, at most `maxRememberedPeers`, as one batch
    /// that replaces the table.
    /// The peer snapshot when its rows differ from the last one handed out, else nil.
    mutating func changedPeerSnapshot() -> PersistBatch? {
        let batch = peerSnapshot()
        guard case let .replace(_, rows)? = batch.ops.first else { return batch }
        let byKey = rows.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        if byKey == lastSnapshotRows { counters.unchangedSnapshotsSkipped += 1; return nil }
        lastSnapshotRows = byKey
        return batch
    }

    func peerSnapshot() -> PersistBatch {
        var heard: [(GossipMember, Instant)] = []
        for m in core.members.values {
            // Never a culled member: the store's peers are reconnect targets.
            guard let h = m.lastHeard, m.state != .culled, core.culls[m.nodeID] == nil, m.nodeID != core.me.nodeID else { continue }
            heard.append((m, h))
        }
        // Most recent first; ties by node id, so the rows do not depend on the table's order.
        heard.sort { (a: (GossipMember, Instant), b: (GossipMember, Instant)) -> Bool in
            if a.1 != b.1 { return a.1 > b.1 }
            return a.0.nodeID < b.0.nodeID
        }
        let rows = heard.prefix(Self.maxRememberedPeers).map { m, _ -> StoredRow in
            var w = ByteWriter(capacity: 18)
            w.raw(m.address.ip)
            w.u16(m.address.port)
            return StoredRow(table: Self.peersTable, key: m.identity.publicKey.bytes, value: w.bytes)
        }
        // Snapshots are not ordered with the self record's writes: no ticket of that sequence.
        return PersistBatch(ticket: PersistTicket(service: Self.protocolID, sequence: 0), ops: [.replace(table: Self.peersTable, rows: Array(rows))])
    }

    /// The culls this node obeys, kept for good: key, the culled node id (32 bytes); value, the
    /// admin-signed `CullRecord` in its gossip encoding (136 bytes, Docs/encoding.md). Restored
    /// at start with the signature checked again against the configured admin keys.
    public static let cullsTable = "gossip.culls"

    /// Applies stored culls whose signature still verifies under this node's network and admin
    /// keys; any other row (undecodable, subject not its key, signed by a key no longer trusted,
    /// altered) is dropped, counted `badCullRecords`, and deleted from the store.
    private mutating func restoreCulls(_ rows: [StoredRow], now: Instant, into out: inout [Output]) {
        var bad: [StorageOp] = []
        for row in rows {
            guard let c = CullRecord(encoded: row.value), c.subject.bytes == row.key,
                  c.verify(network: core.config.network, adminKeys: core.config.adminKeys) == nil else {
                counters.badCullRecords += 1
                bad.append(.delete(table: Self.cullsTable, key: row.key))
                continue
            }
            absorb(core.handle(.command(.cull(c)), now: now), into: &out)
        }
        // What was restored is on disk already.
        persistedCulls = core.cullOrder.count
        if !bad.isEmpty {
            out.append(.persist(PersistBatch(ticket: PersistTicket(service: Self.protocolID, sequence: 0), ops: bad), then: []))
        }
    }

    static func decodePeer(_ row: StoredRow) -> PeerEntry? {
        guard row.value.count == 18, let peer = PeerIdentity(publicKey: row.key) else { return nil }
        let port = UInt16(row.value[16]) << 8 | UInt16(row.value[17])
        return PeerEntry(peer: peer, address: UnderlayAddress(ip: Array(row.value[0..<16]), port: port))
    }

    public struct Counters: Sendable, Equatable {
        /// Self records written, and writes that failed.
        public var selfWrites: UInt64 = 0
        public var failedWrites: UInt64 = 0
        /// Datagrams and reliable messages dropped because the write they waited for failed.
        public var droppedSends: UInt64 = 0
        /// Restored self records that did not decode (ignored: the node starts at incarnation 0).
        public var badSelfRecords: UInt64 = 0
        /// Culls written to the store.
        public var cullWrites: UInt64 = 0
        /// Restored culls refused (undecodable, or their signature no longer verifies).
        public var badCullRecords: UInt64 = 0
        /// Peer snapshots not written because the remembered peers had not changed.
        public var unchangedSnapshotsSkipped: UInt64 = 0
    }
    public private(set) var counters = Counters()

    /// When this call raised the incarnation or the attribute version, the record is persisted
    /// and this call's sends wait for it (etcd's rule): a refutation or new attributes never reach
    /// the mesh before the number that beats them is on disk, so a restart never comes back below
    /// what the mesh heard.
    ///
    /// Sends made while a write is in flight (the next gossip round's, which carry the new numbers)
    /// wait behind it too: they go out as a persist with no ops, which a driver completes only
    /// after every earlier persist of the node.
    ///
    /// New culls go in the same batch: a cull this node spreads is on its disk first, so a
    /// restart never forgets a cull it told others of.
    private mutating func persistSelfBeforeSending(_ out: inout [Output]) {
        let current = SelfRecord(incarnation: core.incarnation, attributeVersion: core.attributeVersion)
        var ops: [StorageOp] = []
        if core.cullOrder.count > persistedCulls {
            for id in core.cullOrder[persistedCulls...] {
                guard let c = core.culls[id] else { continue }
                ops.append(.put(table: Self.cullsTable, key: id.bytes, value: c.encoded))
                counters.cullWrites += 1
            }
            persistedCulls = core.cullOrder.count
        }
        if current != persistedSelf {
            persistedSelf = current
            counters.selfWrites += 1
            ops.append(.put(table: SelfRecord.table, key: [], value: current.encoded))
        } else if !ops.isEmpty {
            // Culls only.
        } else if writesInFlight > 0, out.contains(where: { if case .send = $0 { return true }; if case .sendReliable = $0 { return true }; return false }) {
            ops = []
        } else {
            return
        }
        var sends: [Output] = []
        var rest: [Output] = []
        for o in out {
            switch o {
            case .send, .sendReliable: sends.append(o)
            default: rest.append(o)
            }
        }
        let batch = PersistBatch(ticket: PersistTicket(service: Self.protocolID, sequence: nextPersist), ops: ops)
        nextPersist += 1
        writesInFlight += 1
        if !sends.isEmpty { sendsWaiting.append((batch.ticket.sequence, sends.count)) }
        rest.append(.persist(batch, then: sends))
        out = rest
    }

    /// A culled node spoke: tell it why over the session it just used, at most once per interval
    /// across all culled senders (bounded work). The node refuses its plaintext either way.
    mutating func culledSenderSpoke(_ peer: ProvenPeer, now: Instant) -> [Output] {
        guard lastCullNotice.map({ now - $0 >= Self.cullNoticeInterval }) ?? true else { return [] }
        lastCullNotice = now
        var out: [Output] = []
        absorb(core.tellCulled(PeerEntry(peer: peer.identity, address: peer.address)), into: &out)
        persistSelfBeforeSending(&out)
        return out
    }

    /// Whether the gossip core's own wake (not a seed retry or a snapshot) is due.
    func roundDue(_ now: Instant) -> Bool { coreWake.map { now >= $0 } ?? false }

    /// A seed that turned out to be this node: stop asking it.
    mutating func forgetSeed(_ address: UnderlayAddress) {
        unansweredSeeds.removeAll { $0 == address }
    }

    // MARK: - MemberDirectory

    public func peer(_ id: NodeID) -> ProvenPeer? {
        guard let e = core.members.entry(of: id) else { return nil }
        return ProvenPeer(identity: e.peer, address: e.address)
    }

    public func isReachable(_ id: NodeID) -> Bool {
        guard let state = core.members.entryAndState(of: id)?.state else { return false }
        return state == .alive || state == .suspect
    }

    public func isCulled(_ id: NodeID) -> Bool { core.culls[id] != nil }

    public func isNeighbour(_ id: NodeID) -> Bool { core.activeView.contains { $0.nodeID == id } }

    /// Whether `id` is in the member table at all (any state).
    func isMember(_ id: NodeID) -> Bool { core.members.contains(id) }

    // MARK: - Commands

    private mutating func apply(_ command: NodeCommand, now: Instant, into out: inout [Output]) {
        switch command {
        case let .addSeed(address):
            if address != core.me.address, !unansweredSeeds.contains(address) {
                unansweredSeeds.append(address)
                if seedRetryAt == nil { seedRetryAt = now + joinRetryInterval }
            }
            absorb(core.handle(.command(.join([address])), now: now), into: &out)
        case let .rememberPeer(peer, address):
            if peer.nodeID != core.me.nodeID, core.culls[peer.nodeID] == nil {
                absorb(core.handle(.command(.join([address])), now: now), into: &out)
            }
        case let .membership(command):
            absorb(core.handle(.command(command), now: now), into: &out)
        case let .beaconHeard(address):
            absorb(core.handle(.beaconHeard(address), now: now), into: &out)
        case let .rttSample(id, rtt):
            absorb(core.handle(.rttSample(id, rtt), now: now), into: &out)
        case .probe, .sendMessage, .service:
            break
        }
    }

    /// Joins again through seeds that no alive member answers from yet; stops once all have.
    private mutating func retrySeeds(now: Instant, into out: inout [Output]) {
        seedRetryAt = nil
        guard started, !core.hasLeft else { return }
        var answered: [UnderlayAddress] = []
        for m in core.members.values where m.state == .alive && unansweredSeeds.contains(m.entry.address) {
            answered.append(m.entry.address)
        }
        unansweredSeeds.removeAll { answered.contains($0) }
        guard !unansweredSeeds.isEmpty else { return }
        absorb(core.handle(.command(.join(unansweredSeeds)), now: now), into: &out)
        seedRetryAt = now + joinRetryInterval
    }

    // MARK: - Outputs

    /// Gossip's outputs in the service contract: datagrams to a proven peer (Noise IK) or a bare
    /// address (XX), large messages on the node's reliable stream, events mapped, and membership
    /// changes for the other services.
    /// Another service's frame from `peer` proves it alive (`GossipCore.noteTraffic`).
    mutating func trafficHeard(from peer: ProvenPeer, now: Instant) -> [Output] {
        var out: [Output] = []
        absorb(core.noteTraffic(from: PeerEntry(peer: peer.identity, address: peer.address), now: now), into: &out)
        return out
    }

    private mutating func absorb(_ outputs: [GossipOutput], into out: inout [Output]) {
        for o in outputs {
            switch o {
            case let .send(.peer(entry), bytes):
                out.append(.send(.peer(ProvenPeer(identity: entry.peer, address: entry.address)), bytes: rewritten(bytes, for: entry.nodeID)))
            case let .send(.address(address), bytes):
                out.append(.send(.address(address), bytes: rewritten(bytes, for: nil)))
            case let .sendReliable(entry, bytes):
                out.append(.sendReliable(to: ProvenPeer(identity: entry.peer, address: entry.address), bytes: bytes))
            case let .wake(at):
                coreWake = at
            case let .event(event):
                report(event, into: &out)
            }
        }
    }

    private func report(_ event: GossipEvent, into out: inout [Output]) {
        switch event {
        case let .memberJoined(id, address):
            out.append(.event(.memberAdded(id, address)))
            if let e = core.members.entry(of: id) { out.append(.membership(.up(ProvenPeer(identity: e.peer, address: e.address)))) }
        case let .memberStateChanged(id, from, to, incarnation):
            out.append(.event(.memberStateChanged(id, from: from, to: to, incarnation: incarnation)))
            // A member declared dead may hold no keys for our session any more (it restarted, or
            // the two sides' key rotation went astray): the node forgets the session so the next
            // message starts a fresh handshake, and pending messages fail now rather than after a
            // channel timeout. Not on `suspect`: suspicions are hearsay about members we may be
            // talking to fine, and under loss they are frequent; forgetting the session on one
            // side only made the other side's datagrams undecodable (`unknown_index`), which
            // raised more suspicions (at 1,000 nodes with 10 % loss the simulator saw 66,000
            // false deaths and 26 KB/s a node).
            guard let peer = core.members.entry(of: id)?.peer else { return }
            switch to {
            case .dead, .left: out.append(.membership(.down(peer)))
            case .culled: out.append(.membership(.culled(peer)))
            case .alive where from != .suspect:
                if let e = core.members.entry(of: id) { out.append(.membership(.up(ProvenPeer(identity: e.peer, address: e.address)))) }
            case .alive, .suspect: break
            }
        case let .memberAddressChanged(id, address):
            out.append(.event(.memberAddressChanged(id, address)))
        case let .memberForgotten(id):
            out.append(.event(.memberForgotten(id)))
        default:
            out.append(.event(.membership(event)))
        }
    }

    private mutating func rewritten(_ bytes: [UInt8], for peer: NodeID?) -> [UInt8] {
        guard var liar = rewriter, case let .success(m) = GossipWire.decode(bytes) else { return bytes }
        let lie = liar.rewrite(m, for: peer)
        rewriter = liar
        return GossipWire.encode(lie)
    }
}

/// A seam for simulating byzantine nodes: a compromised node holds its own keys, so its lies
/// must be told before encryption. It rewrites the gossip messages a node sends (to `peer`, or
/// to a bare address when nil). Real nodes never have one.
public protocol GossipRewriter {
    mutating func rewrite(_ message: GossipMessage, for peer: NodeID?) -> GossipMessage
}
