import Foundation
import Testing
import MeshCore
@testable import Gossip

/// The figures quoted in Docs/gossip.md, on a larger mesh, each checked against its floor (the
/// printed lines are the figures; a floor missed fails the test). Opt-in (slow):
///   GOSSIP_FIGURES=1000 swift test --skip-build --filter FiguresTests
@Suite struct FiguresTests {
    static var size: Int? { ProcessInfo.processInfo.environment["GOSSIP_FIGURES"].flatMap(Int.init) }

    @Test(.enabled(if: FiguresTests.size != nil, "set GOSSIP_FIGURES=N to measure on N nodes"))
    func measure() {
        let n = Self.size!
        let wall = Date()
        var mesh = Mesh(nodes: n + 10, seed: 21) { i in
            var c = Mesh.defaultConfig()(i)
            c.adminKeys = [ScaleTests.admin.publicKey]
            return c
        }
        mesh.logEvents = false
        for i in n..<(n + 10) { mesh.crash(i) }
        for i in 0..<n { mesh.start(i, at: Instant(nanoseconds: Int64(i) * 10_000_000_000 / Int64(n))) }
        let conv = mesh.runUntil(limit: .seconds(300), step: .seconds(1)) { $0.everyoneKnowsEveryone() }
        print("[figures] \(n) nodes joined over 10 s; everyone knows everyone at \(mesh.now) (\(conv.map { "\($0)" } ?? "never"))")
        #expect(conv != nil, "everyone knows everyone within 300 s")

        let b0 = mesh.datagramBytes
        let r0 = mesh.reliableMessages
        mesh.run(for: .seconds(60))
        let perNode = Double(mesh.datagramBytes - b0) / Double(n) / 60
        print("[figures] steady state: \(perNode) B/s per node; largest datagram \(mesh.largestDatagram) B; \(mesh.reliableMessages - r0) reliable messages in 60 s")
        #expect(perNode < 8_000, "floor: 8 KB/s of steady-state traffic per node")
        #expect(mesh.largestDatagram <= GossipWire.maxDatagram)

        // Joins with 10% loss: rounds until every live node knows the newcomer.
        mesh.loss = 0.10
        var joinRounds: [Int] = []
        for k in 0..<10 {
            let newcomer = n + k
            mesh.restart(newcomer)
            let t = mesh.runUntil(limit: .seconds(30), step: .milliseconds(200)) { $0.observers(of: newcomer, in: .alive) >= Int(Double($0.live.count - 1) * 0.999) }
            joinRounds.append(t.map { Int(($0.secondsDouble / 0.2).rounded(.up)) } ?? 999)
            mesh.run(for: .seconds(2))
        }
        print("[figures] join reaches 99.9% with 10% loss: rounds \(joinRounds.sorted())")
        #expect(joinRounds.allSatisfy { $0 <= 14 } && joinRounds.count == 10, "every join within Serf's 14 rounds")

        mesh.loss = 0
        let victim = 17
        mesh.crash(victim)
        let dead = mesh.runUntil(limit: .seconds(30), step: .milliseconds(100)) { $0.observers(of: victim, in: .dead) == $0.live.count }
        print("[figures] crash declared dead by all \(mesh.live.count) live nodes after \(dead.map { "\($0)" } ?? "never")")
        #expect(dead.map { $0 <= .seconds(5) } == true, "floor: a crash is dead at every live node within 5 s")

        let leaver = 23
        mesh.command(leaver, .leave)
        let left = mesh.runUntil(limit: .seconds(30), step: .milliseconds(100)) { m in m.live.filter { $0 != leaver && m.state(of: leaver, at: $0) == .left }.count == m.live.count - 1 }
        print("[figures] leave reached all after \(left.map { "\($0)" } ?? "never")")
        #expect(left.map { $0 <= .seconds(2) } == true, "a leave reaches all within 2 s")

        var g = SeededGenerator(seed: 80)
        for v in Array(0..<n).shuffled(using: &g).prefix(n * 8 / 10) { mesh.crash(v) }
        let healed = mesh.runUntil(limit: .seconds(60), step: .milliseconds(500)) { m in
            if Int(m.now.nanoseconds / 500_000_000) % 4 == 0 { print("[figures] 80% crash, \(m.now): \(m.healingState())") }
            return m.components() == 1 && m.live.allSatisfy { !m.cores[$0]!.activeView.isEmpty }
        }
        print("[figures] 80% crash: \(mesh.live.count) survivors in one mesh after \(healed.map { "\($0)" } ?? "never")")
        #expect(healed.map { $0 <= .seconds(30) } == true, "floor: survivors of an 80% crash in one overlay within 30 s")
        print("[figures] wall time \(Int(Date().timeIntervalSince(wall))) s")
    }
}

/// Crash detection time over several seeds and victims, checked against the floor "a crashed node
/// is declared dead by all live nodes within 5 s" (every crash, every seed; no live node held
/// dead). Opt-in (slow):
///   GOSSIP_CRASH=1000 GOSSIP_SEEDS=5 swift test --skip-build --filter CrashFigures
@Suite struct CrashFigures {
    static var size: Int? { ProcessInfo.processInfo.environment["GOSSIP_CRASH"].flatMap(Int.init) }
    static var seeds: Int { ProcessInfo.processInfo.environment["GOSSIP_SEEDS"].flatMap(Int.init) ?? 3 }

    static func percentile(_ xs: [Double], _ p: Double) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s[min(s.count - 1, Int((Double(s.count) * p).rounded(.up)) - 1)]
    }

    @Test(.enabled(if: CrashFigures.size != nil, "set GOSSIP_CRASH=N to measure on N nodes"))
    func crashDetection() {
        let n = Self.size!
        let wall = Date()
        var allTimes: [Double] = []
        var nodeTimes: [Double] = []
        var never = 0
        var falseDeaths = 0
        for seed in 0..<Self.seeds {
            var mesh = Mesh(nodes: n, seed: 100 + UInt64(seed), config: Mesh.defaultConfig())
            mesh.logEvents = false
            mesh.startAll(over: .seconds(10))
            _ = mesh.runUntil(limit: .seconds(300), step: .seconds(1)) { $0.everyoneKnowsEveryone() }
            mesh.run(for: .seconds(10))
            var g = SeededGenerator(seed: 500 + UInt64(seed))
            let victims = Array(1..<n).shuffled(using: &g).prefix(5)
            for v in victims {
                mesh.crash(v)
                let start = mesh.now
                var seen = Set<Int>()
                while mesh.now - start < .seconds(20) {
                    mesh.run(for: .milliseconds(50))
                    for o in mesh.live where !seen.contains(o) && mesh.state(of: v, at: o) == .dead {
                        seen.insert(o)
                        nodeTimes.append((mesh.now - start).secondsDouble)
                    }
                    if seen.count == mesh.live.count { break }
                }
                if seen.count == mesh.live.count { allTimes.append((mesh.now - start).secondsDouble) } else { never += 1 }
                mesh.run(for: .seconds(3))
            }
            // No live node may be dead anywhere.
            for s in mesh.live { falseDeaths += mesh.observers(of: s, in: .dead) }
        }
        let fmt = { (x: Double) in String(format: "%.2f", x) }
        print("[crash] \(n) nodes, \(Self.seeds) seeds x 5 crashes: dead at all live nodes p50 \(fmt(Self.percentile(allTimes, 0.5))) s, p99 \(fmt(Self.percentile(allTimes, 0.99))) s, max \(fmt(allTimes.max() ?? .nan)) s; per node p50 \(fmt(Self.percentile(nodeTimes, 0.5))) s, p99 \(fmt(Self.percentile(nodeTimes, 0.99))) s; not reached in 20 s: \(never); live nodes held dead: \(falseDeaths)")
        print("[crash] all times: \(allTimes.map(fmt).joined(separator: " ")); wall \(Int(Date().timeIntervalSince(wall))) s")
        #expect(never == 0, "\(never) crashes not dead at every live node within 20 s")
        #expect(allTimes.count == Self.seeds * 5 && allTimes.allSatisfy { $0 <= 5 }, "floor 5 s: \(allTimes.map(fmt))")
        #expect(falseDeaths == 0)
    }
}

extension Mesh {
    /// How far the survivors of a mass crash are from one overlay: overlay components; survivors
    /// with no live active neighbour; crashed peers still held in survivors' active views (a failed
    /// probe removes a neighbour only when a helper confirmed it or our awareness is 0); survivors
    /// whose awareness is raised; neighbour requests in flight.
    func healingState() -> String {
        let l = live
        var isolated = 0, deadHeld = 0, aware = 0, pending = 0, fullOfDead = 0
        for i in l {
            let c = cores[i]!
            let liveNeighbours = c.activeView.filter { p in byAddress[p.address].map { !crashed[$0] } ?? false }.count
            if liveNeighbours == 0 { isolated += 1 }
            let dead = c.activeView.count - liveNeighbours
            deadHeld += dead
            if dead > 0 && c.activeView.count + c.pendingNeighbours.count >= c.config.activeViewSize { fullOfDead += 1 }
            if c.awareness > 0 { aware += 1 }
            pending += c.pendingNeighbours.count
        }
        return "components \(components()), survivors with no live neighbour \(isolated), crashed peers held in active views \(deadHeld) (views full with a crashed peer: \(fullOfDead)), awareness > 0 at \(aware) of \(l.count), neighbour requests pending \(pending)"
    }
}
