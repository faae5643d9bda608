import Foundation
import MeshCore
import Noise
import Sodium

/// The local node's secrets, wiped when the manager goes away.
final class LocalSecrets {
    let staticKey: DHKeyPair
    let network: NetworkSecrets
    /// The IK `ss` result per peer static key (WireGuard's `precomputed_static_static`): a
    /// repeated handshake with a known peer skips one X25519 on each side. Wiped by the cache.
    let staticStatic: StaticStaticCache
    /// Keys the deterministic stream that ephemeral keys, cookie secrets and nonces come from.
    /// Keyed by the identity secret as well as the injected generator, so a weak or shared
    /// simulator seed never makes another node's ephemerals predictable.
    @exclusivity(unchecked) private var streamKey: [UInt8]
    @exclusivity(unchecked) private var streamCounter: UInt64 = 0
    @exclusivity(unchecked) var cookieSecret: [UInt8] = []
    @exclusivity(unchecked) var previousCookieSecret: [UInt8] = []
    @exclusivity(unchecked) var cookieSecretBorn: Instant?

    init(staticKey: DHKeyPair, network: NetworkSecrets, streamKey: [UInt8], staticStaticCapacity: Int) {
        self.staticKey = staticKey
        staticStatic = StaticStaticCache(localStatic: staticKey, capacity: staticStaticCapacity)
        self.network = network
        self.streamKey = streamKey
    }

    /// 32 bytes nobody else can predict. `now` is mixed in so a node restarted with the same
    /// identity and seed still draws new ephemerals (its peers would refuse replayed ones).
    func random32(now: Instant) -> [UInt8] {
        var w = ByteWriter(capacity: 16)
        w.u64(streamCounter)
        w.u64(UInt64(bitPattern: now.nanoseconds))
        streamCounter &+= 1
        return Blake2b.hash(w.bytes, outputLength: 32, key: streamKey)
    }

    deinit {
        Sodium.zero(&streamKey)
        Sodium.zero(&cookieSecret)
        Sodium.zero(&previousCookieSecret)
    }
}

/// Holds one ephemeral secret for a `HandshakeState`'s key source and wipes it with the handshake.
final class SecretBox {
    @exclusivity(unchecked) var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    deinit { Sodium.zero(&bytes) }
}

/// One direction pair of transport keys. The `CipherState`s wipe their keys when the last
/// reference goes, which is when the keypair leaves its peer's slot. A class so that reading a
/// slot (done on every call, by `nextWake`) costs one retain rather than a copy of the window.
final class Keypair {
    let sender: CipherState
    let receiver: CipherState
    let localIndex: UInt32
    let remoteIndex: UInt32
    let created: Instant
    /// Which side started the handshake: only the initiator rekeys on time first, so the two
    /// sides do not both start a handshake at 120 s.
    let isInitiator: Bool
    @exclusivity(unchecked) var sendCounter: UInt64 = 0
    @exclusivity(unchecked) var replay = ReplayWindow()
    /// XX initiator only: the final handshake datagram, kept until the responder is heard on these
    /// keys. If it was lost, the responder cannot read anything we send (`unknown_index`), so it
    /// rides again with our transport packets (at most every `finalResendInterval`).
    @exclusivity(unchecked) var unconfirmedFinal: [UInt8]?
    @exclusivity(unchecked) var finalSentAt = Instant.zero
    /// Whether a packet from the peer has authenticated under these keys. An initiator's keys
    /// not yet heard on may be unknown to the responder (its confirmation was lost), which then
    /// still sends on the keys it had before.
    @exclusivity(unchecked) var heard = false

    init(_ transport: NoiseTransport, localIndex: UInt32, remoteIndex: UInt32, created: Instant, isInitiator: Bool) {
        sender = transport.sender
        receiver = transport.receiver
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.created = created
        self.isInitiator = isInitiator
    }
}

enum HandshakeKind: Sendable { case ik, xx }

/// This side's handshake in flight as initiator. Every retransmission is a new handshake (new
/// ephemeral, new index), so a captured one is worthless and replay filters stay simple.
final class Initiation {
    let handshake: HandshakeState
    let kind: HandshakeKind
    let localIndex: UInt32
    /// Our ephemeral public key: compared with the peer's when both initiate at once.
    let ephemeral: PublicKey
    /// mac1 of the packet we sent: the associated data a cookie reply must carry.
    let mac1: [UInt8]
    /// When the first attempt of this series went out (for giving up after rekeyAttemptTime).
    let started: Instant
    let attempts: Int
    /// When this attempt (the latest retransmission) went out.
    let sent: Instant
    let retryAt: Instant
    /// Started by a transport packet for an index we do not hold (the sender keeps a session we
    /// lost), not by anything we had to send: it is tried `staleSessionAttempts` times and then
    /// dropped without a `failed` output, and it yields to any initiation from the same peer.
    let recovery: Bool

    init(handshake: HandshakeState, kind: HandshakeKind, localIndex: UInt32, ephemeral: PublicKey, mac1: [UInt8],
         started: Instant, attempts: Int, sent: Instant, retryAt: Instant, recovery: Bool) {
        self.handshake = handshake
        self.kind = kind
        self.localIndex = localIndex
        self.ephemeral = ephemeral
        self.mac1 = mac1
        self.started = started
        self.attempts = attempts
        self.sent = sent
        self.retryAt = retryAt
        self.recovery = recovery
    }
}

/// An XX handshake the responder has answered and whose third message it awaits. Only created
/// after mac1 (and under load mac2) passed; the table is bounded.
struct ResponderHandshake {
    let handshake: HandshakeState
    let localIndex: UInt32
    let remoteIndex: UInt32
    let address: UnderlayAddress
    let created: Instant
    /// Transport datagrams for this index that overtook the third message (sent in the same
    /// instant, reordered by jitter); read once it arrives. At most `earlyTransportKept`.
    var early: [[UInt8]] = []
}

/// A class so that the per-packet path updates counters and replay windows in place instead of
/// copying the record (and its replay window) in and out of the table.
///
/// Every property a timer depends on reports its change to the shared ``PeerTracker``, so the
/// manager recomputes only the changed peers' next timer instead of scanning every peer after
/// every input.
///
/// The session classes here mark their stored properties `@exclusivity(unchecked)`: a manager
/// is used from one thread and never accesses a property while another access to it is open,
/// and the runtime's dynamic exclusivity checks cost more per packet than the rest of the
/// bookkeeping.
final class Peer {
    let handle: Int
    private unowned let tracker: PeerTracker
    /// The earliest instant a timer of this peer is due (nanoseconds), as last computed.
    @exclusivity(unchecked) var due: Int64?
    /// The earliest of this peer's entries in the tracker's heap: never later than `due`. When
    /// `due` moves later (every packet moves the keepalive timer) nothing is pushed; the entry is
    /// moved when it reaches the top.
    @exclusivity(unchecked) var scheduledAt: Int64?
    /// Already listed as changed in the tracker.
    @exclusivity(unchecked) var isDirty = false
    /// Taken out of the manager's tables; its heap entries are dropped as they come up.
    @exclusivity(unchecked) var removed = false
    /// `byAddress[address]` is this peer (kept so that the per-packet path need not look it up).
    @exclusivity(unchecked) var ownsAddress = false

    /// The peer's identity (its Ed25519 key, proven by a handshake or given by the caller of
    /// `send`); nil only while a first-contact XX handshake has not told us.
    @exclusivity(unchecked) var identity: PeerIdentity? { didSet { touch() } }
    @exclusivity(unchecked) var address: UnderlayAddress
    @exclusivity(unchecked) var current: Keypair? { didSet { touch() } }
    /// The keys replaced by `current`, kept until `previousUntil` for packets in flight.
    @exclusivity(unchecked) var previous: Keypair? { didSet { touch() } }
    @exclusivity(unchecked) var previousUntil: Instant? { didSet { touch() } }
    /// IK responder keys, unconfirmed until the initiator's first transport packet arrives.
    @exclusivity(unchecked) var next: Keypair? { didSet { touch() } }
    @exclusivity(unchecked) var initiation: Initiation? {
        didSet {
            touch()
            guard oldValue !== initiation else { return }
            if let old = oldValue { tracker.initiationEnded(old, handle: handle) }
            if let new = initiation {
                tracker.ownEphemerals[new.ephemeral] = handle
                if new.recovery { tracker.recoveries += 1 }
            }
        }
    }
    /// The attempts first-contact (XX) retransmissions replaced, oldest first (at most
    /// `SessionManager.earlierAttemptsKept`): an answer may still be on a slow link, and the
    /// first answer to any attempt completes the handshake. No timers of their own.
    @exclusivity(unchecked) var earlierInitiations: [Initiation] = []
    @exclusivity(unchecked) var queue: [[UInt8]] = [] { didSet { touch() } }
    @exclusivity(unchecked) var lastSent: Instant? { didSet { touch() } }
    @exclusivity(unchecked) var lastReceived: Instant?
    @exclusivity(unchecked) var lastDataSent: Instant?
    @exclusivity(unchecked) var lastDataReceived: Instant? { didSet { touch() } }
    /// When data first went out with nothing heard since (WireGuard's "new handshake" timer):
    /// set by the first unanswered send, not moved by later ones, cleared by any authenticated packet.
    @exclusivity(unchecked) var unansweredSince: Instant? { didSet { touch() } }
    @exclusivity(unchecked) var lastActivity: Instant { didSet { touch() } }
    @exclusivity(unchecked) var cookie: [UInt8]?
    @exclusivity(unchecked) var cookieReceived: Instant?

    init(handle: Int, tracker: PeerTracker, identity: PeerIdentity?, address: UnderlayAddress, now: Instant) {
        self.handle = handle
        self.tracker = tracker
        self.identity = identity
        self.address = address
        lastActivity = now
        touch()
    }

    deinit {
        if cookie != nil { Sodium.zero(&cookie!) }
    }

    @inline(__always)
    private func touch() {
        if !isDirty {
            isDirty = true
            if tracker.firstDirty == nil { tracker.firstDirty = self } else { tracker.moreDirty.append(self) }
        }
    }

    var keypairCount: Int { (current == nil ? 0 : 1) + (previous == nil ? 0 : 1) + (next == nil ? 0 : 1) }
}

/// What peers report to their manager as they change, so that no input has to scan every peer:
/// which peers changed since their next timer was computed, a min-heap of (due, peer) with stale
/// entries dropped lazily, the pending responders' earliest expiry, and the ephemerals of this
/// side's initiations in flight. A class so that `nextWake`, a getter, can bring it up to date.
final class PeerTracker {
    /// Holds its peer: a removed peer has already given up its keys (see `removePeer`), and its
    /// entries leave the heap when they reach the top or when the heap is rebuilt.
    struct Entry {
        let at: Int64
        let peer: Peer
    }

    /// Peers changed since the manager last computed their timers. Emptied at the end of every
    /// call that changes peers, so a removed peer is not kept alive by it.
    /// (Usually one peer changes per input, so the first goes in its own slot.)
    @exclusivity(unchecked) var firstDirty: Peer?
    @exclusivity(unchecked) var moreDirty: [Peer] = []
    @exclusivity(unchecked) private(set) var heap: [Entry] = []
    /// Earliest expiry of a pending XX responder; recomputed when `respondersChanged`.
    @exclusivity(unchecked) var respondersWake: Int64?
    @exclusivity(unchecked) var respondersChanged = false
    /// Ephemeral public key of each pending initiation -> its peer, to spot our own initiation
    /// coming back to us.
    @exclusivity(unchecked) var ownEphemerals: [PublicKey: Int] = [:]

    init() {
        moreDirty.reserveCapacity(8)
    }

    var top: Entry? { heap.first }

    /// Recovery handshakes (``Initiation/recovery``) in flight, bounded by `staleSessionHandshakesMax`.
    @exclusivity(unchecked) var recoveries = 0

    func initiationEnded(_ initiation: Initiation, handle: Int) {
        if initiation.recovery { recoveries -= 1 }
        let key = initiation.ephemeral
        if ownEphemerals[key] == handle { ownEphemerals.removeValue(forKey: key) }
    }

    func push(_ entry: Entry) {
        heap.append(entry)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entry.at < heap[parent].at else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    /// Moves the top entry to a later instant.
    func replaceTop(_ entry: Entry) {
        heap[0] = entry
        siftDown(0)
    }

    func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    /// Replaces the heap with these entries (dropping every stale one).
    func rebuild(_ entries: [Entry]) {
        heap = entries
        var i = heap.count / 2
        while i > 0 {
            i -= 1
            siftDown(i)
        }
    }

    private func siftDown(_ start: Int) {
        var i = start
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < n, heap[l].at < heap[smallest].at { smallest = l }
            if r < n, heap[r].at < heap[smallest].at { smallest = r }
            if smallest == i { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}

/// A map that keeps at most `capacity` entries: when full, the oldest insertion goes.
struct BoundedMap<Key: Hashable, Value> {
    private var map: [Key: Value] = [:]
    private var ring: [Key] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { map.count }
    subscript(key: Key) -> Value? { map[key] }

    /// Stores a new key (an existing one keeps its value and its place).
    mutating func insert(_ key: Key, _ value: Value) {
        guard map[key] == nil else { return }
        if ring.count < capacity {
            ring.append(key)
        } else {
            map.removeValue(forKey: ring[head])
            ring[head] = key
            head = (head + 1) % capacity
        }
        map[key] = value
    }
}

/// Ed25519 public key -> its X25519 form. libsodium's conversion checks that the point is in the
/// prime-order subgroup, which costs about as much as a Diffie-Hellman; peers come back again and
/// again (rekeys, re-handshakes), so each key is converted once. Bounded: the oldest entry goes.
struct StaticKeyCache {
    private var forms: BoundedMap<PublicKey, [UInt8]>

    init(capacity: Int) { forms = BoundedMap(capacity: capacity) }

    var capacity: Int { forms.capacity }
    var count: Int { forms.count }

    /// The X25519 form of an Ed25519 public key, or nil if it is not a valid key.
    mutating func curve25519(_ key: PublicKey) -> [UInt8]? {
        if let x = forms[key] { return x }
        guard let x = SharedKeyForms.shared.form(of: key) ?? (try? Ed25519.curve25519PublicKey(key.bytes)) else { return nil }
        SharedKeyForms.shared.remember(key, x)
        forms.insert(key, x)
        return x
    }
}

/// The same conversions for every manager in the process: a public function of public keys, so
/// sharing it changes no result. A simulator runs a manager per node, and each of them used to
/// convert the keys of the same few thousand members again (about 50 conversions a node in the
/// 1,000-node scenario, each costing more than an X25519). Bounded (the oldest entry goes);
/// locked, because managers may run on several threads.
final class SharedKeyForms: @unchecked Sendable {
    static let shared = SharedKeyForms(capacity: 16384)

    private let lock = NSLock()
    private var forms: BoundedMap<PublicKey, [UInt8]>

    init(capacity: Int) { forms = BoundedMap(capacity: capacity) }

    func form(of key: PublicKey) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        return forms[key]
    }

    func remember(_ key: PublicKey, _ x: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        forms.insert(key, x)
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
struct TokenBucket {
    var tokens: Double
    var last: Instant

    mutating func take(now: Instant, rate: Double, burst: Double) -> Bool {
        refill(now: now, rate: rate, burst: burst)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    mutating func refill(now: Instant, rate: Double, burst: Double) {
        if now > last {
            tokens = min(burst, tokens + (now - last).secondsDouble * rate)
            last = now
        }
    }
}

/// Token buckets per key with a hard cap on entries, as WireGuard's ratelimiter: under a flood,
/// memory stays at `capacity` entries and keys beyond it are refused. A full table is pruned at
/// most every `pruneInterval`, so a flood from ever new (spoofed) sources costs a lookup per
/// datagram, not a scan of the table.
struct KeyedBuckets<Key: Hashable> {
    private(set) var buckets: [Key: TokenBucket] = [:]
    private var lastPrune: Instant?
    static var pruneInterval: Duration { .milliseconds(100) }

    /// Takes a token from `key`'s bucket (a new key starts full: `burst` tokens).
    mutating func allow(_ key: Key, now: Instant, rate: Double, burst: Double, capacity: Int) -> Bool {
        if var bucket = buckets[key] {
            let ok = bucket.take(now: now, rate: rate, burst: burst)
            buckets[key] = bucket
            return ok
        }
        if buckets.count >= capacity, lastPrune.map({ now - $0 >= Self.pruneInterval.nanoseconds }) ?? true {
            prune(now: now, rate: rate, burst: burst)
        }
        guard buckets.count < capacity else { return false }
        var bucket = TokenBucket(tokens: burst, last: now)
        let ok = bucket.take(now: now, rate: rate, burst: burst)
        buckets[key] = bucket
        return ok
    }

    /// Forgets keys whose bucket has refilled: they are indistinguishable from new ones.
    mutating func prune(now: Instant, rate: Double, burst: Double) {
        lastPrune = now
        guard !buckets.isEmpty else { return }
        buckets = buckets.filter { _, b in
            var b = b
            b.refill(now: now, rate: rate, burst: burst)
            return b.tokens < burst
        }
    }
}

/// Per-source-IP token buckets for initiations that carry a valid cookie (their source is
/// proven): IPv6 sources are limited per /64 (one host usually owns one), IPv4 per address.
struct AddressLimiter {
    private var table = KeyedBuckets<Key>()
    var buckets: [Key: TokenBucket] { table.buckets }

    struct Key: Hashable {
        let isIPv4: Bool
        let bits: UInt64
    }

    static func key(_ address: UnderlayAddress) -> Key {
        address.isIPv4Mapped ? Key(isIPv4: true, bits: address.low & 0xffff_ffff) : Key(isIPv4: false, bits: address.high)
    }

    mutating func allow(_ address: UnderlayAddress, now: Instant, rate: Double, capacity: Int) -> Bool {
        table.allow(Self.key(address), now: now, rate: rate, burst: rate * 2, capacity: capacity)
    }

    mutating func prune(now: Instant, rate: Double) { table.prune(now: now, rate: rate, burst: rate * 2) }
}

/// A fixed-size set of recently seen initiator ephemerals (FIFO), for refusing replays.
struct RecentSet {
    private var members: Set<PublicKey> = []
    private var ring: [PublicKey] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { members.count }
    func contains(_ key: PublicKey) -> Bool { members.contains(key) }

    mutating func insert(_ key: PublicKey) {
        guard !members.contains(key) else { return }
        if ring.count < capacity {
            ring.append(key)
        } else {
            members.remove(ring[head])
            ring[head] = key
            head = (head + 1) % capacity
        }
        members.insert(key)
    }
}

/// Hands out byte arrays and takes their storage back once the caller has let go of them: the
/// per-packet path then reuses one buffer instead of allocating a datagram or plaintext array for
/// every packet. Copy-on-write keeps it safe: a buffer still held elsewhere is never written to.
struct ByteRecycler {
    private var spare: [UInt8] = []

    /// An array of exactly `count` bytes, all written by `fill`.
    mutating func make(count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows -> [UInt8] {
        var bytes = spare
        spare = []
        if bytes.count != count {
            bytes = [UInt8](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
        }
        try bytes.withUnsafeMutableBytes(fill)  // copies first only if the last array is still held
        spare = bytes
        return bytes
    }
}
