import Foundation
import MeshCore
import Runtime
import Testing

/// The runtime's socket on a real libuv loop over ::1: reads one datagram at a time during an
/// exchange and in batches during a burst; either way every datagram arrives once, in order,
/// with its source address.
@Suite struct UDPSocketTests {
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
}
