import Foundation
import Testing

/// `iotaf ledger deploy / submit / query` with the example contracts, on a sample ledger.
@Suite struct ContractProcessTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Docs/examples/contracts").standardized.path

    @Test func deploySubmitQueryAndUpgradeFromTheCommandLine() throws {
        let dir = NSTemporaryDirectory() + "contract-cli-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runIotaf(["ledger", "sample", "--data", dir, "--blocks", "1", "--per-block", "1"]).status == 0)
        let deploy = try runIotaf(["ledger", "deploy", "billing", Self.examples + "/meter-billing.wat", "--data", dir])
        #expect(deploy.status == 0 && deploy.out.contains("deployed billing version 1 at height 2"), "\(deploy.out)\(deploy.err)")
        // The signer registers as a collector, then records two intervals; a repeat is refused with the contract's reason.
        #expect(try runIotaf(["ledger", "submit", "registry", "register", "collector", "fd00::9", "role=collector", "--data", dir]).status == 0)
        let r1 = try runIotaf(["ledger", "submit", "billing", "record", "m-1", "day", "250", "i-1", "--data", dir])
        #expect(r1.status == 0 && r1.out.contains("250") && r1.out.contains("fuel"), "\(r1.out)\(r1.err)")
        #expect(try runIotaf(["ledger", "submit", "billing", "record", "m-1", "day", "100", "i-2", "--data", dir]).status == 0)
        let again = try runIotaf(["ledger", "submit", "billing", "record", "m-1", "day", "100", "i-2", "--data", dir])
        #expect(again.status != 0 && again.err.contains("already recorded"), "\(again.out)\(again.err)")
        let total = try runIotaf(["ledger", "query", "--data", dir, "billing", "total", "m-1", "day", "--json"])
        #expect(total.status == 0 && total.out.contains("\"output\":\"350\""), "\(total.out)\(total.err)")
        // An upgrade; the old version still answers at the old height.
        let v2 = try runIotaf(["ledger", "deploy", "billing", Self.examples + "/counter.wat", "--data", dir])
        #expect(v2.status == 0 && v2.out.contains("version 2"), "\(v2.out)\(v2.err)")
        let old = try runIotaf(["ledger", "query", "--data", dir, "billing", "total", "m-1", "day", "--height", "5"])
        #expect(old.status == 0 && old.out.contains("350"), "\(old.out)\(old.err)")
        let now = try runIotaf(["ledger", "query", "--data", dir, "billing", "total", "m-1", "day"])
        #expect(now.status != 0 && now.err.contains("unknown_function"), "\(now.out)\(now.err)")
        // The ledger with contracts re-verifies from genesis.
        let verify = try runIotaf(["ledger", "verify", "--data", dir])
        #expect(verify.status == 0, "\(verify.out)\(verify.err)")
    }
}
