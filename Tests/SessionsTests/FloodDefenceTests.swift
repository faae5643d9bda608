import MeshCore
import Noise
import Sessions
import Sodium
import Testing

/// The handshake floods the real-network test bed found (Docs/testbed.md, "Floods"): a copy of a
/// genuine first message sent again and again, and floods of distinct first messages from one
/// place. Each must cost a cheap, counted drop, never a cookie reply per copy or a handshake's
/// Diffie-Hellman per datagram, and members must still get through.
@Suite struct FloodDefenceTests {
    /// A genuine XX first message (right network key, fresh ephemeral), as a stranger or a
    /// member would send it, with mac1 and no cookie.
    static func firstMessage(_ rng: inout SeededGenerator, sender: UInt32 = 7) throws -> [UInt8] {
        let secrets = try NetworkSecrets(networkKey: Pump.networkKey)
        let ephemeral = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let hs = try HandshakeState(protocolName: "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", initiator: true,
                                    prologue: Array("iotaf/sessions/v1".utf8), localStatic: DHKeyPair.generate(),
                                    psks: [secrets.psk], ephemeralSource: { ephemeral })
        let msg = try hs.writeMessage()
        var h = SessionWire.Handshake(type: .xxInitiation, sender: sender, receiver: 0, noise: msg, mac1: [],
                                      mac2: [UInt8](repeating: 0, count: SessionWire.macLength))
        h.mac1 = SessionWire.mac(key: secrets.mac1Key, h.macCovered)
        return h.encoded()
    }

    static let attacker = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 6666)

    @Test func aReplayedFirstMessageCostsNeitherTheLoadBudgetNorACookieReply() throws {
        var timing = SessionTiming()
        timing.handshakesPerSecond = 5
        var net = Pump()
        net.add(1); net.add(2, timing: timing)
        var rng = SeededGenerator(seed: 11)
        let message = try Self.firstMessage(&rng)
        // The first copy is answered (an XX responder's message 2), every later one is a replay.
        net.inject(message, from: Self.attacker, to: Pump.address(2))
        for _ in 0..<10_000 { net.inject(message, from: Self.attacker, to: Pump.address(2)) }
        let c = net.counters(2)
        #expect(c[.replayedHandshake] == 10_000)
        #expect(c.cookieRepliesSent == 0, "a copy of a first message gets no cookie reply")
        #expect(c[.underLoad] == 0)
        #expect(net.sizes(2).pendingResponders == 1)
        // The load budget is untouched: a member's first contact at the same instant gets no cookie.
        net.send(1, 2, "member", known: false)
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["member"])
        #expect(net.counters(1).cookiesReceived == 0)
    }

    @Test func underLoadACopyOfAFirstMessageGetsOneCookieReplyAtMost() throws {
        var timing = SessionTiming()
        timing.handshakesPerSecond = 2
        var net = Pump()
        net.add(2, timing: timing)
        var rng = SeededGenerator(seed: 12)
        // Use up the load budget with distinct messages from distinct places.
        for i in 0..<2 {
            let from = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: UInt16(7000 + i))
            net.inject(try Self.firstMessage(&rng), from: from, to: Pump.address(2))
        }
        #expect(net.sizes(2).pendingResponders == 2)
        // The replayed message arrives first under load: one cookie reply, then replays.
        let message = try Self.firstMessage(&rng)
        for _ in 0..<1_000 { net.inject(message, from: Self.attacker, to: Pump.address(2)) }
        let c = net.counters(2)
        #expect(c.cookieRepliesSent == 1)
        #expect(c[.underLoad] == 1)
        #expect(c[.replayedHandshake] == 999)
        #expect(net.wire.filter { $0.to == Self.attacker && $0.bytes[0] == 6 }.count == 1)
    }

    @Test func cookieRepliesAreBoundedPerSourceAndInAll() throws {
        var timing = SessionTiming()
        timing.handshakesPerSecond = 1
        timing.cookieRepliesPerSourcePerSecond = 2
        timing.cookieRepliesPerSecond = 50
        var net = Pump()
        net.add(2, timing: timing)
        var rng = SeededGenerator(seed: 13)
        net.inject(try Self.firstMessage(&rng), from: UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 9),
                   to: Pump.address(2))  // the whole load budget
        // Distinct first messages from one source: a burst of 4 replies, then 2 a second.
        for _ in 0..<100 { net.inject(try Self.firstMessage(&rng), from: Self.attacker, to: Pump.address(2)) }
        #expect(net.counters(2).cookieRepliesSent == 4)
        #expect(net.counters(2)[.cookieRateLimited] == 96)
        net.run(for: .seconds(1))
        for _ in 0..<10 { net.inject(try Self.firstMessage(&rng), from: Self.attacker, to: Pump.address(2)) }
        #expect(net.counters(2).cookieRepliesSent == 6)
        // From ever new sources: at most the global burst in all.
        for i in 0..<200 {
            let from = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: UInt16(10_000 + i))
            net.inject(try Self.firstMessage(&rng), from: from, to: Pump.address(2))
        }
        let c = net.counters(2)
        #expect(c.cookieRepliesSent <= 6 + 50)
        #expect(c.cookieRepliesSent >= 50, "the global bucket refilled for a second before: most of its burst is there")
        #expect(c[.underLoad] == c.cookieRepliesSent)
        // Of the 310 first messages only one was processed: the load token refilled after a second.
        #expect(c[.underLoad] + c[.cookieRateLimited] == 309)
        #expect(net.sizes(2).sourceLimitEntries <= 2 * timing.rateLimitEntries)
    }

    @Test func handshakeWorkPerSourceIsBoundedWhileOthersGetThrough() throws {
        var timing = SessionTiming()
        timing.handshakesPerSecond = 10_000  // never under load: only the per-source bound acts
        timing.handshakesPerSourcePerSecond = 8
        var net = Pump()
        net.add(1); net.add(2, timing: timing)
        var rng = SeededGenerator(seed: 14)
        for _ in 0..<100 { net.inject(try Self.firstMessage(&rng), from: Self.attacker, to: Pump.address(2)) }
        #expect(net.counters(2)[.sourceRateLimited] == 84, "a burst of 16 is processed, the rest dropped before any DH")
        #expect(net.sizes(2).pendingResponders == 16)
        #expect(net.counters(2).cookieRepliesSent == 0)
        // Another source (a member) is not held back by the flooder's bucket.
        net.send(1, 2, "member", known: false)
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["member"])
        // The flooder's bucket refills at 8 a second.
        for _ in 0..<20 { net.inject(try Self.firstMessage(&rng), from: Self.attacker, to: Pump.address(2)) }
        #expect(net.counters(2)[.sourceRateLimited] == 84 + 12)
    }
}
