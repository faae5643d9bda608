import Foundation
import Testing

/// `iotaf ledger` against a data directory changed by hand with the sqlite3 shell.
@Suite struct LedgerProcessTests {
    /// SQL that changes exactly one byte (the 100th) of a blob column.
    static func flipByte(_ table: String, _ column: String, _ condition: String) -> String {
        "UPDATE \(table) SET \(column) = substr(\(column), 1, 99) || (CASE WHEN substr(\(column), 100, 1) = X'00' THEN X'01' ELSE X'00' END) || substr(\(column), 101) WHERE \(condition);"
    }

    @Test func verifyNamesTheHeightOfABlockOrStateRowChangedByHandAndCheckProofRefusesATamperedProof() throws {
        let dir = NSTemporaryDirectory() + "ledger-cli-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sample = try runIotaf(["ledger", "sample", "--data", dir, "--blocks", "6", "--per-block", "8"])
        #expect(sample.status == 0, "\(sample.err)")
        let ok = try runIotaf(["ledger", "verify", "--data", dir])
        #expect(ok.status == 0 && ok.out.contains("6 blocks"), "\(ok.out)\(ok.err)")

        // A proof of one answer checks offline; one changed byte and it does not.
        let proof = dir + "/answer.proof"
        let q = try runIotaf(["ledger", "query", "--data", dir, "kv", "get", "key-2-3", "--prove", proof])
        #expect(q.status == 0 && q.out.contains("value 2/3"), "\(q.out)\(q.err)")
        #expect(try runIotaf(["ledger", "check-proof", proof, "--genesis", dir + "/genesis.txt"]).status == 0)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: proof)))
        bytes[bytes.count - 40] ^= 0x04
        try Data(bytes).write(to: URL(fileURLWithPath: proof))
        #expect(try runIotaf(["ledger", "check-proof", proof, "--genesis", dir + "/genesis.txt"]).status != 0)

        // Copies of the directory, each with one byte changed by hand.
        let cases: [(String, String)] = [
            (Self.flipByte("blocks", "header", "height = 4"), "height 4"),
            (Self.flipByte("txs", "body", "height = 3 AND idx = 5"), "height 3"),
            (Self.flipByte("state", "value", "key = (SELECT key FROM state ORDER BY key LIMIT 1 OFFSET 10)"), "height 6"),
        ]
        for (i, (sql, expected)) in cases.enumerated() {
            let copy = dir + "-\(i)"
            defer { try? FileManager.default.removeItem(atPath: copy) }
            try FileManager.default.copyItem(atPath: dir, toPath: copy)
            let edit = try runTool("/usr/bin/sqlite3", [copy + "/ledger.sqlite", sql])
            #expect(edit.status == 0, "\(edit.err)")
            let bad = try runIotaf(["ledger", "verify", "--data", copy])
            #expect(bad.status != 0 && bad.err.contains("failed at \(expected)"), "\(sql): \(bad.out)\(bad.err)")
        }
    }
}
