import Foundation
import MeshCore
import Runtime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The runtime's socket on a real libuv loop over ::1: reads one datagram at a time during an
/// exchange and in batches during a burst; either way every datagram arrives once, in order,
/// with its source address.
@Suite struct UDPSocketTests {
    /// What this kernel offers on a ::1 socket, probed the way `UDPSocket` probes at bind
    /// (`getsockopt(UDP_SEGMENT)`, `setsockopt(UDP_GRO)`): tests of segmentation offload are
    /// skipped, with the reason, on a kernel without it, instead of failing.
    static let offload: (gso: Bool, gro: Bool) = {
        guard let loop = try? EventLoop() else { return (false, false) }
        let s = UDPSocket(loop: loop)
        guard (try? s.bind(UnderlayAddress(parsing: "[::1]:0")!)) != nil else { return (false, false) }
        let r = (s.segmentationEnabled, s.coalescedReceive)
        s.close()
        loop.run()
        return r
    }()

    @Test func burstsAndExchangesArriveWhole() throws {
        let loop = try EventLoop()
        let a = UDPSocket(loop: loop), b = UDPSocket(loop: loop)
        try a.bind(UnderlayAddress(parsing: "[::1]:0")!)
        try b.bind(UnderlayAddress(parsing: "[::1]:0")!)
        let addressA = try #require(a.localAddress), addressB = try #require(b.localAddress)
        var atB: [[UInt8]] = [], atA: [[UInt8]] = []
        var sources: Set<UnderlayAddress> = []
        try b.startReceiving { from, bytes in
            sources.insert(from)
            atB.append(bytes)
            // Answer every tenth datagram: an exchange runs inside the burst.
            if bytes[0] == 0 { b.send([0xaa] + bytes, to: from) }
        }
        try a.startReceiving { _, bytes in atA.append(bytes) }
        // A burst larger than a receive batch, of sizes from 1 byte to a full channel datagram.
        let burst = (0..<3000).map { i in [UInt8(i % 10)] + [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: (i * 37) % 1231) + [UInt8(i >> 8), UInt8(i & 0xff)] }
        for d in burst { a.send(d, to: addressB) }
        let deadline = Date().addingTimeInterval(10)
        while (atB.count < burst.count || atA.count < burst.count / 10) && Date() < deadline { loop.runOnce() }
        #expect(atB == burst)
        #expect(sources == [addressA])
        #expect(atA.count == burst.count / 10)
        // Then a ping-pong of single datagrams: each read finds one.
        atA.removeAll()
        for i in 0..<200 {
            a.send([0, UInt8(i)], to: addressB)
            while atA.count <= i && Date() < deadline { loop.runOnce() }
        }
        #expect(atA.count == 200)
        #expect(atA.last == [0xaa, 0, 199])
        #expect(a.receiveErrors == 0 && b.receiveErrors == 0 && a.sendErrors == 0 && b.sendErrors == 0)
        a.close(); b.close()
        loop.run()
    }

    /// Runs the loop until `done` or 10 s.
    private func pump(_ loop: EventLoop, until done: () -> Bool) {
        let deadline = Date().addingTimeInterval(10)
        while !done() && Date() < deadline { loop.runOnce() }
    }

    /// N equal datagrams and a shorter last one, held and released together, leave as one
    /// segmented send; a receiver with coalesced reads cuts them apart by the segment size, one
    /// without gets them from the kernel one by one; both see N+1 intact datagrams in order.
    @Test(.enabled(if: UDPSocketTests.offload.gso && UDPSocketTests.offload.gro, "this kernel has no UDP GSO/GRO on ::1 (UDP_SEGMENT, UDP_GRO): skipped"))
    func segmentedTrainArrivesAsSeparateDatagrams() throws {
        let loop = try EventLoop()
        let a = UDPSocket(loop: loop)
        let coalescing = UDPSocket(loop: loop), plain = UDPSocket(loop: loop, segmentationOffload: false)
        for s in [a, coalescing, plain] { try s.bind(UnderlayAddress(parsing: "[::1]:0")!) }
        try #require(a.segmentationEnabled, "this kernel has no UDP GSO")
        #expect(coalescing.coalescedReceive)
        #expect(!plain.coalescedReceive && !plain.segmentationEnabled)
        let addressA = try #require(a.localAddress)
        var atCoalescing: [[UInt8]] = [], atPlain: [[UInt8]] = []
        var sources: Set<UnderlayAddress> = []
        try coalescing.startReceiving { from, bytes in sources.insert(from); atCoalescing.append(bytes) }
        try plain.startReceiving { from, bytes in sources.insert(from); atPlain.append(bytes) }
        let n = 40
        let train = (0..<n).map { i in [UInt8](repeating: UInt8(i), count: 1232 - 2) + [UInt8(i), 0xee] } + [[0xff, 1, 2, 3, 4]]
        for target in [coalescing, plain] {
            a.holdSends()
            for d in train { a.send(d, to: try #require(target.localAddress)) }
            a.releaseSends()
        }
        pump(loop) { atCoalescing.count >= train.count && atPlain.count >= train.count }
        #expect(atCoalescing == train)
        #expect(atPlain == train)
        #expect(sources == [addressA])
        #expect(a.gsoSends == 2 && a.gsoDatagrams == UInt64(2 * train.count))
        #expect(coalescing.groReads >= 1 && coalescing.groDatagrams == UInt64(train.count))
        #expect(plain.groReads == 0)
        #expect(a.sendErrors == 0 && coalescing.receiveErrors == 0 && plain.receiveErrors == 0)
        for s in [a, coalescing, plain] { s.close() }
        loop.run()
    }

    /// A train ends where the address changes, a datagram is longer than the train's, a shorter
    /// one closed it, or the segment and byte limits are reached; interleaved datagrams to two
    /// receivers of mixed sizes all arrive, each stream in order.
    @Test(.enabled(if: UDPSocketTests.offload.gso, "this kernel has no UDP GSO on ::1 (UDP_SEGMENT): skipped"))
    func trainsSplitOnAddressAndLength() throws {
        let loop = try EventLoop()
        let a = UDPSocket(loop: loop), b = UDPSocket(loop: loop), c = UDPSocket(loop: loop)
        for s in [a, b, c] { try s.bind(UnderlayAddress(parsing: "[::1]:0")!) }
        let addressB = try #require(b.localAddress), addressC = try #require(c.localAddress)
        var atB: [[UInt8]] = [], atC: [[UInt8]] = []
        try b.startReceiving { _, bytes in atB.append(bytes) }
        try c.startReceiving { _, bytes in atC.append(bytes) }
        var toB: [[UInt8]] = [], toC: [[UInt8]] = []
        a.holdSends()
        for i in 0..<600 {
            // Runs of equal sizes, longer after shorter, a zero-length datagram, one above the
            // segment limit (sent alone), and now and then the other receiver.
            let size = i % 97 == 0 ? 0 : (i % 131 == 0 ? 1400 : [1232, 1232, 1232, 700, 1232, 100][(i / 7) % 6])
            let d = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: size)
            if i % 11 == 5 { toC.append(d); a.send(d, to: addressC) } else { toB.append(d); a.send(d, to: addressB) }
        }
        a.releaseSends()
        pump(loop) { atB.count >= toB.count && atC.count >= toC.count }
        #expect(atB == toB)
        #expect(atC == toC)
        #expect(a.gsoSends > 0 && a.gsoDatagrams < 600)
        #expect(a.sendErrors == 0 && b.receiveErrors == 0 && c.receiveErrors == 0 && a.gsoFallbacks == 0)
        for s in [a, b, c] { s.close() }
        loop.run()
    }

    /// IPv4 peers on the dual-stack socket (IPv4-mapped addresses) get trains too.
    @Test(.enabled(if: UDPSocketTests.offload.gso, "this kernel has no UDP GSO on ::1 (UDP_SEGMENT): skipped"))
    func segmentedTrainToIPv4MappedPeer() throws {
        let loop = try EventLoop()
        let a = UDPSocket(loop: loop), b = UDPSocket(loop: loop)
        for s in [a, b] { try s.bind(UnderlayAddress(parsing: "[::]:0")!) }
        let portB = try #require(b.localAddress).port
        let target = try #require(UnderlayAddress(parsing: "127.0.0.1:\(portB)"))
        var atB: [[UInt8]] = []
        var sources: Set<UnderlayAddress> = []
        try b.startReceiving { from, bytes in sources.insert(from); atB.append(bytes) }
        let train = (0..<20).map { i in [UInt8](repeating: UInt8(i), count: 1200) } + [[7, 7, 7]]
        a.holdSends()
        for d in train { a.send(d, to: target) }
        a.releaseSends()
        pump(loop) { atB.count >= train.count }
        #expect(atB == train)
        #expect(a.gsoSends == 1 && a.gsoFallbacks == 0)
        let source = try #require(sources.first)
        #expect(sources.count == 1 && source.description.contains("127.0.0.1") && source.port == a.localAddress?.port)
        a.close(); b.close()
        loop.run()
    }

    /// A segmented send the kernel refuses switches segmentation off and resends the datagrams
    /// one by one: nothing is lost. The refusal is real: with zero UDP checksums asked for
    /// (UDP_NO_CHECK6_TX) Linux cannot segment and answers EINVAL.
    @Test(.enabled(if: UDPSocketTests.offload.gso, "this kernel has no UDP GSO on ::1 (UDP_SEGMENT): skipped"))
    func refusedSegmentedSendFallsBackWithoutLoss() throws {
        let loop = try EventLoop()
        let a = UDPSocket(loop: loop), b = UDPSocket(loop: loop)
        for s in [a, b] { try s.bind(UnderlayAddress(parsing: "[::1]:0")!) }
        try #require(a.segmentationEnabled, "this kernel has no UDP GSO")
        var on: Int32 = 1
        // UDP_NO_CHECK6_TX = 101 on the sender, UDP_NO_CHECK6_RX = 102 so the receiver accepts them.
        try #require(setsockopt(a.descriptor, 17, 101, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
        try #require(setsockopt(b.descriptor, 17, 102, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
        let addressB = try #require(b.localAddress)
        var atB: [[UInt8]] = []
        try b.startReceiving { _, bytes in atB.append(bytes) }
        let first = (0..<10).map { i in [UInt8](repeating: UInt8(i), count: 1000) }
        a.holdSends()
        for d in first { a.send(d, to: addressB) }
        a.releaseSends()
        #expect(a.gsoFallbacks == 1 && !a.segmentationEnabled && a.gsoSends == 0)
        // Later bursts go one by one from the start.
        let second = (10..<20).map { i in [UInt8](repeating: UInt8(i), count: 1000) }
        a.holdSends()
        for d in second { a.send(d, to: addressB) }
        a.releaseSends()
        pump(loop) { atB.count >= 20 }
        #expect(atB == first + second)
        #expect(a.gsoFallbacks == 1 && a.sendErrors == 0)
        a.close(); b.close()
        loop.run()
    }

    /// Without segmentation offload a held burst leaves one datagram per send, in order.
    @Test func heldSendsWithoutOffload() throws {
        let loop = try EventLoop()
        let a = UDPSocket(loop: loop, segmentationOffload: false), b = UDPSocket(loop: loop)
        for s in [a, b] { try s.bind(UnderlayAddress(parsing: "[::1]:0")!) }
        let addressB = try #require(b.localAddress)
        var atB: [[UInt8]] = []
        try b.startReceiving { _, bytes in atB.append(bytes) }
        let burst = (0..<300).map { i in [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 1232) }
        a.holdSends()
        for d in burst { a.send(d, to: addressB) }
        a.releaseSends()
        pump(loop) { atB.count >= burst.count }
        #expect(atB == burst)
        #expect(a.gsoSends == 0 && b.groReads == 0 && a.sendErrors == 0)
        a.close(); b.close()
        loop.run()
    }
}
