import Foundation
import Testing

/// A new user's first hour with real processes: a private mesh joined with the wrong key, a
/// seed on a dead port, `iotaf join` waiting for its outcome, keygen for a private mesh,
/// attributes changed one key at a time, and problems with paths said in one line.
@Suite(.serialized) struct FirstHourProcessTests {
    /// Starts `iotaf node run ARGS` with its log (stderr) in `log`.
    func startNode(_ args: [String], log: String) throws -> Process {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try iotafBinary())
        p.arguments = ["node", "run"] + args
        p.standardError = FileHandle(forWritingAtPath: log)
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        return p
    }

    func json(_ text: String) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:] }

    func waitForSocket(_ path: String) {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, (try? runIotaf(["status", "--control", path]))?.status != 0 { Thread.sleep(forTimeInterval: 0.1) }
    }

    @Test func aNodeOnAnotherKeySaysWhyWithinTenSecondsAndJoinWaitsForTheOutcome() throws {
        let dir = "/tmp/iotaf-fh-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runIotaf(["network", "init", "--out", "\(dir)/mesh"]).status == 0)
        #expect(try runIotaf(["network", "init", "--out", "\(dir)/other"]).status == 0)
        let meshKey = "\(dir)/mesh/network.key", otherKey = "\(dir)/other/network.key"

        // keygen makes the missing directory (0700) and prints the address in the private mesh.
        let kg = try runIotaf(["keygen", "--out", "\(dir)/keys/n0/identity.key", "--network-key", meshKey, "--json"])
        #expect(kg.status == 0, "\(kg.err)")
        let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/keys/n0")[.posixPermissions] as? Int
        #expect(mode == 0o700)
        let keygenOverlay = json(kg.out)["overlay_address"] as? String
        for i in 1...2 { #expect(try runIotaf(["keygen", "--out", "\(dir)/n\(i).key"]).status == 0) }

        let ports = (0..<3).map { _ in freeUDPPort() }
        var procs: [Process] = []
        defer { for p in procs where p.isRunning { p.terminate() } }
        func common(_ i: Int) -> [String] {
            ["--listen", "[::1]:\(ports[i])", "--control", "\(dir)/n\(i).sock", "--data", "\(dir)/d\(i)"]
        }
        procs.append(try startNode(common(0) + ["--key", "\(dir)/keys/n0/identity.key", "--network-key", meshKey], log: "\(dir)/n0.log"))
        waitForSocket("\(dir)/n0.sock")
        let started = Date()
        procs.append(try startNode(common(1) + ["--key", "\(dir)/n1.key", "--network-key", otherKey, "--peer", "[::1]:\(ports[0])",
                                                "--log-level", "notice"], log: "\(dir)/n1.log"))
        procs.append(try startNode(common(2) + ["--key", "\(dir)/n2.key", "--network-key", meshKey], log: "\(dir)/n2.log"))

        // Within 10 s node 1 says which seed does not answer, and why it probably does not.
        var log1 = ""
        while Date().timeIntervalSince(started) < 10 && !log1.contains("seed [::1]:\(ports[0])") {
            Thread.sleep(forTimeInterval: 0.2)
            log1 = (try? String(contentsOfFile: "\(dir)/n1.log", encoding: .utf8)) ?? ""
        }
        #expect(log1.contains("seed [::1]:\(ports[0]) has not answered") && log1.contains("different network key")
                && log1.contains("port \(ports[0])"), "said within \(Date().timeIntervalSince(started)) s: \(log1)")

        // `iotaf status` shows the seed not answering, in JSON and in words.
        let st = json(try runIotaf(["status", "--control", "\(dir)/n1.sock", "--json"]).out)
        let seeds = st["seeds"] as? [[String: Any]] ?? []
        #expect(seeds.count == 1 && seeds.first?["state"] as? String == "not_answering" && seeds.first?["address"] as? String == "[::1]:\(ports[0])", "\(seeds)")
        #expect(try runIotaf(["status", "--control", "\(dir)/n1.sock"]).out.contains("[::1]:\(ports[0]) NOT ANSWERING"))

        // `iotaf join` gives the reason and fails, rather than "joining through …" and 0.
        let refused = try runIotaf(["join", "[::1]:\(ports[0])", "--control", "\(dir)/n1.sock", "--timeout", "10"])
        #expect(refused.status != 0 && refused.err.contains("different network key"), "\(refused.out) \(refused.err)")

        // With the right key, join waits until the seed answers and says so.
        waitForSocket("\(dir)/n2.sock")
        let joined = try runIotaf(["join", "[::1]:\(ports[0])", "--control", "\(dir)/n2.sock"])
        #expect(joined.status == 0 && joined.out.contains("joined: [::1]:\(ports[0]) answered"), "\(joined.out) \(joined.err)")

        let itself = try runIotaf(["join", "[::1]:\(ports[2])", "--control", "\(dir)/n2.sock"])
        #expect(itself.status != 0 && itself.err.contains("this node's own address"), "\(itself.err)")

        // A port nobody listens on: the reason arrives within seconds, naming the port.
        let deadPort = freeUDPPort()
        let t = Date()
        let dead = try runIotaf(["join", "[::1]:\(deadPort)", "--control", "\(dir)/n2.sock", "--timeout", "15", "--json"])
        #expect(dead.status != 0 && dead.err.contains("nothing listens on port \(deadPort)"), "\(dead.err)")
        #expect(json(dead.out)["state"] as? String == "not_answering")
        #expect(Date().timeIntervalSince(t) < 10)

        // The overlay address keygen printed is the node's in the private mesh.
        let s0 = json(try runIotaf(["status", "--control", "\(dir)/n0.sock", "--json"]).out)
        #expect(keygenOverlay != nil && s0["overlay_address"] as? String == keygenOverlay)

        for p in procs { p.terminate() }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
    }

    @Test func attributesArePrintedAndChangedOneKeyAtATime() throws {
        let dir = "/tmp/iotaf-fa-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runIotaf(["keygen", "--out", "\(dir)/n.key"]).status == 0)
        let sock = "\(dir)/n.sock"
        let p = try startNode(["--key", "\(dir)/n.key", "--listen", "[::1]:\(freeUDPPort())", "--control", sock, "--data", "\(dir)/d",
                               "--attribute", "type=sensor", "--attribute", "site=b7"], log: "\(dir)/n.log")
        defer { if p.isRunning { p.terminate() } }
        waitForSocket(sock)
        func attrs() -> [String: String] {
            json((try? runIotaf(["attributes", "--control", sock, "--json"]))?.out ?? "")["attributes"] as? [String: String] ?? [:]
        }
        let shown = try runIotaf(["attributes", "--control", sock])
        #expect(shown.status == 0 && shown.out.contains("KEY") && shown.out.contains("type  sensor") && shown.out.contains("site  b7"), "\(shown.out)")
        #expect(attrs() == ["type": "sensor", "site": "b7"], "printing changed nothing")
        #expect(try runIotaf(["attributes", "--set", "floor=3", "--control", sock]).status == 0)
        #expect(attrs() == ["type": "sensor", "site": "b7", "floor": "3"])
        #expect(try runIotaf(["attributes", "--unset", "site", "--control", sock]).status == 0)
        #expect(attrs() == ["type": "sensor", "floor": "3"])
        let status = json(try runIotaf(["status", "--control", sock, "--json"]).out)
        #expect(status["attributes"] as? [String: String] == ["type": "sensor", "floor": "3"], "status shows the live attributes")
        let stray = try runIotaf(["attributes", "type=x", "--control", sock])
        #expect(stray.status != 0 && stray.err.contains("--set KEY=VALUE"), "\(stray.err)")
        let missing = try runIotaf(["attributes", "--unset", "colour", "--control", sock])
        #expect(missing.status != 0 && missing.err.contains("no attribute \"colour\""), "\(missing.err)")
        #expect(attrs() == ["type": "sensor", "floor": "3"], "refused edits changed nothing")
        let cleared = try runIotaf(["attributes", "--clear", "--control", sock])
        #expect(cleared.status == 0 && cleared.out.contains("no attributes"), "\(cleared.out)")
        #expect(attrs().isEmpty)
        let tooLong = try runIotaf(["node", "run", "--key", "\(dir)/n.key", "--attribute", "\(String(repeating: "k", count: 65))=v"])
        #expect(tooLong.status != 0 && tooLong.err.contains("the limit is 64"), "--attribute obeys the wire's limits: \(tooLong.err)")
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    @Test func pathAndKeyProblemsAreSaidInOneLine() throws {
        let dir = "/tmp/iotaf-fp-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runIotaf(["keygen", "--out", "\(dir)/n.key"]).status == 0)
        func errorLines(_ r: (status: Int32, out: String, err: String)) -> [Substring] { r.err.split(separator: "\n") }

        let noDir = try runIotaf(["node", "run", "--key", "\(dir)/n.key", "--listen", "[::1]:0", "--control", "\(dir)/nodir/c.sock", "--data", "\(dir)/d"])
        #expect(noDir.status != 0 && noDir.err.contains("its directory \(dir)/nodir does not exist") && !noDir.err.contains("denied"), "\(noDir.err)")
        #expect(errorLines(noDir).count == 1, "\(noDir.err)")

        _ = FileManager.default.createFile(atPath: "\(dir)/file", contents: Data())
        let badData = try runIotaf(["node", "run", "--key", "\(dir)/n.key", "--listen", "[::1]:0", "--data", "\(dir)/file/sub"])
        #expect(badData.status != 0 && badData.err.contains("\(dir)/file is a file, not a directory") && !badData.err.contains("NSCocoaErrorDomain"), "\(badData.err)")
        #expect(errorLines(badData).count == 1, "\(badData.err)")

        let client = try runIotaf(["status", "--control", "\(dir)/nodir/c.sock"])
        #expect(client.status != 0 && client.err.contains("its directory \(dir)/nodir does not exist"), "\(client.err)")

        let idOnly = try runIotaf(["node", "run", "--key", "\(dir)/n.key", "--network-id", "00112233445566778899aabbccddeeff"])
        #expect(idOnly.status != 0 && idOnly.err.contains("no network key"), "\(idOnly.err)")

        try "[gossip]\nmodes = [\"master\"]\nbeacon_port = 7500\n".write(toFile: "\(dir)/b.toml", atomically: true, encoding: .utf8)
        let beaconFromFlag = try runIotaf(["node", "run", "--config", "\(dir)/b.toml", "--mode", "nearest", "--key", "\(dir)/none.key"])
        #expect(beaconFromFlag.err.contains("iotaf keygen --out") && !beaconFromFlag.err.contains("only mode nearest"),
                "beacon keys are accepted when --mode nearest comes from a flag: \(beaconFromFlag.err)")

        let kgDeep = try runIotaf(["keygen", "--out", "\(dir)/a/b/c/id.key"])
        #expect(kgDeep.status == 0 && FileManager.default.fileExists(atPath: "\(dir)/a/b/c/id.key"), "\(kgDeep.err)")
        #expect(kgDeep.out.contains("open default network"))
    }
}
