import Foundation
import MeshCore

/// How much a node may trust its own silence: an estimate of how often one of its round trips is
/// lost, and from it how many unanswered questions a suspicion needs before this node declares a
/// member dead.
///
/// Lifeguard's awareness stretches a node's probe timing when its probes fail without the helpers'
/// nacks, but a node behind a link that loses most datagrams (a radio mesh, a flaky uplink) still
/// accused healthy members and, after a fixed suspicion timeout, declared them dead and pushed the
/// verdict, which every healthy node believed. And on a mesh with loss on every link, a suspect's
/// refutation was lost often enough that a fixed number of periods declared live members dead by
/// the hundreds (issue 23). So the timeout is counted in chances to refute rather than seconds: a
/// member is declared only when the probability that every question it was asked (our failed
/// probe, each confirmation by another accuser, each of our own `suspect` messages to it) went
/// unanswered by loss alone is below `falseDeathOdds`, given our measured loss. On a LAN (loss at
/// or below `lossFloor`) that is three, which is what the fixed rule needed; behind a link that
/// loses 70 % each way it is about 90, so such a node leaves verdicts to healthy ones.
extension GossipCore {
    /// The probability of a false death we accept per suspicion, if losses are independent.
    static let falseDeathOdds = 1e-4
    /// Below this round-trip loss we count as on a LAN (the estimate is noisy near zero).
    static let lossFloor = 0.02
    /// The estimate's smoothing: each sample moves it by a sixteenth.
    static let lossSmoothing = 1.0 / 16
    /// Direct probes that failed to members not heard from since, remembered (bounded).
    static let unprovenLimit = 64

    /// Independent unanswered questions a suspicion needs before we declare (see the type's doc).
    /// Not yet covered: the estimate moves by a sixteenth per sample, so a node whose link just
    /// went bad can declare before it catches up (`gossip-lossy-group`, seed 6: 537 false deaths).
    /// Adding Lifeguard's awareness to K fixed that seed but kept the survivors of an 80 % crash
    /// (awareness high, helpers dead) from declaring, and their overlay did not re-form.
    var evidenceNeeded: Int {
        let f = min(0.99, max(roundTripLoss, Self.lossFloor))
        return min(1000, Int((log(Self.falseDeathOdds) / log(f)).rounded(.up)))
    }

    mutating func noteRoundTrip(lost: Bool) {
        roundTripLoss += ((lost ? 1 : 0) - roundTripLoss) * Self.lossSmoothing
    }

    /// `count` datagrams this node handed out never left: its driver dropped them (the node
    /// service's write they waited for failed, Docs/gossip.md). Each counts as a lost round trip.
    /// A node whose sends are dropped hears no answers, and its silence says nothing about the
    /// members it asked; with its loss estimate up it needs that many more unanswered questions
    /// before it declares one (`evidenceNeeded`), so the verdicts it would send once it can speak
    /// again are left to the nodes that could ask.
    public mutating func noteSendsDropped(_ count: Int) {
        for _ in 0..<max(0, count) { noteRoundTrip(lost: true) }
    }

    /// A direct probe (and its re-pings) went unanswered by the target itself. It counts as one
    /// loss only once the target proves alive (speaks to us): a crashed member's silence says
    /// nothing about our link.
    mutating func noteUnansweredProbe(_ id: NodeID) {
        if let k = unprovenFailures[id] {
            unprovenFailures[id] = min(8, k + 1)
        } else if unprovenFailures.count < Self.unprovenLimit {
            unprovenFailures[id] = 1
        }
    }

    /// Members heard through other services' traffic, remembered at most (`heardOutside`).
    static let heardOutsideLimit = 256

    /// An authenticated datagram of another service (a channel or file-transfer frame: `NodeService.sendsBulk`) came
    /// from `peer`: it is alive as surely as if it had answered a ping. During a bulk transfer
    /// the frames arrive by the thousand while a probe or its ack may be lost (or wait behind
    /// frames in a queue): a probe that fails while they arrive counts as a lost round trip and
    /// raises no suspicion (`probeFailed`), and a suspicion of it finds the evidence of life
    /// (`lastHeard`, `expireSuspicions`) and is told to the member so it refutes (`heardFrom`).
    /// A crashed member sends no frames: its detection is unchanged.
    public mutating func noteTraffic(from peer: PeerEntry, now: Instant) -> [GossipOutput] {
        guard members[peer.nodeID] != nil else { return [] }
        if heardOutside.count >= Self.heardOutsideLimit, heardOutside[peer.nodeID] == nil {
            heardOutside.removeAll(keepingCapacity: true)
        }
        heardOutside[peer.nodeID] = now
        var out: [GossipOutput] = []
        heardFrom(peer, now: now, into: &out)
        return out
    }

    /// The member spoke to us: its earlier unanswered probes were lost, not ignored.
    mutating func proveAlive(_ id: NodeID) {
        guard !unprovenFailures.isEmpty, let k = unprovenFailures.removeValue(forKey: id) else { return }
        for _ in 0..<min(Int(k), 8) { noteRoundTrip(lost: true) }
    }
}
