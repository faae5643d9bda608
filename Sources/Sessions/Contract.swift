import MeshCore

/// What ``SessionManager`` asks its driver to do, in the order returned.
public enum SessionOutput: Equatable, Sendable {
    /// Send these bytes (at most ``SessionWire/maxDatagram``) to this address.
    case send(to: UnderlayAddress, bytes: [UInt8])
    /// Application bytes from an authenticated peer: `peer` is the identity its handshake proved
    /// (a canonical Ed25519 key whose X25519 form Noise authenticated), built once per session.
    case deliver(from: UnderlayAddress, peer: PeerIdentity, plaintext: [UInt8])
    /// A handshake finished: this peer is now reachable at this address. Also emitted after every
    /// rekey and re-handshake, so a driver may treat it as "seen alive".
    case established(peer: PeerIdentity, address: UnderlayAddress)
    /// A handshake gave up; the messages queued for it were dropped. Reasons:
    /// `handshake_timeout` (no answer within `rekeyAttemptTime`), `handshake_error` (the peer's
    /// key could not start a handshake).
    case failed(address: UnderlayAddress, reason: String)
    /// Call ``SessionManager/tick(now:)`` at this instant. Always the last output, and only when
    /// something is scheduled; a later `.wake` replaces an earlier one.
    case wake(at: Instant)
}

/// Why a datagram (or a message handed to `send`) was dropped. Raw values are what status
/// output and reports print.
public enum SessionDropReason: String, Sendable, CaseIterable, Codable, Error {
    // Framing (no keys involved).
    case empty
    case oversized
    case badLength = "bad_length"
    case unknownType = "unknown_type"
    case badHeader = "bad_header"
    // Handshake pre-filter and DoS defence, all before any Diffie-Hellman.
    case badMac1 = "bad_mac1"
    case underLoad = "under_load"
    case rateLimited = "rate_limited"
    case replayedHandshake = "replayed_handshake"
    /// A cookie reply was due but this source (IP and port) or everyone together had used up
    /// the cookie replies allowed per second: the initiation is dropped without an answer.
    case cookieRateLimited = "cookie_rate_limited"
    /// More initiations from this source (IP and port) than `handshakesPerSourcePerSecond`:
    /// dropped before any Diffie-Hellman, loaded or not.
    case sourceRateLimited = "source_rate_limited"
    // Handshake processing.
    case handshakeFailed = "handshake_failed"
    case handshakeCollision = "handshake_collision"
    case identityMismatch = "identity_mismatch"
    /// The peer presented the negated twin of an identity key (sign bit set, or y not reduced):
    /// it holds the same X25519 secret, but only the canonical key is an identity.
    case nonCanonicalKey = "non_canonical_key"
    case fromSelf = "from_self"
    case tooManyPeers = "too_many_peers"
    case badCookie = "bad_cookie"
    // Transport.
    case unknownIndex = "unknown_index"
    case duplicate
    case tooOld = "too_old"
    case decryptFailed = "decrypt_failed"
    case expiredKey = "expired_key"
    // Messages refused by `send`.
    case plaintextTooLong = "plaintext_too_long"
    case emptyPlaintext = "empty_plaintext"
    case badPeerKey = "bad_peer_key"
    case queueFull = "queue_full"
}

/// The session layer's counters, one struct as for every subsystem.
public struct SessionCounters: Sendable, Equatable {
    public var datagramsIn: UInt64 = 0
    public var datagramsOut: UInt64 = 0
    public var handshakesInitiated: UInt64 = 0
    public var handshakeRetransmits: UInt64 = 0
    public var handshakesCompleted: UInt64 = 0
    public var handshakesFailed: UInt64 = 0
    /// Handshakes started because a session grew old or its message count ran out.
    public var rekeys: UInt64 = 0
    public var cookieRepliesSent: UInt64 = 0
    public var cookiesReceived: UInt64 = 0
    public var keepalivesSent: UInt64 = 0
    public var keepalivesReceived: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesDelivered: UInt64 = 0
    public var messagesQueued: UInt64 = 0
    /// Queued messages dropped because their handshake gave up.
    public var messagesDroppedOnFailure: UInt64 = 0
    /// Handshakes started because a transport packet named an index we do not hold: its sender
    /// keeps a session with us that we lost (we restarted) or never confirmed (see
    /// ``SessionTiming/staleSessionHandshakesMax``).
    public var staleSessionHandshakes: UInt64 = 0
    /// Our unconfirmed keys confirmed again (the XX final message, or a keepalive for IK) because
    /// the peer still sent on its older keys: our confirmation was lost.
    public var staleSessionConfirmations: UInt64 = 0
    public var drops: [SessionDropReason: UInt64] = [:]

    public var totalDrops: UInt64 { drops.values.reduce(0, +) }
    public subscript(_ reason: SessionDropReason) -> UInt64 { drops[reason] ?? 0 }

    mutating func drop(_ reason: SessionDropReason) { drops[reason, default: 0] += 1 }
}

/// Sizes of every table the manager keeps, so tests (and status output) can check that memory
/// stays flat under a flood.
public struct SessionTableSizes: Sendable, Equatable {
    public var peers = 0
    public var indices = 0
    public var pendingResponders = 0
    public var recentEphemerals = 0
    public var rateLimitEntries = 0
    /// Entries of the per-source tables (handshake work, cookie replies), each at most `rateLimitEntries`.
    public var sourceLimitEntries = 0
    public var cookiedEphemerals = 0
    public var queuedMessages = 0
    public var keypairs = 0
    /// Precomputed IK static-static results (one per peer static key, bounded by `maxPeers`).
    public var staticStaticResults = 0

    /// All zero: a manager that has never accepted anything.
    public init() {}
}

/// The session layer's timers and limits. Defaults follow WireGuard where it has a figure.
public struct SessionTiming: Sendable, Equatable {
    /// The initiator of a session starts a new handshake once its keys are this old.
    public var rekeyAfterTime: Duration = .seconds(120)
    /// Keys this old are never used again, whatever happens.
    public var rejectAfterTime: Duration = .seconds(180)
    /// A handshake that has not finished after this long gives up (queued messages dropped).
    public var rekeyAttemptTime: Duration = .seconds(90)
    /// Sent data with no answer for keepaliveTimeout + rekeyTimeout means the peer may have lost
    /// its session (restart): start a new handshake. Also how long a responder waits for XX msg 3.
    public var rekeyTimeout: Duration = .seconds(5)
    /// After receiving data with nothing to send back for this long, send a keepalive so the peer
    /// knows the session is alive.
    public var keepaliveTimeout: Duration = .seconds(10)
    /// First handshake retransmission delay; doubles per attempt up to ``handshakeRetryMax``, plus
    /// up to a third of random jitter so that peers do not retry in lock step.
    public var handshakeRetryInitial: Duration = .seconds(1)
    public var handshakeRetryMax: Duration = .seconds(8)
    /// First retransmission of a first-contact (XX) initiation, doubling from there to
    /// ``handshakeRetryMax``. Shorter than ``handshakeRetryInitial``: a node calling a seed has
    /// nothing else to do, a lost first or second message would otherwise cost it a whole second
    /// (five gossip rounds), and the XX responder keeps each attempt apart, so a repeat is
    /// harmless. The replaced attempt is kept: its late answer on a slow link still completes.
    public var firstContactRetryInitial: Duration = .milliseconds(250)
    /// How long the replaced keys still decrypt packets that were in flight.
    public var previousKeyGrace: Duration = .seconds(15)
    /// Start a new handshake after this many packets under one key.
    public var rekeyAfterMessages: UInt64 = 1 << 60
    /// Never send more than this many packets under one key.
    public var rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)
    /// Peers (sessions, handshakes and queues) kept at most; the least recently active goes first.
    public var maxPeers: Int = 1024
    /// Messages queued per peer while its handshake runs; the oldest is dropped when full.
    public var maxQueuedPerPeer: Int = 32
    /// XX handshakes waiting for their third message; the oldest is dropped when full.
    public var maxPendingResponders: Int = 256
    /// Initiator ephemeral keys remembered to refuse replayed handshake messages.
    public var recentEphemerals: Int = 4096
    /// Initiations processed per second before the responder is "under load" and asks for cookies.
    public var handshakesPerSecond: Double = 64
    /// Under load, initiations with a valid cookie per source IP per second (burst of twice that).
    public var handshakesPerAddressPerSecond: Double = 4
    /// Source addresses the per-IP limiter tracks at most; beyond that new ones are refused.
    /// Also the size of the per-source tables for cookie replies and handshake work.
    public var rateLimitEntries: Int = 1024
    /// Initiations one source address (IP and port) gets processed per second, loaded or not
    /// (burst of twice that): a peer retransmits at most every 250 ms, so only a flood of
    /// distinct first messages from one place meets it, and it then costs at most this many
    /// handshakes' Diffie-Hellman a second.
    public var handshakesPerSourcePerSecond: Double = 8
    /// Cookie replies per second to one source address (IP and port), burst of twice that: an
    /// initiator needs one per attempt, and a flood from one place is not answered at its rate.
    public var cookieRepliesPerSourcePerSecond: Double = 2
    /// Cookie replies per second to everyone together (burst the same): a flood from ever new
    /// (spoofed) sources costs the node at most this many replies.
    public var cookieRepliesPerSecond: Double = 256
    /// First messages answered with a cookie reply, remembered so that a copy of one is not
    /// answered again (its genuine sender never repeats an ephemeral).
    public var cookiedEphemerals: Int = 1024
    /// A cookie secret (and so a cookie) lives this long.
    public var cookieLifetime: Duration = .seconds(120)
    /// A transport packet for an index we do not hold, from an address where we hold no session
    /// and run no handshake, means its sender keeps a session we lost (we restarted and may know
    /// nobody, so nothing of ours would ever start one; the sender would notice only after
    /// `keepaliveTimeout + rekeyTimeout` of silence). We start a handshake to that address (IK
    /// if we know who is there, else XX), at most this many at once: the packet is
    /// unauthenticated, so spoofed ones must never fill the peer table or evict real peers.
    public var staleSessionHandshakesMax: Int = 16
    /// Such handshakes per source address (IP and port) per second (burst 1).
    public var staleSessionHandshakesPerSourcePerSecond: Double = 1
    /// Attempts of each such handshake (the first and its retransmissions) before it is dropped
    /// silently; the next stale packet from there may start another.
    public var staleSessionAttempts: Int = 2

    public init() {}
}
