import Testing
import MeshCore
@testable import Channels

@Suite struct WireTests {
    let config = ChannelConfig()

    func decode(_ b: [UInt8]) -> Result<ChannelWire.Packet, ChannelDropReason> {
        ChannelWire.decode(b, maxFrame: config.maxFrame, maxMessage: config.maxMessage)
    }

    static let sample = ChannelWire.Packet(
        source: 0x0102_0304_0506_0708, destination: 0x1112_1314_1516_1718, number: 42,
        ack: .init(ranges: [40...41, 30...35, 2...2], delayMicros: 1500, maxData: 1 << 24),
        ping: true,
        data: [.init(stream: 5, seq: 7, total: 3000, offset: 1000, bytes: [1, 2, 3]),
               .init(stream: 0, seq: 0, total: 0, offset: 0, bytes: [])])

    @Test func roundTripIsCanonical() throws {
        let bytes = ChannelWire.encode(Self.sample)
        let back = try decode(bytes).get()
        #expect(back == Self.sample)
        #expect(ChannelWire.encode(back) == bytes)
    }

    @Test func headerLayoutIsAsDocumented() {
        let bytes = ChannelWire.encode(.init(source: 1, destination: 2, number: 3, ping: true))
        #expect(bytes == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 2])
        let reset = ChannelWire.encode(.init(reset: true, source: 1, destination: 2, number: 0))
        #expect(reset.count == ChannelWire.headerSize && reset[1] == 1)
    }

    @Test func everyTruncationIsRejected() {
        let bytes = ChannelWire.encode(Self.sample)
        // No prefix may trap; a prefix ending exactly after a record is a different valid frame.
        for n in 0..<bytes.count { _ = decode(Array(bytes.prefix(n))) }
        #expect(decode(Array(bytes.prefix(10))) == .failure(.truncated))
        #expect(decode(Array(bytes.dropLast())) == .failure(.truncated))
    }

    @Test func rejectsMalformedInput() {
        var b = ChannelWire.encode(Self.sample)
        b[0] = 2
        #expect(decode(b) == .failure(.badVersion))
        b = ChannelWire.encode(Self.sample); b[1] = 0x80
        #expect(decode(b) == .failure(.badFlags))
        #expect(decode(ChannelWire.encode(Self.sample) + [9]) == .failure(.unknownRecord))
        #expect(decode([UInt8](repeating: 0, count: config.maxFrame + 1)) == .failure(.oversized))
        // Packet number zero, or a data packet with no records.
        #expect(decode(ChannelWire.encode(.init(source: 1, destination: 0, number: 0, ping: true))) == .failure(.badRecord))
        #expect(decode(Array(ChannelWire.encode(.init(source: 1, destination: 0, number: 1, ping: true)).dropLast())) == .failure(.badRecord))
        // Records out of canonical order: PING after DATA.
        var w = ChannelWire.encode(.init(source: 1, destination: 0, number: 1, data: [.init(stream: 0, seq: 0, total: 1, offset: 0, bytes: [7])]))
        w.append(2)
        #expect(decode(w) == .failure(.badRecord))
        // Data past the announced total.
        #expect(decode(ChannelWire.encode(.init(source: 1, destination: 0, number: 1,
            data: [.init(stream: 0, seq: 0, total: 2, offset: 1, bytes: [1, 2])]))) == .failure(.badRecord))
        // An ACK range below zero.
        var a = ChannelWire.encode(.init(source: 1, destination: 0, number: 1, ack: .init(ranges: [5...5], delayMicros: 0, maxData: 0)))
        a[26 + 1 + 8 + 4 + 8 + 3] = 9 // first range length 9 > largest 5
        #expect(decode(a) == .failure(.badAck))
    }

    @Test func fourGigabyteAnnouncementIsRefusedWithoutAllocation() {
        let b = ChannelWire.encode(.init(source: 1, destination: 0, number: 1,
            data: [.init(stream: 0, seq: 0, total: UInt32.max, offset: 0, bytes: [1])]))
        #expect(decode(b) == .failure(.messageTooLarge))
        var ep = ChannelEndpoint<Int>(rng: SeededGenerator(seed: 1))
        _ = ep.receive(frame: b, from: 9, now: .zero)
        #expect(ep.stats.drops(.messageTooLarge) == 1)
        #expect(ep.bufferedReceiveBytes == 0)
    }

    @Test func randomGarbageNeverCrashesAndIsCounted() {
        var rng = SeededGenerator(seed: 77)
        var ep = ChannelEndpoint<Int>(rng: SeededGenerator(seed: 2))
        let valid = ChannelWire.encode(Self.sample)
        for i in 0..<3000 {
            var b: [UInt8]
            if i % 2 == 0 {
                b = (0..<Int(rng.next() % 1300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                b = valid
                for _ in 0..<(1 + Int(rng.next() % 4)) { b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            _ = ep.receive(frame: b, from: Int(rng.next() % 4), now: Instant(nanoseconds: Int64(i) * 1000))
        }
        #expect(ep.stats.framesIn == 3000)
        #expect(ep.stats.totalDrops > 0)
    }

    @Test func rangeSetMergesAndFindsGaps() {
        var s = RangeSet()
        #expect(s.insert(10..<20) == 10)
        #expect(s.insert(30..<40) == 10)
        #expect(s.insert(15..<35) == 10)
        #expect(s.ranges == [10..<40])
        #expect(s.insert(40..<41) == 1)
        #expect(s.ranges == [10..<41])
        #expect(s.gaps(in: 0..<50) == [0..<10, 41..<50])
        #expect(s.contains(10) && !s.contains(41) && s.contains(12..<41))
    }
}

@Suite struct WireRegressionTests {
    /// Found by the fuzzer: packet number 2^64-1 overflowed `n + 1` in the received-number set.
    @Test func hugePacketNumbersAreRejected() {
        let config = ChannelConfig()
        let b = ChannelWire.encode(.init(source: 1, destination: 0, number: .max, ping: true))
        #expect(ChannelWire.decode(b, maxFrame: config.maxFrame, maxMessage: config.maxMessage) == .failure(.badRecord))
        let a = ChannelWire.encode(.init(source: 1, destination: 0, number: 1, ack: .init(ranges: [UInt64.max...UInt64.max], delayMicros: 0, maxData: 0)))
        #expect(ChannelWire.decode(a, maxFrame: config.maxFrame, maxMessage: config.maxMessage) == .failure(.badAck))
        var ep = ChannelEndpoint<Int>(rng: SeededGenerator(seed: 1))
        _ = ep.receive(frame: b, from: 1, now: .zero)
        #expect(ep.stats.drops(.badRecord) == 1)
    }
}

@Suite struct AckEncodingRegressionTests {
    /// Found by the fuzzer: received packet numbers 2^32+ apart made an ACK gap that did not fit
    /// its 32-bit field. The ACK now covers fewer ranges instead.
    @Test func farApartPacketNumbersStillGiveAValidAck() throws {
        let config = ChannelConfig()
        var ep = ChannelEndpoint<Int>(rng: SeededGenerator(seed: 1))
        var frames: [[UInt8]] = []
        let numbers: [UInt64] = [1, 1 << 40, (1 << 40) + 5, ChannelWire.maxPacketNumber]
        for n in numbers {
            let out = ep.receive(frame: ChannelWire.encode(.init(source: 7, destination: 0, number: n, ping: true)), from: 1, now: .zero)
            for o in out { if case .frame(_, let b) = o { frames.append(b) } }
        }
        _ = ep.tick(now: .zero + .seconds(1))
        #expect(!frames.isEmpty)
        for f in frames {
            let p = try ChannelWire.decode(f, maxFrame: config.maxFrame, maxMessage: config.maxMessage).get()
            #expect(p.ack != nil)
        }
    }
}
