import Gossip
import MeshCore
import Node
import Testing

/// A query travels the mesh, not the asker's member table: nodes the asker has never heard of
/// answer it, over sessions they open to the asker themselves.
@Suite struct QueryBeyondMembersTests {
    @Test func nodesMissingFromTheAskersMemberTableAnswer() throws {
        var p = Pump(count: 5)
        // The asker's table holds one member: whoever it meets first.
        var small = NodeTiming()
        small.maxMembers = 1
        p.cores[0] = try NodeCore(identity: NodeIdentity.deterministic(runSeed: 5, index: 0), network: .defaultNetwork, networkKey: Pump.networkKey,
                                  address: p.addresses[0], timing: small, rng: SeededGenerator(seed: 40))
        p.cores[0].persistsCompleteAtOnce = true
        for i in 0..<5 where i != 1 { p.feed(i, .command(.addSeed(p.addresses[1]))) }
        for i in 1..<5 { p.feed(i, .command(.membership(.setAttributes(try Attributes([("room", "hall-\(i)")]))))) }
        for i in 0..<5 { p.feed(i, .start) }
        p.run(for: .seconds(10))
        let known = Set(p.cores[0].members.values.map(\.nodeID))
        #expect(known.count == 1)
        let strangers = (1..<5).map { p.cores[$0].identity.nodeID }.filter { !known.contains($0) }
        #expect(strangers.count == 3)

        p.events.removeAll()
        p.feed(0, .command(.membership(.query(id: 77, AttributeQuery(key: "room", value: "hall-", match: .prefix), mode: .master, hopLimit: 3))))
        p.run(for: .seconds(3))
        var answers: [NodeID: (hops: UInt8, value: String)] = [:]
        for (n, e) in p.events where n == 0 {
            if case let .membership(.queryAnswer(77, from, _, hops, pairs)) = e { answers[from] = (hops, pairs.first?.value ?? "") }
        }
        #expect(answers.count == 4, "answers from \(answers.keys.map(\.short))")
        for s in strangers {
            #expect(answers[s] != nil, "node \(s.short), not in the asker's table, answered")
            #expect(p.cores[0].members[s] == nil, "still not a member: its answer came from beyond the table")
        }
        for i in 1..<5 { #expect(answers[p.cores[i].identity.nodeID]?.value == "hall-\(i)") }
        #expect(answers.values.allSatisfy { (1...3).contains($0.hops) }, "\(answers.values.map(\.hops))")
    }
}
