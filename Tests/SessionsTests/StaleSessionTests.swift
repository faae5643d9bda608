import MeshCore
import Noise
import Sessions
import Sodium
import Testing

/// A node restarted with nothing (no sessions, no peer store, no seeds) while its peers keep the
/// sessions they had with it: their packets name indices it no longer holds. Without an answer
/// it stays cut off until each peer's silence timer (keepalive + rekey timeout, 15 s) fires:
/// the consensus-4 simulation lost a validator for the rest of its run that way (seeds 17, 40,
/// 126, 140, 185). Real Noise handshakes and real ChaCha20-Poly1305 throughout.
@Suite struct StaleSessionTests {
    /// A and B talk; B restarts knowing nobody and sends nothing. A's next packet, undecodable
    /// at B, makes B call its sender (XX by address); the completed handshake replaces A's old
    /// session at once, so A's messages get through within a round trip or two, not in 15 s.
    @Test func aRestartedPeerThatKnowsNobodyRecoversFromThePeersNextPacket() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "before")
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["before"])
        net.add(2, seed: 900)  // same key, no state
        let restart = net.now
        var sent = 0
        while net.now < restart + .seconds(2) {
            net.send(1, 2, "after\(sent)"); sent += 1
            net.run(for: .milliseconds(100))
        }
        net.run(for: .milliseconds(200))
        let got = net.texts(2)
        // The first packet after the restart is lost (no keys can read it); it starts the handshake
        // (20 ms each way, 1.5 round trips) and every message from the second on arrives.
        #expect(net.counters(2)[.unknownIndex] == 1)
        #expect(net.counters(2).staleSessionHandshakes == 1)
        #expect(got == (1..<sent).map { "after\($0)" })
        // A took the new session as a responder: it never had to wait for its silence timer.
        #expect(net.counters(1).handshakesInitiated == 1)
        #expect(net.nodes[Pump.address(2)]!.established == [net.key(1)])
        // And the session works both ways.
        net.send(2, 1, "back")
        net.run(for: .milliseconds(200))
        #expect(net.texts(1) == ["back"])
    }

    /// The recovery handshake's third message is lost: A still sends on its old keys, B holds new
    /// keys A never got. A's next stale packet makes B send the third message again.
    @Test func aLostFinalMessageOfTheRecoveryIsSentAgainOnTheNextStalePacket() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "before")
        net.run(for: .seconds(1))
        net.add(2, seed: 901)
        var finals = 0
        net.filter = { p in
            if p.bytes.first == SessionWire.PacketType.xxFinal.rawValue { finals += 1; return finals > 1 }
            return true
        }
        var sent = 0
        let restart = net.now
        while net.now < restart + .seconds(1) {
            net.send(1, 2, "m\(sent)"); sent += 1
            net.run(for: .milliseconds(100))
        }
        net.run(for: .milliseconds(200))
        #expect(finals == 2)
        #expect(net.counters(2).staleSessionHandshakes == 1)
        #expect(net.counters(2).staleSessionConfirmations == 1)
        // m0 (at 0 ms) started the handshake, whose final went out at 60 ms and was lost; m1 came
        // within the final's resend interval (100 ms) of it, m2 brought the final again, and from
        // m3 on A sends on the new keys.
        #expect(net.texts(2) == (3..<sent).map { "m\($0)" })
    }

    /// B restarts knowing A's key (its peer store) and calls A with IK; the packet confirming
    /// B's new keys is lost, so A keeps them unconfirmed and answers on its old keys. B sends
    /// a keepalive on the new keys at A's next stale packet, which confirms them.
    @Test func aLostIKConfirmationIsSentAgainOnTheNextStalePacket() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "before")
        net.run(for: .seconds(1))
        net.add(2, seed: 902)
        // B's first transport packet after its IK handshake (the message it queued) is lost.
        var bTransports = 0
        net.filter = { p in
            if p.from == Pump.address(2), p.bytes.first == SessionWire.PacketType.transport.rawValue {
                bTransports += 1
                return bTransports > 1
            }
            return true
        }
        net.send(2, 1, "hello again")
        net.run(for: .milliseconds(100))
        #expect(net.nodes[Pump.address(2)]!.established == [net.key(1)])
        #expect(net.texts(1).isEmpty)
        net.send(1, 2, "stale")  // on A's old keys: unknown to B
        net.run(for: .milliseconds(100))
        #expect(net.counters(2).staleSessionConfirmations == 1)
        #expect(net.counters(2).staleSessionHandshakes == 0)
        net.send(1, 2, "fresh")
        net.run(for: .milliseconds(100))
        #expect(net.texts(2) == ["fresh"])
    }

    /// Unknown-index packets are unauthenticated: a flood of them from spoofed sources starts at
    /// most `staleSessionHandshakesMax` recovery handshakes at once and one per source per
    /// second, never evicts a real peer, leaves no state behind once they go unanswered, and a
    /// packet from the address of a working session starts nothing.
    @Test func spoofedStalePacketsAreBoundedAndLeaveNothingBehind() {
        var timing = SessionTiming()
        timing.maxPeers = 8
        timing.staleSessionHandshakesMax = 4
        var net = Pump()
        net.add(1); net.add(2, timing: timing)
        net.send(1, 2, "member")
        net.run(for: .seconds(1))
        let baseline = net.sizes(2)
        var rng = SeededGenerator(seed: 12)
        func stale() -> [UInt8] {
            SessionWire.Transport.header(receiver: UInt32.random(in: 1...UInt32.max, using: &rng), counter: 0)
                + (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        // From a working session's address: a straggler, nothing to do.
        for _ in 0..<10 { net.inject(stale(), from: Pump.address(1), to: Pump.address(2)) }
        #expect(net.counters(2).staleSessionHandshakes == 0 && net.counters(2)[.unknownIndex] == 10)
        // 100 spoofed sources, three packets each.
        let spoofed = (0..<100).map { UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: UInt16(20000 + $0)) }
        for _ in 0..<3 { for a in spoofed { net.inject(stale(), from: a, to: Pump.address(2)) } }
        #expect(net.counters(2).staleSessionHandshakes == 4)
        #expect(net.sizes(2).peers <= timing.maxPeers)
        // Unanswered, they are dropped after their attempts, silently, with their records.
        net.run(for: .seconds(5))
        #expect(net.nodes[Pump.address(2)]!.failed.isEmpty)
        #expect(net.sizes(2).peers == baseline.peers && net.sizes(2).indices == baseline.indices)
        // The same sources a second later: again at most the bound, one each.
        for a in spoofed { net.inject(stale(), from: a, to: Pump.address(2)) }
        #expect(net.counters(2).staleSessionHandshakes == 8)
        // The member was never evicted and its session still works.
        net.send(1, 2, "still here")
        net.run(for: .milliseconds(500))
        #expect(net.texts(2) == ["member", "still here"])
    }
}
