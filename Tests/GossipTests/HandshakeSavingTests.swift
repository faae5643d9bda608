import Testing
import MeshCore
@testable import Gossip

/// The view-maintenance rules that spare handshakes (Docs/gossip.md, "Partial views"): each test
/// drives one core by hand and checks whom it asks, or what it answers.
@Suite struct HandshakeSavingTests {
    typealias M = MechanismTests

    static func requests(_ outs: [GossipOutput]) -> [(GossipDestination, NeighbourPriority)] {
        M.sent(outs).compactMap { if case let .neighbor(p) = $0.1 { return ($0.0, p) } else { return nil } }
    }

    static func at(_ ms: Int64) -> Instant { .zero + .milliseconds(ms) }

    @Test func refusalRefersTheAskerToThePeerRefusedBefore() {
        var c = M.core { $0.activeViewSize = 1 }
        _ = M.deliver(&c, .neighbor(priority: .high), from: 1)
        #expect(c.activeView.map(\.nodeID) == [Samples.entry(1).nodeID])
        func reply(_ outs: [GossipOutput]) -> (Bool, [PeerEntry])? {
            for (_, m) in M.sent(outs) { if case let .neighborReply(a, s) = m { return (a, s) } }
            return nil
        }
        // The first asker gets no referral (nobody was refused yet), and never itself.
        let r2 = reply(M.deliver(&c, .neighbor(priority: .low), from: 2, at: Self.at(100)))
        #expect(r2?.0 == false)
        #expect(r2?.1.contains(Samples.entry(2)) == false)
        // The next one is referred to it first: it too looks for a neighbour.
        let r3 = reply(M.deliver(&c, .neighbor(priority: .low), from: 3, at: Self.at(200)))
        #expect(r3?.0 == false)
        #expect(r3?.1.first == Samples.entry(2))
        // A referral goes to one asker only; the next gets the most recent seeker, 3.
        let r4 = reply(M.deliver(&c, .neighbor(priority: .low), from: 4, at: Self.at(300)))
        #expect(r4?.1.first == Samples.entry(3))
        #expect(r4?.1.contains(Samples.entry(2)) == false)
        // Referrals are fresh only: 3 s later nobody is referred.
        let r5 = reply(M.deliver(&c, .neighbor(priority: .low), from: 5, at: Self.at(3_400)))
        #expect(r5?.1.contains(Samples.entry(4)) == false)
    }

    @Test func repairSkipsRefusersBacksOffAndTriesTheReferral() {
        var c = M.core { $0.activeViewSize = 2 }
        _ = M.deliver(&c, .neighbor(priority: .high), from: 1)
        c.integratePassive([Samples.entry(5)], replacing: [])
        var out: [GossipOutput] = []
        c.maintainViews(now: Self.at(20), into: &out)
        #expect(Self.requests(out).map(\.0) == [.peer(Samples.entry(5))])
        #expect(Self.requests(out).map(\.1) == [.low])
        // 5 is full. It is not asked again soon, and other requests wait for the back-off.
        _ = M.deliver(&c, .neighborReply(accepted: false, sample: []), from: 5, at: Self.at(100))
        c.integratePassive((10...13).map(Samples.entry), replacing: [])
        out = []
        c.maintainViews(now: Self.at(300), into: &out)
        #expect(Self.requests(out).isEmpty)
        out = []
        c.maintainViews(now: Self.at(600), into: &out)
        let cold = Self.requests(out)
        #expect(cold.count == 1)
        #expect(cold.allSatisfy { d, _ in (10...13).map { GossipDestination.peer(Samples.entry($0)) }.contains(d) })
        // A refusal with a referral: the referral is asked next round, back-off or not.
        guard case let .peer(asked) = cold.first?.0 else { Issue.record("no request"); return }
        let askedIndex = (10...13).first { Samples.entry($0) == asked }!
        _ = M.deliver(&c, .neighborReply(accepted: false, sample: [Samples.entry(20)]), from: askedIndex, at: Self.at(700))
        out = []
        c.maintainViews(now: Self.at(800), into: &out)
        #expect(Self.requests(out).map(\.0) == [.peer(Samples.entry(20))])
        // An acceptance ends the back-off.
        _ = M.deliver(&c, .neighborReply(accepted: true, sample: []), from: 20, at: Self.at(900))
        #expect(c.activeView.count == 2)
        #expect(c.refusalStreak == 0 && c.neighbourBackoffUntil == nil)
    }
}
