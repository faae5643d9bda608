import Consensus
import MeshCore

/// One consensus run as plain data: validators, byzantine slots, network faults until `healAt`,
/// crashes, a workload; then the checks. `random(seed:)` draws a mixed-fault run from a seed and
/// `describe` prints every parameter it drew, so a failing seed can be read and re-run.
struct Scenario {
    var validators = 4
    /// Validators whose slot misbehaves.
    var byzantine: [(validator: Int, behaviour: Behaviour)] = []
    /// Validators that also run a second slot with the same key (Twins).
    var twins: [Int] = []
    var faults = NetFaults()
    /// Crashes: slot, when, when it restarts, and whether its safety state is lost.
    var crashes: [(slot: Int, at: Instant, restart: Instant, loseState: Bool)] = []
    var payloads = 80
    var every: Duration = .milliseconds(20)
    var healAt = Instant(nanoseconds: 4_000_000_000)
    /// After healing, every checked slot must have committed every payload by then.
    var livenessBound: Duration = .seconds(8)
    var mutation: ConsensusConfig.Mutation = .none

    struct Outcome {
        var violations: [String]
        var livenessFailures: [String]
        var net: VirtualNet
        var ok: Bool { violations.isEmpty && livenessFailures.isEmpty }
    }

    func run(seed: UInt64, transcript: Bool = false) -> Outcome {
        let net = VirtualNet(validators: validators, seed: seed, faults: faults) { c in
            c.maxBackoffExponent = 3
            c.mutation = mutation
        }
        if transcript { net.transcript = [] }
        for (v, b) in byzantine {
            net.slots[v].behaviour = b
            net.slots[v].checked = false
        }
        for v in twins {
            net.slots[v].behaviour = .twin
            net.slots[v].checked = false
            net.addSlot(validator: v, behaviour: .twin)
            net.slots[net.slots.count - 1].checked = false
        }
        for c in crashes {
            net.schedule(.crash(slot: c.slot), at: c.at)
            net.schedule(.restart(slot: c.slot, loseState: c.loseState), at: c.restart)
            if c.loseState { net.slots[c.slot].checked = false; net.slots[c.slot].behaviour = .twin }
        }
        net.schedule(.heal, at: healAt)
        net.start()
        let honest = net.slots.indices.filter { net.slots[$0].checked }
        // Clients submit to validators that stay up (a crash loses the mempool; clients would resubmit).
        let targets = honest.filter { s in !crashes.contains { $0.slot == s } }
        net.workload(count: payloads, every: every, startingAt: Instant(nanoseconds: 20_000_000), targets: targets)
        // Run to the liveness bound, stopping early once every payload is committed and every
        // checked slot that is up has committed after healing.
        let end = healAt + livenessBound
        let all = (0..<payloads).map { Array("p-\(seed)-\($0)".utf8) }
        net.run(until: healAt)
        while net.now < end {
            net.run(until: min(end, net.now + .milliseconds(250)))
            let caughtUp = honest.allSatisfy { net.slots[$0].core == nil || (net.checks.lastCommitAt[$0] ?? .zero) > healAt }
            if caughtUp, all.allSatisfy(net.checks.isCommitted) { break }
        }
        var liveness: [String] = []
        let pending = all.filter { !net.checks.isCommitted($0) }
        if !pending.isEmpty { liveness.append("\(pending.count) of \(payloads) payloads not committed \(livenessBound) after healing") }
        for s in honest where net.slots[s].core != nil {
            if (net.checks.lastCommitAt[s] ?? .zero) < healAt {
                liveness.append("slot \(s) committed nothing after healing (height \(net.checks.height[s] ?? 0))")
            }
        }
        return Outcome(violations: net.checks.violations, livenessFailures: liveness, net: net)
    }

    /// A mixed-fault run: 4 or 7 validators, up to f byzantine identities of every kind, loss,
    /// duplication, delay, partitions, crashes with and without their state, torn writes.
    static func random(seed: UInt64) -> Scenario {
        var g = SeededGenerator(seed: seed ^ 0x5CE7_A210)
        func pick(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
        func chance(_ p: Double) -> Bool { g.unit() < p }
        var s = Scenario()
        s.validators = chance(0.6) ? 4 : 7
        let n = s.validators
        let f = (n - 1) / 3
        var pool = Array(0..<n)
        func take() -> Int { pool.remove(at: pick(pool.count)) }
        let kinds: [Behaviour] = [.equivocator, .doubleVoter, .withholdVotes, .invalidProposer]
        for _ in 0..<pick(f + 1) {
            switch pick(6) {
            case 0..<4: s.byzantine.append((take(), kinds[pick(kinds.count)]))
            case 4: s.twins.append(take())
            default:
                let v = take()
                let at = Instant(nanoseconds: Int64(300 + pick(2500)) * 1_000_000)
                s.crashes.append((v, at, at + .milliseconds(Int64(50 + pick(800))), true))
            }
        }
        // An honest validator may crash and restart with its state (at most one at a time, and
        // only if f is not already used up: a crashed honest node is one fewer voter).
        if s.byzantine.count + s.twins.count + s.crashes.count < f, chance(0.5) {
            let v = take()
            let at = Instant(nanoseconds: Int64(300 + pick(2500)) * 1_000_000)
            s.crashes.append((v, at, at + .milliseconds(Int64(50 + pick(1200))), false))
        }
        s.faults.loss = chance(0.7) ? Double(pick(15)) / 100 : 0
        s.faults.duplication = chance(0.5) ? Double(pick(10)) / 100 : 0
        s.faults.minDelay = .milliseconds(Int64(1 + pick(3)))
        s.faults.maxDelay = s.faults.minDelay + .milliseconds(Int64(pick(30)))
        s.faults.tornWrites = chance(0.3)
        for _ in 0..<pick(3) {
            let from = Instant(nanoseconds: Int64(pick(3500)) * 1_000_000)
            let to = from + .milliseconds(Int64(100 + pick(1500)))
            var a: [Int] = [], b: [Int] = []
            for slot in 0..<(n + s.twins.count) { if chance(0.5) { a.append(slot) } else { b.append(slot) } }
            s.faults.partitions.append((from, to, [a, b]))
        }
        s.payloads = 40 + pick(60)
        s.every = .milliseconds(Int64(5 + pick(40)))
        // Rounds that timed out before healing may have backed off to 3.2 s (400 ms × 2^3); with a
        // validator down for good, the round it leads and the round before it time out too, so
        // commits may wait for three such rounds after healing before two honest leaders in a row.
        s.livenessBound = .seconds(12)
        return s
    }

    var describe: String {
        let b = byzantine.map { "v\($0.validator)=\($0.behaviour)" }.joined(separator: ",")
        let c = crashes.map { "slot\($0.slot)@\($0.at)-\($0.restart)\($0.loseState ? " lost" : "")" }.joined(separator: ",")
        let p = faults.partitions.map { "\($0.from)-\($0.to) \($0.groups)" }.joined(separator: "; ")
        return "n=\(validators) byz=[\(b)] twins=\(twins) crashes=[\(c)] loss=\(faults.loss) dup=\(faults.duplication) delay=\(faults.minDelay)-\(faults.maxDelay) torn=\(faults.tornWrites) partitions=[\(p)] payloads=\(payloads) every=\(every)"
    }
}
