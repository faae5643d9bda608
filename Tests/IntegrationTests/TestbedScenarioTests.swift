import Foundation
import Testing

/// Issue 22's scenarios on the real-network test bed (Testbed/Testbed.swift, Docs/testbed.md):
/// real `iotaf node run` processes in network namespaces with their own ULA addresses, faults from
/// the nemesis, checkers over what each node's `members --json` reports. The bounds are the
/// issue's. The two suites run at the same time (each builds its own bed), so `make test` pays
/// about the longer one (the partition's 60 s plus the other phases).
@Suite(.serialized) struct TestbedFaultScenarioTests {
    /// Ten hosts on one LAN in master mode (host 0 the master): a 2 s SIGSTOP is not a death;
    /// kill -9 of 3 hosts is seen dead everywhere within 10 s and alive again within 10 s of
    /// their restart; a partition of 5 hosts for 60 s heals to everyone alive within 30 s.
    @Test(.enabled(if: Testbed.available, "skipped: the test bed needs root, iproute2 (ip netns) and nftables; .ci/run runs it as root"),
          .timeLimit(.minutes(6)))
    func pauseKillAndPartitionOnOneLAN() throws {
        let bed = try Testbed(lans: [10])
        defer { bed.teardown() }
        let all = Array(0..<bed.count)
        try bed.start(0, ["--mode", "master", "--is-master"])
        for i in 1..<bed.count { try bed.start(i, ["--mode", "master", "--master", bed.endpoint(0)]) }
        let met = bed.waitUntil(all, see: all, "alive", within: 60)
        try #require(met.ok, "all ten alive everywhere (setup):\n\(met.views)host 1 log:\n\(bed.log(1))")

        // A 2 s SIGSTOP (a starved box): Lifeguard's suspicion must not turn into a death.
        let paused = 9
        let others = all.filter { $0 != paused }
        bed.pause(paused)
        let stopEnds = Date().addingTimeInterval(2)
        var declaredDead: [String] = []
        func noteDeaths() {
            for o in others where bed.state(o, paused, in: bed.members(o)) == "dead" { declaredDead.append("host \(o)") }
        }
        while Date() < stopEnds { noteDeaths(); Thread.sleep(forTimeInterval: 0.2) }
        bed.resume(paused)
        // Watch past the pause, long enough for any suspicion raised during it to have expired.
        let watchEnds = Date().addingTimeInterval(8)
        while Date() < watchEnds { noteDeaths(); Thread.sleep(forTimeInterval: 0.25) }
        print("testbed: 2 s SIGSTOP, declared dead by \(Set(declaredDead).count) hosts")
        #expect(declaredDead.isEmpty, "no one declares a host dead for a 2 s SIGSTOP; declared by: \(Set(declaredDead).sorted())")
        let afterPause = bed.waitUntil(all, see: all, "alive", within: 10)
        #expect(afterPause.ok, "all alive after the pause:\n\(afterPause.views)")

        // kill -9 of 3 hosts at once: dead at every live host within 10 s.
        let killed = [3, 5, 7]
        let live = all.filter { !killed.contains($0) }
        for k in killed { bed.kill9(k) }
        let dead = bed.waitUntil(live, see: killed, "dead", within: 10)
        print("testbed: 3 hosts killed -9, dead at every live host after \(String(format: "%.1f", dead.after)) s")
        #expect(dead.ok, "the 3 killed hosts dead everywhere within 10 s (took \(dead.after) s):\n\(dead.views)")
        // Restarted (same key and data directory): alive everywhere within 10 s.
        for k in killed { try bed.restart(k) }
        let back = bed.waitUntil(all, see: all, "alive", within: 10)
        print("testbed: 3 hosts restarted, alive everywhere after \(String(format: "%.1f", back.after)) s")
        #expect(back.ok, "the restarted hosts alive everywhere within 10 s (took \(back.after) s):\n\(back.views)host 3 log:\n\(bed.log(3))")
        if !back.ok { _ = bed.waitUntil(all, see: all, "alive", within: 30) }  // later phases start from a whole mesh

        // A partition of 5 hosts for 60 s: each side sees the other dead, then healed, everyone
        // alive again within 30 s.
        let minority = [5, 6, 7, 8, 9], majority = [0, 1, 2, 3, 4]
        try bed.partition([minority, majority])
        // The partition is real once the majority no longer takes any of the minority for alive;
        // on a loaded machine a member may still be suspect at 30 s (gossip's evidence rule,
        // Docs/gossip.md "Hard networks"), which is as cut off as dead for the heal that follows.
        let split = bed.waitUntil(majority, see: minority, "dead|suspect", within: 30)
        #expect(split.ok, "the partition is real: the majority sees the minority dead or suspect:\n\(split.views)")
        Thread.sleep(until: Date().addingTimeInterval(60 - split.after))
        try bed.heal()
        let healed = bed.waitUntil(all, see: all, "alive", within: 30)
        print("testbed: partition of 5 for 60 s healed, all alive after \(String(format: "%.1f", healed.after)) s (split seen after \(String(format: "%.1f", split.after)) s)")
        #expect(healed.ok, "everyone alive within 30 s of the heal (took \(healed.after) s):\n\(healed.views)host 7 log:\n\(bed.log(7))")
    }
}

@Suite(.serialized) struct TestbedTwoLANTests {
    /// Twelve hosts, 6 on each of two LANs joined by a router namespace, every node in modes
    /// nearest (the LAN beacon) and master (host 0 on LAN 0 the master, reached across the
    /// router), 20 % loss on LAN 1: full membership (every host sees the 11 others alive, one
    /// overlay) within 60 s; then a 64 MiB `iotaf send` into the lossy LAN arrives intact.
    @Test(.enabled(if: Testbed.available, "skipped: the test bed needs root, iproute2 (ip netns) and nftables; .ci/run runs it as root"),
          .timeLimit(.minutes(8)))
    func twelveHostsOnTwoLANsWithALossyLANFormOneMesh() throws {
        let bed = try Testbed(lans: [6, 6])
        defer { bed.teardown() }
        try bed.setLANLoss(1, percent: 20)
        let all = Array(0..<bed.count)
        try bed.makeKeys()
        let started = Date()
        try bed.start(0, ["--mode", "nearest", "--mode", "master", "--is-master"])
        for i in 1..<bed.count { try bed.start(i, ["--mode", "nearest", "--mode", "master", "--master", bed.endpoint(0)]) }
        let met = bed.waitUntil(all, see: all, "alive", within: 60)
        print("testbed: 12 hosts on 2 LANs, 20 % loss on LAN 1: full membership after \(String(format: "%.1f", met.after)) s")
        #expect(met.ok, "full membership on 2 LANs with 20 % loss on LAN 1 within 60 s (took \(Date().timeIntervalSince(started)) s):\n\(met.views)host 8 log:\n\(bed.log(8))")
        // The loss was real: LAN 1's hosts dropped datagrams by the nemesis's rules.
        let rules = bed.nemesisRules(8)
        #expect(rules.contains("numgen random mod 100 < 20"), "LAN 1 is lossy: \(rules)")
        // And the CLI lists the same members as the raw control socket (their states may flap to
        // suspect and back under 20 % loss between the two reads, so the ids are compared).
        let cli = try runIotaf(["members", "--control", bed.socket(8), "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(cli.out.utf8)) as? [[String: Any]] ?? []
        #expect(Set(rows.compactMap { $0["node_id"] as? String }) == Set(all.filter { $0 != 8 }.map { bed.ids[$0] }),
                "`iotaf members --json` on host 8 lists the 11 others: \(cli.out)")

        // A 64 MiB `iotaf send` from LAN 0 to a host on the lossy LAN arrives intact: every
        // datagram into LAN 1 is lost with probability 0.2, and the channel's retransmissions
        // and the receiver's hash check must still deliver the same bytes.
        let file = "\(bed.dir)/big.bin"
        var big = Data(capacity: 64 << 20)
        let block = Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) })
        for k in 0..<64 {
            var b = block
            b[0] = UInt8(k)  // no two mebibytes alike, so a misplaced chunk cannot pass
            big.append(b)
        }
        try big.write(to: URL(fileURLWithPath: file))
        let t0 = Date()
        let sent = try runIotaf(["send", "--control", bed.socket(0), "--to", bed.ids[8], "--file", file, "--json", "--timeout", "300"])
        let took = Date().timeIntervalSince(t0)
        let received = "\(bed.dir)/d8/inbox/\(bed.ids[0])/big.bin"
        let intact = FileManager.default.contents(atPath: received) == big
        print("testbed: 64 MiB send from LAN 0 into LAN 1 (20 % loss): exit \(sent.status) after \(String(format: "%.1f", took)) s (\(String(format: "%.2f", 64 / took)) MiB/s), intact \(intact)")
        #expect(sent.status == 0 && sent.out.contains("\"completed\""), "the 64 MiB transfer completes: \(sent.out) \(sent.err)")
        #expect(intact, "the file host 8 received is byte for byte the one host 0 sent")
        try? FileManager.default.removeItem(atPath: file)
        try? FileManager.default.removeItem(atPath: received)
    }
}
