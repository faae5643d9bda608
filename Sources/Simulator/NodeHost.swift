import Foundation
import Gossip
import MeshCore
import Node
import NodeService
import Sessions

/// Building, booting, crashing and restarting the simulated nodes: the one place a `NodeCore` is
/// made, and the addresses and seeds it gets.
extension Simulation {
    /// The one place a node core is built, at start and on restart: same identity every time,
    /// fresh randomness per incarnation. When NodeCore gains parameters (secret identity,
    /// network key) they are added here only.
    func makeNode(index i: Int) -> NodeCore {
        let rng = nodeGenerator(i, incarnation: incarnation[i])
        // Real sessions with real keys: the mesh's network key comes from the seed like everything else.
        do {
            // What a crashed node remembered is the simulator's own model (`stored`, `storageSyncSeconds`).
            var timing = scenario.timing
            timing.peerSnapshotInterval = nil
            var core = try NodeCore(identity: identities[i], network: networkID, networkKey: simulatedNetworkKey, address: addresses[i],
                                    timing: timing, discovery: discovery(for: i), peerIdentities: peerTables[i % peerTables.count], rng: rng)
            core.persistsCompleteAtOnce = disk.completesAtOnce  // else `.diskDone` answers (Wire.swift)
            // Offloaded jobs come to the driver, which runs them and charges the node's virtual CPU.
            // The protocols beyond the router's own come with the workloads that drive them.
            for w in workloads {
                for s in w.services(node: i, incarnation: incarnation[i], self) { try core.add(s) }
            }
            return core
        } catch {
            fatalError("simulated node \(i) cannot be built: \(error)")
        }
    }

    /// Node `i`'s generator in incarnation `incarnation`: derived from the run seed and the node
    /// index, and from the incarnation after a restart (fresh randomness, same identity). A
    /// workload's service may derive its own from it (`Workload.services`).
    func nodeGenerator(_ i: Int, incarnation: UInt32) -> SeededGenerator {
        let rng = root.derived(UInt64(i) + 1)
        return incarnation > 0 ? rng.derived(0x7265_7374_6172_7400 | UInt64(incarnation)) : rng
    }

    func discovery(for i: Int) -> Discovery {
        var d = Discovery()
        d.modes = scenario.modes
        d.isMaster = scenario.masters.contains(i)
        d.uplinkKbps = scenario.uplinkKbps
        if let admin { d.adminKeys = [admin.publicKey] }
        return d
    }

    /// The simulated mesh's 32-byte network key, derived from the run seed.
    var simulatedNetworkKey: [UInt8] {
        var g = SeededGenerator(seed: seed ^ 0x6e6b_6579)
        var key: [UInt8] = []
        for _ in 0..<4 { let v = g.next(); for b in 0..<8 { key.append(UInt8((v >> UInt64(8 * b)) & 0xff)) } }
        return key
    }

    /// Virtual node i lives at [fd51:a7e::i]:7400 (a ULA never routed anywhere).
    static func virtualAddress(_ i: Int) -> UnderlayAddress {
        var ip: [UInt8] = [0xfd, 0x51, 0x0a, 0x7e] + [UInt8](repeating: 0, count: 8)
        ip += [UInt8((i >> 24) & 0xff), UInt8((i >> 16) & 0xff), UInt8((i >> 8) & 0xff), UInt8(i & 0xff)]
        return UnderlayAddress(ip: ip, port: 7400)
    }

    /// The inverse of `virtualAddress` without hashing or allocating (`UnderlayAddress.ip` would
    /// build an array): this runs for every datagram sent.
    @inline(__always) func index(of a: UnderlayAddress) -> Int? {
        // fd51:0a7e:0000:0000 then 0000:0000:iiii:iiii.
        guard a.port == 7400, a.high == 0xfd51_0a7e_0000_0000, a.low >> 32 == 0 else { return nil }
        let i = Int(a.low & 0xffff_ffff)
        return i < life.count ? i : nil
    }

    func seedsFor(_ i: Int) -> [Int] {
        switch scenario.seeding {
        case "ring": return i == 0 ? [] : [i - 1]
        case let m where m.hasPrefix("random:"):
            let k = Int(m.dropFirst(7)) ?? 1
            guard i > 0 else { return [] }
            var rng = SeededGenerator(seed: seed).derived(0x5eed_0000 &+ UInt64(i))
            return (0..<min(k, i)).map { _ in Int(rng.next() % UInt64(i)) }
        default: return i == 0 ? [] : [0]
        }
    }

    // MARK: - Node lifecycle

    func boot(_ i: Int, remembered: [(PeerIdentity, UnderlayAddress)], restored: [StoredRow] = []) {
        if life[i] != .waiting { nodes[i] = makeNode(index: i) }
        life[i] = .up
        let t = Instant(nanoseconds: now)
        if !restored.isEmpty { apply(i, nodes[i].handle(.restored(restored), now: t)) }
        for s in seedsFor(i) { apply(i, nodes[i].handle(.command(.addSeed(addresses[s])), now: t)) }
        for (p, a) in remembered { apply(i, nodes[i].handle(.command(.rememberPeer(p, a)), now: t)) }
        apply(i, nodes[i].handle(.start, now: t))
        for a in agents { a.booted(i, self) }
    }

    func crash(_ i: Int) { shutDown(i, crashRecord: true) }

    /// A node is a member worth counting: up and not on its way out.
    @inline(__always) func isLive(_ i: Int) -> Bool { life[i] == .up && !leaving[i] }

    /// Stops a node: a crash (its detection is then measured) or the end of a graceful leave or a cull.
    func shutDown(_ i: Int, crashRecord: Bool) {
        guard life[i] == .up else { return }
        let id = nodeIDs[i]
        var observers: [(Int32, UInt32)] = []
        for o in 0..<nodes.count where o != i && isLive(o) {
            if let m = nodes[o].members[id], m.state != .dead { observers.append((Int32(o), incarnation[o])) }
        }
        // The simulated disk synced every `storageSyncSeconds`: members confirmed since are lost.
        let sync = max(1, Self.nanos(scenario.storageSyncSeconds))
        let lastSync = Instant(nanoseconds: now / sync * sync)
        // What the node had written but not synced survives, vanishes or tears by the disk's faults.
        disk.crash(node: i, now: now)
        stored[i] = nodes[i].sortedMembers.filter { $0.state == .alive && $0.stateSince <= lastSync }.map { ($0.identity, $0.address) }
        for (reason, n) in nodes[i].counters.drops { retiredDrops[reason, default: 0] += n }
        retiredGossipDrops += nodes[i].gossip.counters.totalDrops
        for (reason, n) in nodes[i].sessions.counters.drops { retiredSessionDrops[reason, default: 0] += n }
        retiredHandshakes += nodes[i].sessions.counters.handshakesCompleted
        nodes[i] = makeNode(index: i)  // releases the old tables; rebuilt again on restart
        life[i] = .down
        downSince[i] = now
        wakeAt[i] = -1
        incarnation[i] += 1
        cpu.reset(i)
        // Persists in flight die with the node: their sends never leave, nobody hears `.persisted`.
        diskQueue[i].removeAll()
        crashedDown[i] = crashRecord
        guard crashRecord else { return }
        c.crashes += 1
        crashRecords.append(CrashRecord(node: i, at: now, incarnation: incarnation[i], observers: observers))
        if let w = crashDeadline {
            queue.push(now + w, .crashDeadline(record: Int32(crashRecords.count - 1)))
        }
    }

    func restart(_ i: Int, remember: Bool) {
        guard life[i] == .down else { return }
        if !remember { disk.wipe(node: i) }
        boot(i, remembered: remember ? stored[i] ?? [] : [], restored: remember ? disk.rows(node: i) : [])
        stored[i] = nil
        crashedDown[i] = false
        disturbedUntil[i] = now + grace
        c.restarts += 1
    }

}
