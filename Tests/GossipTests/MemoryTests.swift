#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import MeshCore
@testable import Gossip

/// Bytes a member row costs: one core learns 10,000 members through the real wire path (gossip
/// datagrams from a neighbour, decoded as the node would), and the heap in use is read before and
/// after, and checked against bounds a little above Docs/gossip.md's figures ("Memory"). Opt-in:
/// the heap is the whole test process's, so it is read with no other test running:
///   GOSSIP_MEMORY=10000 swift test --skip-build --filter MemoryTests.bytesPerRow
/// The row sizes the figures rest on are checked in every run (`rowAndQueueItemSizes`).
@Suite struct MemoryTests {
    static var size: Int? { ProcessInfo.processInfo.environment["GOSSIP_MEMORY"].flatMap(Int.init) }

    /// Heap bytes in use, from glibc's `malloc_stats` (found with dlsym, since Swift does not
    /// import malloc.h), whose report on stderr is caught in a file. RSS would count freed storage
    /// (a dictionary's old buckets after it grows) that malloc keeps.
    static func heapInUse() -> Int? {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_stats") else { return nil }
        let mallocStats = unsafeBitCast(sym, to: (@convention(c) () -> Void).self)
        let path = NSTemporaryDirectory() + "gossip-malloc-\(getpid()).txt"
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o600)
        guard fd >= 0 else { return nil }
        fflush(nil)
        let saved = dup(2)
        dup2(fd, 2)
        mallocStats()
        fflush(nil)
        dup2(saved, 2)
        close(saved)
        close(fd)
        defer { unlink(path) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        // The last "in use bytes" line is the total over all arenas, mmapped chunks included.
        let line = text.split(separator: "\n").last { $0.contains("in use bytes") }
        return line.flatMap { Int($0.split(separator: "=").last!.trimmingCharacters(in: .whitespaces)) }
    }

    @Test func rowAndQueueItemSizes() {
        #expect(MemoryLayout<MemberTable.Row>.stride == 24)
        #expect(MemoryLayout<BroadcastQueue.Item>.stride == 32)
    }

    @Test(.enabled(if: MemoryTests.size != nil, "set GOSSIP_MEMORY=N to measure a table of N members"))
    func bytesPerRow() {
        #if canImport(Glibc)
        let n = Self.size!
        // The encoded messages are built first, so only what the core keeps is counted.
        let neighbour = PeerEntry(peer: Mesh.identity(0), address: Mesh.address(0))
        var messages: [[UInt8]] = []
        var batch: [MemberUpdate] = []
        for i in 1...n {
            let e = PeerEntry(peer: Mesh.identity(i), address: Mesh.address(i))
            batch.append(.alive(e, incarnation: 1, attributeVersion: 0))
            if batch.count == 16 || i == n {
                messages.append(GossipWire.encode(.gossip(updates: batch)))
                batch = []
            }
        }
        // A simulator's cores share one identity table that the other cores have filled already.
        let shared = PeerIdentities()
        for i in 1...n { _ = shared.intern(PeerEntry(peer: Mesh.identity(i), address: Mesh.address(i))) }
        for identities in [nil, shared] {
            var core = GossipCore(me: PeerEntry(peer: Mesh.identity(n + 1), address: Mesh.address(n + 1)),
                                  config: GossipConfig(network: Mesh.network), rng: SeededGenerator(seed: 1), identities: identities)
            _ = core.handle(.start, now: .zero)
            let before = Self.heapInUse()!
            for m in messages { _ = core.handle(.received(from: neighbour, bytes: m), now: .zero) }
            // Queued gossip is transient (bounded, sent within seconds): count only the table.
            core.queue = BroadcastQueue(capacity: core.config.maxQueuedUpdates, identities: core.members.identities)
            let after = Self.heapInUse()!
            #expect(core.members.count == n)
            let perRow = Double(after - before) / Double(n)
            print("[memory] \(n) members, \(identities == nil ? "own identities" : "shared identities"): \(after - before) heap bytes, \(Int(perRow.rounded())) B per row; row stride \(MemoryLayout<MemberTable.Row>.stride) B, queue item \(MemoryLayout<BroadcastQueue.Item>.stride) B")
            // Docs/gossip.md: 31–46 B a row with shared identities, about 410 B with a node's own.
            if identities == nil { #expect(perRow < 512, "\(perRow) B per row, own identities") } else { #expect(perRow < 64, "\(perRow) B per row, shared identities") }
            withExtendedLifetime(core) {}
        }
        #endif
    }
}
