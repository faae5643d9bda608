import Channels
import MeshCore
@testable import Node
import SimulatorKit
import Testing

extension Pump {
    /// `NodeCore.sendMessage` through the pump: carries out the outputs like `feed` does.
    mutating func sendMessage(_ i: Int, _ bytes: [UInt8], stream: UInt16, to j: Int) -> Result<MessageID, MessageSendError> {
        let (result, outputs) = cores[i].sendMessage(bytes, stream: stream, to: cores[j].identity.nodeID, now: now)
        carryOut(i, outputs)
        return result
    }

    /// Sends raw session plaintext from node i to node j, as if node i spoke another protocol.
    mutating func sendPlaintext(_ i: Int, _ plaintext: [UInt8], to j: Int) {
        let sessionOutputs = cores[i].sessions.send(plaintext, to: addresses[j], peer: cores[j].identity, now: now)
        var outputs: [NodeOutput] = []
        cores[i].absorb(sessionOutputs, now: now, into: &outputs)
        carryOut(i, outputs)
    }

    mutating func carryOut(_ i: Int, _ outputs: [NodeOutput]) {
        for o in outputs {
            switch o {
            case let .send(to, bytes): transmit(i, to: to, bytes)
            case let .wake(at): net.setWake(i, at: at)
            case let .event(e): events.append((i, e))
            case let .persist(_, then): carryOut(i, then)
            case .offload: break
            }
        }
    }

    func received(at i: Int) -> [(NodeID, UInt16, [UInt8])] {
        events.compactMap { if $0.0 == i, case let .messageReceived(from, stream, bytes) = $0.1 { return (from, stream, bytes) } else { return nil } }
    }

    func failures(at i: Int) -> [(MessageID, ChannelFailure)] {
        events.compactMap { if $0.0 == i, case let .messageFailed(id, _, reason) = $0.1 { return (id, reason) } else { return nil } }
    }

    func delivered(at i: Int) -> [MessageID] {
        events.compactMap { if $0.0 == i, case let .messageDelivered(id, _) = $0.1 { return id } else { return nil } }
    }

    /// Two nodes that know each other alive.
    static func pair() -> Pump {
        var p = Pump(count: 2)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        for i in 0..<2 { p.feed(i, .start) }
        p.run(for: .seconds(3))
        return p
    }
}

func pattern(_ n: Int, seed: UInt64) -> [UInt8] {
    var g = SeededGenerator(seed: seed)
    return (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) }
}

@Suite struct NodeChannelTests {
    @Test func messagesOfManySizesCrossTheSessionWholeAndInOrder() throws {
        var p = Pump.pair()
        #expect(p.state(0, of: 1) == .alive)
        let sizes = [1, 1183, 1184, 5000, 300_000]
        var ids: [MessageID] = []
        for (k, n) in sizes.enumerated() {
            ids.append(try p.sendMessage(0, pattern(n, seed: UInt64(k)), stream: 4, to: 1).get())
        }
        let urgent = try p.sendMessage(0, [42], stream: 0, to: 1).get()
        p.run(for: .seconds(3))
        let got = p.received(at: 1)
        #expect(got.filter { $0.1 == 4 }.map { $0.2 } == sizes.enumerated().map { pattern($0.element, seed: UInt64($0.offset)) })
        #expect(got.contains { $0.1 == 0 && $0.2 == [42] })
        #expect(got.allSatisfy { $0.0 == p.cores[0].identity.nodeID })
        #expect(Set(p.delivered(at: 0)) == Set(ids + [urgent]))
        #expect(p.cores[1].channels.stats.framesIn > 0)
        #expect(p.cores[1].channels.stats.totalDrops == 0)
        #expect(p.cores[0].channels.bufferedSendBytes == 0)
        // Every frame fitted the session: nothing was refused for length.
        #expect(p.cores[0].sessions.counters[.plaintextTooLong] == 0)
    }

    /// The limit by its number and by the code's constant: 16 MiB (16,777,216 bytes) crosses
    /// NodeCore and real Noise sessions whole; one byte more is refused with the reason.
    @Test func aSixteenMebibyteMessageArrivesWholeAndOneByteMoreIsRefused() throws {
        var p = Pump.pair()
        let max = p.cores[0].maxMessage
        #expect(max == 16_777_216 && max == ChannelConfig().maxMessage)
        var big = [UInt8](repeating: 0, count: 16_777_216)
        var x: UInt32 = 0x9e37_79b9
        for i in big.indices { x ^= x << 13; x ^= x >> 17; x ^= x << 5; big[i] = UInt8(truncatingIfNeeded: x) }
        let tooBig = p.sendMessage(0, big + [0], stream: 3, to: 1)
        #expect(tooBig == .failure(.messageTooLarge(size: 16_777_217, max: 16_777_216)))
        let id = try p.sendMessage(0, big, stream: 3, to: 1).get()
        p.run(for: .seconds(20))
        let got = p.received(at: 1).filter { $0.1 == 3 }
        #expect(got.count == 1 && got.first?.2.count == 16_777_216)
        #expect(got.first?.2 == big, "the 16 MiB message arrived intact")
        #expect(p.delivered(at: 0) == [id])
        #expect(p.cores[0].sessions.counters[.plaintextTooLong] == 0)
    }

    @Test func refusalsNameTheReason() {
        var p = Pump.pair()
        let stranger = NodeIdentity.deterministic(runSeed: 77, index: 0).peer.nodeID
        let (r1, _) = p.cores[0].sendMessage([1], stream: 0, to: stranger, now: p.now)
        #expect(r1 == .failure(.unknownPeer(stranger)))
        let max = p.cores[0].maxMessage
        let r2 = p.sendMessage(0, [UInt8](repeating: 0, count: max + 1), stream: 0, to: 1)
        #expect(r2 == .failure(.messageTooLarge(size: max + 1, max: max)))
        // The send buffer (20 MiB towards one peer) refuses the message that would overflow it.
        var refused: MessageSendError?
        _ = p.sendMessage(0, [1], stream: 9, to: 1)
        for _ in 0..<2 {
            if case let .failure(e) = p.sendMessage(0, [UInt8](repeating: 1, count: 10 << 20), stream: 9, to: 1) { refused = e }
        }
        #expect(refused == .backpressure)
        p.run(for: .milliseconds(40)) // the first acknowledgements free buffer space
        #expect(p.events.contains { $0.0 == 0 && $0.1 == .channelWritable(p.cores[1].identity.nodeID) })
    }

    @Test func badChannelFramesAndUnknownProtocolsAreCounted() {
        var p = Pump.pair()
        p.sendPlaintext(0, [ChannelWire.version], to: 1)           // a channel frame cut short
        p.sendPlaintext(0, [ChannelWire.version, 0x80] + [UInt8](repeating: 0, count: 40), to: 1) // unknown flag
        p.sendPlaintext(0, [0x7e, 1, 2, 3], to: 1)                 // no protocol starts with 0x7e
        p.run(for: .milliseconds(100))
        let c = p.cores[1].channels.stats
        #expect(c.drops(.truncated) == 1)
        #expect(c.drops(.badFlags) == 1)
        #expect(p.cores[1].counters.drops[.unknownProtocol] == 1)
        #expect(p.received(at: 1).isEmpty)
        // Gossip still works beside them.
        #expect(p.state(1, of: 0) == .alive)
    }

    @Test func deadMemberFailsItsPendingMessagesAndFreesThem() throws {
        var p = Pump.pair()
        let id = try p.sendMessage(0, pattern(2 << 20, seed: 1), stream: 5, to: 1).get()
        p.run(for: .milliseconds(20))
        p.down.insert(1)
        p.run(for: .seconds(12)) // dead after a missed probe and the suspicion timeout, before the channel's 15 s
        #expect(p.state(0, of: 1) == .dead)
        #expect(p.failures(at: 0).map { $0.0 } == [id])
        #expect(p.failures(at: 0).first?.1 == .closed)
        #expect(p.cores[0].channels.bufferedSendBytes == 0)
        #expect(!p.cores[0].channels.peers.contains(p.cores[1].identity.nodeID))
        let peer = p.cores[1].identity.nodeID
        let (r, _) = p.cores[0].sendMessage([1], stream: 0, to: peer, now: p.now)
        #expect(r == .failure(.peerDead(peer)))
    }

    @Test func restartedPeerStartsCleanAndPendingMessagesFail() throws {
        var p = Pump.pair()
        let big = try p.sendMessage(0, pattern(4 << 20, seed: 2), stream: 5, to: 1).get()
        p.run(for: .milliseconds(30))
        #expect(p.received(at: 1).isEmpty)
        // Node 1 restarts: same key, fresh state (new session keys, new channel connection id).
        p.restart(1)
        p.feed(1, .command(.addSeed(p.addresses[0])))
        p.feed(1, .start)
        p.run(for: .seconds(8))
        #expect(p.failures(at: 0).map { $0.0 } == [big])
        #expect(p.failures(at: 0).first?.1 == .peerReset)
        #expect(p.received(at: 1).isEmpty, "nothing of the old connection reaches the new one")
        let small = try p.sendMessage(0, pattern(50_000, seed: 3), stream: 5, to: 1).get()
        p.run(for: .seconds(2))
        #expect(p.received(at: 1).map { $0.2 } == [pattern(50_000, seed: 3)])
        #expect(p.delivered(at: 0).contains(small))
    }
}
