import MeshCore
import SimulatorKit
import Testing

/// The test kit's engine: what the drivers of the gossip, sessions, node and channel tests rely on.
@Suite struct SimNetTests {
    static func drain(_ net: inout SimNet<Int>, until end: Instant) -> [(Instant, String)] {
        var seen: [(Instant, String)] = []
        while let due = net.next(until: end) {
            switch due {
            case let .message(to, from, m): seen.append((net.now, "m\(m) \(from)>\(to)"))
            case let .wake(i): seen.append((net.now, "w\(i)"))
            }
        }
        return seen
    }

    @Test func aReplacedOrClearedWakeNeverFiresAndOneInThePastIsDueNow() {
        var net = SimNet<Int>(nodes: 3, rng: SeededGenerator(seed: 1))
        net.setWake(0, at: .zero + .seconds(2))
        net.setWake(0, at: .zero + .seconds(1)) // replaces the 2 s wake
        net.setWake(1, at: .zero + .seconds(1))
        net.clearWake(1)
        net.setWake(2, at: .zero + .seconds(3))
        net.setWake(2, at: .zero + .seconds(3)) // the same instant again: queued once
        let seen = Self.drain(&net, until: .zero + .seconds(5))
        #expect(seen.map(\.1) == ["w0", "w2"])
        #expect(seen.map(\.0) == [.zero + .seconds(1), .zero + .seconds(3)])
        #expect(net.now == .zero + .seconds(5))
        net.setWake(1, at: .zero + .seconds(1)) // in the past
        let late = Self.drain(&net, until: net.now).map(\.1)
        #expect(late == ["w1"])
    }

    @Test func messagesArriveAfterLatencyInOrderAndCutsAndLossAreCounted() {
        var net = SimNet<Int>(nodes: 2, link: LinkProfile(latency: .milliseconds(10)), rng: SeededGenerator(seed: 2))
        for m in 0..<5 {
            let taken = net.transmit(m, size: 100, from: 0, to: 1)
            #expect(taken)
        }
        net.blocked = { a, _ in a == 1 }
        let cut = net.transmit(9, size: 100, from: 1, to: 0)
        #expect(!cut)
        let seen = Self.drain(&net, until: .zero + .seconds(1))
        #expect(seen.map(\.1) == (0..<5).map { "m\($0) 0>1" })
        #expect(seen.allSatisfy { $0.0 == .zero + .milliseconds(10) })
        #expect(net.transmitted == 6 && net.lost == 1)

        var lossy = SimNet<Int>(nodes: 2, link: LinkProfile(latency: .milliseconds(1), loss: 0.3), rng: SeededGenerator(seed: 3))
        var sent = 0
        for m in 0..<1000 where lossy.transmit(m, size: 10, from: 0, to: 1) { sent += 1 }
        #expect(lossy.lost == 1000 - sent)
        #expect((600...800).contains(sent), "\(sent) of 1000 got through a 30 % loss link")
        let arrived = Self.drain(&lossy, until: .zero + .seconds(1)).count
        #expect(arrived == sent)
    }

    @Test func aBandwidthLimitedLinkSerialisesAndDropsWhenItsQueueIsFull() {
        // 1,000 B/s, a 3,000-byte queue: 1,000-byte messages leave one a second; the fourth would
        // make the backlog more than the queue holds and is dropped.
        var net = SimNet<Int>(nodes: 2, link: LinkProfile(latency: .zero, bandwidthBytesPerSecond: 1000, queueBytes: 3000),
                              rng: SeededGenerator(seed: 4))
        let taken = (0..<4).map { net.transmit($0, size: 1000, from: 0, to: 1) }
        #expect(taken == [true, true, true, false])
        let seen = Self.drain(&net, until: .zero + .seconds(10))
        #expect(seen.map(\.0) == [1, 2, 3].map { .zero + .seconds($0) })
    }

    @Test func theSameSeedGivesTheSameRun() {
        func run() -> [String] {
            var net = SimNet<Int>(nodes: 3, link: LinkProfile(latency: .milliseconds(5), jitter: .milliseconds(20), loss: 0.1, duplicate: 0.1),
                                  rng: SeededGenerator(seed: 42))
            for m in 0..<200 { net.transmit(m, size: 50, from: m % 3, to: (m + 1) % 3) }
            return Self.drain(&net, until: .zero + .seconds(1)).map { "\($0.0.nanoseconds) \($0.1)" }
        }
        let a = run()
        #expect(a == run())
        #expect(a.count > 150 && a.count < 250)
    }
}
