import MeshCore
import Noise
import Sessions
import Sodium
import Testing

@Suite struct DefenceTests {
    @Test func networkKeyDerivation() throws {
        let a = try NetworkSecrets(networkKey: Pump.networkKey)
        let b = try NetworkSecrets(networkKey: Pump.networkKey)
        #expect(a.psk == b.psk && a.mac1Key == b.mac1Key)
        #expect(Set([a.psk, a.mac1Key, a.cookieKey, Pump.networkKey]).count == 4)
        #expect(throws: SessionConfigError.self) { try NetworkSecrets(networkKey: [1, 2, 3]) }
    }

    @Test func wrongNetworkKeyIsRefusedBeforeAnyWork() {
        var net = Pump()
        net.add(1); net.add(2, networkKey: [UInt8](repeating: 0x13, count: 32))
        net.send(2, 1, "let me in", known: false)
        net.send(2, 1, "let me in too")
        net.run(for: .seconds(100))
        #expect(net.texts(1).isEmpty)
        #expect(net.counters(1)[.badMac1] >= 2)
        #expect(net.counters(1).totalDrops == net.counters(1)[.badMac1])
        #expect(net.sizes(1) == SessionTableSizes())
        #expect(net.nodes[Pump.address(2)]!.failed.count == 2)
    }

    @Test func forgedMacAndForgedNoiseAreDropped() throws {
        var net = Pump()
        net.add(1); net.add(2)
        net.filter = { _ in false }   // capture only
        net.send(1, 2, "x")
        let initiation = net.wire[0].bytes
        net.filter = nil
        var forged = initiation
        forged[forged.count - 20] ^= 1   // inside mac1
        net.inject(forged, from: Pump.address(1), to: Pump.address(2))
        #expect(net.counters(2)[.badMac1] == 1)
        // An insider with the mac1 key but a tampered Noise message: fails in Noise, counted.
        guard case var .handshake(h) = try SessionWire.decode(initiation).get() else { Issue.record("not a handshake"); return }
        h.noise[40] ^= 1
        h.mac1 = SessionWire.mac(key: try NetworkSecrets(networkKey: Pump.networkKey).mac1Key, h.macCovered)
        net.inject(h.encoded(), from: Pump.address(1), to: Pump.address(2))
        #expect(net.counters(2)[.handshakeFailed] == 1)
        #expect(net.sizes(2).peers == 0)
        // The genuine one still works afterwards.
        net.inject(initiation, from: Pump.address(1), to: Pump.address(2))
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["x"])
        // A forged transport packet (flipped tag) is dropped and does not disturb the session.
        let transport = net.wire.last { $0.bytes[0] == 7 && $0.from == Pump.address(1) }!.bytes
        var bad = transport
        bad[15] &+= 100   // a fresh counter, so the packet reaches the AEAD and fails there
        net.inject(bad, from: Pump.address(1), to: Pump.address(2))
        #expect(net.counters(2)[.decryptFailed] == 1)
        // A forged packet with a far-future counter fails authentication and must not drag the
        // replay window forward (it is committed only after the AEAD), so real packets still pass.
        var future = transport
        future[8] = 0x7f
        net.inject(future, from: Pump.address(1), to: Pump.address(2))
        #expect(net.counters(2)[.decryptFailed] == 2)
        net.send(1, 2, "y")
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["x", "y"])
    }

    @Test func replayedHandshakesAndTransportAreDropped() {
        for known in [true, false] {
            var net = Pump()
            net.add(1); net.add(2)
            net.send(1, 2, "once", known: known)
            net.run(for: .seconds(1))
            let handshakes = net.wire.filter { $0.bytes[0] != 7 }
            let transports = net.wire.filter { $0.bytes[0] == 7 }
            for p in handshakes + transports { net.inject(p.bytes, from: p.from, to: p.to) }
            net.run(for: .seconds(1))
            #expect(net.texts(2) == ["once"])
            #expect(net.counters(2)[.replayedHandshake] == 1, "known=\(known)")
            #expect(net.counters(2)[.duplicate] >= 1)
            #expect(net.counters(2).handshakesCompleted == 1)
            #expect(net.sizes(2).peers == 1 && net.sizes(2).pendingResponders == 0)
            // The session survived the replays.
            net.send(1, 2, "twice")
            net.run(for: .seconds(1))
            #expect(net.texts(2) == ["once", "twice"])
        }
    }

    @Test func truncatedRandomAndOversizedDatagramsAreCounted() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "real")
        net.run(for: .seconds(1))
        let b = Pump.address(2)
        let before = net.counters(2)
        var rng = SeededGenerator(seed: 5)
        var injected: UInt64 = 0
        // Every proper prefix of every genuine packet.
        for p in net.wire {
            for n in 0..<p.bytes.count {
                net.inject(Array(p.bytes.prefix(n)), from: p.from, to: b); injected += 1
            }
        }
        // Random datagrams of every length class, with and without a valid type byte.
        for len in [0, 1, 3, 4, 15, 31, 32, 47, 88, 92, 136, 168, 172, 500, 1232, 1233, 2000, 65536] {
            for t in [UInt8(0), 1, 3, 5, 6, 7, 200] {
                var bytes = (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if len > 0 { bytes[0] = t }
                if len >= 4 && t != 200 { bytes[1] = 0; bytes[2] = 0; bytes[3] = 0 }
                net.inject(bytes, from: Pump.address(Int(t) + 20), to: b); injected += 1
            }
        }
        let after = net.counters(2)
        #expect(after.datagramsIn - before.datagramsIn == injected)
        #expect(after.totalDrops - before.totalDrops == injected, "every bad datagram is a counted drop")
        #expect(after[.empty] > before[.empty] && after[.oversized] > 0 && after[.badLength] > 0)
        #expect(after[.unknownType] > 0 && after[.badMac1] > 0)
        #expect(net.texts(2) == ["real"])
        net.send(1, 2, "still fine")
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["real", "still fine"])
    }

    @Test func nonMemberFloodKeepsMemoryFlat() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "member")
        net.run(for: .seconds(1))
        let baseline = net.sizes(2)
        // 20,000 initiations from 20,000 addresses, keyed with the wrong network key.
        let strangers = try! NetworkSecrets(networkKey: [UInt8](repeating: 0x99, count: 32))
        var rng = SeededGenerator(seed: 3)
        for i in 0..<20_000 {
            let type: SessionWire.PacketType = i % 2 == 0 ? .ikInitiation : .xxInitiation
            let noise = (0..<(type == .ikInitiation ? 128 : 48)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var h = SessionWire.Handshake(type: type, sender: UInt32(i + 1), receiver: 0, noise: noise,
                                          mac1: [], mac2: [UInt8](repeating: 0, count: 16))
            h.mac1 = SessionWire.mac(key: strangers.mac1Key, h.macCovered)
            let from = UnderlayAddress(ip: [0xfd] + [UInt8](repeating: UInt8(i % 251), count: 13) + [UInt8(i >> 8), UInt8(i & 0xff)],
                                       port: UInt16(i % 60000))
            net.inject(h.encoded(), from: from, to: Pump.address(2))
        }
        #expect(net.counters(2)[.badMac1] == 20_000)
        #expect(net.sizes(2) == baseline)
        #expect(net.counters(2).cookieRepliesSent == 0, "non-members get no answer at all")
        net.send(1, 2, "still here")
        net.run(for: .seconds(1))
        #expect(net.texts(2) == ["member", "still here"])
    }

    @Test func memberFloodIsBoundedAndCookiesLetRealPeersThrough() throws {
        var timing = SessionTiming()
        timing.handshakesPerSecond = 5
        var net = Pump()
        net.add(1); net.add(2, timing: timing)
        let secrets = try NetworkSecrets(networkKey: Pump.networkKey)
        var rng = SeededGenerator(seed: 4)
        // An insider (or a replayer of genuine first messages) floods XX initiations with valid
        // mac1 from spoofed addresses; they never see a cookie so never send a valid mac2.
        func flood(_ count: Int) {
            for _ in 0..<count {
                let hs = try! HandshakeState(protocolName: "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", initiator: true,
                                             prologue: Array("iotaf/sessions/v1".utf8), localStatic: DHKeyPair.generate(),
                                             psks: [secrets.psk],
                                             ephemeralSource: { (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) } })
                let msg = try! hs.writeMessage()
                var h = SessionWire.Handshake(type: .xxInitiation, sender: UInt32.random(in: 1...UInt32.max, using: &rng),
                                              receiver: 0, noise: msg, mac1: [], mac2: [UInt8](repeating: 0, count: 16))
                h.mac1 = SessionWire.mac(key: secrets.mac1Key, h.macCovered)
                let from = UnderlayAddress(ip: (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }, port: 1)
                net.inject(h.encoded(), from: from, to: Pump.address(2))
            }
        }
        flood(600)
        let sizes = net.sizes(2)
        #expect(sizes.pendingResponders <= timing.maxPendingResponders)
        #expect(sizes.pendingResponders < 20, "only the load budget was processed")
        // Each is answered by a cookie reply until the replies allowed in all are used up.
        #expect(net.counters(2)[.underLoad] + net.counters(2)[.cookieRateLimited] > 550)
        #expect(net.counters(2)[.underLoad] >= 200 && net.counters(2)[.cookieRateLimited] > 0)
        #expect(net.counters(2).cookieRepliesSent == net.counters(2)[.underLoad])
        // Under a continuing flood, a member's handshake gets a cookie and then gets through.
        net.send(1, 2, "real member")
        for _ in 0..<300 {
            flood(2)
            net.run(for: .milliseconds(20))
        }
        #expect(net.counters(1).cookiesReceived >= 1)
        #expect(net.texts(2) == ["real member"])
        #expect(net.sizes(2).pendingResponders <= timing.maxPendingResponders)
        #expect(net.sizes(2).rateLimitEntries <= timing.rateLimitEntries)
        #expect(net.sizes(2).recentEphemerals <= timing.recentEphemerals)
        #expect(net.sizes(2).peers == 1)
    }

    @Test func decoderRoundTripsEveryPacketItProduces() {
        var net = Pump()
        net.add(1); net.add(2)
        net.send(1, 2, "a", known: false)
        net.run(for: .seconds(1))
        net.send(1, 2, "b")
        net.run(for: .seconds(1))
        for p in net.wire {
            let decoded = SessionWire.decode(p.bytes)
            guard case let .success(packet) = decoded else { Issue.record("undecodable \(p.bytes.count)"); continue }
            #expect(packet.encoded() == p.bytes)
        }
        #expect(Set(net.wire.map { $0.bytes[0] }) == [3, 4, 5, 7])
    }
}
