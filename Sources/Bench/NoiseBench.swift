import CLibuv
import CSodium
import MeshCore
import Sessions
import Sodium

/// `iotaf bench noise`: the session layer (in process, no sockets) beside the cryptography it
/// cannot avoid, measured in the same run:
///
/// - `transport_seal_open_1200B`: one manager's `send` of a 1200-byte message and the other's
///   `receive` of the datagram, beside libsodium's ChaCha20-Poly1305 (IETF) seal and open of the
///   same plaintext with the same 16-byte associated data, into preallocated buffers.
/// - `handshake_xx`, `handshake_ik`: complete first-contact (XXpsk3) and known-peer (IKpsk2)
///   handshakes between two managers, each side forgetting the other before the next one, beside
///   the Diffie-Hellman operations those patterns need done back to back: XX has ee, es and se
///   (each computed by both sides: 6) and IK has es, ss, ee and se (8); both generate two
///   ephemeral key pairs (2 fixed-base multiplications). The two managers meet again and again,
///   so each side's Ed25519-to-X25519 conversion of the other's key is cached: a returning peer.
/// - `handshake_xx_new_peer`, `handshake_ik_new_peer`: the same handshakes between identities
///   that never met (a fresh pair each), so each side converts the other's Ed25519 key (libsodium's
///   conversion checks the point's subgroup: about one X25519); the baseline adds those 2
///   conversions of never-seen keys to the Diffie-Hellman work.
/// - `reject_nonmember`: the cost of dropping an IK initiation made with another mesh's network
///   key (mac1 fails), beside one X25519.
///
/// Virtual time moves 250 ms per handshake between the same two managers, so the responder never
/// reaches its per-source limit (8/s): the figure is the cost of a handshake, not of the flood defence.
public enum NoiseBench {
    public struct Sizes: Sendable {
        public var packets = 50_000
        public var handshakes = 200
        public var rejects = 50_000
        public init() {}
    }

    public static let packetSize = 1200

    public static func run(sizes: Sizes, trials: Int, progress: ((String) -> Void)?) throws -> BenchResult {
        var transportOurs: [Double] = [], transportRaw: [Double] = []
        var xxOurs: [Double] = [], xxRaw: [Double] = []
        var ikOurs: [Double] = [], ikRaw: [Double] = []
        var xxNewOurs: [Double] = [], xxNewRaw: [Double] = []
        var ikNewOurs: [Double] = [], ikNewRaw: [Double] = []
        var rejectOurs: [Double] = [], rejectRaw: [Double] = []
        for t in 1...max(1, trials) {
            // Alternate, so drift in machine load hits both sides alike.
            transportRaw.append(rawSealOpen(packets: sizes.packets, size: packetSize))
            transportOurs.append(try sessionSealOpen(packets: sizes.packets, size: packetSize))
            xxRaw.append(rawDH(handshakes: sizes.handshakes, dh: 6, keypairs: 2))
            xxOurs.append(try sessionHandshakes(sizes.handshakes, knownPeer: false))
            ikRaw.append(rawDH(handshakes: sizes.handshakes, dh: 8, keypairs: 2))
            ikOurs.append(try sessionHandshakes(sizes.handshakes, knownPeer: true))
            xxNewRaw.append(rawDH(handshakes: sizes.handshakes, dh: 6, keypairs: 2, conversions: 2))
            xxNewOurs.append(try newPeerHandshakes(sizes.handshakes, knownPeer: false))
            ikNewRaw.append(rawDH(handshakes: sizes.handshakes, dh: 8, keypairs: 2, conversions: 2))
            ikNewOurs.append(try newPeerHandshakes(sizes.handshakes, knownPeer: true))
            rejectRaw.append(rawX25519Cost(count: max(1, sizes.rejects / 50)))
            rejectOurs.append(try rejectCost(count: sizes.rejects))
            progress?(String(format: "trial %d/%d: seal+open %.0f vs %.0f pkt/s; XX %.0f vs %.0f hs/s; IK %.0f vs %.0f hs/s; new peer XX %.0f vs %.0f hs/s, IK %.0f vs %.0f hs/s; reject %.0f ns vs X25519 %.0f ns",
                             t, trials, transportOurs.last!, transportRaw.last!, xxOurs.last!, xxRaw.last!,
                             ikOurs.last!, ikRaw.last!, xxNewOurs.last!, xxNewRaw.last!, ikNewOurs.last!, ikNewRaw.last!,
                             rejectOurs.last!, rejectRaw.last!))
        }
        return BenchResult(bench: "noise", results: [
            .init(metric: "transport_seal_open_1200B", unit: "packets/s", ours: transportOurs.max()!,
                  baseline: transportRaw.max()!, higherIsBetter: true),
            .init(metric: "handshake_xx", unit: "handshakes/s", ours: xxOurs.max()!, baseline: xxRaw.max()!,
                  higherIsBetter: true),
            .init(metric: "handshake_ik", unit: "handshakes/s", ours: ikOurs.max()!, baseline: ikRaw.max()!,
                  higherIsBetter: true),
            .init(metric: "handshake_xx_new_peer", unit: "handshakes/s", ours: xxNewOurs.max()!, baseline: xxNewRaw.max()!,
                  higherIsBetter: true),
            .init(metric: "handshake_ik_new_peer", unit: "handshakes/s", ours: ikNewOurs.max()!, baseline: ikNewRaw.max()!,
                  higherIsBetter: true),
            .init(metric: "reject_nonmember", unit: "ns", ours: rejectOurs.min()!, baseline: rejectRaw.min()!,
                  higherIsBetter: false),
        ])
    }

    // MARK: - The session layer

    static let networkKey = [UInt8](repeating: 0x5a, count: 32)
    static let addressA = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 7001)
    static let addressB = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 7002)

    /// Two managers and a lossless, instant wire between them.
    struct Pair {
        let a: SessionManager
        let b: SessionManager
        let peerA: PeerIdentity
        let peerB: PeerIdentity
        var now = Instant(nanoseconds: 1_000_000_000)

        init(networkKeyA: [UInt8] = NoiseBench.networkKey) throws {
            let idA = NodeIdentity.generate(), idB = NodeIdentity.generate()
            a = try SessionManager(identity: idA, networkKey: networkKeyA, rng: SeededGenerator(seed: 1))
            b = try SessionManager(identity: idB, networkKey: NoiseBench.networkKey, rng: SeededGenerator(seed: 2))
            peerA = idA.peer
            peerB = idB.peer
        }

        /// Carries datagrams back and forth until neither side sends anything.
        mutating func pump(_ fromA: [SessionOutput]) {
            var toB = fromA
            var toA: [SessionOutput] = []
            while !toB.isEmpty || !toA.isEmpty {
                var next: [SessionOutput] = []
                for case let .send(_, bytes) in toB { next += b.receive(bytes, from: NoiseBench.addressA, now: now) }
                toB = []
                for case let .send(_, bytes) in toA { toB += a.receive(bytes, from: NoiseBench.addressB, now: now) }
                toA = next
            }
        }
    }

    static func sessionSealOpen(packets: Int, size: Int) throws -> Double {
        var pair = try Pair()
        pair.pump(pair.a.send([1], to: addressB, peer: pair.peerB, now: pair.now))
        guard pair.a.isEstablished(peerKey: pair.peerB.publicKey, now: pair.now) else {
            throw BenchError("the two session managers did not establish a session")
        }
        let message = [UInt8](repeating: 0xab, count: size)
        var delivered = 0
        let start = uv_hrtime()
        for _ in 0..<packets {
            pair.now = Instant(nanoseconds: pair.now.nanoseconds + 1_000)
            for case let .send(_, bytes) in pair.a.send(message, to: addressB, peer: pair.peerB, now: pair.now) {
                for case let .deliver(_, _, plaintext) in pair.b.receive(bytes, from: addressA, now: pair.now) {
                    delivered += plaintext.count
                }
            }
        }
        let elapsed = uv_hrtime() - start
        guard delivered == packets * size else { throw BenchError("session transport lost packets (\(delivered) bytes delivered)") }
        return Double(packets) / (Double(elapsed) / 1e9)
    }

    static func sessionHandshakes(_ count: Int, knownPeer: Bool) throws -> Double {
        var pair = try Pair()
        let message: [UInt8] = [1]
        let completedBefore = pair.a.counters.handshakesCompleted + pair.b.counters.handshakesCompleted
        let start = uv_hrtime()
        for _ in 0..<count {
            // Virtual time between handshakes costs nothing; 250 ms keeps one source under the
            // responder's per-source limit (8 initiations/s), which a flood, not a bench, meets.
            pair.now = Instant(nanoseconds: pair.now.nanoseconds + 250_000_000)
            pair.a.forget(peerKey: pair.peerB.publicKey)
            pair.b.forget(peerKey: pair.peerA.publicKey)
            pair.pump(pair.a.send(message, to: addressB, peer: knownPeer ? pair.peerB : nil, now: pair.now))
        }
        let elapsed = uv_hrtime() - start
        let completed = pair.a.counters.handshakesCompleted + pair.b.counters.handshakesCompleted - completedBefore
        guard completed == UInt64(2 * count), pair.b.counters.messagesDelivered == UInt64(count) else {
            throw BenchError("\(knownPeer ? "IK" : "XX") handshakes did not all complete (\(completed) of \(2 * count) sides)")
        }
        return Double(count) / (Double(elapsed) / 1e9)
    }

    /// Handshakes between nodes that never met: `count` pairs of fresh identities made before the
    /// clock starts, one handshake each, so every handshake pays each side's conversion of the
    /// other's Ed25519 key to its X25519 form (no manager's cache, nor the process-wide one, has
    /// seen those keys).
    static func newPeerHandshakes(_ count: Int, knownPeer: Bool) throws -> Double {
        var pairs = try (0..<count).map { _ in try Pair() }
        let message: [UInt8] = [1]
        let start = uv_hrtime()
        for i in pairs.indices {
            pairs[i].pump(pairs[i].a.send(message, to: addressB, peer: knownPeer ? pairs[i].peerB : nil, now: pairs[i].now))
        }
        let elapsed = uv_hrtime() - start
        let completed = pairs.reduce(0) { $0 + $1.a.counters.handshakesCompleted + $1.b.counters.handshakesCompleted }
        guard completed == UInt64(2 * count), pairs.allSatisfy({ $0.b.counters.messagesDelivered == 1 }) else {
            throw BenchError("new-peer \(knownPeer ? "IK" : "XX") handshakes did not all complete (\(completed) of \(2 * count) sides)")
        }
        return Double(count) / (Double(elapsed) / 1e9)
    }

    /// Nanoseconds per dropped initiation from a node of another mesh.
    static func rejectCost(count: Int) throws -> Double {
        var pair = try Pair(networkKeyA: [UInt8](repeating: 0x33, count: 32))
        guard case let .send(_, initiation)? = pair.a.send([1], to: addressB, peer: pair.peerB, now: pair.now).first else {
            throw BenchError("no initiation to reject")
        }
        let before = pair.b.counters[.badMac1]
        let start = uv_hrtime()
        for _ in 0..<count {
            pair.now = Instant(nanoseconds: pair.now.nanoseconds + 1_000)
            _ = pair.b.receive(initiation, from: addressA, now: pair.now)
        }
        let elapsed = uv_hrtime() - start
        guard pair.b.counters[.badMac1] - before == UInt64(count) else { throw BenchError("not every initiation was dropped at mac1") }
        return Double(elapsed) / Double(count)
    }

    // MARK: - The baselines, straight against libsodium

    static func rawSealOpen(packets: Int, size: Int) -> Double {
        Sodium.ensureInitialised()
        let key = Sodium.randomBytes(32)
        let ad = [UInt8](repeating: 7, count: 16)
        let plaintext = [UInt8](repeating: 0xab, count: size)
        var sealed = [UInt8](repeating: 0, count: size + 16)
        var opened = [UInt8](repeating: 0, count: size)
        var nonce = [UInt8](repeating: 0, count: 12)
        var failures = 0
        let start = uv_hrtime()
        for i in 0..<packets {
            withUnsafeBytes(of: UInt64(i).littleEndian) { for j in 0..<8 { nonce[4 + j] = $0[j] } }
            var sealedLength: UInt64 = 0, openedLength: UInt64 = 0
            _ = crypto_aead_chacha20poly1305_ietf_encrypt(&sealed, &sealedLength, plaintext, UInt64(size), ad, 16, nil, nonce, key)
            if crypto_aead_chacha20poly1305_ietf_decrypt(&opened, &openedLength, nil, sealed, sealedLength, ad, 16, nonce, key) != 0 {
                failures += 1
            }
        }
        let elapsed = uv_hrtime() - start
        precondition(failures == 0 && opened == plaintext, "raw ChaCha20-Poly1305 round trip failed")
        return Double(packets) / (Double(elapsed) / 1e9)
    }

    /// Handshakes per second if a handshake were nothing but its DH operations (and, for peers
    /// that never met, `conversions` Ed25519-to-X25519 conversions of keys never converted before).
    static func rawDH(handshakes: Int, dh: Int, keypairs: Int, conversions: Int = 0) -> Double {
        Sodium.ensureInitialised()
        let edKeys: [[UInt8]] = (0..<(handshakes * conversions)).map { _ in
            var pk = [UInt8](repeating: 0, count: 32), sk = [UInt8](repeating: 0, count: 64)
            _ = crypto_sign_keypair(&pk, &sk)
            return pk
        }
        var converted = 0
        var secret = Sodium.randomBytes(32)
        var point = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult_base(&point, secret)
        var out = [UInt8](repeating: 0, count: 32)
        let start = uv_hrtime()
        for _ in 0..<handshakes {
            for _ in 0..<keypairs {
                // Ephemeral key generation: fresh secret, fixed-base multiplication.
                randombytes_buf(&secret, 32)
                _ = crypto_scalarmult_base(&out, secret)
            }
            for _ in 0..<dh { _ = crypto_scalarmult(&out, secret, point) }
            for _ in 0..<conversions {
                _ = crypto_sign_ed25519_pk_to_curve25519(&out, edKeys[converted])
                converted += 1
            }
        }
        let elapsed = uv_hrtime() - start
        return Double(handshakes) / (Double(elapsed) / 1e9)
    }

    /// Nanoseconds per X25519.
    static func rawX25519Cost(count: Int) -> Double {
        Sodium.ensureInitialised()
        let secret = Sodium.randomBytes(32)
        var point = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult_base(&point, Sodium.randomBytes(32))
        var out = [UInt8](repeating: 0, count: 32)
        let start = uv_hrtime()
        for _ in 0..<count { _ = crypto_scalarmult(&out, secret, point) }
        return Double(uv_hrtime() - start) / Double(count)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
