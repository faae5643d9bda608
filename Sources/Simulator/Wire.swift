import Foundation
import Gossip
import MeshCore
import Node
import NodeService
import Sessions

/// Carrying out nodes' outputs: datagrams onto the virtual network (with byzantine rewriting),
/// wakes into the queue, events to the measures and workloads; and the trace.
extension Simulation {
    func receive(_ j: Int, from: Int, _ bytes: [UInt8]) {
        guard life[j] == .up else { c.toDown += 1; return }
        c.delivered += 1
        if trace != nil { log(j, "← node \(from)  \(Self.describe(bytes))") }
        let before = trace == nil ? [:] : nodes[j].sessions.counters.drops
        apply(j, nodes[j].handle(.datagram(from: addresses[from], bytes: bytes), now: Instant(nanoseconds: now)))
        if trace != nil {
            // Say why a datagram went nowhere: the reason the session layer counted.
            for (reason, n) in nodes[j].sessions.counters.drops.sorted(by: { $0.key.rawValue < $1.key.rawValue })
            where n != before[reason, default: 0] {
                log(j, "session dropped it: \(reason.rawValue)")
            }
        }
    }

    func log(_ node: Int?, _ text: @autoclosure () -> String) {
        guard let trace else { return }
        let t = Double(now) / 1e9
        guard traceWindow.contains(t) else { return }
        if let node, let only = traceNodes, !only.contains(node) { return }
        trace(String(format: "%10.6fs  ", t) + (node.map { "node \($0)  " } ?? "") + text())
    }

    /// One line about a datagram, for traces.
    /// Datagrams are encrypted, so a trace names the session packet type; what the node made of
    /// it shows in the event lines that follow.
    static func describe(_ bytes: [UInt8]) -> String {
        guard let first = bytes.first, let type = SessionWire.PacketType(rawValue: first) else {
            return "undecodable (\(bytes.count) B)"
        }
        return "\(type) (\(bytes.count) B)"
    }

    // MARK: - Outputs and the wire

    /// Carries out a node's outputs at `now`. `wakesTaken`: a window's worker has already
    /// handled the wakes (ParallelWindow.swift), so they are skipped here.
    func apply(_ i: Int, _ outputs: [NodeOutput], wakesTaken: Bool = false) {
        for o in outputs {
            switch o {
            case let .send(to, bytes, _): transmit(from: i, to: to, bytes: bytes)
            case let .wake(at):
                if !wakesTaken, wakeAt[i] != at.nanoseconds {
                    wakeAt[i] = at.nanoseconds
                    pushNodeEvent(max(at.nanoseconds, now), .wake(node: Int32(i), at: at.nanoseconds))
                }
            case let .event(ev):
                if !spreads.isEmpty { noteSpread(observer: i, ev) }
                if !workloads.isEmpty { for w in workloads { w.observe(node: i, ev, self) } }
                if case let .memberStateChanged(id, from, to, _) = ev {
                    if to == .dead { classifyDeath(observer: i, id) }
                    if trace != nil { log(i, "member \(indexOfID[id].map { "node \($0)" } ?? id.short): \(from) → \(to)") }
                } else if trace != nil, case let .memberAdded(id, _) = ev {
                    log(i, "member added: \(indexOfID[id].map { "node \($0)" } ?? id.short)")
                }
            case let .persist(batch, then):
                // The disk is the driver's (written on this thread, also after a parallel window).
                // `SyncedDisk` is durable at once, so the nodes answer their own persists
                // (`persistsCompleteAtOnce`); a `FaultyDisk` completes at a later instant, when
                // `.diskDone` carries out `then` and answers `.persisted` (`completeWrite`).
                let w = disk.write(node: i, batch.ops, now: now)
                if disk.completesAtOnce {
                    if case .durable = w.outcome { apply(i, then, wakesTaken: wakesTaken) }
                } else {
                    // Completions keep the order the batches were given in (etcd's rule holds per
                    // node), and one met while a window's steps are merged comes no earlier than
                    // the window's end, which the node already reached (as offloaded results do).
                    let at = max(w.at, diskQueue[i].last?.at ?? now, mergingUntil)
                    diskQueue[i].append(PendingPersist(ticket: batch.ticket, staged: w.outcome, then: then, at: at))
                    queue.push(at, .diskDone(node: Int32(i), incarnation: incarnation[i]))
                }
            case let .offload(job):
                offload(i, job)
            }
        }
    }

    func transmit(from i: Int, to address: UnderlayAddress, bytes: [UInt8]) {
        c.sent += 1
        c.bytesSent += UInt64(bytes.count)
        intervalMsgs += 1
        intervalBytesTotal += UInt64(bytes.count)
        intervalBytes[i] &+= UInt32(truncatingIfNeeded: bytes.count)
        nodeBytes[i] &+= UInt64(bytes.count)
        if bytes.count > largestDatagram { largestDatagram = bytes.count }
        guard let j = index(of: address) else {
            c.unroutable += 1
            if trace != nil { log(i, "→ \(address)  unroutable") }
            return
        }
        var payload = bytes
        var extra: Int64 = 0
        if byzantine[i] != nil {
            let a = byzantine[i]!.act(to: Int32(j), bytes: bytes, addresses: addresses)
            if a.acted {
                switch byzantine[i]!.behaviour {
                case .drop: c.byzDropped += 1
                case .delay: c.byzDelayed += 1
                case .corrupt: c.byzCorrupted += 1
                case .replay: c.byzReplayed += 1
                case .equivocate: c.byzEquivocated += 1
                case .conflictingProposals, .doubleVote: break
                }
                if trace != nil { log(i, "byzantine \(byzantine[i]!.behaviour.rawValue) → node \(j)") }
            }
            if let (to, old) = a.replay { route(from: i, to: Int(to), bytes: old, extra: 0) }
            guard let b = a.bytes else { return }
            payload = b
            extra = a.extraDelay
        }
        route(from: i, to: j, bytes: payload, extra: extra)
    }

    func route(from i: Int, to j: Int, bytes: [UInt8], extra: Int64) {
        switch net.fate(from: i, to: j, bytes: bytes.count, now: now) {
        case let .dropped(why):
            switch why {
            case .loss: c.lost += 1
            case .partition: c.partitioned += 1
            case .queue: c.queueDropped += 1
            }
            if trace != nil { log(i, "→ node \(j)  \(Self.describe(bytes))  dropped (\(why))") }
        case let .arrives(delay, dup):
            if trace != nil { log(i, "→ node \(j)  \(Self.describe(bytes))  arrives in \(String(format: "%.3f", Double(delay + extra) / 1e6)) ms\(dup == nil ? "" : ", duplicated")") }
            pushNodeEvent(now + delay + extra, .deliver(to: Int32(j), from: Int32(i), bytes: bytes))
            if let dup {
                c.duplicated += 1
                pushNodeEvent(now + dup + extra, .deliver(to: Int32(j), from: Int32(i), bytes: bytes))
            }
        }
    }

}

/// A persist handed to a disk that completes later: its ticket, whether staging it already failed,
/// the sends that wait for it, and when it completes.
struct PendingPersist {
    var ticket: PersistTicket
    var staged: PersistOutcome
    var then: [NodeOutput]
    var at: Int64
}

extension Simulation {
    /// The oldest outstanding persist of node `i` is done: the sync makes it durable (or fails:
    /// an I/O error, now or when it was staged); a durable batch's sends leave now, then the node
    /// hears `.persisted`. A completion from an earlier incarnation (the node crashed) is void.
    func completeWrite(_ i: Int, incarnation inc: UInt32) {
        guard incarnation[i] == inc, life[i] == .up, !diskQueue[i].isEmpty else { return }
        let p = diskQueue[i].removeFirst()
        var outcome = p.staged
        if case .durable = outcome { outcome = disk.complete(node: i, now: now) }
        if trace != nil { log(i, "disk: persist \(p.ticket.sequence) \(outcome == .durable ? "durable" : "failed")") }
        if case .durable = outcome { apply(i, p.then) }
        apply(i, nodes[i].handle(.persisted(p.ticket, outcome), now: Instant(nanoseconds: now)))
    }
}
