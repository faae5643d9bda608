import Foundation
import Sodium
import Testing

/// Channels between real node processes on ::1: a 64 MiB file crosses Noise sessions and
/// channels and arrives intact (hash checked); a send to a non-member fails clearly.
/// Starts node processes on ::1 (node i > 0 seeded with node 0) and waits until node 1 sees node 0 alive.
private func startPair(_ dir: String) throws -> (procs: [Process], ids: [String]) {
    let ports = (0..<2).map { _ in freeUDPPort() }
    var procs: [Process] = []
    var ids: [String] = []
    for i in 0..<2 {
        let kg = try runIotaf(["keygen", "--out", "\(dir)/n\(i).key", "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(kg.out.utf8)) as? [String: String]
        ids.append(try #require(obj?["node_id"]))
        var args = ["node", "run", "--key", "\(dir)/n\(i).key", "--listen", "[::1]:\(ports[i])", "--control", "\(dir)/n\(i).sock",
                    "--data", "\(dir)/d\(i)", "--log-level", "warning"]
        if i > 0 { args += ["--peer", "[::1]:\(ports[0])"] }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try iotafBinary())
        p.arguments = args
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        procs.append(p)
    }
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
        Thread.sleep(forTimeInterval: 0.2)
        if let r = try? runIotaf(["members", "--control", "\(dir)/n1.sock", "--json"]), r.status == 0,
           let arr = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]],
           arr.contains(where: { $0["node_id"] as? String == ids[0] && $0["state"] as? String == "alive" }) {
            return (procs, ids)
        }
    }
    for p in procs { p.terminate() }
    throw TestFailure("node 1 never saw node 0 alive")
}

@Suite(.serialized) struct ChannelProcessTests {
    @Test func sixtyFourMiBFileArrivesIntact() throws {
        let dir = "/tmp/iotaf-ch-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (procs, ids) = try startPair(dir)
        defer { for p in procs where p.isRunning { p.terminate() } }

        // 64 MiB of random bytes (libsodium's generator), written in 1 MiB pieces.
        let file = "\(dir)/payload.bin"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        for _ in 0..<64 { h.write(Data(Sodium.randomBytes(1 << 20))) }
        try h.close()
        let sent = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(sent.count == 64 << 20)

        let r = try runIotaf(["send", "--control", "\(dir)/n1.sock", "--to", ids[0], "--file", file, "--json"])
        #expect(r.status == 0, "send failed: \(r.err)")
        let report = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        #expect(report?["state"] as? String == "completed")
        #expect(report?["bytes_done"] as? Int == 64 << 20)

        let received = "\(dir)/d0/inbox/\(ids[1])/payload.bin"
        let got = try Data(contentsOf: URL(fileURLWithPath: received))
        #expect(got.count == sent.count)
        #expect(Blake2b.hash(Array(got)) == Blake2b.hash(Array(sent)), "the received file's hash equals the sent one")

        // The receiver reports the completed transfer; no channel frame was dropped as malformed.
        let status = try runIotaf(["status", "--control", "\(dir)/n0.sock", "--json"])
        let s = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        let transfers = s?["transfers"] as? [[String: Any]] ?? []
        #expect(transfers.contains { $0["direction"] as? String == "in" && $0["state"] as? String == "completed" && $0["path"] as? String == received })
        let drops = s?["channel_drops"] as? [String: Int] ?? [:]
        for reason in ["truncated", "bad_version", "bad_flags", "bad_record", "bad_ack", "message_too_large"] {
            #expect(drops[reason] == 0, "\(reason)")
        }
        #expect(((s?["channels"] as? [String: Int])?["messages_delivered"] ?? 0) >= 65)
        // Where the kernel segments UDP (GSO), the bulk frames left in trains and nothing fell back.
        let sender = try JSONSerialization.jsonObject(with: Data(try runIotaf(["status", "--control", "\(dir)/n1.sock", "--json"]).out.utf8)) as? [String: Any]
        let senderCounters = sender?["counters"] as? [String: Int] ?? [:]
        #expect(senderCounters["udp_gso_fallbacks"] == 0 && (s?["counters"] as? [String: Int])?["udp_gso_fallbacks"] == 0)
        if senderCounters["udp_gso_enabled"] == 1 {
            #expect((senderCounters["udp_gso_datagrams"] ?? 0) > 50_000, "\(senderCounters)")
        }

        // A send to a node that is not a member fails with a clear message and a non-zero exit.
        let stranger = String(repeating: "ab", count: 32)
        let bad = try runIotaf(["send", "--control", "\(dir)/n1.sock", "--to", stranger, "--file", file])
        #expect(bad.status != 0)
        #expect(bad.err.contains("not a member"), "\(bad.err)")

        for p in procs { p.terminate() }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
    }
}

extension ChannelProcessTests {
    /// The receiver dies in the middle of a transfer: the sender's `iotaf send` exits non-zero and
    /// says why, and the sender's status lists the transfer as failed.
    @Test func receiverDyingMidTransferFailsTheSendClearly() throws {
        let dir = "/tmp/iotaf-chf-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (procs, ids) = try startPair(dir)
        defer { for p in procs where p.isRunning { p.terminate() } }
        // 1 GiB, sparse: cheap to create, far longer to send than the test waits.
        let file = "\(dir)/huge.bin"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try h.truncate(atOffset: 1 << 30)
        try h.close()

        let send = Process()
        send.executableURL = URL(fileURLWithPath: try iotafBinary())
        send.arguments = ["send", "--control", "\(dir)/n1.sock", "--to", ids[0], "--file", file]
        let err = Pipe()
        send.standardError = err
        send.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try send.run()
        // Wait until bytes are flowing, then kill the receiver without a chance to say goodbye.
        // Hashing the 1 GiB first takes ~1 s alone, over 20 s on a loaded 2-core machine.
        let deadline = Date().addingTimeInterval(90)
        var flowing = false
        while Date() < deadline && !flowing {
            Thread.sleep(forTimeInterval: 0.2)
            if let r = try? runIotaf(["status", "--control", "\(dir)/n1.sock", "--json"]),
               let s = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
               let t = (s["transfers"] as? [[String: Any]])?.first, (t["bytes_done"] as? Int ?? 0) > 0 {
                flowing = true
            }
        }
        try #require(flowing, "the transfer never started")
        kill(procs[0].processIdentifier, SIGKILL)
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        send.waitUntilExit()
        let message = String(decoding: stderr, as: UTF8.self)
        #expect(send.terminationStatus != 0)
        #expect(message.contains("failed"), "\(message.suffix(400))")
        #expect(message.contains("huge.bin"), "\(message.suffix(400))")

        let status = try runIotaf(["status", "--control", "\(dir)/n1.sock", "--json"])
        let s = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        let t = (s?["transfers"] as? [[String: Any]])?.first
        #expect(t?["state"] as? String == "failed")
        #expect((t?["error"] as? String)?.isEmpty == false)
        #expect(((s?["channels"] as? [String: Int])?["messages_failed"] ?? 0) > 0)
        #expect(((s?["channels"] as? [String: Int])?["send_buffered_bytes"] ?? -1) == 0, "the failed messages' memory was freed")
    }
}

extension ChannelProcessTests {
    /// Two files of one name from one sender: the inbox keeps both (`name-2.ext` for the second),
    /// and `iotaf send` speaks in words, not state names.
    @Test func aSecondFileOfTheSameNameIsKeptBesideTheFirst() throws {
        let dir = "/tmp/iotaf-chn-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (procs, ids) = try startPair(dir)
        defer { for p in procs where p.isRunning { p.terminate() } }
        let file = "\(dir)/notes.txt"
        var paths: [String] = []
        for version in ["first", "second"] {
            try version.write(toFile: file, atomically: true, encoding: .utf8)
            let r = try runIotaf(["send", "--control", "\(dir)/n1.sock", "--to", ids[0], "--file", file])
            #expect(r.status == 0 && r.out.contains("the receiver verified its hash"), "\(r.out) \(r.err)")
            #expect(!r.err.contains("awaiting_result") && !r.err.contains("hashing:"), "progress in words: \(r.err)")
            paths.append("\(dir)/d0/inbox/\(ids[1])/" + (version == "first" ? "notes.txt" : "notes-2.txt"))
        }
        #expect(try String(contentsOfFile: paths[0], encoding: .utf8) == "first", "the earlier file is not overwritten")
        #expect(try String(contentsOfFile: paths[1], encoding: .utf8) == "second")
        let s = try JSONSerialization.jsonObject(with: Data(try runIotaf(["status", "--control", "\(dir)/n0.sock", "--json"]).out.utf8)) as? [String: Any]
        let received = ((s?["transfers"] as? [[String: Any]]) ?? []).compactMap { $0["path"] as? String }
        #expect(Set(received) == Set(paths), "status names where each file went: \(received)")
    }
}
