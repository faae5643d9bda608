import MeshCore
import Noise
import Sessions
import Sodium
import Testing

@Suite struct HandshakeTests {
    @Test func firstContactIsXXThenKnownPeerIsIK() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "hello", known: false)
        #expect(net.wire.first?.bytes.first == SessionWire.PacketType.xxInitiation.rawValue)
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["hello"])
        // B learned A's key from the handshake and answers on the same session.
        #expect(net.nodes[Pump.address(2)]!.delivered[0].from.publicKey == net.key(1))
        #expect(net.nodes[Pump.address(2)]!.delivered[0].from.nodeID == Pump.identity(1).nodeID)
        #expect(net.nodes[Pump.address(1)]!.established == [net.key(2)])
        net.send(2, 1, "hi back")
        net.run(for: .seconds(1))
        #expect(net.texts(1) == ["hi back"])
        #expect(net.counters(1).handshakesInitiated == 1 && net.counters(2).handshakesInitiated == 0)

        // A fresh pair where the key is known: one round trip of IK.
        var ik = Pump()
        ik.add(1); ik.add(2)
        ik.send(1, 2, "known")
        #expect(ik.wire.first?.bytes.first == SessionWire.PacketType.ikInitiation.rawValue)
        ik.run(for: .seconds(1))
        #expect(ik.texts(2) == ["known"])
        #expect(ik.wire.map { $0.bytes[0] }.prefix(3) == [1, 2, 7])
        ik.send(2, 1, "reply")
        ik.run(for: .seconds(1))
        #expect(ik.texts(1) == ["reply"])
    }

    /// The XX initiator's final message is lost: the initiator holds keys the responder never got,
    /// and its transport would be `unknown_index` there until the dead-peer timer (15 s). The final
    /// message rides again with the next transport packet, so the session heals at once.
    @Test func lostXXFinalIsResentWithTheNextPacket() {
        var net = Pump()
        net.add(1); net.add(2)
        var dropped = 0
        net.filter = { p in
            if p.bytes.first == SessionWire.PacketType.xxFinal.rawValue && dropped == 0 { dropped += 1; return false }
            return true
        }
        net.send(1, 2, "first", known: false)
        net.run(for: .milliseconds(500))
        #expect(dropped == 1)
        #expect(net.nodes[Pump.address(1)]!.established == [net.key(2)])
        #expect(net.texts(2).isEmpty)  // sent on keys the responder does not hold
        net.send(1, 2, "second")
        net.run(for: .milliseconds(500))
        // "first" waited at the responder for the third message (kept for its handshake).
        #expect(net.texts(2) == ["first", "second"])
        #expect(net.nodes[Pump.address(2)]!.established == [net.key(1)])
        // Confirmed by the responder's answer: no more copies of the final message.
        net.send(2, 1, "reply")
        net.run(for: .milliseconds(500))
        let finals = net.wire.filter { $0.bytes.first == SessionWire.PacketType.xxFinal.rawValue }.count
        net.send(1, 2, "third")
        net.run(for: .milliseconds(500))
        #expect(net.texts(2) == ["first", "second", "third"])
        #expect(net.wire.filter { $0.bytes.first == SessionWire.PacketType.xxFinal.rawValue }.count == finals)
    }

    /// First contact (a newcomer calling its seed) loses its first message: the initiation goes
    /// out again after 250 ms (plus jitter), not after a second, so the session is up well
    /// within half a second.
    @Test func lostFirstContactInitiationIsRetriedSoon() {
        var net = Pump()
        net.add(1); net.add(2)
        var dropped = 0
        net.filter = { p in
            if p.bytes.first == SessionWire.PacketType.xxInitiation.rawValue && dropped == 0 { dropped += 1; return false }
            return true
        }
        net.send(1, 2, "join", known: false)
        net.run(for: .milliseconds(450))
        #expect(dropped == 1)
        #expect(net.nodes[Pump.address(1)]!.established == [net.key(2)])
        #expect(net.texts(2) == ["join"])
        // A known peer (IK) keeps the one-second schedule.
        var ik = Pump()
        ik.add(1); ik.add(2)
        var ikDropped = 0
        ik.filter = { p in
            if p.bytes.first == SessionWire.PacketType.ikInitiation.rawValue && ikDropped == 0 { ikDropped += 1; return false }
            return true
        }
        ik.send(1, 2, "known")
        ik.run(for: .milliseconds(900))
        #expect(ik.texts(2).isEmpty)
        ik.run(for: .seconds(1))
        #expect(ik.texts(2) == ["known"])
    }

    /// On a link slower than the quick first-contact retry, the answer to the replaced attempt
    /// still completes the handshake (one round trip after the first message), instead of being
    /// refused as `unknown_index` while each retransmission outruns its own answer.
    @Test func lateAnswerToReplacedFirstContactAttemptCompletes() {
        var net = Pump()
        net.latency = .milliseconds(400)
        net.add(1); net.add(2)
        net.send(1, 2, "slow", known: false)
        net.run(for: .milliseconds(820))
        #expect(net.counters(1).handshakeRetransmits >= 1)
        #expect(net.nodes[Pump.address(1)]!.established == [net.key(2)])
        net.run(for: .milliseconds(500))
        #expect(net.texts(2) == ["slow"])
        #expect(net.nodes[Pump.address(2)]!.established == [net.key(1)])
        // Later answers (to the newer attempt) find nothing to complete: counted, no second session.
        net.run(for: .seconds(3))
        #expect(net.nodes[Pump.address(1)]!.established == [net.key(2)])
        net.send(1, 2, "again")
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["slow", "again"])
        #expect(net.sizes(1).indices == 1)
    }

    /// The XX initiator's first transport packet overtakes its third message (both leave in the
    /// same instant; jitter reorders them): the responder keeps it for that handshake and reads
    /// it once the third message arrives, instead of dropping it as `unknown_index`.
    @Test func transportOvertakingTheXXFinalIsKeptUntilItArrives() {
        var net = Pump()
        net.add(1); net.add(2)
        var held: [UInt8]?
        net.filter = { p in
            if p.bytes.first == SessionWire.PacketType.xxFinal.rawValue && held == nil { held = p.bytes; return false }
            return true
        }
        net.send(1, 2, "join", known: false)
        net.run(for: .milliseconds(90))
        #expect(held != nil)
        #expect(net.texts(2).isEmpty)
        #expect(net.counters(2)[.unknownIndex] == 0)
        net.inject(held!, from: Pump.address(1), to: Pump.address(2))
        #expect(net.texts(2) == ["join"])
        #expect(net.nodes[Pump.address(2)]!.established == [net.key(1)])
        // A forged packet naming a pending handshake from another address is not kept.
        #expect(net.counters(2)[.decryptFailed] == 0)
    }

    @Test func sessionExpiresThenIKRehandshakes() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "a", known: false)
        net.run(for: .seconds(200))
        #expect(net.sizes(1).keypairs == 0 && net.sizes(2).keypairs == 0)
        let before = net.wire.count
        net.send(1, 2, "b")
        #expect(net.wire[before].bytes[0] == SessionWire.PacketType.ikInitiation.rawValue)
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["a", "b"])
    }

    @Test func messagesBothWaysInOrder() {
        var net = Pump()
        net.add(1); net.add(2)
        for i in 0..<100 {
            net.send(1, 2, "a\(i)")
            net.send(2, 1, "b\(i)")
            net.run(for: .milliseconds(5))
        }
        net.run(for: .seconds(1))
        #expect(net.texts(2) == (0..<100).map { "a\($0)" })
        #expect(net.texts(1) == (0..<100).map { "b\($0)" })
        // Both started at once: exactly one handshake survived the collision.
        #expect(net.counters(1).drops[.handshakeCollision, default: 0] + net.counters(2).drops[.handshakeCollision, default: 0] == 1)
    }

    /// The tie-break winner's initiation went into the peer's crash; the peer restarts and
    /// initiates. That is no collision (the winner's attempt is long lost): the peer must get a
    /// session within a round trip or two, not after the winner's backed-off retransmission.
    @Test func restartedPeerIsNotRefusedAsCollision() {
        var net = Pump()
        net.add(1); net.add(2)
        // The side with the smaller static key keeps its own attempt in a real collision.
        let (winner, loser) = net.key(1) < net.key(2) ? (1, 2) : (2, 1)
        // The loser is down: the winner's attempts go nowhere while it backs off.
        net.nodes[Pump.address(loser)] = nil
        net.send(winner, loser, "to the crashed one")
        // Attempts at 0, 1-1.33 and 3-4 s; the next is due at 7 s or later.
        net.run(for: .seconds(6))
        #expect(net.counters(winner).handshakeRetransmits == 2)
        // The loser restarts (same key, fresh state) and calls the winner first.
        net.add(loser, seed: 77)
        net.send(loser, winner, "back again")
        net.run(for: .milliseconds(300))
        #expect(net.texts(winner) == ["back again"])
        #expect(net.texts(loser) == ["to the crashed one"])
        // It was the race: the winner refused the loser's initiation and sent its own again.
        #expect(net.counters(winner)[.handshakeCollision] == 1)
        // A truly simultaneous start is still settled by the tie-break (messagesBothWaysInOrder).
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func simultaneousInitiationResolves(seed: UInt64) {
        for known in [true, false] {
            var net = Pump()
            net.rng = SeededGenerator(seed: seed)
            net.add(1, seed: seed * 10); net.add(2, seed: seed * 10 + 1)
            net.send(1, 2, "x", known: known)
            net.send(2, 1, "y", known: known)
            net.run(for: .seconds(3))
            #expect(net.texts(2) == ["x"], "known=\(known)")
            #expect(net.texts(1) == ["y"], "known=\(known)")
            #expect(net.counters(1).handshakesCompleted == 1 && net.counters(2).handshakesCompleted == 1)
            // And the session keeps working afterwards in both directions.
            net.send(1, 2, "x2"); net.send(2, 1, "y2")
            net.run(for: .seconds(1))
            #expect(net.texts(2).last == "x2" && net.texts(1).last == "y2")
        }
    }

    @Test func maxPlaintextFitsOneDatagram() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "open")
        net.run(for: .seconds(1))
        let a = Pump.address(1)
        let big = [UInt8](repeating: 0xab, count: SessionManager.maxPlaintext)
        net.apply(net.nodes[a]!.manager.send(big, to: Pump.address(2), peer: net.peer(2), now: net.now), at: a)
        #expect(net.wire.last!.bytes.count == SessionWire.maxDatagram)
        net.apply(net.nodes[a]!.manager.send(big + [1], to: Pump.address(2), peer: net.peer(2), now: net.now), at: a)
        net.apply(net.nodes[a]!.manager.send([], to: Pump.address(2), peer: net.peer(2), now: net.now), at: a)
        #expect(net.counters(1)[.plaintextTooLong] == 1 && net.counters(1)[.emptyPlaintext] == 1)
        net.run(for: .seconds(1))
        #expect(net.nodes[Pump.address(2)]!.delivered.last!.plaintext == big)
        // Every datagram the layer ever produced fits the IPv6 minimum MTU.
        #expect(net.wire.allSatisfy { $0.bytes.count <= SessionWire.maxDatagram })
    }

    @Test func handshakeGivesUpAndDropsQueue() {
        var net = Pump()
        net.add(1)
        net.send(1, 9, "nobody home")
        net.send(1, 9, "still nobody")
        net.run(for: .seconds(100))
        #expect(net.nodes[Pump.address(1)]!.failed == ["handshake_timeout"])
        #expect(net.counters(1).messagesDroppedOnFailure == 2)
        #expect(net.counters(1).handshakeRetransmits > 5)
        // Backoff: retransmissions spread out instead of one per second.
        let times = net.wire.map { $0.at.seconds }
        #expect(times.count < 20)
        net.run(for: .seconds(400))
        #expect(net.sizes(1).peers == 0 && net.sizes(1).indices == 0)
    }
}

@Suite struct TransportTests {
    @Test(arguments: [11, 12, 13] as [UInt64])
    func lossReorderingDuplicationExactlyOnce(seed: UInt64) {
        var net = Pump()
        net.rng = SeededGenerator(seed: seed)
        net.loss = 0.1; net.duplication = 0.2; net.jitter = .milliseconds(60)
        net.add(1); net.add(2)
        var sent: Set<String> = []
        for i in 0..<400 {
            net.send(1, 2, "m\(i)"); sent.insert("m\(i)")
            if i % 3 == 0 { net.send(2, 1, "r\(i)") }
            net.run(for: .milliseconds(20))
        }
        net.run(for: .seconds(2))
        let got = net.texts(2)
        #expect(Set(got).count == got.count, "a message was delivered twice")
        #expect(Set(got).isSubset(of: sent))
        #expect(got.count > 300)
        #expect(net.counters(2)[.duplicate] > 0, "duplicates reached the replay window and were dropped")
        #expect(Set(net.texts(1)).count == net.texts(1).count)
    }

    @Test func rekeyOnTimeLosesNothing() {
        var net = Pump()
        net.add(1); net.add(2)
        var n = 0
        while net.now < .seconds(400) {
            net.send(1, 2, "a\(n)"); net.send(2, 1, "b\(n)")
            n += 1
            net.run(for: .milliseconds(250))
        }
        net.run(for: .seconds(1))
        #expect(net.texts(2) == (0..<n).map { "a\($0)" })
        #expect(net.texts(1) == (0..<n).map { "b\($0)" })
        #expect(net.counters(1).rekeys + net.counters(2).rekeys >= 3)
        #expect(net.counters(1).totalDrops + net.counters(2).totalDrops == net.counters(1)[.handshakeCollision] + net.counters(2)[.handshakeCollision])
        // Old keys are let go: never more than current + previous (+ unconfirmed next).
        #expect(net.sizes(1).keypairs <= 3 && net.sizes(2).keypairs <= 3)
        // Every rekey was an IK handshake with the same peer: one precomputed static-static
        // result each side, reused rather than recomputed; forgetting the peer wipes it.
        #expect(net.sizes(1).staticStaticResults == 1 && net.sizes(2).staticStaticResults == 1)
        net.nodes[Pump.address(1)]!.manager.forget(peerKey: net.key(2))
        #expect(net.sizes(1).staticStaticResults == 0)
    }

    @Test func rekeyAfterMessageCount() {
        var timing = SessionTiming()
        timing.rekeyAfterMessages = 50
        var net = Pump()
        net.add(1, timing: timing); net.add(2, timing: timing)
        for i in 0..<200 {
            net.send(1, 2, "m\(i)")
            net.run(for: .milliseconds(30))
        }
        net.run(for: .seconds(1))
        #expect(net.texts(2) == (0..<200).map { "m\($0)" })
        #expect(net.counters(1).rekeys >= 3)
    }

    @Test func keepaliveAnswersOneWayTraffic() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "one-way")
        net.run(for: .seconds(1))
        net.run(for: .seconds(11))
        #expect(net.counters(2).keepalivesSent == 1)
        #expect(net.counters(1).keepalivesReceived == 1)
        #expect(net.nodes[Pump.address(1)]!.delivered.isEmpty)
    }

    @Test func restartedPeerRehandshakes() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "before")
        net.run(for: .seconds(1))
        // B restarts: same key, no memory of the session.
        net.add(2, seed: 777)
        var i = 0
        while net.now < .seconds(40) {
            net.send(1, 2, "after\(i)"); i += 1
            net.run(for: .seconds(1))
        }
        let got = net.texts(2)
        #expect(net.counters(2)[.unknownIndex] > 0)
        #expect(got.count > 15, "A noticed the silence and re-handshook: \(got.count)")
        #expect(got.last == "after\(i - 1)")
        // The restarted side can also start: its IK initiation replaces A's old session.
        net.add(2, seed: 778)
        net.send(2, 1, "I am back")
        net.run(for: .seconds(1))
        #expect(net.texts(1) == ["I am back"])
        net.send(1, 2, "welcome")
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["welcome"])
    }
}

@Suite struct DeterminismTests {
    /// Same seeds, same transcript: no hidden clock or OS randomness in the core (the simulator
    /// relies on this).
    @Test func sameSeedSameBytes() {
        func run() -> [[UInt8]] {
            var net = Pump()
            net.loss = 0.2; net.jitter = .milliseconds(30)
            net.add(1); net.add(2); net.add(3)
            for i in 0..<50 {
                net.send(1, 2, "a\(i)", known: i % 2 == 0)
                net.send(3, 1, "c\(i)")
                net.run(for: .milliseconds(100))
            }
            net.run(for: .seconds(200))
            return net.wire.map(\.bytes)
        }
        #expect(run() == run())
    }
}
