import Channels
import MeshCore
import Node

/// Goodput of one bulk transfer between two real node cores (Noise sessions, channels, gossip
/// all running) joined by one simulated link: random loss in each direction, one-way delay rtt/2,
/// a rate-limited drop-tail queue of one bandwidth-delay product. Deterministic: the same
/// arguments give the same figure. What `iotaf bench channel` reports as `goodput_sim_loss*` and
/// what the goodput plot in Docs/channels.md is drawn from.
public enum NodeLinkGoodput {
    public struct Result: Sendable {
        /// Message bytes delivered at the receiver over the virtual time from the first send to the last delivery.
        public var goodputBytesPerSecond: Double
        public var linkBytesPerSecond: Double
        public var seconds: Double
        public var completed: Bool
        public var sender: ChannelCounters
        /// Times either node saw the other turn suspect during the transfer.
        public var suspicions: Int
        /// Datagrams the link dropped: random loss, and queue overflow.
        public var randomLosses: Int
        public var queueDrops: Int
    }

    /// - Parameters:
    ///   - bytes: sent as 1 MiB messages on stream 8 (as `iotaf send` does), refilled on `.channelWritable`.
    ///   - loss: the probability that a datagram is lost, each direction, after its serialisation.
    public static func run(bytes: Int, loss: Double, rtt: Duration, linkBytesPerSecond: Double, seed: UInt64) -> Result {
        var sim = Pair(loss: loss, rtt: rtt, rate: linkBytesPerSecond, seed: seed)
        return sim.transfer(bytes: bytes)
    }

    /// One link direction: serialisation at `rate` behind a drop-tail queue, then the delay. A
    /// lost datagram is lost on the wire, after it took its airtime (as on a radio link), so the
    /// link's useful capacity is (1 - loss) x rate.
    struct Link {
        var freeAt: Int64 = 0
        let nanosPerByte: Double
        let queueNanos: Int64
        let delay: Int64
        let loss: Double
        var rng: SeededGenerator
        var lost = 0, overflowed = 0

        /// The arrival instant, or nil when the datagram is lost.
        mutating func carry(_ size: Int, now: Int64) -> Int64? {
            let start = max(now, freeAt)
            if start - now > queueNanos { overflowed += 1; return nil }
            freeAt = start + Int64(Double(size) * nanosPerByte)
            if loss > 0, rng.unit() < loss { lost += 1; return nil }
            return freeAt + delay
        }
    }

    struct Event: Comparable {
        var at: Int64
        var seq: Int
        var node: Int
        /// nil: a wake-up.
        var bytes: [UInt8]?
        static func < (a: Event, b: Event) -> Bool { (a.at, a.seq) < (b.at, b.seq) }
        static func == (a: Event, b: Event) -> Bool { a.at == b.at && a.seq == b.seq }
    }

    struct Pair {
        var cores: [NodeCore]
        let addresses: [UnderlayAddress]
        var links: [Link]
        var wakes: [Int64?] = [nil, nil]
        var heap: [Event] = []
        var seq = 0
        var now: Int64 = 0
        var received = 0
        var lastDelivery: Int64 = 0
        var writable = false
        var suspicions = 0

        init(loss: Double, rtt: Duration, rate: Double, seed: UInt64) {
            addresses = [Simulation.virtualAddress(0), Simulation.virtualAddress(1)]
            var root = SeededGenerator(seed: seed)
            var key: [UInt8] = []
            for _ in 0..<4 { let v = root.next(); for b in 0..<8 { key.append(UInt8((v >> UInt64(8 * b)) & 0xff)) } }
            let networkKey = key
            let addresses = addresses
            cores = (0..<2).map { i in
                var core = try! NodeCore(identity: .deterministic(runSeed: seed, index: i), network: .defaultNetwork, networkKey: networkKey,
                                         address: addresses[i], rng: root.derived(UInt64(i) + 1))
                // No disk and no thread pool here: writes are durable at once, jobs run inline.
                core.persistsCompleteAtOnce = true
                core.offloadsRunInline = true
                return core
            }
            let bdp = rate * rtt.secondsDouble
            let queueBytes = max(bdp, Double(64 * NodeCore.defaultChannelConfig.maxFrame))
            let oneWay = rtt.nanoseconds / 2
            links = (0..<2).map { i in
                Link(nanosPerByte: 1e9 / rate, queueNanos: Int64(queueBytes / rate * 1e9), delay: oneWay, loss: loss,
                     rng: root.derived(0x11_0000 | UInt64(i)))
            }
        }

        mutating func push(_ e: Event) {
            heap.append(e)
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard heap[i] < heap[parent] else { break }
                heap.swapAt(i, parent)
                i = parent
            }
        }

        mutating func pop() -> Event? {
            guard !heap.isEmpty else { return nil }
            heap.swapAt(0, heap.count - 1)
            let top = heap.removeLast()
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l] < heap[m] { m = l }
                if r < heap.count && heap[r] < heap[m] { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
            return top
        }

        mutating func carryOut(_ i: Int, _ outputs: [NodeOutput]) {
            for o in outputs {
                switch o {
                case let .send(to, bytes, _):
                    guard let j = addresses.firstIndex(of: to), j != i else { continue }
                    if let at = links[i].carry(bytes.count, now: now) {
                        seq += 1
                        push(Event(at: at, seq: seq, node: j, bytes: bytes))
                    }
                case let .wake(at):
                    let t = max(at.nanoseconds, now)
                    wakes[i] = t
                    seq += 1
                    push(Event(at: t, seq: seq, node: i, bytes: nil))
                case let .event(e):
                    switch e {
                    case let .messageReceived(_, _, m) where i == 1:
                        received += m.count
                        lastDelivery = now
                    case .channelWritable where i == 0:
                        writable = true
                    case let .memberStateChanged(_, _, to, _) where to == .suspect:
                        suspicions += 1
                    default: break
                    }
                case let .persist(_, then):
                    carryOut(i, then)
                case .offload:
                    break
                }
            }
        }

        mutating func feed(_ i: Int, _ input: NodeInput) {
            carryOut(i, cores[i].handle(input, now: Instant(nanoseconds: now)))
        }

        /// Runs events until `until` (virtual ns) or `done` holds.
        mutating func run(until: Int64, done: (inout Pair) -> Bool) {
            while !done(&self), let e = pop() {
                if e.at > until { push(e); break }
                now = e.at
                if let bytes = e.bytes {
                    feed(e.node, .datagram(from: addresses[1 - e.node], bytes: bytes))
                } else if wakes[e.node] == e.at {
                    wakes[e.node] = nil
                    feed(e.node, .timer)
                }
            }
        }

        mutating func transfer(bytes: Int) -> Result {
            feed(1, .command(.addSeed(addresses[0])))
            feed(0, .start)
            feed(1, .start)
            let peer = cores[1].identity.nodeID
            // Membership first: the transfer starts once each side knows the other alive.
            run(until: 60_000_000_000) { p in
                p.cores[0].members[p.cores[1].identity.nodeID]?.state == .alive
                    && p.cores[1].members[p.cores[0].identity.nodeID]?.state == .alive
            }
            let start = now
            suspicions = 0
            let message = [UInt8](repeating: 0x5a, count: min(1 << 20, bytes))
            var queued = 0
            func fill(_ p: inout Pair) {
                while queued < bytes {
                    let m = queued + message.count <= bytes ? message : Array(message[0..<(bytes - queued)])
                    let (result, outputs) = p.cores[0].sendMessage(m, stream: 8, to: peer, now: Instant(nanoseconds: p.now))
                    p.carryOut(0, outputs)
                    guard case .success = result else { return }
                    queued += m.count
                }
            }
            fill(&self)
            // Twenty times the ideal transfer time, at least two minutes: a stalled run ends.
            let ideal = Double(bytes) * links[0].nanosPerByte
            let limit = now + max(120_000_000_000, Int64(ideal * 20))
            while received < bytes && now < limit {
                run(until: limit) { p in p.writable || p.received >= bytes }
                if writable { writable = false; fill(&self) }
                if heap.isEmpty { break }
            }
            let seconds = max(Double(lastDelivery - start) / 1e9, 1e-9)
            return Result(goodputBytesPerSecond: Double(received) / seconds, linkBytesPerSecond: 1e9 / links[0].nanosPerByte,
                          seconds: seconds, completed: received >= bytes, sender: cores[0].channels.stats, suspicions: suspicions,
                          randomLosses: links[0].lost + links[1].lost, queueDrops: links[0].overflowed + links[1].overflowed)
        }
    }
}
