import Consensus
import MeshCore
import SimulatorKit

/// A small deterministic driver for consensus cores: virtual time, an event queue, a lossy network
/// between validator slots, and a disk per slot. It knows nothing of the protocol beyond the
/// core's contract (inputs, outputs, deadline); byzantine behaviour, workload and checks plug in
/// from beside it (Byzantine.swift, Checks.swift), so the pieces can move onto the simulator engine.
final class VirtualNet {
    struct Slot {
        let validator: Int
        var core: ConsensusCore?
        var behaviour: Behaviour
        /// What a durable write left on this slot's disk (bytes, so a torn write can be modelled).
        var disk: [UInt8]?
        /// Bumped by a crash: events for an earlier life are ignored.
        var life = 0
        var timerAt: Instant?
        var timerGeneration = 0
        /// Honest for the checks: its commits must agree with everyone else's.
        var checked: Bool
        var refusedToStart = false
        /// Changes this slot's config only (e.g. a clock of its own).
        var configure: ((inout ConsensusConfig) -> Void)?
    }

    enum Event {
        case deliver(to: Int, from: ValidatorKey, bytes: [UInt8])
        case timer(slot: Int, generation: Int)
        case persisted(slot: Int, life: Int, token: UInt64, bytes: [UInt8], then: [ConsensusOutput])
        case submit(slot: Int, payload: [UInt8])
        case crash(slot: Int)
        case restart(slot: Int, loseState: Bool)
        case heal
    }

    let identities: [NodeIdentity]
    let genesis: Genesis
    var config: ConsensusConfig
    var slots: [Slot] = []
    var faults: NetFaults
    private(set) var now = Instant.zero
    /// The simulation engine's queue (SimulatorKit): time, then the order events were scheduled.
    private var queue = EventHeap<Event>()
    var rng: SeededGenerator
    let seed: UInt64
    var checks: Checks
    /// Filled when set: one line per delivered message and per commit (golden transcripts).
    var transcript: [String]?
    private(set) var events = 0
    /// Byzantine acts carried out (a second proposal or vote sent, a broken proposal), so a test
    /// can tell a behaviour was exercised.
    var byzantineActs = 0

    init(validators n: Int, seed: UInt64, faults: NetFaults = NetFaults(), configure: (inout ConsensusConfig) -> Void = { _ in }) {
        identities = (0..<n).map { NodeIdentity.deterministic(runSeed: 0xC0_5E45, index: $0) }
        genesis = Genesis(validators: ValidatorSet(identities.map { ValidatorKey($0.publicKey)! })!)
        var c = ConsensusConfig(genesis: genesis)
        c.roundTimeout = .milliseconds(400)
        c.idleProposalDelay = .milliseconds(50)
        c.batchTimeout = .milliseconds(5)
        c.fetchRetry = .milliseconds(100)
        configure(&c)
        config = c
        self.faults = faults
        self.seed = seed
        rng = SeededGenerator(seed: seed)
        checks = Checks()
        for i in 0..<n { addSlot(validator: i, behaviour: .honest) }
    }

    /// Adds a slot running validator `validator`'s identity (a second slot of one identity is a twin).
    @discardableResult
    func addSlot(validator: Int, behaviour: Behaviour) -> Int {
        let s = slots.count
        slots.append(Slot(validator: validator, core: nil, behaviour: behaviour, disk: nil, checked: behaviour == .honest))
        return s
    }

    func key(_ validator: Int) -> ValidatorKey { ValidatorKey(identities[validator].publicKey)! }

    func makeCore(_ s: Int, restoring: SafetyState?) -> ConsensusCore {
        var c = config
        if slots[s].behaviour == .doubleVoter { c.mutation = .voteTwiceInARound }
        slots[s].configure?(&c)
        return ConsensusCore(config: c, identity: identities[slots[s].validator], restoring: restoring,
                             rng: rng.derived(UInt64(s * 1000 + slots[s].life)))
    }

    func schedule(_ e: Event, at t: Instant) { queue.push(t.nanoseconds, e) }

    func start() {
        for s in slots.indices {
            slots[s].core = makeCore(s, restoring: nil)
            feed(s, .start)
        }
    }

    /// Runs events until `until` (virtual); returns false if the event budget ran out first.
    @discardableResult
    func run(until: Instant, maxEvents: Int = 5_000_000) -> Bool {
        while let next = queue.nextTime, next <= until.nanoseconds, let entry = queue.pop() {
            let t = Instant(nanoseconds: entry.time), e = entry.event
            now = t
            events += 1
            if events > maxEvents { return false }
            handle(e)
        }
        now = until
        return true
    }

    private func handle(_ e: Event) {
        switch e {
        case .deliver(let to, let from, let bytes):
            guard slots[to].core != nil else { return }
            if transcript != nil { log(to: to, from: from, bytes: bytes) }
            feed(to, .message(from: from, bytes: bytes))
        case .timer(let s, let generation):
            guard slots[s].core != nil, slots[s].timerGeneration == generation else { return }
            slots[s].timerAt = nil
            feed(s, .timer)
        case .persisted(let s, let life, let token, let bytes, let then):
            guard slots[s].life == life, slots[s].core != nil else { return }
            slots[s].disk = bytes
            route(from: s, then)
            feed(s, .persisted(token: token))
        case .submit(let s, let payload):
            checks.submitted(payload)
            // A client whose validator is down submits to the next one that is up.
            guard let live = (0..<slots.count).map({ (s + $0) % slots.count }).first(where: { slots[$0].core != nil && slots[$0].checked })
            else { return }
            feed(live, .submit(payload))
        case .crash(let s):
            slots[s].core = nil
            slots[s].life += 1
            slots[s].timerAt = nil
            if faults.tornWrites, let d = slots[s].disk, d.count > 8, rng.unit() < 0.5 {
                slots[s].disk = Array(d.prefix(d.count / 2))
            }
            checks.restarted(slot: s)
        case .restart(let s, let loseState):
            var restoring: SafetyState?
            if !loseState, let d = slots[s].disk {
                guard let state = try? SafetyState.decode(d) else {
                    // A validator whose safety state is unreadable refuses to start rather than
                    // voting from an empty state (SafetyStateError says what to do).
                    slots[s].refusedToStart = true
                    return
                }
                restoring = state
            }
            if loseState { slots[s].disk = nil }
            slots[s].core = makeCore(s, restoring: restoring)
            feed(s, .start)
        case .heal:
            faults.healed = true
        }
    }

    func feed(_ s: Int, _ input: ConsensusInput) {
        guard var core = slots[s].core else { return }
        let outs = core.handle(input, now: now)
        slots[s].core = core
        process(s, outs)
        if let d = core.deadline, slots[s].timerAt.map({ d < $0 }) ?? true {
            slots[s].timerAt = d
            slots[s].timerGeneration += 1
            schedule(.timer(slot: s, generation: slots[s].timerGeneration), at: max(d, now))
        }
    }

    private func process(_ s: Int, _ outs: [ConsensusOutput]) {
        for o in outs {
            switch o {
            case .persist(let state, let token, let then):
                let delay = Duration.microseconds(200 + Int64(rng.next() % 300))
                schedule(.persisted(slot: s, life: slots[s].life, token: token, bytes: state.encoded, then: then), at: now + delay)
            case .commit(let c):
                if transcript != nil {
                    transcript!.append("\(now) v\(slots[s].validator)\(tag(s)) commit h=\(c.height) r=\(c.round) \(c.hash) payloads=\(c.payloads.count)")
                }
                checks.committed(c, slot: s, checked: slots[s].checked, at: now)
            case .send, .broadcast:
                route(from: s, [o])
            }
        }
    }

    /// Carries sends out, through the slot's byzantine filter.
    private func route(from s: Int, _ outs: [ConsensusOutput]) {
        let me = key(slots[s].validator)
        for o in Byzantine.filter(self, slot: s, outs) {
            switch o {
            case .send(let to, let bytes):
                for d in slots.indices where key(slots[d].validator) == to && d != s { transmit(from: s, me, to: d, bytes) }
            case .broadcast(let bytes):
                for d in slots.indices where key(slots[d].validator) != me { transmit(from: s, me, to: d, bytes) }
            default:
                break
            }
        }
    }

    func transmit(from s: Int, _ key: ValidatorKey, to d: Int, _ bytes: [UInt8]) {
        if faults.cut(s, d, at: now) { return }
        if !faults.healed, rng.unit() < faults.loss { return }
        let delay = faults.delay(&rng)
        schedule(.deliver(to: d, from: key, bytes: bytes), at: now + delay)
        if !faults.healed, rng.unit() < faults.duplication {
            schedule(.deliver(to: d, from: key, bytes: bytes), at: now + delay + faults.delay(&rng))
        }
    }

    private func tag(_ s: Int) -> String { slots[s].validator == s ? "" : "'" }

    private func log(to: Int, from: ValidatorKey, bytes: [UInt8]) {
        let src = identities.firstIndex { $0.publicKey == from } ?? -1
        let what: String
        switch try? ConsensusMessage.decode(bytes, chainID: genesis.chainID) {
        case .proposal(let p)?:
            what = "proposal r=\(p.block.round) h=\(p.block.height) \(p.block.hash) justify=\(p.block.justify.round)\(p.timeoutCertificate.map { " tc=\($0.round)" } ?? "") payloads=\(p.block.payloads.count)"
        case .vote(let v)?: what = "vote r=\(v.round) \(v.blockHash)"
        case .timeout(let t)?: what = "timeout r=\(t.round) high=\(t.highQC.round)"
        case .sync(let qc, let tc)?: what = "sync qc=\(qc.round) tc=\(tc.map { String($0.round) } ?? "-")"
        case .blockRequest(let h, let n)?: what = "blockRequest \(h) count=\(n)"
        case .blockResponse(let bs)?: what = "blockResponse \(bs.map { "\($0.hash)" }.joined(separator: ","))"
        case .payloads(let ps)?: what = "payloads \(ps.count)"
        case nil: what = "undecodable \(bytes.count) bytes"
        }
        transcript!.append("\(now) v\(src) -> v\(slots[to].validator)\(tag(to)) \(what)")
    }

    /// Submits `count` payloads, one every `every`, to validators chosen in turn among `targets`.
    func workload(count: Int, every: Duration, startingAt t0: Instant, targets: [Int], prefix: String = "p") {
        for i in 0..<count {
            let payload = Array("\(prefix)-\(seed)-\(i)".utf8)
            schedule(.submit(slot: targets[i % targets.count], payload: payload), at: t0 + every * i)
        }
    }
}

/// Network faults as plain data: loss, duplication, a delay range, partitions in time windows;
/// after `healAt` (a `.heal` event) loss and duplication stop and partitions end.
struct NetFaults {
    var loss = 0.0
    var duplication = 0.0
    var minDelay: Duration = .milliseconds(1)
    var maxDelay: Duration = .milliseconds(8)
    /// Each partition: from, to, and the groups of slots (slots in different groups cannot talk).
    var partitions: [(from: Instant, to: Instant, groups: [[Int]])] = []
    /// A crash tears the last write with probability 1/2 (the restart then refuses the state).
    var tornWrites = false
    var healed = false

    func cut(_ a: Int, _ b: Int, at t: Instant) -> Bool {
        guard !healed else { return false }
        for p in partitions where p.from <= t && t < p.to {
            let ga = p.groups.firstIndex { $0.contains(a) }
            let gb = p.groups.firstIndex { $0.contains(b) }
            if ga != gb { return true }
        }
        return false
    }

    func delay(_ rng: inout SeededGenerator) -> Duration {
        let span = maxDelay.nanoseconds - minDelay.nanoseconds
        return .nanoseconds(minDelay.nanoseconds + (span > 0 ? Int64(rng.next() % UInt64(span)) : 0))
    }
}
