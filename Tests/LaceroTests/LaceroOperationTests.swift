import Foundation
import Lacero
import LaceroService
import MeshCore
import Node
import NodeService
import Sodium
import Testing

/// Files in memory and metadata sealed to a real identity: the host of a node in `LaceroMesh`.
final class MemoryHost: LaceroHost, @unchecked Sendable {
    let identity: NodeIdentity
    private let lock = NSLock()
    private var files: [String: [UInt8]] = [:]

    init(identity: NodeIdentity) { self.identity = identity }

    subscript(path: String) -> [UInt8]? {
        get { lock.withLock { files[path] } }
        set { lock.withLock { files[path] = newValue } }
    }

    func read(_ path: String, limit: UInt64) -> Result<[UInt8], LaceroHostError> {
        guard let f = self[path] else { return .failure(LaceroHostError("No such file or directory")) }
        return UInt64(f.count) <= limit ? .success(f) : .failure(LaceroHostError("too large"))
    }

    func write(_ path: String, _ bytes: [UInt8]) -> LaceroHostError? {
        self[path] = bytes
        return nil
    }

    func freshSecrets() -> (key: [UInt8], deleteSecret: [UInt8]) { Shredder.freshSecrets() }

    func seal(_ metadata: LaceroMetadata) -> Result<[UInt8], LaceroHostError> {
        do { return .success(try metadata.seal(to: identity.publicKey.bytes)) } catch { return .failure(LaceroHostError("\(error)")) }
    }

    func open(_ sealed: [UInt8]) -> Result<LaceroMetadata, LaceroHostError> {
        do {
            let secret = try Ed25519.keyPair(seed: identity.seed).secretKey
            return .success(try LaceroMetadata.open(sealed: sealed, ed25519SecretKey: secret))
        } catch {
            return .failure(LaceroHostError("\(error)"))
        }
    }
}

/// put, get, check, repair and delete as operations of the service, end to end over services
/// wired in memory (LaceroMesh), with an in-memory host.
struct LaceroOperationTests {
    static func finished(_ mesh: LaceroMesh, op: UInt64) -> LaceroReport? {
        for e in mesh.events { if case let .finished(r) = e.event, r.op == op { return r } }
        return nil
    }

    @Test func putGetCheckRepairDeleteRoundTripThroughTheMesh() throws {
        let host = MemoryHost(identity: NodeIdentity.deterministic(runSeed: 21, index: 0))
        var config = LaceroService.Config()
        config.keepProbability = 0.5
        config.checkWait = .seconds(1)
        let mesh = LaceroMesh(nodes: 12, config: config, seed: 21, hosts: [0: host])
        mesh.services[0] = LaceroService(me: mesh.ids[0], config: { var c = config; c.store = false; return c }(), rng: SeededGenerator(seed: 7), host: host)
        for j in 1..<12 { _ = mesh.services[0].handle(.membership(.up(mesh.directory.peers[mesh.ids[j]]!)), now: mesh.now, members: mesh.directory) }
        let object = ShredderTests.object(1_700_000, seed: 8)
        host["/obj"] = object

        mesh.command(0, .operation(LaceroRequest(op: 1, kind: .put(path: "/obj", out: "/obj.meta", k: 3, n: 5))))
        let put = try #require(Self.finished(mesh, op: 1))
        #expect(put.state == "done", "\(put.error ?? "")")
        #expect(put.segments == 3 && put.fragments == 15 && put.fragments_placed == 15)
        let sealed = try #require(host["/obj.meta"])
        let metadata = try LaceroMetadata.open(sealed: sealed, ed25519SecretKey: try Ed25519.keyPair(seed: host.identity.seed).secretKey)
        #expect(Hex.encode(metadata.contentHash) == put.content_hash)
        for id in metadata.fragmentIDs { #expect(mesh.services.filter { $0.holds(id) }.count == 1) }

        mesh.command(0, .operation(LaceroRequest(op: 2, kind: .get(meta: "/obj.meta", out: "/back"))))
        #expect(Self.finished(mesh, op: 2)?.state == "done")
        #expect(host["/back"] == object)

        // Two nodes holding fragments go away: no node holds two fragments of a segment, so every segment keeps k.
        let holders = (1..<12).filter { i in metadata.fragmentIDs.contains { mesh.services[i].holds($0) } }
        for i in holders.prefix(2) { mesh.directory.live.remove(mesh.ids[i]) }
        mesh.command(0, .operation(LaceroRequest(op: 3, kind: .check(meta: "/obj.meta"))))
        let check = try #require(Self.finished(mesh, op: 3))
        #expect(check.segments_below_k == [])
        #expect(!(check.segments_below_n ?? []).isEmpty)
        let lost = (check.check ?? []).reduce(0) { $0 + (5 - $1.answered) }
        #expect(lost > 0 && (check.loss_probability ?? 0) > 0)
        #expect(check.leases_renewed == 15 - lost)

        mesh.command(0, .operation(LaceroRequest(op: 4, kind: .repair(meta: "/obj.meta"))))
        mesh.advance(.seconds(2))
        let repair = try #require(Self.finished(mesh, op: 4))
        #expect(repair.state == "done", "\(repair.error ?? "")")
        #expect(repair.fragments_repaired == lost)
        mesh.command(0, .operation(LaceroRequest(op: 5, kind: .check(meta: "/obj.meta"))))
        #expect(Self.finished(mesh, op: 5)?.segments_below_n == [], "after repair every segment has n fragments answering")
        mesh.command(0, .operation(LaceroRequest(op: 6, kind: .get(meta: "/obj.meta", out: "/back2"))))
        #expect(host["/back2"] == object)

        mesh.command(0, .operation(LaceroRequest(op: 7, kind: .delete(meta: "/obj.meta"))))
        mesh.advance(.seconds(1))
        mesh.advance(.seconds(1))
        let delete = try #require(Self.finished(mesh, op: 7))
        #expect(delete.still_held == 0, "\(delete)")
        for (i, s) in mesh.services.enumerated() where mesh.directory.live.contains(mesh.ids[i]) {
            #expect(!metadata.fragmentIDs.contains { s.holds($0) })
        }
    }

    /// The issue's all-subsets floor as the `get` operation, not only the coding layer: k = 3,
    /// n = 6, every one of the 20 sets of n−k holders of segment 0 is taken away in turn (their
    /// other fragments go with them), `get` returns the object; one holder more and it fails
    /// naming segment 0.
    @Test func getSucceedsWithEverySetOfNMinusKHoldersOfASegmentGone() throws {
        let host = MemoryHost(identity: NodeIdentity.deterministic(runSeed: 23, index: 0))
        var config = LaceroService.Config()
        config.keepProbability = 0.5
        let mesh = LaceroMesh(nodes: 12, config: config, seed: 23, hosts: [0: host])
        mesh.services[0] = LaceroService(me: mesh.ids[0], config: { var c = config; c.store = false; return c }(), rng: SeededGenerator(seed: 9), host: host)
        for j in 1..<12 { _ = mesh.services[0].handle(.membership(.up(mesh.directory.peers[mesh.ids[j]]!)), now: mesh.now, members: mesh.directory) }
        let object = ShredderTests.object(2_500_000, seed: 23)
        host["/obj"] = object
        mesh.command(0, .operation(LaceroRequest(op: 1, kind: .put(path: "/obj", out: "/obj.meta", k: 3, n: 6))))
        let put = try #require(Self.finished(mesh, op: 1))
        #expect(put.state == "done" && put.fragments_placed == put.fragments, "\(put.error ?? "")")
        let metadata = try LaceroMetadata.open(sealed: try #require(host["/obj.meta"]),
                                               ed25519SecretKey: try Ed25519.keyPair(seed: host.identity.seed).secretKey)
        #expect(metadata.segmentCount >= 2, "other segments share holders with segment 0")
        // Segment 0's holder of each share (one each: threshold 1, never two shares on one node).
        let holders = try (0..<6).map { share in
            try #require((1..<12).first { mesh.services[$0].holds(metadata.fragmentIDs[share]) })
        }
        #expect(Set(holders).count == 6)
        var op: UInt64 = 1
        var subsets = 0
        for a in 0..<6 { for b in (a + 1)..<6 { for c in (b + 1)..<6 {
            let gone = [holders[a], holders[b], holders[c]]
            for i in gone { mesh.directory.live.remove(mesh.ids[i]) }
            op += 1
            let out = "/back-\(a)\(b)\(c)"
            mesh.command(0, .operation(LaceroRequest(op: op, kind: .get(meta: "/obj.meta", out: out))))
            let get = try #require(Self.finished(mesh, op: op))
            #expect(get.state == "done", "shares \(a), \(b), \(c) gone: \(get.error ?? "")")
            #expect(host[out] == object, "shares \(a), \(b), \(c) gone")
            host[out] = nil
            for i in gone { mesh.directory.live.insert(mesh.ids[i]) }
            subsets += 1
        } } }
        #expect(subsets == 20)
        // n−k+1 holders of segment 0 gone: fewer than k answer, and get says which segment.
        for i in holders.prefix(4) { mesh.directory.live.remove(mesh.ids[i]) }
        op += 1
        mesh.command(0, .operation(LaceroRequest(op: op, kind: .get(meta: "/obj.meta", out: "/never"))))
        mesh.advance(.seconds(11))
        mesh.advance(.seconds(11))
        let failed = try #require(Self.finished(mesh, op: op))
        #expect(failed.state == "failed" && failed.error?.contains("segment 0") == true, "\(failed.error ?? "")")
        #expect(host["/never"] == nil)
    }

    @Test func operationsFailWithErrorsThatNameTheThing() throws {
        let host = MemoryHost(identity: NodeIdentity.deterministic(runSeed: 22, index: 0))
        let mesh = LaceroMesh(nodes: 3, config: .init(), seed: 22, hosts: [0: host])
        mesh.command(0, .operation(LaceroRequest(op: 1, kind: .put(path: "/missing", out: "/m", k: 3, n: 5))))
        #expect(Self.finished(mesh, op: 1)?.error?.contains("cannot read /missing") == true)
        host["/x"] = [1, 2, 3]
        mesh.command(0, .operation(LaceroRequest(op: 2, kind: .put(path: "/x", out: "/m", k: 1, n: 5))))
        #expect(Self.finished(mesh, op: 2)?.error?.contains("2 <= k < n") == true)
        host["/junk.meta"] = [UInt8](repeating: 7, count: 200)
        mesh.command(0, .operation(LaceroRequest(op: 3, kind: .get(meta: "/junk.meta", out: "/o"))))
        #expect(Self.finished(mesh, op: 3)?.error?.contains("/junk.meta") == true)
        // Metadata sealed to another identity is refused, naming it.
        let other = MemoryHost(identity: NodeIdentity.deterministic(runSeed: 22, index: 1))
        let (m, _) = try Shredder.shred([1, 2, 3], parameters: LaceroParameters(k: 2, n: 3, segmentSize: 10),
                                        key: [UInt8](repeating: 1, count: 32), deleteSecret: [UInt8](repeating: 2, count: 32))
        host["/other.meta"] = try other.seal(m).get()
        mesh.command(0, .operation(LaceroRequest(op: 4, kind: .check(meta: "/other.meta"))))
        #expect(Self.finished(mesh, op: 4)?.state == "failed")
    }

    @Test func lossProbabilityIsThePoissonBinomialTailBelowK() {
        // Three fragments with one holder each, k = 2, holders lost with 1/2: fewer than 2 survive with 1/2.
        #expect(abs(LaceroService.segmentLossProbability(holders: [1, 1, 1], k: 2, holderLoss: 0.5) - 0.5) < 1e-12)
        #expect(LaceroService.segmentLossProbability(holders: [0, 0, 1], k: 2, holderLoss: 0.1) == 1)
        #expect(LaceroService.segmentLossProbability(holders: [2, 2], k: 1, holderLoss: 0.1) < 1e-3)
    }
}
