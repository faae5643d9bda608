import Foundation
import MeshCore
import Node
@testable import Runtime
import Testing

/// The pieces behind a new user's first hour: seeds that do not answer, attribute edits, inbox
/// names, key files cut short, data directories, finding a node's control socket.
@Suite struct SeedWatchTests {
    let seed = UnderlayAddress(parsing: "[::1]:7401")!
    let other = UnderlayAddress(parsing: "[::1]:7402")!
    let t0 = Instant.zero

    @Test func aSilentSeedIsReportedWithinTenSecondsNamingItAndTheLikelyCauses() {
        var w = SeedWatch(network: .defaultNetwork)
        w.watch(seed, now: t0)
        #expect(w.check(now: t0 + .seconds(4)).isEmpty)
        let due = try! #require(w.nextDeadline)
        #expect(due - t0 <= .seconds(10))
        let reports = w.check(now: due)
        #expect(reports.count == 1)
        let m = reports[0].message
        #expect(m.contains("[::1]:7401") && m.contains("different network key") && m.contains("unreachable") && m.contains("port 7401"), "\(m)")
        #expect(m.contains("open default network"), "names the network this node is in: \(m)")
        #expect(w.reports(now: due).first?.state == "not_answering")
    }

    @Test func reportsThenComeSlowlyNotWithEveryRetry() {
        var w = SeedWatch(network: .defaultNetwork)
        w.watch(seed, now: t0)
        var times: [Duration] = []
        var now = t0
        while now < t0 + .seconds(3600) {
            now = now + .seconds(1)
            if !w.check(now: now).isEmpty { times.append(now - t0) }
        }
        #expect(times.first == .seconds(5))
        #expect(times.count >= 5 && times.count <= 12, "\(times)")
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        #expect(gaps.allSatisfy { $0 >= .seconds(60) && $0 <= SeedWatch.maxReportInterval }, "\(gaps)")
    }

    @Test func datagramsWithoutASessionMeanAnotherKeyForCertain() {
        var w = SeedWatch(network: NetworkID(hex: "00112233445566778899aabbccddeeff")!)
        w.watch(seed, now: t0)
        w.heard(from: other)
        w.heard(from: seed)
        let m = w.check(now: t0 + .seconds(5)).first?.message ?? ""
        #expect(m.contains("sends datagrams (1)") && m.contains("different network key") && m.contains("00112233445566778899aabbccddeeff"), "\(m)")
    }

    @Test func anAnswerEndsTheWatchAndIsLoggedOnlyAfterAReport() {
        var w = SeedWatch(network: .defaultNetwork)
        w.watch(seed, now: t0)
        w.watch(other, now: t0)
        #expect(w.answered(seed, now: t0 + .milliseconds(300)) == nil, "a prompt answer needs no log line")
        #expect(w.check(now: t0 + .seconds(5)).map(\.address) == [other])
        let back = w.answered(other, now: t0 + .seconds(20))
        #expect(back?.answered == true && back?.message.contains("answered after 20.0 s") == true)
        #expect(!w.anyPending && w.nextDeadline == nil)
        #expect(w.reports(now: t0 + .seconds(21)).map(\.state) == ["answered", "answered"])
        #expect(w.reports(now: t0 + .seconds(21))[0].answered_after_s == 0.3)
        // `iotaf join` asks again: a fresh watch.
        w.watch(seed, now: t0 + .seconds(30))
        #expect(w.anyPending && w.reports(now: t0 + .seconds(30)).last?.state == "waiting")
    }
}

@Suite struct AttributeEditTests {
    let current = try! Attributes([("type", "meter"), ("site", "b7")])

    func dict(_ a: Attributes?) -> [String: String] { Dictionary((a?.pairs ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }) }

    @Test func noChangeReadsPutAndUnsetTouchOneKeyClearAndSetReplace() throws {
        #expect(try AttributeEdit.apply([:], to: current).get() == nil)
        #expect(dict(try AttributeEdit.apply(["put": "floor=3\ntype=relay"], to: current).get()) == ["type": "relay", "site": "b7", "floor": "3"])
        #expect(dict(try AttributeEdit.apply(["unset": "type"], to: current).get()) == ["site": "b7"])
        #expect(try AttributeEdit.apply(["clear": "true"], to: current).get()?.pairs.isEmpty == true)
        #expect(dict(try AttributeEdit.apply(["clear": "true", "put": "a=1"], to: current).get()) == ["a": "1"])
        #expect(dict(try AttributeEdit.apply(["set": "a=1"], to: current).get()) == ["a": "1"])
    }

    @Test func badEditsAreRefusedWithAReason() {
        for (request, words) in [(["unset": "colour"], "no attribute \"colour\""), (["put": "novalue"], "must be key=value"),
                                 (["put": "\(String(repeating: "k", count: 65))=v"], "longer than 64")] {
            guard case let .failure(e) = AttributeEdit.apply(request, to: current) else { Issue.record("\(request) accepted"); continue }
            #expect(e.description.contains(words), "\(e)")
        }
    }
}

@Suite struct InboxNameTests {
    @Test func suffixesKeepTheExtension() {
        #expect(InboxName.candidate("/i/report.pdf", 1) == "/i/report.pdf")
        #expect(InboxName.candidate("/i/report.pdf", 2) == "/i/report-2.pdf")
        #expect(InboxName.candidate("/i/noext", 3) == "/i/noext-3")
        #expect(InboxName.candidate("/i/.hidden", 2) == "/i/.hidden-2")
        #expect(InboxName.candidate("/i/a.tar.gz", 2) == "/i/a.tar-2.gz")
    }

    @Test func anEarlierFileIsNeverOverwritten() throws {
        let dir = NSTemporaryDirectory() + "iotaf-inbox-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var placed: [String] = []
        for i in 1...3 {
            let part = dir + "/.f.part\(i)"
            try Data("copy \(i)".utf8).write(to: URL(fileURLWithPath: part))
            placed.append(try InboxName.place(part, at: dir + "/f.bin").get())
            #expect(!FileManager.default.fileExists(atPath: part))
        }
        #expect(placed == [dir + "/f.bin", dir + "/f-2.bin", dir + "/f-3.bin"])
        for (i, p) in placed.enumerated() { #expect(try String(contentsOfFile: p, encoding: .utf8) == "copy \(i + 1)") }
    }
}

@Suite struct KeyFileCutShortTests {
    func read(_ text: String) -> String {
        let path = NSTemporaryDirectory() + "iotaf-kf-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        do { _ = try KeyFile.read(path); return "accepted" } catch { return "\(error)" }
    }

    @Test func eachWayOfBeingWrongIsSaid() throws {
        let path = NSTemporaryDirectory() + "iotaf-kf-\(UUID().uuidString)"
        try KeyFile.write(NodeIdentity.generate(), to: path, force: false)
        let good = try String(contentsOfFile: path, encoding: .utf8)
        #expect(read(good) == "accepted")
        let keyLine = good.split(separator: "\n")[1]
        #expect(read("").contains("is empty"))
        #expect(read(String(good.prefix(30))).contains("only comments"), "cut inside the comment")
        #expect(read(String(good.prefix(good.count - 11))).contains("of the 64 hex digits of its key: it was cut short"))
        #expect(read("# c\niotaf-ed25519").contains("ends inside its tag"))
        #expect(read("# c\n\(keyLine.prefix(keyLine.count - 1))Z\n").contains("not a hex digit"))
        #expect(read("iotaf-network-v1 00 11\n").contains("is a `iotaf-network-v1` file"))
        #expect(read("ssh-ed25519 AAAA\n").contains("not this kind of key file"))
        // Every message says the byte count and how to recover.
        let m = read(String(good.prefix(good.count - 11)))
        #expect(m.contains("(\(good.utf8.count - 11) bytes)") && m.contains("iotaf keygen --out"), "\(m)")
    }

    @Test func aNetworkKeyCutShortIsSaidToo() throws {
        let dir = NSTemporaryDirectory() + "iotaf-nk-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try NetworkKey.generate().write(to: dir + "/network.key", force: false)
        let text = try String(contentsOfFile: dir + "/network.key", encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/cut.key", contents: Data(text.prefix(text.count - 40).utf8), attributes: [.posixPermissions: 0o600])
        do { _ = try NetworkKey.read(dir + "/cut.key"); Issue.record("cut network key accepted") } catch {
            #expect("\(error)".contains("hex digits of value 2: it was cut short"), "\(error)")
        }
    }
}

@Suite struct DataDirectoryTests {
    @Test func createsParentsPrivatelyAndSaysWhyInOneLineWhenItCannot() throws {
        let base = NSTemporaryDirectory() + "iotaf-dd-\(UUID().uuidString)"
        try DataDirectory.create(base + "/a/b")
        let mode = try FileManager.default.attributesOfItem(atPath: base + "/a/b")[.posixPermissions] as? Int
        #expect(mode == 0o700)
        try DataDirectory.create(base + "/a/b")  // exists: fine
        _ = FileManager.default.createFile(atPath: base + "/file", contents: Data())
        do { try DataDirectory.create(base + "/file/sub"); Issue.record("a file in the way was accepted") } catch {
            #expect("\(error)".contains("\(base)/file is a file, not a directory") && !"\(error)".contains("\n"), "\(error)")
        }
        let cocoa = CocoaError(.fileWriteNoPermission)
        #expect(DataDirectory.reason(cocoa) == "permission denied")
    }
}

@Suite struct ControlLocateTests {
    /// A listening Unix socket, as a node's control socket looks to a client.
    func listen(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        Glibc.listen(fd, 4)
        return fd
    }

    @Test func findsTheSocketAConfigNamesAndOtherwiseSaysWhereItLooked() throws {
        let dir = "/tmp/iotaf-loc-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A packaged config with a placeholder left in it still tells where its socket is.
        try "[node]\ncontrol = \"../run/c.sock\"\n[gossip]\nadmin_keys = [\"CHANGE-ME\"]\n".write(toFile: dir + "/etc/box.toml", atomically: true, encoding: .utf8)
        let fallbacks = [dir + "/missing-dir/control.sock", dir + "/stale.sock"]
        _ = FileManager.default.createFile(atPath: dir + "/stale.sock", contents: Data())
        guard case let .failure(failure) = ControlClient.locate(configDirectory: dir + "/etc", fallbacks: fallbacks) else {
            Issue.record("found a node where none runs"); return
        }
        let why = failure.description
        #expect(why.contains("run/c.sock (named by \(dir)/etc/box.toml): its directory") && why.contains("run does not exist"), "\(why)")
        #expect(why.contains("\(dir)/missing-dir/control.sock (default): its directory"), "\(why)")
        #expect(why.contains("\(dir)/stale.sock (default)") && why.contains("--control PATH"), "\(why)")

        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
        let fd = listen(dir + "/run/c.sock")
        defer { close(fd) }
        let found = try ControlClient.locate(configDirectory: dir + "/etc", fallbacks: fallbacks).get()
        #expect(found.hasPrefix(dir) && found.hasSuffix("run/c.sock"), "\(found)")
    }
}
