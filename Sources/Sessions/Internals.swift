import MeshCore
import Noise
import Sodium

/// The local node's secrets, wiped when the manager goes away.
final class LocalSecrets {
    let staticKey: DHKeyPair
    let network: NetworkSecrets
    /// Keys the deterministic stream that ephemeral keys, cookie secrets and nonces come from.
    /// Keyed by the identity secret as well as the injected generator, so a weak or shared
    /// simulator seed never makes another node's ephemerals predictable.
    private var streamKey: [UInt8]
    private var streamCounter: UInt64 = 0
    var cookieSecret: [UInt8] = []
    var previousCookieSecret: [UInt8] = []
    var cookieSecretBorn: Instant?

    init(staticKey: DHKeyPair, network: NetworkSecrets, streamKey: [UInt8]) {
        self.staticKey = staticKey
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
    var bytes: [UInt8]
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
    var sendCounter: UInt64 = 0
    var replay = ReplayWindow()

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
    let ephemeral: [UInt8]
    /// mac1 of the packet we sent: the associated data a cookie reply must carry.
    let mac1: [UInt8]
    /// When the first attempt of this series went out (for giving up after rekeyAttemptTime).
    let started: Instant
    let attempts: Int
    let retryAt: Instant

    init(handshake: HandshakeState, kind: HandshakeKind, localIndex: UInt32, ephemeral: [UInt8], mac1: [UInt8],
         started: Instant, attempts: Int, retryAt: Instant) {
        self.handshake = handshake
        self.kind = kind
        self.localIndex = localIndex
        self.ephemeral = ephemeral
        self.mac1 = mac1
        self.started = started
        self.attempts = attempts
        self.retryAt = retryAt
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
}

/// A class so that the per-packet path updates counters and replay windows in place instead of
/// copying the record (and its replay window) in and out of the table.
final class Peer {
    /// Ed25519 public key; nil only while a first-contact XX handshake has not told us.
    var publicKey: [UInt8]?
    var address: UnderlayAddress
    var current: Keypair?
    /// The keys replaced by `current`, kept until `previousUntil` for packets in flight.
    var previous: Keypair?
    var previousUntil: Instant?
    /// IK responder keys, unconfirmed until the initiator's first transport packet arrives.
    var next: Keypair?
    var initiation: Initiation?
    var queue: [[UInt8]] = []
    var lastSent: Instant?
    var lastReceived: Instant?
    var lastDataSent: Instant?
    var lastDataReceived: Instant?
    /// When data first went out with nothing heard since (WireGuard's "new handshake" timer):
    /// set by the first unanswered send, not moved by later ones, cleared by any authenticated packet.
    var unansweredSince: Instant?
    var lastActivity: Instant
    var cookie: [UInt8]?
    var cookieReceived: Instant?

    init(publicKey: [UInt8]?, address: UnderlayAddress, now: Instant) {
        self.publicKey = publicKey
        self.address = address
        lastActivity = now
    }

    deinit {
        if cookie != nil { Sodium.zero(&cookie!) }
    }

    var keypairCount: Int { (current == nil ? 0 : 1) + (previous == nil ? 0 : 1) + (next == nil ? 0 : 1) }
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

/// Per-source-IP token buckets with a hard cap on entries, as WireGuard's ratelimiter: under a
/// flood, memory stays at `capacity` entries and new sources beyond it are refused.
struct AddressLimiter {
    private(set) var buckets: [[UInt8]: TokenBucket] = [:]

    /// IPv6 sources are limited per /64 (one host usually owns one), IPv4 per address.
    static func key(_ address: UnderlayAddress) -> [UInt8] {
        address.isIPv4Mapped ? Array(address.ip[12..<16]) : Array(address.ip[0..<8])
    }

    mutating func allow(_ address: UnderlayAddress, now: Instant, rate: Double, capacity: Int) -> Bool {
        let key = Self.key(address)
        let burst = rate * 2
        if var bucket = buckets[key] {
            let ok = bucket.take(now: now, rate: rate, burst: burst)
            buckets[key] = bucket
            return ok
        }
        if buckets.count >= capacity { prune(now: now, rate: rate) }
        guard buckets.count < capacity else { return false }
        var bucket = TokenBucket(tokens: burst, last: now)
        let ok = bucket.take(now: now, rate: rate, burst: burst)
        buckets[key] = bucket
        return ok
    }

    /// Forgets sources whose bucket has refilled: they are indistinguishable from new ones.
    mutating func prune(now: Instant, rate: Double) {
        let burst = rate * 2
        buckets = buckets.filter { _, b in
            var b = b
            b.refill(now: now, rate: rate, burst: burst)
            return b.tokens < burst
        }
    }
}

/// A fixed-size set of recently seen initiator ephemerals (FIFO), for refusing replays.
struct RecentSet {
    private var members: Set<[UInt8]> = []
    private var ring: [[UInt8]] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { members.count }
    func contains(_ key: [UInt8]) -> Bool { members.contains(key) }

    mutating func insert(_ key: [UInt8]) {
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
