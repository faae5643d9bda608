import Dispatch
import Foundation
import MeshCore
import Node

/// Conservative parallel discrete-event simulation with a lookahead window.
///
/// No datagram between nodes arrives sooner than `lookahead` after it is sent (a hard lower bound
/// from the network model: `lookahead(of:)`). So within a window [T, T + lookahead) — cut short
/// before the next global event (sample, timeline, revert, crash deadline, stop, a workload's or an
/// agent's timer, a disk completion, an offloaded result) — what one node does cannot reach another
/// node inside the window: the nodes' own events (deliveries, late deliveries, wakes, agents'
/// signals) are independent across nodes. A window runs in three steps:
///
/// 1. The driver pops every node event due before the window's end and hands it to the node's
///    group (node i is in group i mod `groupCount`), in (time, sequence) order.
/// 2. Each group handles its events in (time, sequence) order on one thread; a wake or late
///    delivery a node asks for inside the window joins the group's queue and is handled in the
///    window too (later ones are kept for the driver). Nothing but the group's own nodes, their
///    wake slots and the group's own state is written; the driver's state is only read.
///    Groups are handed to up to `concurrency` threads.
/// 3. The driver merges the groups' steps by (time, node, order within the node) and carries out
///    their outputs: the network model (and its per-sender random generators), byzantine
///    rewriting, counters, measurements and the trace all run on the driver's thread, in that
///    order.
///
/// Which thread ran which group never shows in the results: groups share nothing mutable (each
/// has its own `PeerIdentities` table, each equivocator its own tally), a group's events run in
/// the same order whichever thread runs them, and the merge order is a total order on the steps.
/// A windowed run does order ties of one instant differently from the sequential loop (global
/// events first, then node events; a node's sends are merged by node index), so its report
/// differs from `threads = 1`, but it is the same for any thread count of 2 or more.
extension Simulation {
    /// Window groups: more groups than threads, so a busy group does not leave a thread idle.
    /// Fixed, so that the report does not depend on the thread count.
    static let groupCount = 8
    /// Below this lookahead (0.1 ms) windows hold too few events to be worth it: sequential loop.
    static let minimumLookahead: Int64 = 100_000
    /// Windows with fewer events than this run on the driver's thread (same result, no hand-off).
    static let minimumParallelEvents = 24

    /// The least one-way delay any datagram between two nodes can have, in nanoseconds: the
    /// smallest latency less jitter over every link model the run can use (the default or the
    /// region matrix, static links, links and nodes degraded by the timeline). Queueing, reorder
    /// and byzantine delays only add to it. Rounded as `VirtualNetwork.latency` rounds, so every
    /// delay drawn is at least this.
    static func lookahead(of s: Scenario) -> Int64 {
        func bound(_ latencyMs: Double, _ jitterMs: Double) -> Int64 {
            Int64(max(0, latencyMs - max(0, jitterMs)) * 1e6)
        }
        let n = s.network
        var least = Int64.max
        if n.regionLatencyMs.isEmpty {
            least = bound(n.latencyMs, n.jitterMs)
        } else {
            for row in n.regionLatencyMs { for ms in row { least = min(least, bound(ms, n.jitterMs)) } }
        }
        for l in n.links.values { least = min(least, bound(l.latencyMs, l.jitterMs)) }
        for e in s.timeline where e.kind == .degrade {
            if let m = e.model { least = min(least, bound(m.latencyMs, m.jitterMs)) }
        }
        return least == .max ? 0 : least
    }

    /// Where a windowed run's CPU went, by thread CPU clocks: what the driver's thread did alone
    /// (global events, handing out, merging) and what the groups did. `criticalPath` is what the
    /// run would take on `threads` free cores: the driver's part plus, per window, the groups
    /// dealt in order to whichever thread is free first. On a shared machine the wall clock says
    /// little about the parallelism; these figures do not depend on the machine's load (beyond
    /// cache effects). Not part of the report, which must not vary between runs.
    public struct WindowStats: Sendable {
        public var windows = 0
        /// Windows whose groups were handed to more than one thread.
        public var parallelWindows = 0
        public var driverSeconds = 0.0
        public var groupSeconds = 0.0
        public var criticalPath = 0.0
        public var threads = 1
        /// CPU seconds of the run on one thread over the critical path.
        public var speedup: Double { criticalPath > 0 ? (driverSeconds + groupSeconds) / criticalPath : 1 }
    }

    /// The window width (0 when sequential).
    public var lookaheadMilliseconds: Double { Double(lookahead) / 1e6 }

    /// Whether an event belongs to one node alone (handled inside windows) or to the driver.
    static func nodeOf(_ kind: SimEvent) -> Int? {
        switch kind {
        case let .deliver(to, _, _), let .deliverLate(to, _, _), let .signal(to, _, _): return Int(to)
        case let .wake(node, _): return Int(node)
        case .agent, .stop, .sample, .timeline, .revert, .crashDeadline, .workload, .diskDone, .offloaded: return nil
        }
    }

    /// Queues a node event: on the node queue in windowed runs, on the one queue otherwise.
    @inline(__always) func pushNodeEvent(_ time: Int64, _ kind: SimEvent) {
        if isWindowed { nodeQueue.push(time, kind) } else { queue.push(time, kind) }
    }

    /// The windowed loop: global events one by one, node events a window at a time. A global
    /// event and node events at the same instant: the global event first.
    func runWindowed(end: Int64, sampleStep: Int64, progress: ((Double, UInt64) -> Void)?) {
        var reported = events >> 14
        while true {
            let globalAt = queue.nextTime ?? .max, nodeAt = nodeQueue.nextTime ?? .max
            guard min(globalAt, nodeAt) <= end else { break }
            if globalAt <= nodeAt {
                let started = threadCPUSeconds()
                let e = queue.pop()!
                now = e.time
                events += 1
                handle(e, sampleStep: sampleStep)
                checkSafety()
                let spent = threadCPUSeconds() - started
                windowStats.driverSeconds += spent
                windowStats.criticalPath += spent
            } else {
                runWindow(until: min(nodeAt + lookahead, globalAt, end + 1))
            }
            if events >> 14 != reported, let progress {
                reported = events >> 14
                progress(Double(now) / 1e9, events)
            }
        }
    }

    /// Handles every node event before `windowEnd` (and those they cause before it), then
    /// carries out the outputs in merge order.
    func runWindow(until windowEnd: Int64) {
        let started = threadCPUSeconds()
        var count = 0
        while let t = nodeQueue.nextTime, t < windowEnd, let e = nodeQueue.pop() {
            windowGroups[Self.nodeOf(e.event)! % Self.groupCount].queue.push(e.time, e.event)
            count += 1
        }
        let active = windowGroups.filter { !$0.queue.isEmpty }
        let threads = count >= Self.minimumParallelEvents ? min(concurrency, active.count) : 1
        let handedOut = threadCPUSeconds()
        let tracing = trace != nil
        let traceNodes = self.traceNodes, traceWindow = self.traceWindow
        nodes.withUnsafeMutableBufferPointer { nodeSlots in
            wakeAt.withUnsafeMutableBufferPointer { wakeSlots in
                let work = WindowWork(groups: active, nodes: nodeSlots, wakeAt: wakeSlots, life: life, leaving: leaving,
                                      starveDelay: cpu.inputDelay, addresses: addresses, signals: agentSignals, windowEnd: windowEnd,
                                      tracing: tracing, traceNodes: traceNodes, traceWindow: traceWindow)
                if threads <= 1 {
                    for k in active.indices { work.run(k) }
                } else {
                    // Each thread takes the next group not yet taken until none is left.
                    let tickets = GroupTickets()
                    DispatchQueue.concurrentPerform(iterations: threads) { _ in
                        while let k = tickets.take(below: work.groups.count) { work.run(k) }
                    }
                }
            }
        }
        let merging = threadCPUSeconds()
        // Before the merge resets the groups: each group's CPU, dealt in ticket order.
        var busy = Array(repeating: 0.0, count: threads)
        for g in active {
            let k = busy.indices.min { busy[$0] < busy[$1] }!
            busy[k] += g.cpuSeconds
            windowStats.groupSeconds += g.cpuSeconds
            g.cpuSeconds = 0
        }
        // Results of jobs offloaded while merging come back no earlier than this window's end:
        // the window already ran its nodes up to it (Engine/Offload.swift).
        mergingUntil = windowEnd
        merge(active)
        mergingUntil = 0
        let driver = (handedOut - started) + (threadCPUSeconds() - merging)
        windowStats.windows += 1
        if threads > 1 { windowStats.parallelWindows += 1 }
        windowStats.driverSeconds += driver
        windowStats.criticalPath += driver + busy.max()!
        windowStats.threads = concurrency
    }

    /// Step 3: every group's steps in (time, node, order) order, carried out on this thread.
    private func merge(_ active: [WindowGroup]) {
        var steps: [WindowStep] = []
        for g in active {
            events += g.events
            c.delivered += g.delivered
            c.toDown += g.toDown
            for (a, n) in g.signalsHeard.enumerated() { signalsHeard[a] += n }
            g.events = 0; g.delivered = 0; g.toDown = 0; g.signalsHeard.removeAll(keepingCapacity: true)
            steps.append(contentsOf: g.steps)
            g.steps.removeAll(keepingCapacity: true)
        }
        steps.sort { a, b in
            if a.time != b.time { return a.time < b.time }
            if a.node != b.node { return a.node < b.node }
            return a.order < b.order
        }
        for s in steps {
            now = s.time
            if let trace { for line in s.lines { trace(line) } }
            for (t, kind) in s.later { nodeQueue.push(t, kind) }
            apply(Int(s.node), s.outputs, wakesTaken: true)
            checkSafety()
        }
    }
}

/// One window group's queue, steps and counters. Written only by the thread running the group
/// during a window, and by the driver between windows.
final class WindowGroup {
    var queue = EventQueue()
    var steps: [WindowStep] = []
    var nextOrder: Int32 = 0
    /// Thread CPU this group spent in the current window.
    var cpuSeconds = 0.0
    var events: UInt64 = 0, delivered: UInt64 = 0, toDown: UInt64 = 0
    /// Per agent (by slot), its signals handed to the group's nodes.
    var signalsHeard: [UInt64] = []
}

/// What one node event produced inside a window, for the merge.
struct WindowStep {
    var time: Int64
    var node: Int32
    /// Order among the steps of the node's group (so among the node's own steps).
    var order: Int32
    var outputs: [NodeOutput]
    /// Events the node caused at or after the window's end (wakes, late deliveries).
    var later: [(Int64, SimEvent)]
    /// Trace lines, in the words of the sequential loop's `log`.
    var lines: [String]
}

/// Hands window groups out to threads, each once.
private final class GroupTickets: @unchecked Sendable {
    // Unchecked: `next` is only touched under `lock`.
    private let lock = NSLock()
    private var next = 0
    func take(below n: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < n else { return nil }
        next += 1
        return next - 1
    }
}

/// What a window's threads work on. `@unchecked Sendable` because it carries the driver's node
/// and wake-slot buffers to the threads; that is safe because, for the duration of one
/// `runWindow` (the buffers are only valid inside it):
/// - each group is run by exactly one thread (`GroupTickets`), and node i is only ever touched
///   through its group (i mod `groupCount`), so no node, wake slot or `WindowGroup` is written by
///   two threads, and the driver writes none of them until all threads are done;
/// - the nodes of a group share no mutable object with another group's nodes (per-group
///   `PeerIdentities` tables, per-equivocator tallies; everything else in a `NodeCore` is
///   values or objects of its own);
/// - the arrays copied in (`life`, `leaving`, ...) are immutable values.
struct WindowWork: @unchecked Sendable {
    let groups: [WindowGroup]
    let nodes: UnsafeMutableBufferPointer<NodeCore>
    let wakeAt: UnsafeMutableBufferPointer<Int64>
    let life: [Simulation.Life]
    let leaving: [Bool]
    let starveDelay: [Int64]
    let addresses: [UnderlayAddress]
    /// Per agent (by slot), what its signals become at a node.
    let signals: [AgentSignal]
    let windowEnd: Int64
    let tracing: Bool
    let traceNodes: Set<Int>?
    let traceWindow: ClosedRange<Double>

    /// Runs group k's events of the window, in (time, sequence) order; the same steps as the
    /// sequential loop's handlers, with the driver's parts (sends, events) left for the merge.
    func run(_ k: Int) {
        let g = groups[k]
        let started = threadCPUSeconds()
        defer { g.cpuSeconds += threadCPUSeconds() - started }
        while let e = g.queue.pop() {
            g.events += 1
            let t = e.time
            let now = Instant(nanoseconds: t)
            var lines: [String] = []
            var later: [(Int64, SimEvent)] = []
            let i: Int
            var outputs: [NodeOutput] = []
            switch e.event {
            case let .deliver(to, from, bytes):
                i = Int(to)
                if starveDelay[i] > 0, life[i] == .up {
                    // A starved node's CPU gets to its input late; a fixed delay keeps the order.
                    let late = SimEvent.deliverLate(to: to, from: from, bytes: bytes)
                    if t + starveDelay[i] < windowEnd { g.queue.push(t + starveDelay[i], late) } else { later.append((t + starveDelay[i], late)) }
                } else {
                    outputs = receive(g, i, from: Int(from), bytes, at: t, &lines)
                }
            case let .deliverLate(to, from, bytes):
                i = Int(to)
                outputs = receive(g, i, from: Int(from), bytes, at: t, &lines)
            case let .signal(to, from, agent):
                i = Int(to)
                guard life[i] == .up, !leaving[i] else { continue }
                let a = Int(agent), s = signals[a]
                while g.signalsHeard.count <= a { g.signalsHeard.append(0) }
                g.signalsHeard[a] += 1
                if tracing { log(i, t, "\(s.name) from node \(from)", &lines) }
                outputs = nodes[i].handle(.command(s.command(addresses[Int(from)])), now: now)
            case let .wake(node, at):
                i = Int(node)
                guard wakeAt[i] == at, life[i] == .up else { continue }
                wakeAt[i] = -1
                if tracing { log(i, t, "timer", &lines) }
                outputs = nodes[i].handle(.timer, now: now)
            case .agent, .stop, .sample, .timeline, .revert, .crashDeadline, .workload, .diskDone, .offloaded:
                preconditionFailure("a global event in a node window")
            }
            var carried = false
            for o in outputs {
                guard case let .wake(at) = o else { carried = true; continue }
                // As the driver's `apply` does: a new wake replaces the pending one.
                guard wakeAt[i] != at.nanoseconds else { continue }
                wakeAt[i] = at.nanoseconds
                let when = max(at.nanoseconds, t), wake = SimEvent.wake(node: Int32(i), at: at.nanoseconds)
                if when < windowEnd { g.queue.push(when, wake) } else { later.append((when, wake)) }
            }
            guard carried || !later.isEmpty || !lines.isEmpty else { continue }
            g.steps.append(WindowStep(time: t, node: Int32(i), order: g.nextOrder, outputs: carried ? outputs : [],
                                      later: later, lines: lines))
            g.nextOrder &+= 1
        }
    }

    private func receive(_ g: WindowGroup, _ j: Int, from: Int, _ bytes: [UInt8], at t: Int64, _ lines: inout [String]) -> [NodeOutput] {
        guard life[j] == .up else { g.toDown += 1; return [] }
        g.delivered += 1
        guard tracing else {
            return nodes[j].handle(.datagram(from: addresses[from], bytes: bytes), now: Instant(nanoseconds: t))
        }
        log(j, t, "← node \(from)  \(Simulation.describe(bytes))", &lines)
        let before = nodes[j].sessions.counters.drops
        let out = nodes[j].handle(.datagram(from: addresses[from], bytes: bytes), now: Instant(nanoseconds: t))
        // Say why a datagram went nowhere: the reason the session layer counted.
        for (reason, n) in nodes[j].sessions.counters.drops.sorted(by: { $0.key.rawValue < $1.key.rawValue })
        where n != before[reason, default: 0] {
            log(j, t, "session dropped it: \(reason.rawValue)", &lines)
        }
        return out
    }

    /// The sequential loop's `log`, kept for the merge to print in order.
    private func log(_ node: Int, _ t: Int64, _ text: @autoclosure () -> String, _ lines: inout [String]) {
        let s = Double(t) / 1e9
        guard traceWindow.contains(s) else { return }
        if let only = traceNodes, !only.contains(node) { return }
        lines.append(String(format: "%10.6fs  ", s) + "node \(node)  " + text())
    }
}

/// CPU time of the calling thread, in seconds (a system call, about 0.3 µs; a few per window).
func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
