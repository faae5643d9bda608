import Foundation
import Gossip
import GRDB
import Logging
import MeshCore
import Node
import Runtime
import Sessions
import Testing

@Suite struct RuntimeLoopTests {
    /// Two full runtimes on one real libuv loop, real UDP on ::1: they find each other, the
    /// control socket answers, and garbage datagrams are counted, not fatal.
    @Test func twoRuntimesOverLoopbackWithControlSocket() throws {
        let dir = NSTemporaryDirectory() + "iotaf-rt-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let loop = try EventLoop()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var sb = NodeSettings()
        sb.listen = UnderlayAddress(parsing: "[::1]:0")!
        sb.dataDir = dir + "/b"
        let b = try NodeRuntime(settings: sb, identity: .generate(), loop: loop, logger: logger)
        var sa = sb
        sa.dataDir = dir + "/a"
        sa.peers = [b.boundAddress]
        let a = try NodeRuntime(settings: sa, identity: .generate(), loop: loop, logger: logger)
        try b.start()
        try a.start()

        let deadline = Date().addingTimeInterval(10)
        // Gossip (the membership protocol) marks both alive on join; the first probe's ack gives a RTT.
        func aliveBothWays() -> Bool {
            a.core.members[b.identity.nodeID]?.state == .alive && b.core.members[a.identity.nodeID]?.state == .alive
                && a.core.members[b.identity.nodeID]?.rtt != nil
        }
        while !aliveBothWays() && Date() < deadline { loop.runOnce() }
        #expect(aliveBothWays())

        // Garbage at b's socket, from a raw socket of our own.
        let junk = UDPSocket(loop: loop)
        try junk.bind(UnderlayAddress(parsing: "[::1]:0")!)
        junk.send([1, 2, 3], to: b.boundAddress)
        junk.send(Array(repeating: 0x69, count: 1500), to: b.boundAddress)
        let junkDeadline = Date().addingTimeInterval(5)
        while b.core.sessions.counters.totalDrops < 2 && Date() < junkDeadline { loop.runOnce() }
        #expect(b.core.sessions.counters.totalDrops == 2)
        #expect(b.core.sessions.counters.drops[.oversized] == 1)
        junk.close()

        // The control socket answers from another thread while the loop runs.
        let path = sa.resolvedControlPath
        let answer = Answer()
        let t = Thread {
            answer.set(try? ControlClient.request(path, ["command": "members"]))
        }
        t.start()
        let ctlDeadline = Date().addingTimeInterval(5)
        while answer.get() == nil && Date() < ctlDeadline { loop.runOnce(wait: false); usleep(1000) }
        let data = try #require(answer.get())
        let members = try JSONDecoder().decode([MemberReport].self, from: data)
        #expect(members.count == 1)
        #expect(members.first?.node_id == b.identity.nodeID.hex)
        #expect(members.first?.state == "alive")
        #expect(members.first?.rtt_ms != nil)
        #expect(members.first?.incarnation == 0)

        var stopped = 0
        a.onStopped = { stopped += 1 }
        b.onStopped = { stopped += 1 }
        a.stop()
        b.stop()
        loop.run()
        #expect(stopped == 2)
        #expect(!FileManager.default.fileExists(atPath: path), "control socket removed on stop")
        #expect(!FileManager.default.fileExists(atPath: sb.resolvedControlPath))
        // b remembered a in its peer store: gossip persisted it at the stop.
        let rows = try PeerStore.open(path: sb.dataDir + "/peers.sqlite").0.loadServiceRows().filter { $0.table == GossipService.peersTable }
        #expect(rows.map { NodeID(publicKey: $0.key) } == [a.identity.nodeID])
        #expect(rows.first?.value.suffix(2) == [UInt8(a.boundAddress.port >> 8), UInt8(a.boundAddress.port & 0xff)])
    }

    /// A restart on the same data directory goes on above the last life's incarnation and
    /// attribute version, with no mesh around: only the disk can explain the numbers.
    @Test func restartResumesAboveTheStoredIncarnation() throws {
        let dir = NSTemporaryDirectory() + "iotaf-resume-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var s = NodeSettings()
        s.listen = UnderlayAddress(parsing: "[::1]:0")!
        s.dataDir = dir
        let identity = NodeIdentity.generate()
        let store = dir + "/peers.sqlite"

        func life(_ body: (NodeRuntime, EventLoop) -> Void) throws -> (UInt32, UInt32) {
            let loop = try EventLoop()
            let node = try NodeRuntime(settings: s, identity: identity, loop: loop, logger: logger, withControlSocket: false)
            try node.start()
            body(node, loop)
            let seen = (node.core.gossip.incarnation, node.core.gossip.attributeVersion)
            node.stop()  // a graceful stop writes the last self state
            loop.run()
            return seen
        }

        func stored() throws -> [UInt8]? {
            try PeerStore.open(path: store).0.loadServiceRows().first { $0.table == "gossip.self" }?.value
        }
        let first = try life { node, loop in
            let a = try! Attributes([("type", "meter")])
            node.command(.membership(.setAttributes(a)))
            node.command(.membership(.setAttributes(a)))
        }
        #expect(first == (0, 2))
        // The record was persisted before the attributes were announced (`.persist`), not at the stop.
        #expect(try stored() == [0, 0, 0, 0, 0, 0, 0, 2])
        let second = try life { _, _ in }
        #expect(second == (1, 3), "resumed above the stored 0 and 2")
        let third = try life { _, _ in }
        #expect(third == (2, 4), "and again above what the second life stored")

        // A record that does not decode is not trusted: the node starts at 0 and replaces it.
        let raw = try DatabaseQueue(path: store)
        try raw.write { try $0.execute(sql: "UPDATE service_state SET value = x'0102' WHERE name = 'gossip.self'") }
        let fourth = try life { _, _ in }
        #expect(fourth == (0, 0), "a broken row is not trusted")
        #expect(try stored() == [0, 0, 0, 0, 0, 0, 0, 0], "and is replaced")

        // A store from before services kept their own rows: the old self_state table is read.
        try raw.write { try $0.execute(sql: "DELETE FROM service_state") }
        try PeerStore.open(path: store).0.saveSelfState(.init(incarnation: 7, attributeVersion: 1))
        let fifth = try life { _, _ in }
        #expect(fifth == (8, 2), "resumed above the old table's 7 and 1")
        // A row outside u32 in the old table is refused with an error that names the file.
        try raw.write { try $0.execute(sql: "UPDATE self_state SET incarnation = -5, attribute_version = 4294967296") }
        do { _ = try PeerStore.open(path: store).0.loadSelfState(); Issue.record("a broken row was read") } catch { #expect("\(error)".contains(store)) }
    }

    @Test func busyPortIsAClearError() throws {
        let loop = try EventLoop()
        var s = NodeSettings()
        s.listen = UnderlayAddress(parsing: "[::1]:0")!
        let first = try NodeRuntime(settings: s, identity: .generate(), loop: loop, logger: Logger(label: "t"), withControlSocket: false, withPeerStore: false)
        s.listen = first.boundAddress
        do {
            _ = try NodeRuntime(settings: s, identity: .generate(), loop: loop, logger: Logger(label: "t"), withControlSocket: false, withPeerStore: false)
            Issue.record("second bind on the same port succeeded")
        } catch {
            #expect("\(error)".contains("Choose another --listen"))
        }
        first.stop()
        loop.run()
    }
}

/// A result handed from a helper thread to the test.
final class Answer: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Data?
    func set(_ v: Data?) { lock.lock(); value = v; lock.unlock() }
    func get() -> Data? { lock.lock(); defer { lock.unlock() }; return value }
}
