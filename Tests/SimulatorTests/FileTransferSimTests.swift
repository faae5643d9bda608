import Simulator
import Testing

/// File transfers (`iotaf send`'s service) in the simulator: files cross a lossy mesh intact, the
/// file jobs are charged to the virtual CPUs, and a receiver without space refuses cleanly.
/// (`iotaf sim run Simulations/files-lossy.toml --seeds 1..20` is the larger sweep.)
@Suite struct FileTransferSimTests {
    static func scenario(capacity: Int = 1 << 30, seedChecks: Bool = true) throws -> Scenario {
        try Scenario.parse("""
        name = "files-small"
        nodes = 6
        duration_s = 70
        seeding = "first"
        [gossip]
        modes = ["master"]
        masters = [0]
        [network]
        latency_ms = 10
        jitter_ms = 2
        loss = 0.1
        [[workloads]]
        kind = "files"
        every_s = 4
        bytes = 262144
        max_bytes = 1572864
        from_s = 5
        until_s = 33
        capacity_bytes = \(capacity)
        [[checks]]
        kind = "files_intact"
        [[checks]]
        kind = "files_delivered"
        within_s = 30
        """, file: "files-small.toml")
    }

    /// The floor of Simulations/files-lossy.toml on a smaller mesh, over a sweep of seeds: every
    /// file arrives with the sent file's hash, every transfer completes within 30 s.
    @Test func filesArriveIntactUnderTenPercentLossOverASweep() throws {
        let outcomes = SeedSweep.run(try Self.scenario(), seeds: [1, 2, 3], jobs: 2) { _, _ in }
        for o in outcomes {
            let m = o.report.metrics
            #expect(o.report.passed, "seed \(o.seed): \(o.report.checks.map { "\($0.name): \($0.detail)" })")
            #expect((m["files_received"] ?? 0) >= 6, "seed \(o.seed): \(m["files_received"] ?? -1) files received")
            #expect((m["datagrams_lost"] ?? 0) > 100, "the network really lost datagrams")
            // Hashing, reading and writing the files went through the virtual CPUs.
            #expect((m["cpu_jobs"] ?? 0) > 50 && (m["cpu_charged_s"] ?? 0) > 0.01, "seed \(o.seed): \(m["cpu_jobs"] ?? -1) jobs, \(m["cpu_charged_s"] ?? -1) s")
        }
    }

    /// Receivers whose disk is too small refuse every offer: each transfer fails with a reason,
    /// nothing arrives, nothing crashes, and no partial file counts as received.
    @Test func aReceiverWithoutSpaceRefusesEveryFile() throws {
        let r = Simulation(scenario: try Self.scenario(capacity: 100_000), seed: 4).run()
        let m = r.metrics
        #expect((m["files_sent"] ?? 0) >= 5)
        #expect(m["files_received"] == 0)
        #expect(m["files_failed"] == m["files_sent"], "\(m)")
        #expect(r.checks.first { $0.name == "files_intact" }?.passed == true)
        #expect(r.checks.first { $0.name == "files_delivered" }?.passed == false)
    }

    @Test func sameSeedSameFiles() throws {
        let s = try Self.scenario()
        let a = Simulation(scenario: s, seed: 5, threads: 1).run().metrics
        let b = Simulation(scenario: s, seed: 5, threads: 1).run().metrics
        for k in ["files_sent", "files_received", "cpu_jobs", "cpu_charged_s", "datagrams_sent"] { #expect(a[k] == b[k], "\(k)") }
    }
}
