import Foundation
import Testing

/// Queries between link-local neighbours (issue 25): nodes in mode `nearest`, each in its own
/// network namespace on one LAN, listening on `[::]:7400` and knowing each other only at fe80::
/// addresses (found by the beacon). Every node's `iotaf query` must find every node, in every
/// mode, and show addresses someone can use: the asking node's own answer not as `[::]:7400`,
/// the others' link-local addresses with their interface. Before the fix a query found only the
/// asking node: answers went to the origin's listening address, `[::]:7400`.
@Suite(.serialized) struct LinkLocalQueryNetnsTests {
    typealias LAN = NearestNetnsTests.LAN
    typealias Nodes = NearestNetnsTests.Nodes

    @Test(.enabled(if: LAN.available, "skipped: `ip netns add` is refused here (needs root, iproute2 and network namespace support)"),
          .timeLimit(.minutes(3)), arguments: [2, 3])
    func queriesTravelAndAreAnsweredOverLinkLocalAddresses(nodes count: Int) throws {
        let lan = try LAN(count: count)
        defer { lan.remove() }
        let nodes = try Nodes(lan: lan, count: count)
        defer { nodes.stopAll() }
        let all = Array(0..<count)
        for i in all { try nodes.start(i, extra: ["--attribute", "type=meter-relay", "--attribute", "serial=R-\(i)"]) }
        let ids = nodes.ids
        let (met, seen) = nodes.waitUntil(all, within: 40) { o, m in
            all.allSatisfy { s in
                s == o || (m[ids[s]]?["state"] as? String == "alive"
                           && (m[ids[s]]?["address"] as? String)?.hasPrefix("[fe80::") == true)
            }
        }
        try #require(met, "every node sees the others alive at link-local addresses:\n\(seen)")

        for asker in all {
            for mode in ["nearest", "master", "walk"] {
                let r = try runIotaf(["query", "type=meter-relay", "--mode", mode, "--timeout", "2", "--hops", "3",
                                      "--control", nodes.socket(asker), "--json"])
                let report = (try? JSONSerialization.jsonObject(with: Data(r.out.utf8))) as? [String: Any]
                let answers = report?["answers"] as? [[String: Any]] ?? []
                let byNode = Dictionary(answers.map { ($0["node_id"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
                // A walk takes one random neighbour per hop and may go back and forth between
                // three nodes: it must find a neighbour; the flooding modes must find everyone.
                if mode == "walk" {
                    #expect(byNode[ids[asker]] != nil && answers.count >= 2, "a walk from node \(asker) finds itself and a neighbour: \(r.out) \(r.err)")
                } else {
                    for s in all { #expect(byNode[ids[s]] != nil, "node \(asker) (\(mode)) hears node \(s)'s answer: \(r.out) \(r.err)") }
                }
                for a in answers {
                    let address = a["address"] as? String ?? ""
                    #expect(!address.hasPrefix("[::]") && !address.isEmpty, "no answer shows the wildcard address: \(a)")
                    if a["node_id"] as? String != ids[asker] {
                        #expect(address.hasPrefix("[fe80::") && address.contains("%eth0]"),
                                "a neighbour's answer shows its link-local address with the interface: \(a)")
                    }
                }
            }
        }
        // Every node answered only where it could: no answer was left without a route.
        for i in all {
            let status = nodes.json(i, "status") as? [String: Any]
            let drops = status?["gossip_drops"] as? [String: Any] ?? [:]
            #expect((drops["unroutableAnswer"] as? Int ?? 0) == 0, "node \(i) dropped no answer for want of a route: \(drops)")
        }
    }
}
