import MeshCore
import Noise
import Sessions
import Sodium
import Testing

/// The per-packet shortcuts of the session layer (recycled buffers, timer heap, key caches) must
/// never change what is delivered or scheduled. Debug builds also check, after every call, that
/// the cached next wake equals a scan of every peer.
@Suite struct BookkeepingTests {
    static let a = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 6001)
    static let b = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 6002)

    /// Two managers with an IK session from `a` to `b`, every output carried at once.
    static func establishedPair() -> (SessionManager, SessionManager, NodeIdentity, NodeIdentity) {
        let idA = Pump.identity(1), idB = Pump.identity(2)
        let ma = try! SessionManager(identity: idA, networkKey: Pump.networkKey, rng: SeededGenerator(seed: 1))
        let mb = try! SessionManager(identity: idB, networkKey: Pump.networkKey, rng: SeededGenerator(seed: 2))
        var toB = ma.send([0], to: b, peer: idB.peer, now: .zero)
        while true {
            var toA: [SessionOutput] = []
            for case let .send(_, bytes) in toB { toA += mb.receive(bytes, from: a, now: .zero) }
            toB = []
            for case let .send(_, bytes) in toA { toB += ma.receive(bytes, from: b, now: .zero) }
            if toB.isEmpty { break }
        }
        return (ma, mb, idA, idB)
    }

    @Test func datagramsAndPlaintextsStayIntactWhenBuffersAreReused() {
        let (ma, mb, _, idB) = Self.establishedPair()
        var heldDatagrams: [(bytes: [UInt8], copy: [UInt8])] = []
        var heldPlaintexts: [(bytes: [UInt8], copy: [UInt8])] = []
        for i in 0..<300 {
            let now = Instant(nanoseconds: Int64(i + 1) * 1_000_000)
            // Runs of four messages of one size, so the previous array's storage is reused whenever
            // nothing else holds it (and copied first when the test holds it).
            let message = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 1 + (i / 4 % 5) * 299)
            var datagram: [UInt8]?
            for case let .send(_, bytes) in ma.send(message, to: Self.b, peer: idB.peer, now: now) { datagram = bytes }
            guard let datagram else { Issue.record("no datagram for message \(i)"); return }
            if i % 7 == 0 { heldDatagrams.append((datagram, datagram.map { $0 })) }
            var delivered: [UInt8]?
            for case let .deliver(_, _, plaintext) in mb.receive(datagram, from: Self.a, now: now) { delivered = plaintext }
            #expect(delivered == message)
            if let delivered, i % 6 == 0 { heldPlaintexts.append((delivered, delivered.map { $0 })) }
        }
        // Arrays kept by the caller were never written to by later sends and receives.
        #expect(heldDatagrams.allSatisfy { $0.bytes == $0.copy })
        #expect(heldPlaintexts.allSatisfy { $0.bytes == $0.copy })
        #expect(mb.counters.messagesDelivered == 301 && mb.counters.totalDrops == 0)  // 300 and the first, queued one
    }

    @Test(arguments: [21, 22] as [UInt64])
    func timersStayExactUnderChurnAndEviction(seed: UInt64) {
        var timing = SessionTiming()
        timing.maxPeers = 3  // more peers than room: evictions, and the static-key cache wraps too
        var net = Pump()
        net.rng = SeededGenerator(seed: seed)
        net.loss = 0.1
        net.duplication = 0.05
        net.jitter = .milliseconds(40)
        for i in 1...8 { net.add(i, timing: timing) }
        var rng = SeededGenerator(seed: seed &+ 100)
        for step in 0..<400 {
            let from = 1 + Int(rng.next() % 8)
            var to = 1 + Int(rng.next() % 8)
            if to == from { to = from % 8 + 1 }
            net.send(from, to, "m\(step)", known: rng.next() % 4 != 0)
            net.run(for: .milliseconds(150))
        }
        // Long enough for keys to expire and idle peers to be forgotten.
        net.run(for: .seconds(400))
        let delivered = (1...8).reduce(0) { $0 + net.texts($1).count }
        #expect(delivered > 100)
        for i in 1...8 {
            #expect(net.sizes(i).peers <= 3)
            #expect(net.sizes(i).keypairs == 0)
        }
    }
}
