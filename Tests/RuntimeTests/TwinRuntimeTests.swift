import Foundation
import Logging
@_spi(Adversary) import MeshCore
import Node
import Runtime
import Sessions
import Sodium
import Testing

/// Issue 24 over real sessions: full runtimes on one libuv loop, real UDP on ::1. A node's
/// secret presented under its negated Ed25519 key passes Noise (same X25519 static key) but is
/// refused as `non_canonical_key`: the twin of a live member does not become a second member,
/// and the twin of a culled node does not come back.
@Suite struct TwinRuntimeTests {
    /// Built from the secret scalar, as an attacker's modified software would.
    static func negatedTwin(of id: NodeIdentity) throws -> NodeIdentity {
        let (scalar, _) = try Ed25519Arithmetic.expand(seed: id.seed)
        let negated = try Ed25519Arithmetic.baseMultiply(scalar: Ed25519Arithmetic.negate(scalar: scalar))
        return try NodeIdentity(seed: id.seed, presenting: negated)
    }

    /// Half of the seeds made before the rule give a non-canonical key: such a key file is refused
    /// with what to do, not run as an identity every peer would refuse.
    @Test func aKeyFileWhoseKeyIsNotCanonicalIsAClearError() throws {
        let dir = NSTemporaryDirectory() + "iotaf-twin-key-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/old.key"
        // Seed 00..1f: public key 03a1…b8, sign bit set (Docs/encoding.md).
        let text = "iotaf-ed25519-seed-v1 \(Hex.encode(Array(0..<32)))\n"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]))
        do {
            _ = try KeyFile.read(path)
            Issue.record("a non-canonical key was accepted")
        } catch {
            #expect("\(error)".contains("not canonical") && "\(error)".contains("iotaf keygen --out \(path) --force"), "\(error)")
        }
    }

    @Test func negatedTwinsAreRefusedOverUDP() throws {
        let dir = NSTemporaryDirectory() + "iotaf-twin-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loop = try EventLoop()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let admin = NodeIdentity.generate()
        func settings(_ name: String, peers: [UnderlayAddress]) -> NodeSettings {
            var s = NodeSettings()
            s.listen = UnderlayAddress(parsing: "[::1]:0")!
            s.dataDir = dir + "/" + name
            s.peers = peers
            s.discovery.adminKeys = [admin.publicKey]
            return s
        }
        func node(_ name: String, _ identity: NodeIdentity, peers: [UnderlayAddress]) throws -> NodeRuntime {
            let n = try NodeRuntime(settings: settings(name, peers: peers), identity: identity, loop: loop, logger: logger,
                                    withControlSocket: false, withPeerStore: false)
            try n.start()
            return n
        }
        func run(until done: () -> Bool, seconds: Double) {
            let deadline = Date().addingTimeInterval(seconds)
            while !done() && Date() < deadline { loop.runOnce(wait: false); usleep(500) }
        }
        func holds(_ n: NodeRuntime, key: PublicKey) -> Bool { n.core.members.values.contains { $0.entry.peer.publicKey == key } }

        let b = try node("b", .generate(), peers: [])
        let a = try node("a", .generate(), peers: [b.boundAddress])
        run(until: { a.core.members[b.identity.nodeID]?.state == .alive && b.core.members[a.identity.nodeID]?.state == .alive }, seconds: 10)
        #expect(b.core.members[a.identity.nodeID]?.state == .alive)

        // The twin of a live member (a) knocks at b.
        let twinOfA = try node("twin-a", try Self.negatedTwin(of: a.identity), peers: [b.boundAddress])
        #expect(try Ed25519.curve25519PublicKey(twinOfA.identity.publicKey.bytes) == Ed25519.curve25519PublicKey(a.identity.publicKey.bytes))
        run(until: { b.core.sessions.counters[.nonCanonicalKey] >= 1 }, seconds: 10)
        #expect(b.core.sessions.counters[.nonCanonicalKey] >= 1, "b refused the twin's handshakes")
        #expect(b.core.members.count == 1, "only a is b's member")
        #expect(b.core.members[a.identity.nodeID]?.entry.peer.publicKey == a.identity.publicKey)
        #expect(!holds(b, key: twinOfA.identity.publicKey))
        #expect(!twinOfA.core.members.values.contains { $0.state == .alive }, "the twin heard from nobody")
        twinOfA.stop()

        // An admin culls b; b learns it and stops. Then b's twin knocks at a.
        var bStopped = false
        b.onStopped = { bStopped = true }
        a.command(.membership(.cull(CullRecord.sign(subject: b.identity.nodeID, issuedAt: UInt64(Date().timeIntervalSince1970),
                                                    network: a.core.network, admin: admin))))
        run(until: { bStopped && a.core.members[b.identity.nodeID]?.state == .culled }, seconds: 10)
        #expect(a.core.members[b.identity.nodeID]?.state == .culled)
        #expect(bStopped, "the culled node obeyed its cull")
        let refusedBefore = a.core.sessions.counters[.nonCanonicalKey]
        let twinOfB = try node("twin-b", try Self.negatedTwin(of: b.identity), peers: [a.boundAddress])
        #expect(twinOfB.identity.nodeID == b.identity.nodeID, "the cull names the pair")
        run(until: { a.core.sessions.counters[.nonCanonicalKey] >= refusedBefore + 1 }, seconds: 10)
        #expect(a.core.sessions.counters[.nonCanonicalKey] >= refusedBefore + 1, "a refused the culled node's twin")
        #expect(a.core.members[b.identity.nodeID]?.state == .culled)
        #expect(a.core.members[b.identity.nodeID]?.entry.peer.publicKey == b.identity.publicKey)
        #expect(!holds(a, key: twinOfB.identity.publicKey))
        #expect(!twinOfB.core.members.values.contains { $0.state == .alive })

        var stopped = 0
        for n in [a, twinOfB] { n.onStopped = { stopped += 1 }; n.stop() }
        loop.run()
        #expect(stopped == 2)
    }
}
