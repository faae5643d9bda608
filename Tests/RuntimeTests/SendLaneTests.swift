import CLibuv
import Foundation
import MeshCore
import Runtime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The socket's two lanes against a kernel that really pushes back: the sockets live in a network
/// namespace this test makes, whose loopback has a token-bucket qdisc (1 MB/s), and the sender's
/// kernel buffer is small, so a burst of bulk datagrams fills the kernel and the rest waits in the
/// socket's bulk queue. A control datagram sent after the burst must leave before the waiting bulk
/// datagrams (it arrives among the first ones the kernel still held), and nothing may be lost.
/// Skipped, saying why, where namespaces or tc are unavailable (needs root).
@Suite struct SendLaneTests {
    static let ip = "/usr/sbin/ip"
    static let tc = ["/usr/sbin/tc", "/sbin/tc"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/tc"

    @discardableResult
    static func run(_ tool: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    static let available: Bool = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: ip), FileManager.default.isExecutableFile(atPath: tc) else { return false }
        let probe = "iolane\(UUID().uuidString.prefix(5).lowercased())"
        guard run(ip, ["netns", "add", probe]) == 0 else { return false }
        defer { run(ip, ["netns", "del", probe]) }
        return run(ip, ["-n", probe, "link", "set", "lo", "up"]) == 0
            && run(tc, ["-n", probe, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8mbit", "burst", "4kb", "limit", "2mb"]) == 0
    }()

    @Test(.enabled(if: SendLaneTests.available, "skipped: needs root, `ip netns` and `tc` (iproute2) with namespace support"))
    func controlDatagramOvertakesWaitingBulk() throws {
        let ns = "iolane\(UUID().uuidString.prefix(5).lowercased())"
        try #require(Self.run(Self.ip, ["netns", "add", ns]) == 0)
        defer { Self.run(Self.ip, ["netns", "del", ns]) }
        try #require(Self.run(Self.ip, ["-n", ns, "link", "set", "lo", "up"]) == 0)
        try #require(Self.run(Self.tc, ["-n", ns, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8mbit", "burst", "4kb", "limit", "2mb"]) == 0)

        let loop = try EventLoop()
        // The sockets are made inside the namespace (this thread enters it and comes back at once;
        // a socket stays in the namespace it was made in).
        let home = open("/proc/thread-self/ns/net", O_RDONLY)
        let there = open("/var/run/netns/\(ns)", O_RDONLY)
        try #require(home >= 0 && there >= 0)
        defer { close(home); close(there) }
        try #require(iotaf_enter_network_namespace(there) == 0)
        let a = UDPSocket(loop: loop, segmentationOffload: false), b = UDPSocket(loop: loop)
        let bound = Result { for s in [a, b] { try s.bind(UnderlayAddress(parsing: "[::1]:0")!) } }
        try #require(iotaf_enter_network_namespace(home) == 0, "could not return to the test's own network namespace")
        try bound.get()
        // A small kernel send buffer (Linux doubles it): the qdisc's backlog counts against it.
        var size: Int32 = 16 << 10
        try #require(setsockopt(a.descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size)) == 0)

        let addressB = try #require(b.localAddress)
        var arrived: [[UInt8]] = []
        try b.startReceiving { _, bytes in arrived.append(bytes) }
        let bulk = (0..<200).map { i in [UInt8(1), UInt8(i)] + [UInt8](repeating: 0xb0, count: 1198) }
        for d in bulk { a.send(d, to: addressB) }
        let waiting = a.bulkWaited
        let control: [UInt8] = [0, 0xc0]
        a.send(control, to: addressB, lane: .control)
        let deadline = Date().addingTimeInterval(10)
        while arrived.count < bulk.count + 1 && Date() < deadline { loop.runOnce() }

        #expect(waiting > 50, "the kernel pushed back on the burst (bulk datagrams waiting: \(waiting))")
        #expect(a.controlOvertook == 1)
        let position = try #require(arrived.firstIndex(of: control), "the control datagram arrived")
        // Without lanes it would arrive last (position 200), behind every waiting bulk datagram.
        #expect(position <= bulk.count - Int(waiting) + 1, "control arrived at \(position) of \(arrived.count); \(waiting) bulk datagrams were waiting")
        #expect(arrived.filter { $0 != control } == bulk, "every bulk datagram arrived once, in order")
        #expect(a.sendErrors == 0)
        a.close(); b.close()
        loop.run()
    }
}
