import MeshCore
import Noise
import Sodium

/// Authenticated, encrypted, rekeyed sessions with other nodes, over datagrams (sans-IO).
///
/// The driver feeds it what happened (`send` from the application, `receive` from the socket,
/// `tick` when a `.wake` is due), each with `now`, and carries out the returned outputs in order.
/// It never reads a clock or a socket; randomness comes from the injected generator (indices,
/// jitter) and from a stream keyed by the node's secret (ephemeral keys, cookies).
///
/// - First contact by address (peer key unknown): Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b.
/// - Known peer (its Ed25519 key given): Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b, one round trip.
/// - The Noise static key is the X25519 form of the node's Ed25519 identity; each side sends its
///   Ed25519 public key as the (encrypted) handshake payload and the receiver checks that it is
///   canonical and converts to the authenticated Noise static key, so a peer's node id is proven
///   and a key's negated twin (same X25519 key) is never a second identity.
///
/// A final class: it owns key material that must be wiped exactly once, and a copied value would
/// have shared those keys with its original while their tables drifted apart (Docs/decisions/0014).
/// One thread owns a manager (the node's loop, or the simulator's thread running that node), so
/// its stored state skips dynamic exclusivity checks, as the peers' records already did.
public final class SessionManager {
    public static let maxPlaintext = SessionWire.maxPlaintext
    static let xxName = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
    static let ikName = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"
    /// Parsed once: every handshake would otherwise split and look up the names again.
    static let xxProtocol = try! NoiseProtocol(name: xxName)
    static let ikProtocol = try! NoiseProtocol(name: ikName)
    /// Bound into every handshake hash, so another protocol (or version) never agrees on keys.
    static let prologue = Array("iotaf/sessions/v1".utf8)

    public let timing: SessionTiming
    /// The hot-path timers as plain nanoseconds: `Duration` arithmetic is 128-bit and showed up
    /// in profiles of the per-packet path.
    private let ns: TimingNanos
    /// This node's Ed25519 public key (what peers see as `peer.publicKey`).
    public let localPublicKey: PublicKey
    @exclusivity(unchecked) public private(set) var counters = SessionCounters()

    private let secrets: LocalSecrets
    @exclusivity(unchecked) private var rng: SeededGenerator
    @exclusivity(unchecked) private var peers: [Int: Peer] = [:]
    @exclusivity(unchecked) private var nextHandle = 0
    @exclusivity(unchecked) private var byKey: [PublicKey: Int] = [:]
    @exclusivity(unchecked) private var byAddress: [UnderlayAddress: Int] = [:]
    /// Local index -> peer, for every keypair and initiation this side owns.
    @exclusivity(unchecked) private var indices: [UInt32: Int] = [:]
    @exclusivity(unchecked) private var responders: [UInt32: ResponderHandshake] = [:]
    @exclusivity(unchecked) private var recentEphemerals: RecentSet
    /// Ephemerals of first messages answered with a cookie reply (never processed, so not in
    /// `recentEphemerals`): a replayed copy gets no second reply.
    @exclusivity(unchecked) private var cookiedEphemerals: RecentSet
    @exclusivity(unchecked) private var loadBucket: TokenBucket
    @exclusivity(unchecked) private var limiter = AddressLimiter()
    /// Handshake work and cookie replies per source address (IP and port), and cookie replies in all.
    @exclusivity(unchecked) private var sourceWork = KeyedBuckets<UnderlayAddress>()
    @exclusivity(unchecked) private var sourceCookies = KeyedBuckets<UnderlayAddress>()
    /// Handshakes started per source address for transport packets naming an unknown index.
    @exclusivity(unchecked) private var staleSources = KeyedBuckets<UnderlayAddress>()
    @exclusivity(unchecked) private var cookieBucket: TokenBucket
    /// Timer bookkeeping and own-initiation lookup, kept up to date by the peers themselves.
    private let tracker = PeerTracker()
    @exclusivity(unchecked) private var staticKeys: StaticKeyCache
    /// Storage for outgoing transport datagrams and delivered plaintexts, reused once the driver
    /// has let go of the previous one.
    @exclusivity(unchecked) private var datagramBuffers = ByteRecycler()
    @exclusivity(unchecked) private var plaintextBuffers = ByteRecycler()

    /// - Parameters:
    ///   - identity: the node's Ed25519 identity; its X25519 form is the Noise static key.
    ///   - networkKey: the mesh's 32-byte secret; see ``NetworkSecrets`` for what is derived.
    ///   - rng: indices and jitter; also seeds (with the identity secret) the ephemeral-key stream.
    public init(identity: NodeIdentity, networkKey: [UInt8], timing: SessionTiming = .init(),
                rng: SeededGenerator) throws {
        let network = try NetworkSecrets(networkKey: networkKey)
        var seed = identity.seed
        defer { Sodium.zero(&seed) }
        let staticKey: DHKeyPair
        do {
            var pair = try Ed25519.keyPair(seed: seed)
            var x = try Ed25519.curve25519SecretKey(pair.secretKey)
            defer { Sodium.zero(&x); Sodium.zero(&pair.secretKey) }
            staticKey = try DHKeyPair(secretKey: x)
            guard try Ed25519.curve25519PublicKey(identity.publicKey.bytes) == staticKey.publicKey else {
                throw SessionConfigError.badIdentity("X25519 forms of the public and secret key disagree")
            }
        } catch let e as SessionConfigError {
            throw e
        } catch {
            throw SessionConfigError.badIdentity("\(error)")
        }
        var rng = rng
        var entropy = ByteWriter(capacity: 64)
        entropy.raw(Array("iotaf/sessions/v1/stream".utf8))
        for _ in 0..<4 { entropy.u64(rng.next()) }
        var streamKey = Blake2b.hash(entropy.bytes, outputLength: 32, key: seed)
        defer { Sodium.zero(&streamKey) }
        secrets = LocalSecrets(staticKey: staticKey, network: network, streamKey: streamKey,
                               staticStaticCapacity: timing.maxPeers)
        self.rng = rng
        self.timing = timing
        ns = TimingNanos(timing)
        localPublicKey = identity.publicKey
        recentEphemerals = RecentSet(capacity: timing.recentEphemerals)
        cookiedEphemerals = RecentSet(capacity: timing.cookiedEphemerals)
        cookieBucket = TokenBucket(tokens: timing.cookieRepliesPerSecond, last: .zero)
        staticKeys = StaticKeyCache(capacity: timing.maxPeers)
        loadBucket = TokenBucket(tokens: timing.handshakesPerSecond, last: .zero)
    }

    // MARK: - Inputs

    /// Sends application bytes (1...``maxPlaintext``) to a peer. With `peer` (its identity) the
    /// handshake, if one is needed, is IKpsk2 and only that key is accepted; without it, first
    /// contact by address uses XXpsk3 and accepts whichever member answers (the `.established`
    /// output names it). While no session exists the message is queued (bounded, oldest dropped)
    /// and sent when the handshake finishes.
    public func send(_ plaintext: [UInt8], to address: UnderlayAddress, peer: PeerIdentity?,
                              now: Instant) -> [SessionOutput] {
        var out: [SessionOutput] = []
        out.reserveCapacity(4)
        sendImpl(plaintext, to: address, peer: peer, now: now, &out)
        appendWake(&out)
        return out
    }

    private func sendImpl(_ plaintext: [UInt8], to address: UnderlayAddress, peer: PeerIdentity?,
                                   now: Instant, _ out: inout [SessionOutput]) {
        guard !plaintext.isEmpty else { counters.drop(.emptyPlaintext); return }
        guard plaintext.count <= Self.maxPlaintext else { counters.drop(.plaintextTooLong); return }
        let handle: Int
        if let peer, let h = byKey[peer.publicKey] {
            handle = h
        } else if let peer {
            // A `PeerIdentity` is canonical unless adversarial code built one unchecked; whether
            // it is a point of the group costs a point decompression and subgroup check, so only
            // new peers pay it (and the conversion is kept for their handshakes).
            guard peer.publicKey.isCanonical, staticKeys.curve25519(peer.publicKey) != nil else {
                counters.drop(.badPeerKey); return
            }
            guard peer.publicKey != localPublicKey else { counters.drop(.fromSelf); return }
            guard let h = peerFor(peer, address: address, now: now) else { counters.drop(.tooManyPeers); return }
            handle = h
        } else if let h = byAddress[address] {
            handle = h
        } else {
            guard let h = newPeer(nil, address: address, now: now) else { counters.drop(.tooManyPeers); return }
            handle = h
        }
        let p = peers[handle]!
        setAddress(p, address)
        p.lastActivity = now
        if !hasUsableCurrent(p, now: now) { dropExpired(p, now: now) }
        if hasUsableCurrent(p, now: now) {
            sendTransport(p, plaintext, now: now, &out)
            maybeRekey(p, now: now, &out)
        } else {
            enqueue(p, plaintext)
            if p.initiation == nil && !awaitingConfirmation(p, now: now) {
                initiate(handle, now: now, started: now, attempts: 0, &out)
            }
        }
    }

    /// Handles one datagram from the socket. Every datagram either does its job or is counted
    /// in `counters.drops` under a reason; none traps.
    public func receive(_ datagram: [UInt8], from address: UnderlayAddress, now: Instant) -> [SessionOutput] {
        var out: [SessionOutput] = []
        out.reserveCapacity(4)
        receiveImpl(datagram, from: address, now: now, &out)
        appendWake(&out)
        return out
    }

    private func receiveImpl(_ datagram: [UInt8], from address: UnderlayAddress, now: Instant,
                                      _ out: inout [SessionOutput]) {
        counters.datagramsIn += 1
        if datagram.first == SessionWire.PacketType.transport.rawValue {
            // The per-packet path: header fields read in place, ciphertext opened where it lies.
            switch SessionWire.decodeTransportHeader(datagram) {
            case let .failure(reason): counters.drop(reason)
            case let .success((receiver, counter)):
                receiveTransport(datagram, receiver: receiver, counter: counter, from: address, now: now, &out)
            }
            return
        }
        switch SessionWire.decode(datagram) {
        case let .failure(reason):
            counters.drop(reason)
        case let .success(.transport(t)):
            receiveTransport(t.encoded(), receiver: t.receiver, counter: t.counter, from: address, now: now, &out)
        case let .success(.cookieReply(c)):
            receiveCookie(c, now: now)
        case let .success(.handshake(h)):
            // The pre-filter: a datagram from a non-member dies here, before any public-key work.
            guard Sodium.constantTimeEqual(h.mac1, SessionWire.mac(key: secrets.network.mac1Key, h.macCovered)) else {
                counters.drop(.badMac1); return
            }
            switch h.type {
            case .ikInitiation, .xxInitiation: receiveInitiation(h, from: address, now: now, &out)
            case .ikResponse: receiveIKResponse(h, from: address, now: now, &out)
            case .xxResponse: receiveXXResponse(h, from: address, now: now, &out)
            case .xxFinal: receiveXXFinal(h, from: address, now: now, &out)
            case .cookieReply, .transport: counters.drop(.unknownType)
            }
        }
    }

    /// Runs the timers: handshake retransmission and giving up, keepalives, dead-peer detection,
    /// expiry of keys, handshakes and idle peers.
    public func tick(now: Instant) -> [SessionOutput] {
        var out: [SessionOutput] = []
        tickImpl(now: now, &out)
        appendWake(&out)
        return out
    }

    private func tickImpl(now: Instant, _ out: inout [SessionOutput]) {
        let waiting = responders.count
        responders = responders.filter { now < $0.value.created + ns.responderWait }
        if responders.count != waiting { tracker.respondersChanged = true }
        limiter.prune(now: now, rate: timing.handshakesPerAddressPerSecond)
        sourceWork.prune(now: now, rate: timing.handshakesPerSourcePerSecond, burst: timing.handshakesPerSourcePerSecond * 2)
        sourceCookies.prune(now: now, rate: timing.cookieRepliesPerSourcePerSecond, burst: timing.cookieRepliesPerSourcePerSecond * 2)
        staleSources.prune(now: now, rate: timing.staleSessionHandshakesPerSourcePerSecond, burst: 1)
        // Only peers with a timer due have work: the others' timers are all later than `now`
        // (`refreshDue` brings every peer's `due` up to date). The one thing a not-due peer can
        // still hold is a previous keypair past its reject age (its grace ends later): dropped
        // here, as the scan of every peer used to.
        refreshDue()
        var due: [Int] = []
        for (handle, p) in peers {
            if let d = p.due, d <= now.nanoseconds {
                due.append(handle)
            } else if let k = p.previous, now - k.created >= ns.reject {
                dropExpired(p, now: now)
            }
        }
        // Sorted so that a simulator run repeats: dictionary order differs between processes.
        due.sort()
        for handle in due {
            guard let p = peers[handle] else { continue }
            dropExpired(p, now: now)
            if let ini = peers[handle]!.initiation, now >= ini.retryAt {
                if ini.recovery, ini.attempts + 1 >= timing.staleSessionAttempts {
                    endRecovery(handle, now: now, &out)
                } else if now - ini.started >= timing.rekeyAttemptTime {
                    giveUp(handle, reason: "handshake_timeout", &out)
                } else {
                    counters.handshakeRetransmits += 1
                    initiate(handle, now: now, started: ini.started, attempts: ini.attempts + 1,
                             recovery: ini.recovery, &out)
                }
            }
            guard let p = peers[handle] else { continue }
            if let due = keepaliveDue(p), now >= due {
                sendTransport(p, [], now: now, &out)
            }
            if let due = deadPeerDue(peers[handle]!), now >= due {
                // Data went out and nothing came back: the peer may have restarted. Re-handshake.
                initiate(handle, now: now, started: now, attempts: 0, &out)
            }
            if let due = pendingQueueDue(peers[handle]!), now >= due {
                initiate(handle, now: now, started: now, attempts: 0, &out)
            }
            if let due = idleDue(peers[handle]!), now >= due {
                removePeer(handle)
            }
        }
    }

    /// The earliest instant `tick` has work to do, or nil when nothing is scheduled. Only peers
    /// that changed since the last call are looked at; the earliest of the rest comes from a heap.
    public var nextWake: Instant? {
        refreshDue()
        var best = tracker.respondersWake ?? .max
        while let top = tracker.top {
            let p = top.peer
            guard !p.removed, p.scheduledAt == top.at else {
                tracker.popTop()  // the peer is gone, or an older entry of a peer whose timer came earlier
                continue
            }
            guard let due = p.due else {
                p.scheduledAt = nil
                tracker.popTop()
                continue
            }
            if due == top.at {
                best = min(best, due)
                break
            }
            // The peer's timer moved later since this entry was pushed: move the entry.
            p.scheduledAt = due
            tracker.replaceTop(.init(at: due, peer: p))
        }
        #if DEBUG
        // Debug builds (the tests) check the bookkeeping against a scan of every peer.
        var scan = Int64.max
        for r in responders.values { scan = min(scan, (r.created + ns.responderWait).nanoseconds) }
        for p in peers.values { if let d = peerDue(p) { scan = min(scan, d) } }
        assert(scan == best, "cached next wake \(best) differs from a full scan \(scan)")
        #endif
        return best == .max ? nil : Instant(nanoseconds: best)
    }

    /// Recomputes the next timer of every peer that changed, and the responders' earliest expiry.
    private func refreshDue() {
        if tracker.respondersChanged {
            tracker.respondersChanged = false
            var best = Int64.max
            for r in responders.values { best = min(best, (r.created + ns.responderWait).nanoseconds) }
            tracker.respondersWake = best == .max ? nil : best
        }
        guard let first = tracker.firstDirty else { return }
        tracker.firstDirty = nil
        refreshDue(first)
        if !tracker.moreDirty.isEmpty {
            for p in tracker.moreDirty { refreshDue(p) }
            tracker.moreDirty.removeAll(keepingCapacity: true)
        }
        if tracker.heap.count > 2 * peers.count + 32 {
            // Mostly stale entries: start again from the live ones.
            var entries: [PeerTracker.Entry] = []
            entries.reserveCapacity(peers.count)
            for p in peers.values {
                p.scheduledAt = p.due
                if let due = p.due { entries.append(.init(at: due, peer: p)) }
            }
            tracker.rebuild(entries)
        }
    }

    private func refreshDue(_ p: Peer) {
        p.isDirty = false
        guard !p.removed else { return }
        let due = peerDue(p)
        p.due = due
        // Pushed only when earlier than the peer's earliest entry; see `Peer.scheduledAt`.
        if let due, p.scheduledAt.map({ due < $0 }) ?? true {
            p.scheduledAt = due
            tracker.push(.init(at: due, peer: p))
        }
    }

    /// The earliest of one peer's timers, in nanoseconds.
    private func peerDue(_ p: Peer) -> Int64? {
        var best = Instant(nanoseconds: .max)
        if let t = p.initiation?.retryAt { best = min(best, t) }
        if let k = p.current { best = min(best, k.created + ns.reject) }
        if let k = p.next { best = min(best, k.created + ns.reject) }
        if p.previous != nil, let t = p.previousUntil { best = min(best, t) }
        if let t = keepaliveDue(p) { best = min(best, t) }
        if let t = deadPeerDue(p) { best = min(best, t) }
        if let t = pendingQueueDue(p) { best = min(best, t) }
        if let t = idleDue(p) { best = min(best, t) }
        return best.nanoseconds == .max ? nil : best.nanoseconds
    }

    /// Sizes of every table, for tests and status output.
    public var tableSizes: SessionTableSizes {
        var s = SessionTableSizes()
        s.peers = peers.count
        s.indices = indices.count
        s.pendingResponders = responders.count
        s.recentEphemerals = recentEphemerals.count
        s.rateLimitEntries = limiter.buckets.count
        s.sourceLimitEntries = sourceWork.buckets.count + sourceCookies.buckets.count
        s.cookiedEphemerals = cookiedEphemerals.count
        s.queuedMessages = peers.values.reduce(0) { $0 + $1.queue.count }
        s.keypairs = peers.values.reduce(0) { $0 + $1.keypairCount }
        s.staticStaticResults = secrets.staticStatic.count
        return s
    }

    /// Whether a session with this peer (Ed25519 key) can carry data now.
    public func isEstablished(peerKey: PublicKey, now: Instant) -> Bool {
        guard let h = byKey[peerKey], let p = peers[h] else { return false }
        return hasUsableCurrent(p, now: now)
    }

    /// Forgets a peer at once (culling): sessions, handshake and queue; keys are wiped.
    public func forget(peerKey: PublicKey) {
        if let h = byKey[peerKey] { removePeer(h) }
        if let x = staticKeys.curve25519(peerKey) { secrets.staticStatic.forget(remoteStatic: x) }
        refreshDue()  // lets go of the removed peer (and its keys) now
    }

    // MARK: - Handshakes

    private func receiveInitiation(_ h: SessionWire.Handshake, from: UnderlayAddress, now: Instant,
                                            _ out: inout [SessionOutput]) {
        // Checks cheapest and most decisive first, all before any Diffie-Hellman: a copy of a
        // first message already seen costs a set lookup, not a token of the load budget and not
        // a cookie reply (a flood of one replayed message answered by a cookie reply per copy
        // kept the node so busy that its members suspected it; Docs/testbed.md).
        guard let ephemeral = PublicKey(raw: Array(h.noise.prefix(PublicKey.length))) else {
            counters.drop(.badLength); return
        }
        // Our own initiation came back to us: the address we are calling is our own (a seed
        // list that names this node). Give up on it instead of retrying forever.
        if let own = tracker.ownEphemerals[ephemeral] {
            counters.drop(.fromSelf)
            giveUp(own, reason: "from_self", &out)
            return
        }
        guard !recentEphemerals.contains(ephemeral) else { counters.drop(.replayedHandshake); return }
        // Under load, only initiations carrying a cookie for their source address go on, and then
        // only at a per-IP rate: a spoofed flood never gets its cookie, a real one is slowed.
        if !loadBucket.take(now: now, rate: timing.handshakesPerSecond, burst: timing.handshakesPerSecond) {
            guard validMac2(h, from: from, now: now) else {
                // At most one reply per first message, and a bounded number per source and in all.
                guard !cookiedEphemerals.contains(ephemeral) else { counters.drop(.replayedHandshake); return }
                let perSource = timing.cookieRepliesPerSourcePerSecond
                guard sourceCookies.allow(from, now: now, rate: perSource, burst: perSource * 2, capacity: timing.rateLimitEntries),
                      cookieBucket.take(now: now, rate: timing.cookieRepliesPerSecond, burst: timing.cookieRepliesPerSecond) else {
                    counters.drop(.cookieRateLimited); return
                }
                cookiedEphemerals.insert(ephemeral)
                sendCookieReply(h, to: from, now: now, &out)
                counters.drop(.underLoad)
                return
            }
            guard limiter.allow(from, now: now, rate: timing.handshakesPerAddressPerSecond,
                                capacity: timing.rateLimitEntries) else {
                counters.drop(.rateLimited); return
            }
        }
        let perSource = timing.handshakesPerSourcePerSecond
        guard sourceWork.allow(from, now: now, rate: perSource, burst: perSource * 2, capacity: timing.rateLimitEntries) else {
            counters.drop(.sourceRateLimited); return
        }
        if h.type == .xxInitiation {
            // XX's first message names nobody; a pending initiation to the same address is the
            // only sign of a simultaneous start. The smaller initiator ephemeral wins.
            if let handle = byAddress[from], let ini = peers[handle]?.initiation {
                // A recovery handshake always yields: the peer's own initiation does its job.
                if !ini.recovery, ini.ephemeral < ephemeral {
                    counters.drop(.handshakeCollision); return
                }
                releaseInitiation(handle)
            }
            receiveXXInitiation(h, ephemeral: ephemeral, from: from, now: now, &out)
        } else {
            receiveIKInitiation(h, ephemeral: ephemeral, from: from, now: now, &out)
        }
    }

    private func receiveIKInitiation(_ h: SessionWire.Handshake, ephemeral: PublicKey, from: UnderlayAddress,
                                              now: Instant, _ out: inout [SessionOutput]) {
        guard let hs = makeHandshake(.ik, initiator: false, remoteStatic: nil, now: now) else {
            counters.drop(.handshakeFailed); return
        }
        let payload: [UInt8]
        do { payload = try hs.readMessage(h.noise) } catch { counters.drop(.handshakeFailed); return }
        recentEphemerals.insert(ephemeral)
        guard let peer = checkIdentity(payload, hs.remoteStatic) else { return }
        let rival = byKey[peer.publicKey] ?? byAddress[from].flatMap { h in peers[h].flatMap { $0.identity == nil ? h : nil } }
        if let handle = rival, let mine = peers[handle]?.initiation, !mine.recovery {
            // Both sides started at once: the side with the smaller static key keeps its own
            // attempt, the other drops its own and answers. Static keys, unlike ephemerals, do
            // not change between retransmissions, so both sides always agree on the winner.
            if localPublicKey < peer.publicKey {
                counters.drop(.handshakeCollision)
                // Only a truly simultaneous start is a collision. Had the peer been able to
                // receive our attempt, its answer would be back within a round trip; an older
                // attempt was lost (typically into the peer's crash, and the peer has just
                // restarted). Waiting for our backed-off retransmission would refuse the peer for
                // up to `handshakeRetryMax`, so our attempt goes out again now; the peer, which
                // loses the tie-break, answers it.
                if let ini = peers[handle]!.initiation, now - ini.sent >= timing.handshakeRetryInitial / 2 {
                    counters.handshakeRetransmits += 1
                    initiate(handle, now: now, started: ini.started, attempts: ini.attempts, &out)
                }
                return
            }
            releaseInitiation(handle)
        }
        let response: [UInt8]
        let transport: NoiseTransport
        do {
            response = try hs.writeMessage()
            transport = try hs.finish()
        } catch { counters.drop(.handshakeFailed); return }
        guard let handle = peerFor(peer, address: from, now: now) else { counters.drop(.tooManyPeers); return }
        // Two initiations from one peer moments apart (a stale one crossing a fresh one, which
        // reordering can deliver in either order): answering both would leave us holding the
        // keys of the second while the initiator completes the first. Keep the first; a real
        // retransmission comes no sooner than the initial retry interval and replaces it.
        if let pending = peers[handle]!.next, now - pending.created < timing.handshakeRetryInitial / 2 {
            counters.drop(.handshakeCollision); return
        }
        let index = allocateIndex(handle)
        let keypair = Keypair(transport, localIndex: index, remoteIndex: h.sender, created: now, isInitiator: false)
        // Unconfirmed until the initiator's first transport packet proves it has the keys too, so
        // a replayed initiation can never displace a working session.
        releaseIndex(peers[handle]!.next)
        peers[handle]!.next = keypair
        setAddress(peers[handle]!, from)
        peers[handle]!.lastActivity = now
        emitHandshake(.ikResponse, sender: index, receiver: h.sender, noise: response, handle: handle, to: from, now: now, &out)
    }

    private func receiveXXInitiation(_ h: SessionWire.Handshake, ephemeral: PublicKey, from: UnderlayAddress,
                                              now: Instant, _ out: inout [SessionOutput]) {
        guard let hs = makeHandshake(.xx, initiator: false, remoteStatic: nil, now: now) else {
            counters.drop(.handshakeFailed); return
        }
        let response: [UInt8]
        do {
            _ = try hs.readMessage(h.noise)
            response = try hs.writeMessage(payload: localPublicKey.bytes)
        } catch { counters.drop(.handshakeFailed); return }
        recentEphemerals.insert(ephemeral)
        if responders.count >= timing.maxPendingResponders,
           let oldest = responders.min(by: { ($0.value.created, $0.key) < ($1.value.created, $1.key) }) {
            responders.removeValue(forKey: oldest.key)
        }
        let index = allocateIndex(nil)
        responders[index] = ResponderHandshake(handshake: hs, localIndex: index, remoteIndex: h.sender,
                                               address: from, created: now)
        tracker.respondersChanged = true
        emitHandshake(.xxResponse, sender: index, receiver: h.sender, noise: response, handle: nil, to: from, now: now, &out)
    }

    private func receiveXXFinal(_ h: SessionWire.Handshake, from: UnderlayAddress, now: Instant,
                                         _ out: inout [SessionOutput]) {
        guard let r = responders[h.receiver] else { counters.drop(.unknownIndex); return }
        let payload: [UInt8]
        let transport: NoiseTransport
        do {
            // A forged or wrong-psk third message fails here and leaves the handshake intact.
            payload = try r.handshake.readMessage(h.noise)
            transport = try r.handshake.finish()
        } catch { counters.drop(.handshakeFailed); return }
        responders.removeValue(forKey: h.receiver)
        tracker.respondersChanged = true
        guard let peer = checkIdentity(payload, r.handshake.remoteStatic) else { return }
        guard let handle = peerFor(peer, address: from, now: now) else { counters.drop(.tooManyPeers); return }
        indices[r.localIndex] = handle
        let keypair = Keypair(transport, localIndex: r.localIndex, remoteIndex: r.remoteIndex, created: now,
                              isInitiator: false)
        establish(handle, keypair, address: from, now: now, &out)
        for d in r.early {
            // Authenticated only now, by the keys just made; header checked as on arrival.
            guard case let .success((receiver, counter)) = SessionWire.decodeTransportHeader(d) else { continue }
            receiveTransport(d, receiver: receiver, counter: counter, from: r.address, now: now, &out)
        }
    }

    private func receiveIKResponse(_ h: SessionWire.Handshake, from: UnderlayAddress, now: Instant,
                                            _ out: inout [SessionOutput]) {
        guard let handle = indices[h.receiver], let ini = peers[handle]?.initiation,
              ini.localIndex == h.receiver, ini.kind == .ik else { counters.drop(.unknownIndex); return }
        let transport: NoiseTransport
        do {
            _ = try ini.handshake.readMessage(h.noise)
            transport = try ini.handshake.finish()
        } catch { counters.drop(.handshakeFailed); return }
        peers[handle]!.initiation = nil
        let keypair = Keypair(transport, localIndex: ini.localIndex, remoteIndex: h.sender, created: now, isInitiator: true)
        let flushed = establish(handle, keypair, address: from, now: now, &out)
        // The responder holds these keys unconfirmed until it hears from us on them.
        if flushed == 0 { sendTransport(peers[handle]!, [], now: now, &out) }
    }

    private func receiveXXResponse(_ h: SessionWire.Handshake, from: UnderlayAddress, now: Instant,
                                            _ out: inout [SessionOutput]) {
        guard var handle = indices[h.receiver], let record = peers[handle],
              let ini = record.initiation?.localIndex == h.receiver ? record.initiation : record.earlierInitiations.first(where: { $0.localIndex == h.receiver }),
              ini.kind == .xx else { counters.drop(.unknownIndex); return }
        let payload: [UInt8]
        let peer: PeerIdentity
        let final: [UInt8]
        let transport: NoiseTransport
        do {
            payload = try ini.handshake.readMessage(h.noise)
            if payload == localPublicKey.bytes {
                // We reached ourselves (a seed that is our own address): stop trying.
                counters.drop(.fromSelf)
                giveUp(handle, reason: "from_self", &out)
                return
            }
            guard let proven = checkIdentity(payload, ini.handshake.remoteStatic) else { return }
            peer = proven
            final = try ini.handshake.writeMessage(payload: localPublicKey.bytes)
            transport = try ini.handshake.finish()
        } catch { counters.drop(.handshakeFailed); return }
        releaseInitiation(handle)  // both attempts: this one answered
        indices.removeValue(forKey: ini.localIndex)
        // First contact told us who answered: fold this address-only record into the peer's own.
        if let known = byKey[peer.publicKey], known != handle {
            let queue = peers[handle]!.queue
            removePeer(handle)
            handle = known
            for m in queue { enqueue(peers[handle]!, m) }
        } else {
            peers[handle]!.identity = peer
            byKey[peer.publicKey] = handle
        }
        indices[ini.localIndex] = handle
        let finalAt = out.count
        emitHandshake(.xxFinal, sender: 0, receiver: h.sender, noise: final, handle: handle, to: from, now: now, &out)
        let keypair = Keypair(transport, localIndex: ini.localIndex, remoteIndex: h.sender, created: now, isInitiator: true)
        if finalAt < out.count, case let .send(_, bytes) = out[finalAt] {
            keypair.unconfirmedFinal = bytes
            keypair.finalSentAt = now
        }
        establish(handle, keypair, address: from, now: now, &out)
    }

    private func receiveCookie(_ c: SessionWire.CookieReply, now: Instant) {
        guard let handle = indices[c.receiver], let ini = peers[handle]?.initiation, ini.localIndex == c.receiver else {
            counters.drop(.unknownIndex); return
        }
        guard let cookie = try? ChaChaPoly.open(key: secrets.network.cookieKey, nonce: c.nonce,
                                                associatedData: ini.mac1, ciphertext: c.sealedCookie) else {
            counters.drop(.badCookie); return
        }
        // Used from the next retransmission on; answering at once would let a flood bounce.
        peers[handle]!.cookie = cookie
        peers[handle]!.cookieReceived = now
        counters.cookiesReceived += 1
    }

    /// Starts (or restarts, with a new ephemeral and index) this side's handshake with a peer.
    private func initiate(_ handle: Int, now: Instant, started: Instant, attempts: Int, recovery: Bool = false,
                                   _ out: inout [SessionOutput]) {
        let peer = peers[handle]!
        let kind: HandshakeKind = peer.identity == nil ? .xx : .ik
        if attempts > 0, kind == .xx, let replaced = peer.initiation, replaced.kind == .xx {
            // A first-contact retransmission: the replaced attempt stays answerable.
            if peer.earlierInitiations.count >= Self.earlierAttemptsKept {
                let oldest = peer.earlierInitiations.removeFirst()
                if indices[oldest.localIndex] == handle { indices.removeValue(forKey: oldest.localIndex) }
            }
            peer.initiation = nil
            peer.earlierInitiations.append(replaced)
        } else {
            releaseInitiation(handle)
        }
        var remote: [UInt8]?
        if let known = peer.identity { remote = staticKeys.curve25519(known.publicKey) }
        guard let hs = makeHandshake(kind, initiator: true, remoteStatic: remote, now: now),
              let message = try? hs.writeMessage(payload: kind == .ik ? localPublicKey.bytes : []),
              let ephemeral = PublicKey(raw: Array(message.prefix(PublicKey.length))) else {
            giveUp(handle, reason: "handshake_error", &out); return
        }
        let index = allocateIndex(handle)
        // Our own ephemerals count as seen, so a reflected initiation is refused as a replay.
        recentEphemerals.insert(ephemeral)
        let mac1 = emitHandshake(kind == .ik ? .ikInitiation : .xxInitiation, sender: index, receiver: 0,
                                 noise: message, handle: handle, to: peer.address, now: now, &out)
        let first = kind == .xx ? timing.firstContactRetryInitial : timing.handshakeRetryInitial
        var delay = first * (1 << min(attempts, 16))
        if delay > timing.handshakeRetryMax { delay = timing.handshakeRetryMax }
        let jitter = Duration.nanoseconds(Int64(Double(delay.nanoseconds) / 3 * rng.unit()))
        peers[handle]!.initiation = Initiation(handshake: hs, kind: kind, localIndex: index, ephemeral: ephemeral,
                                               mac1: mac1, started: started, attempts: attempts,
                                               sent: now, retryAt: now + delay + jitter, recovery: recovery)
        if attempts == 0 { counters.handshakesInitiated += 1 }
    }

    /// Builds, macs and sends a handshake packet; returns its mac1.
    @discardableResult
    private func emitHandshake(_ type: SessionWire.PacketType, sender: UInt32, receiver: UInt32,
                                        noise: [UInt8], handle: Int?, to address: UnderlayAddress, now: Instant,
                                        _ out: inout [SessionOutput]) -> [UInt8] {
        var packet = SessionWire.Handshake(type: type, sender: sender, receiver: receiver, noise: noise,
                                           mac1: [], mac2: [UInt8](repeating: 0, count: SessionWire.macLength))
        let covered = packet.macCovered
        packet.mac1 = SessionWire.mac(key: secrets.network.mac1Key, covered)
        if let handle, let cookie = peers[handle]?.cookie, let got = peers[handle]?.cookieReceived,
           now - got < timing.cookieLifetime - timing.rekeyTimeout {
            packet.mac2 = SessionWire.mac(key: cookie, covered + packet.mac1)
        }
        emit(&out, to: address, packet.encoded())
        if let handle { peers[handle]!.lastSent = now }
        return packet.mac1
    }

    private func makeHandshake(_ kind: HandshakeKind, initiator: Bool, remoteStatic: [UInt8]?,
                                        now: Instant) -> HandshakeState? {
        let box = SecretBox(secrets.random32(now: now))
        return try? HandshakeState(protocol: kind == .ik ? Self.ikProtocol : Self.xxProtocol, initiator: initiator,
                                   prologue: Self.prologue, localStatic: secrets.staticKey,
                                   remoteStatic: initiator ? remoteStatic : nil, psks: [secrets.network.psk],
                                   staticStatic: kind == .ik ? secrets.staticStatic : nil, ephemeralSource: { box.bytes })
    }

    /// The payload must be a canonical Ed25519 key whose X25519 form is the static key Noise
    /// authenticated. A key and its negation share that X25519 form; the non-canonical one is
    /// refused first (one bit and one compare, before any conversion), so the holder of a key can
    /// never present its twin as a second identity (`IdentityKey`). The identity (key and node id)
    /// is built here, once per handshake, and is what the node is handed with every message.
    private func checkIdentity(_ payload: [UInt8], _ remoteStatic: [UInt8]?) -> PeerIdentity? {
        guard let key = PublicKey(raw: payload) else { counters.drop(.identityMismatch); return nil }
        guard key.isCanonical else { counters.drop(.nonCanonicalKey); return nil }
        guard let remoteStatic, let converted = staticKeys.curve25519(key),
              Sodium.constantTimeEqual(converted, remoteStatic) else {
            counters.drop(.identityMismatch); return nil
        }
        guard key != localPublicKey else { counters.drop(.fromSelf); return nil }
        // A peer we hold already keeps its identity value (no second node-id hash per rekey).
        if let h = byKey[key], let known = peers[h]?.identity { return known }
        return PeerIdentity(publicKey: key)
    }

    /// Installs confirmed keys as current, keeps the old ones for in-flight packets, and sends
    /// what was queued. Returns how many queued messages went out.
    @discardableResult
    private func establish(_ handle: Int, _ keypair: Keypair, address: UnderlayAddress, now: Instant,
                                    _ out: inout [SessionOutput]) -> Int {
        releaseIndex(peers[handle]!.previous)
        peers[handle]!.previous = peers[handle]!.current
        peers[handle]!.previousUntil = now + timing.previousKeyGrace
        if peers[handle]!.next?.localIndex == keypair.localIndex {
            peers[handle]!.next = nil
        }
        peers[handle]!.current = keypair
        // A finished session makes any other handshake with this peer moot.
        releaseInitiation(handle)
        setAddress(peers[handle]!, address)
        adoptAddressOnlyPeer(at: address, into: handle)
        peers[handle]!.lastActivity = now
        // A finished handshake is proof of life, like a transport packet (dead-peer timer).
        peers[handle]!.lastReceived = now
        peers[handle]!.unansweredSince = nil
        counters.handshakesCompleted += 1
        out.append(.established(peer: peers[handle]!.identity!, address: peers[handle]!.address))
        let p = peers[handle]!
        let queue = p.queue
        p.queue = []
        for m in queue { sendTransport(p, m, now: now, &out) }
        return queue.count
    }

    private func giveUp(_ handle: Int, reason: String, _ out: inout [SessionOutput]) {
        releaseInitiation(handle)
        counters.handshakesFailed += 1
        counters.messagesDroppedOnFailure += UInt64(peers[handle]!.queue.count)
        peers[handle]!.queue = []
        // Without this the dead-peer timer would start the same doomed handshake again at once.
        peers[handle]!.unansweredSince = nil
        out.append(.failed(address: peers[handle]!.address, reason: reason))
    }

    /// Rekey on time or message count, only while traffic is sent (as WireGuard does): an idle
    /// session simply expires. The initiator of the current keys goes first; the responder
    /// waits longer so the two do not start at once.
    private func maybeRekey(_ p: Peer, now: Instant, _ out: inout [SessionOutput]) {
        guard p.initiation == nil, let cur = p.current else { return }
        let after = cur.isInitiator ? ns.rekeyInitiator : ns.rekeyResponder
        guard now - cur.created >= after || cur.sendCounter >= timing.rekeyAfterMessages else { return }
        counters.rekeys += 1
        initiate(p.handle, now: now, started: now, attempts: 0, &out)
    }

    // MARK: - Transport

    private func sendTransport(_ p: Peer, _ plaintext: [UInt8], now: Instant, _ out: inout [SessionOutput]) {
        guard let cur = p.current, cur.sendCounter < timing.rejectAfterMessages else { return }
        if let final = cur.unconfirmedFinal {
            if now - cur.created >= timing.rekeyTimeout {
                cur.unconfirmedFinal = nil  // the dead-peer timer takes over from here
            } else if now - cur.finalSentAt >= Self.finalResendInterval {
                emit(&out, to: p.address, final)
                cur.finalSentAt = now
                counters.handshakeRetransmits += 1
            }
        }
        let counter = cur.sendCounter
        // Header, ciphertext and tag are written straight into the datagram that goes out.
        let headerLength = SessionWire.transportHeaderLength
        let length = headerLength + plaintext.count + SessionWire.tagLength
        let datagram: [UInt8]
        do {
            datagram = try datagramBuffers.make(count: length) { raw in
                SessionWire.writeTransportHeader(receiver: cur.remoteIndex, counter: counter, into: raw)
                try plaintext.withUnsafeBytes { body in
                    try cur.sender.seal(nonce: counter, ad: UnsafeRawBufferPointer(rebasing: raw[0..<headerLength]), plaintext: body,
                                        into: UnsafeMutableRawBufferPointer(rebasing: raw[headerLength...]))
                }
            }
        } catch {
            return
        }
        cur.sendCounter = counter + 1
        emit(&out, to: p.address, datagram)
        p.lastSent = now
        p.lastActivity = now
        if plaintext.isEmpty {
            counters.keepalivesSent += 1
        } else {
            counters.messagesSent += 1
            p.lastDataSent = now
            if p.unansweredSince == nil { p.unansweredSince = now }
        }
    }

    /// A transport datagram whose header (type, reserved bytes, length) has been checked: its
    /// first 16 bytes are exactly the header the AEAD authenticates.
    private func receiveTransport(_ datagram: [UInt8], receiver: UInt32, counter: UInt64, from: UnderlayAddress,
                                           now: Instant, _ out: inout [SessionOutput]) {
        guard let handle = indices[receiver], let p = peers[handle] else {
            // The XX initiator sends its third message and its first transport packets at once;
            // jitter can deliver a packet first. Kept for the handshake it names (same sender),
            // so a newcomer's first `join` is not lost to reordering (it was, half the time, in
            // the 2,000-node dissemination scenario: 5 ms latency, 1 ms jitter).
            if var r = responders[receiver], r.address == from, r.early.count < Self.earlyTransportKept {
                r.early.append(datagram)
                responders[receiver] = r
                return
            }
            counters.drop(.unknownIndex)
            answerStaleSession(from: from, now: now, &out)
            return
        }
        enum Slot { case current, previous, next }
        let slot: Slot
        let keypair: Keypair
        if let k = p.current, k.localIndex == receiver { slot = .current; keypair = k }
        else if let k = p.previous, k.localIndex == receiver { slot = .previous; keypair = k }
        else if let k = p.next, k.localIndex == receiver { slot = .next; keypair = k }
        else {
            counters.drop(.unknownIndex)
            answerStaleSession(from: from, now: now, &out)
            return
        }
        guard now - keypair.created < ns.reject else { counters.drop(.expiredKey); return }
        switch keypair.replay.check(counter) {
        case .fresh: break
        case .duplicate: counters.drop(.duplicate); return
        case .tooOld, .invalid: counters.drop(.tooOld); return
        }
        let headerLength = SessionWire.transportHeaderLength
        let plaintext: [UInt8]
        do {
            plaintext = try datagram.withUnsafeBytes { raw in
                let ad = UnsafeRawBufferPointer(rebasing: raw[0..<headerLength])
                let ciphertext = UnsafeRawBufferPointer(rebasing: raw[headerLength...])
                if ciphertext.count == SessionWire.tagLength {  // a keepalive: nothing to hand out
                    try keypair.receiver.open(nonce: counter, ad: ad, ciphertext: ciphertext,
                                              into: UnsafeMutableRawBufferPointer(start: nil, count: 0))
                    return []
                }
                return try plaintextBuffers.make(count: ciphertext.count - SessionWire.tagLength) { out in
                    try keypair.receiver.open(nonce: counter, ad: ad, ciphertext: ciphertext, into: out)
                }
            }
        } catch {
            counters.drop(.decryptFailed); return
        }
        // Committed only now: a forged far-future counter never moves the window.
        keypair.replay.commit(counter)
        keypair.unconfirmedFinal = nil  // the responder holds these keys: it sent on them
        keypair.heard = true
        if slot == .next {
            // The initiator used the keys we answered with: they are confirmed and become current.
            establish(handle, keypair, address: from, now: now, &out)
        }
        setAddress(p, from)
        p.lastReceived = now
        p.unansweredSince = nil
        p.lastActivity = now
        if plaintext.isEmpty {
            counters.keepalivesReceived += 1
        } else {
            p.lastDataReceived = now
            counters.messagesDelivered += 1
            out.append(.deliver(from: from, peer: p.identity!, plaintext: plaintext))
        }
    }

    // MARK: - Stale sessions

    /// A transport packet named an index we do not hold, from `from`: its sender keeps a session
    /// with us that we do not have. Either we restarted and lost it (we may know nobody, so
    /// nothing of ours would start a handshake, and the sender would notice only after 15 s of
    /// silence: consensus-4 seeds 17, 40, 126, 140 and 185 lost a validator that way), or we
    /// initiated new keys and our confirmation was lost, so the sender still uses the old ones.
    /// WireGuard answers neither (its peers are configured, and a restarted one initiates when it
    /// has traffic); a mesh node that lost its state has no list to call, so the stale packet is
    /// its only clue.
    ///
    /// The packet is unauthenticated, so nothing here trusts it: it never touches a working
    /// session (a handshake only replaces keys once it completes), recovery handshakes are bounded
    /// in number, per source and in attempts, never evict a peer, and yield to the peer's own.
    private func answerStaleSession(from: UnderlayAddress, now: Instant, _ out: inout [SessionOutput]) {
        let existing = byAddress[from].flatMap { peers[$0] }
        if let p = existing {
            guard p.initiation == nil, !awaitingConfirmation(p, now: now) else { return }
            if hasUsableCurrent(p, now: now), let cur = p.current {
                // Keys that were heard on work: the packet is a straggler (or forged).
                guard cur.isInitiator, !cur.heard else { return }
                // Keys we initiated and never heard on: the peer may not have them (our XX final
                // or IK confirmation was lost). Confirm again, as our next packet would have,
                // while the peer can still complete (`rekeyTimeout`); later, a new handshake.
                if now - cur.created < ns.rekeyTimeout {
                    guard now - cur.finalSentAt >= Self.finalResendInterval else { return }
                    if cur.unconfirmedFinal == nil { cur.finalSentAt = now }
                    counters.staleSessionConfirmations += 1
                    sendTransport(p, [], now: now, &out)  // carries the XX final again if still held
                    return
                }
            }
        }
        guard tracker.recoveries < timing.staleSessionHandshakesMax,
              existing != nil || peers.count < timing.maxPeers else { return }
        let rate = timing.staleSessionHandshakesPerSourcePerSecond
        guard staleSources.allow(from, now: now, rate: rate, burst: 1, capacity: timing.rateLimitEntries) else { return }
        guard let handle = existing?.handle ?? newPeer(nil, address: from, now: now) else { return }
        counters.staleSessionHandshakes += 1
        initiate(handle, now: now, started: now, attempts: 0, recovery: true, &out)
    }

    /// A recovery handshake had no answer: dropped without a `failed` output (nothing of ours
    /// waited for it), with the address-only record it made. Messages queued meanwhile keep it
    /// going as an ordinary handshake.
    private func endRecovery(_ handle: Int, now: Instant, _ out: inout [SessionOutput]) {
        guard let p = peers[handle], let ini = p.initiation else { return }
        if !p.queue.isEmpty {
            initiate(handle, now: now, started: ini.started, attempts: ini.attempts + 1, &out)
            return
        }
        releaseInitiation(handle)
        if p.identity == nil, p.keypairCount == 0 { removePeer(handle) }
    }

    // MARK: - Cookies (WireGuard-style, keyed from the network key)

    private func cookieSecrets(now: Instant) -> ([UInt8], [UInt8]) {
        if secrets.cookieSecretBorn == nil || now - secrets.cookieSecretBorn! >= timing.cookieLifetime {
            Sodium.zero(&secrets.previousCookieSecret)
            secrets.previousCookieSecret = secrets.cookieSecret
            secrets.cookieSecret = secrets.random32(now: now)
            secrets.cookieSecretBorn = now
        }
        return (secrets.cookieSecret, secrets.previousCookieSecret)
    }

    /// The cookie for a source address: a MAC of its IP and port under a secret that changes
    /// every `cookieLifetime`, so only whoever receives at that address can learn it.
    private static func cookie(secret: [UInt8], for address: UnderlayAddress) -> [UInt8] {
        var w = ByteWriter(capacity: 18)
        w.raw(address.ip)
        w.u16(address.port)
        return SessionWire.mac(key: secret, w.bytes)
    }

    private func validMac2(_ h: SessionWire.Handshake, from: UnderlayAddress, now: Instant) -> Bool {
        guard h.mac2.contains(where: { $0 != 0 }) else { return false }
        let (current, previous) = cookieSecrets(now: now)
        let covered = h.macCovered + h.mac1
        for secret in [current, previous] where !secret.isEmpty {
            let expected = SessionWire.mac(key: Self.cookie(secret: secret, for: from), covered)
            if Sodium.constantTimeEqual(expected, h.mac2) { return true }
        }
        return false
    }

    private func sendCookieReply(_ h: SessionWire.Handshake, to address: UnderlayAddress, now: Instant,
                                          _ out: inout [SessionOutput]) {
        let (secret, _) = cookieSecrets(now: now)
        var cookie = Self.cookie(secret: secret, for: address)
        defer { Sodium.zero(&cookie) }
        let nonce = Array(secrets.random32(now: now).prefix(SessionWire.cookieNonceLength))
        let sealed = ChaChaPoly.seal(key: secrets.network.cookieKey, nonce: nonce, associatedData: h.mac1, plaintext: cookie)
        emit(&out, to: address, SessionWire.CookieReply(receiver: h.sender, nonce: nonce, sealedCookie: sealed).encoded())
        counters.cookieRepliesSent += 1
    }

    // MARK: - Timers

    /// Timer predicates take no `now`: `tick` drops expired keys first, so `nextWake` and `tick`
    /// agree on what is due and a due timer is always acted on (no busy loop).
    private func keepaliveDue(_ p: Peer) -> Instant? {
        guard let cur = p.current, cur.sendCounter < timing.rejectAfterMessages, let r = p.lastDataReceived else { return nil }
        if let s = p.lastSent, s >= r { return nil }
        return r + ns.keepalive
    }

    private func deadPeerDue(_ p: Peer) -> Instant? {
        // `case .some` tests the optional without copying the identity it holds.
        guard p.initiation == nil, case .some = p.identity, let s = p.unansweredSince else { return nil }
        return s + ns.silence
    }

    /// Messages wait, no handshake runs and no keys can carry them (for instance after a
    /// collision where both sides yielded): start one, after giving unconfirmed keys a chance.
    private func pendingQueueDue(_ p: Peer) -> Instant? {
        guard !p.queue.isEmpty, p.initiation == nil else { return nil }
        if let cur = p.current, cur.sendCounter < timing.rejectAfterMessages { return nil }
        if let next = p.next { return next.created + ns.rekeyTimeout }
        return p.lastActivity
    }

    private func idleDue(_ p: Peer) -> Instant? {
        guard p.keypairCount == 0, p.initiation == nil, p.queue.isEmpty else { return nil }
        return p.lastActivity + ns.reject
    }

    private func hasUsableCurrent(_ p: Peer, now: Instant) -> Bool {
        guard let cur = p.current else { return false }
        return now - cur.created < ns.reject && cur.sendCounter < timing.rejectAfterMessages
    }

    private func awaitingConfirmation(_ p: Peer, now: Instant) -> Bool {
        guard let next = p.next else { return false }
        return now - next.created < ns.rekeyTimeout
    }

    private func dropExpired(_ p: Peer, now: Instant) {
        let reject = ns.reject
        if let k = p.current, now - k.created >= reject { releaseIndex(k); p.current = nil }
        if let k = p.next, now - k.created >= reject { releaseIndex(k); p.next = nil }
        if let k = p.previous, now - k.created >= reject || now >= (p.previousUntil ?? now) {
            releaseIndex(k); p.previous = nil; p.previousUntil = nil
        }
    }

    // MARK: - Tables

    private func newPeer(_ identity: PeerIdentity?, address: UnderlayAddress, now: Instant) -> Int? {
        if peers.count >= timing.maxPeers {
            // Evict the least recently active peer; its keys are wiped with it.
            guard let victim = peers.min(by: { ($0.value.lastActivity, $0.key) < ($1.value.lastActivity, $1.key) })?.key
            else { return nil }
            removePeer(victim)
        }
        let handle = nextHandle
        nextHandle += 1
        let p = Peer(handle: handle, tracker: tracker, identity: identity, address: address, now: now)
        peers[handle] = p
        if let identity { byKey[identity.publicKey] = handle }
        mapAddress(address, to: p)
        return handle
    }

    private func peerFor(_ identity: PeerIdentity, address: UnderlayAddress, now: Instant) -> Int? {
        if let h = byKey[identity.publicKey] { return h }
        return newPeer(identity, address: address, now: now)
    }

    private func setAddress(_ p: Peer, _ address: UnderlayAddress) {
        let old = p.address
        if old == address && p.ownsAddress { return }
        if old != address, p.ownsAddress { byAddress.removeValue(forKey: old); p.ownsAddress = false }
        p.address = address
        mapAddress(address, to: p)
    }

    /// Points `byAddress[address]` at this peer, keeping every peer's `ownsAddress` true to the table.
    private func mapAddress(_ address: UnderlayAddress, to p: Peer) {
        if let previous = byAddress.updateValue(p.handle, forKey: address), previous != p.handle {
            peers[previous]?.ownsAddress = false
        }
        p.ownsAddress = true
    }

    /// A first-contact record for an address whose owner turned out to be this peer: move its
    /// queue over and drop it.
    private func adoptAddressOnlyPeer(at address: UnderlayAddress, into handle: Int) {
        // In handle order, so that queues merge the same way in every run.
        let others = peers.filter { $0.key != handle && $0.value.identity == nil && $0.value.address == address }
            .keys.sorted()
        for other in others {
            let queue = peers[other]!.queue
            removePeer(other)
            for m in queue { enqueue(peers[handle]!, m) }
            mapAddress(address, to: peers[handle]!)
        }
    }

    private func enqueue(_ p: Peer, _ message: [UInt8]) {
        if p.queue.count >= timing.maxQueuedPerPeer {
            p.queue.removeFirst()
            counters.drop(.queueFull)
        }
        p.queue.append(message)
        counters.messagesQueued += 1
    }

    private func removePeer(_ handle: Int) {
        guard let p = peers.removeValue(forKey: handle) else { return }
        p.removed = true
        for k in [p.current, p.previous, p.next] { releaseIndex(k) }
        if let ini = p.initiation { indices.removeValue(forKey: ini.localIndex) }
        for ini in p.earlierInitiations { indices.removeValue(forKey: ini.localIndex) }
        p.earlierInitiations = []
        if let key = p.identity?.publicKey, byKey[key] == handle { byKey.removeValue(forKey: key) }
        if p.ownsAddress { byAddress.removeValue(forKey: p.address) }
        // Let go of every secret now: the record itself may linger in the timer heap a while.
        p.current = nil
        p.previous = nil
        p.next = nil
        p.initiation = nil  // also forgets its ephemeral in the tracker
        p.queue = []
        if p.cookie != nil { Sodium.zero(&p.cookie!) }
        p.cookie = nil
    }

    private func releaseInitiation(_ handle: Int) {
        releaseEarlierInitiations(handle)
        guard let ini = peers[handle]?.initiation else { return }
        if indices[ini.localIndex] == handle { indices.removeValue(forKey: ini.localIndex) }
        peers[handle]!.initiation = nil
    }

    private func releaseEarlierInitiations(_ handle: Int) {
        guard let p = peers[handle], !p.earlierInitiations.isEmpty else { return }
        for ini in p.earlierInitiations where indices[ini.localIndex] == handle { indices.removeValue(forKey: ini.localIndex) }
        p.earlierInitiations = []
    }

    private func releaseIndex(_ keypair: Keypair?) {
        if let keypair { indices.removeValue(forKey: keypair.localIndex) }
    }

    /// A random unused, nonzero index (zero marks "no index" on the wire).
    private func allocateIndex(_ handle: Int?) -> UInt32 {
        while true {
            let candidate = UInt32(truncatingIfNeeded: rng.next())
            if candidate != 0, indices[candidate] == nil, responders[candidate] == nil {
                if let handle { indices[candidate] = handle }
                return candidate
            }
        }
    }

    /// Replaced first-contact attempts still answerable: with the 250 ms first retry doubling,
    /// three cover a round trip of about 1.75 s.
    static let earlierAttemptsKept = 3

    /// Transport datagrams kept per XX responder handshake while its third message is awaited.
    static let earlyTransportKept = 4

    /// How often an unconfirmed XX final message rides again with transport packets. Short: a
    /// newcomer's retried join (250 ms after its first) must carry it, or the join is lost again.
    static let finalResendInterval: Duration = .milliseconds(100)

    private func emit(_ out: inout [SessionOutput], to address: UnderlayAddress, _ bytes: [UInt8]) {
        counters.datagramsOut += 1
        out.append(.send(to: address, bytes: bytes))
    }

    private func appendWake(_ out: inout [SessionOutput]) {
        if let wake = nextWake { out.append(.wake(at: wake)) }
    }
}

/// Nanosecond copies of the timers used on every call.
struct TimingNanos {
    let reject: Int64
    let rekeyTimeout: Int64
    let keepalive: Int64
    let silence: Int64
    let responderWait: Int64
    /// Key age at which the initiator of a session rekeys, and (later) its responder.
    let rekeyInitiator: Int64
    let rekeyResponder: Int64

    init(_ t: SessionTiming) {
        reject = t.rejectAfterTime.nanoseconds
        rekeyTimeout = t.rekeyTimeout.nanoseconds
        keepalive = t.keepaliveTimeout.nanoseconds
        silence = (t.keepaliveTimeout + t.rekeyTimeout).nanoseconds
        responderWait = (t.rekeyTimeout * 2).nanoseconds
        rekeyInitiator = t.rekeyAfterTime.nanoseconds
        rekeyResponder = (t.rekeyAfterTime + t.keepaliveTimeout + t.rekeyTimeout).nanoseconds
    }
}

extension Instant {
    @inline(__always) static func + (a: Instant, ns: Int64) -> Instant { Instant(nanoseconds: a.nanoseconds &+ ns) }
    @inline(__always) static func - (a: Instant, b: Instant) -> Int64 { a.nanoseconds &- b.nanoseconds }
}
