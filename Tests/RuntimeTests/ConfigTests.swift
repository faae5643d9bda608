import Foundation
import MeshCore
import MeterService
@testable import Runtime
import Testing

/// The repository root, found from this file, so tests can read Configs/ and ../shared.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func parseError(_ text: String) -> ConfigError? {
    var s = NodeSettings()
    do { try ConfigLoader.parse(text, file: "test.toml", into: &s); return nil } catch let e as ConfigError { return e } catch { return nil }
}

@Suite struct ConfigTests {
    @Test func everyExampleConfigLoadsOnceItsPlaceholdersAreReplacedAndIsPrivate() throws {
        let dir = packageRoot.appendingPathComponent("Configs")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".toml") }.sorted()
        #expect(names == ["iot-box.toml", "laptop.toml", "meter-relay.toml", "validator.toml"])
        var withPlaceholders: [String] = []
        for name in names {
            var text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            if text.contains("\"\(ConfigLoader.placeholderPrefix)") {
                withPlaceholders.append(name)
                let e = try #require(parseError(text), "\(name) with its placeholders must be refused")
                #expect(e.description.contains("placeholder") && e.line != nil && e.key != nil, "\(e)")
                // What an operator does: put real values in.
                text = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                    guard line.contains("\"\(ConfigLoader.placeholderPrefix)") else { return String(line) }
                    let key = line.split(separator: "=")[0].trimmingCharacters(in: .whitespaces)
                    // An admin key must be a canonical curve point (IdentityKey): one `iotaf keygen` printed.
                    let real = key == "admin_keys" ? "\"da4766e7a9b80a5945c84f18b5418c776988fdda097909245c04bf2c38ba1d14\"" : "\"[fd00:1::2]:7400\""
                    return "\(key) = [\(real)]"
                }.joined(separator: "\n")
            }
            var s = NodeSettings()
            try ConfigLoader.parse(text, file: name, baseDirectory: dir.path, into: &s)
            #expect(!s.peers.isEmpty || s.discovery.modes.contains(.nearest), "\(name) names peers or finds them by beacon")
            #expect(s.networkKeyPath != nil, "\(name) is for a private mesh: it names its network key")
            #expect(s.discovery.adminKeys.allSatisfy { $0 != AdminKey.parse("3fd4d0a1fc64dfa7bf928c7feb5f58bf159457bf4300d196871341dee114e6ee") })
        }
        #expect(withPlaceholders == ["iot-box.toml", "validator.toml"])
    }

    @Test func aKeyOutsideAnySectionIsNamedWithItsLine() throws {
        let e = try #require(parseError("# comment\nlisten = \"[::]:1\"\n[node]\nkey = \"k\"\n"))
        #expect(e.key == "listen")
        #expect(e.line == 2)
        #expect(e.description.contains("outside any section"))
    }

    @Test func attributesOverTheirLimitsAreNamedWithTheirLine() throws {
        let longKey = String(repeating: "k", count: 65)
        let e = try #require(parseError("[attributes]\ntype = \"x\"\n\(longKey) = \"v\"\n"))
        #expect(e.key == "attributes.\(longKey)" && e.line == 3 && e.description.contains("limit is 64"), "\(e)")
        let e2 = try #require(parseError("[attributes]\nblob = \"\(String(repeating: "v", count: 4097))\"\n"))
        #expect(e2.key == "attributes.blob" && e2.line == 2 && e2.description.contains("limit is 4096"), "\(e2)")
        let many = (0..<3).map { "k\($0) = \"\(String(repeating: "v", count: 4000))\"" }.joined(separator: "\n")
        let e3 = try #require(parseError("[attributes]\n\(many)\n"))
        #expect(e3.key == "attributes" && e3.line == 1 && e3.description.contains("the limit is 8192"), "\(e3)")
        #expect(AttributeLimits.problem(key: "", value: "x") != nil)
        #expect(AttributeLimits.problem(key: "type", value: "meter") == nil)
    }

    @Test(arguments: [
        ("[timing]\nprobe_interval_ms = 5\n", "timing.probe_interval_ms", "out of range"),
        ("[timing]\nmax_members = 0\n", "timing.max_members", "out of range"),
        ("[timing]\nforget_dead_after_s = 99999999999\n", "timing.forget_dead_after_s", "out of range"),
        ("[timing]\nsuspicion_min_ms = 9000\nsuspicion_max_ms = 8000\n", "timing.suspicion_min_ms", "must not exceed"),
        ("[timing]\nsuspicion_min_ms = 5000\n", "timing.suspicion_min_ms", "must not exceed"),
    ])
    func timingValuesHaveBoundsAndCrossChecks(text: String, key: String, words: String) throws {
        let e = try #require(parseError(text))
        #expect(e.key == key && e.line == 2 && e.description.contains(words), "\(e)")
    }

    /// The README's claim "every config key but the [timing] ones has a flag": each key of the
    /// loader's schema outside [timing] has a row in the README's flag table naming a `--flag`,
    /// and `iotaf node run` declares that flag.
    @Test func everyConfigKeyButTimingHasAFlag() throws {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let flags = try String(contentsOf: packageRoot.appendingPathComponent("Sources/iotaf/NodeRunCommand.swift"), encoding: .utf8)
        let rows = readme.split(separator: "\n").filter { $0.hasPrefix("| `--") }
        var checked = 0
        for (section, keys) in ConfigLoader.schema where section != "timing" {
            let names = section == "attributes" ? ["[attributes]"] : keys.keys.map { "[\(section)] \($0)" }
            for name in names {
                let row = rows.first { $0.contains("`\(name)`") }
                #expect(row != nil, "README has no flag row for \(name)")
                guard let row, let start = row.range(of: "`--") else { continue }
                let flag = row[start.upperBound...].prefix { $0.isLetter || $0 == "-" }
                #expect(flags.contains("customLong(\"\(flag)\")") || flags.contains("var \(flag): "), "--\(flag) for \(name) is not an option of `node run`")
                checked += 1
            }
        }
        #expect(checked == ConfigLoader.schema.filter { $0.key != "timing" && $0.key != "attributes" }.map(\.value.count).reduce(1, +))
    }

    @Test func laceroSectionSetsTheStorageNodeAndRefusesOutOfRangeValuesByLine() throws {
        var s = NodeSettings()
        try ConfigLoader.parse("[lacero]\nstore = true\nquota_bytes = 1000000\nkeep_probability = 0.25\n", file: "t", into: &s)
        #expect(s.lacero.store && s.lacero.quotaBytes == 1_000_000 && s.lacero.keepProbability == 0.25)
        let e = try #require(parseError("[lacero]\nstore = true\nkeep_probability = 2\n"))
        #expect(e.key == "lacero.keep_probability" && e.line == 3, "\(e)")
        let q = try #require(parseError("[lacero]\nquota_bytes = -5\n"))
        #expect(q.key == "lacero.quota_bytes", "\(q)")
    }

    @Test func theMeterSectionNamesARoleItsCollectorsAndItsOperators() throws {
        var s = NodeSettings()
        let id = NodeID(publicKey: NodeIdentity.deterministic(runSeed: 1, index: 1).publicKey)
        try ConfigLoader.parse("""
            [meter]
            role = "collector"
            collectors = ["\(id.hex)"]
            operator_keys = ["da4766e7a9b80a5945c84f18b5418c776988fdda097909245c04bf2c38ba1d14"]
            interval_s = 60
            anchor_grace_s = 0
            """, file: "t", into: &s)
        #expect(s.meter?.role == .collector && s.meter?.collectors == [id] && s.meter?.operatorKeys.count == 1)
        #expect(s.meter?.intervalSeconds == 60 && s.meter?.anchorGraceSeconds == 0)
        let badRole = try #require(parseError("[meter]\nrole = \"gateway\"\n"))
        #expect(badRole.key == "meter.role" && badRole.line == 2 && badRole.description.contains("relay"), "\(badRole)")
        let noRole = try #require(parseError("[meter]\ninterval_s = 60\n"))
        #expect(noRole.key == "meter.interval_s" && noRole.description.contains("role"), "\(noRole)")
        let badKey = try #require(parseError("[meter]\nrole = \"relay\"\noperator_keys = [\"3fd4d0a1fc64dfa7bf928c7feb5f58bf159457bf4300d196871341dee114e6ff\"]\n"))
        #expect(badKey.key == "meter.operator_keys", "\(badKey)")
        let badInterval = try #require(parseError("[meter]\nrole = \"relay\"\ninterval_s = 100000\n"))
        #expect(badInterval.key == "meter.interval_s" && badInterval.description.contains("out of range"), "\(badInterval)")
    }

    @Test func beaconKeysWaitForAModeFromTheFlags() throws {
        var s = NodeSettings()
        try ConfigLoader.parse("[gossip]\nbeacon_port = 7500\n", file: "t", into: &s, finalChecks: false)
        #expect(throws: ConfigError.self) { try s.validate() }
        s.discovery.modes = [.nearest]  // what `--mode nearest` does
        try s.validate()
        #expect(s.beacon.port == 7500)
    }

    @Test func aNetworkIDWithoutItsKeyIsRefused() throws {
        let e = try #require(parseError("[node]\nnetwork_id = \"00112233445566778899aabbccddeeff\"\n"))
        #expect(e.key == "node.network_id" && e.line == 2 && e.description.contains("network_key"), "\(e)")
        var s = NodeSettings()
        s.network = NetworkID(hex: "00112233445566778899aabbccddeeff")!  // `--network-id` alone
        #expect(throws: RuntimeError.self) { try s.validate() }
        #expect(throws: RuntimeError.self) { _ = try s.resolvedNetworkKey() }
    }

    @Test func aKeyFileOfAnotherMeshIsRefused() throws {
        let dir = NSTemporaryDirectory() + "iotaf-netkey-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/network.key"
        let key = NetworkKey.generate()
        try key.write(to: path, force: false)
        var s = NodeSettings()
        try ConfigLoader.parse("[node]\nnetwork_key = \"network.key\"\nnetwork_id = \"00112233445566778899aabbccddeeff\"\n",
                               file: "t", baseDirectory: dir, into: &s)
        do { _ = try s.resolvedNetworkKey(); Issue.record("a contradicting network id was accepted") } catch {
            #expect("\(error)".contains("contradicts") && "\(error)".contains(key.id.description), "\(error)")
        }
        s.network = key.id
        #expect(try s.resolvedNetworkKey() == key)
    }

    @Test func valuesAreRead() throws {
        var s = NodeSettings()
        try ConfigLoader.parse("""
            [node]
            key = "/k"
            listen = "127.0.0.1:9000"
            peers = ["[::1]:1", "10.0.0.1:2"]
            network_id = "00112233445566778899aabbccddeeff"
            network_key = "/n"
            [timing]
            probe_interval_ms = 250
            max_members = 10
            [gossip]
            modes = ["master", "walk"]
            masters = ["[::1]:7401"]
            is_master = true
            admin_keys = ["da4766e7a9b80a5945c84f18b5418c776988fdda097909245c04bf2c38ba1d14"]
            [attributes]
            type = "meter"
            """, file: "t", into: &s)
        #expect(s.keyPath == "/k")
        #expect(s.listen.description == "127.0.0.1:9000")
        #expect(s.peers.map(\.description) == ["[::1]:1", "10.0.0.1:2"])
        #expect(s.network.description == "00112233445566778899aabbccddeeff")
        #expect(s.timing.probeInterval == .milliseconds(250))
        #expect(s.discovery.modes == [.master, .walk])
        #expect(s.discovery.masters.map(\.description) == ["[::1]:7401"])
        #expect(s.discovery.isMaster)
        #expect(s.discovery.adminKeys.map(\.hex) == ["da4766e7a9b80a5945c84f18b5418c776988fdda097909245c04bf2c38ba1d14"])
        #expect(s.timing.maxMembers == 10)
        #expect(s.attributes == ["type": "meter"])
    }

    @Test func beaconKeysAreRead() throws {
        var s = NodeSettings()
        #expect(s.beacon == BeaconSettings() && s.beacon.port == 7399 && s.beacon.interval == .seconds(2) && s.beacon.interfaces.isEmpty)
        try ConfigLoader.parse("""
            [gossip]
            modes = ["nearest"]
            beacon_port = 7500
            beacon_interval_ms = 750
            beacon_interfaces = ["eth0", "wlan0"]
            """, file: "t", into: &s)
        #expect(s.discovery.modes == [.nearest])
        #expect(s.beacon.port == 7500)
        #expect(s.beacon.interval == .milliseconds(750))
        #expect(s.beacon.interfaces == ["eth0", "wlan0"])
    }

    @Test func beaconIntervalsAndInterfaceNamesAreChecked() {
        #expect(BeaconSettings.interval(milliseconds: 99) == nil)
        #expect(BeaconSettings.interval(milliseconds: 100) == .milliseconds(100))
        #expect(BeaconSettings.interval(milliseconds: 3_600_001) == nil)
        #expect(BeaconSettings.isInterfaceName("eth0") && BeaconSettings.isInterfaceName("wlp3s0"))
        for bad in ["", "a b", "a/b", "eth0%1", "sixteen-chars-xx", "eth0:1"] { #expect(!BeaconSettings.isInterfaceName(bad), "\(bad)") }
    }

    @Test func unknownKeyIsNamedWithItsLine() throws {
        let e = try #require(parseError("[node]\nlisten = \"[::]:1\"\nlisten_port = 7\n"))
        #expect(e.key == "node.listen_port")
        #expect(e.line == 3)
        #expect(e.description.contains("allowed keys"))
    }

    @Test func unknownSectionIsRefused() throws {
        let e = try #require(parseError("[nodes]\nkey = \"x\"\n"))
        #expect(e.key == "nodes")
        #expect(e.line == 1)
    }

    @Test func wrongTypeIsNamed() throws {
        let e = try #require(parseError("[timing]\nprobe_interval_ms = \"fast\"\n"))
        #expect(e.key == "timing.probe_interval_ms")
        #expect(e.line == 2)
        let e2 = try #require(parseError("[node]\npeers = \"[::1]:1\"\n"))
        #expect(e2.key == "node.peers")
        let e3 = try #require(parseError("[node]\nkey = 5\n"))
        #expect(e3.key == "node.key")
        #expect(e3.description.contains("wrong type"))
    }

    @Test(arguments: ["[node]\nlisten = \"::1:80\"\n", "[node]\nlisten = \"[::1]:70000\"\n", "[node]\npeers = [\"nohost\"]\n"])
    func badAddressIsNamed(text: String) throws {
        let e = try #require(parseError(text))
        #expect(e.key == "node.listen" || e.key == "node.peers")
        #expect(e.description.contains("bad address"))
        #expect(e.line == 2)
    }

    @Test func invalidTOMLGivesALine() throws {
        let e = try #require(parseError("[node]\nkey = \n"))
        #expect(e.line == 2)
        #expect(e.description.contains("not valid TOML"))
    }

    @Test func badNetworkIDAndLevel() throws {
        #expect(try #require(parseError("[node]\nnetwork_id = \"abc\"\n")).key == "node.network_id")
        #expect(try #require(parseError("[log]\nlevel = \"loud\"\n")).key == "log.level")
        #expect(try #require(parseError("[timing]\nsuspicion_max_ms = 0\n")).key == "timing.suspicion_max_ms")
    }

    @Test(arguments: [
        ("[gossip]\nmodes = [\"master\", \"flood\"]\n", "gossip.modes", "unknown mode"),
        ("[gossip]\nmodes = []\n", "gossip.modes", "at least one"),
        ("[gossip]\nmasters = [\"nohost\"]\n", "gossip.masters", "bad address"),
        ("[gossip]\nis_master = \"yes\"\n", "gossip.is_master", "true or false"),
        ("[gossip]\nadmin_keys = [\"abcd\"]\n", "gossip.admin_keys", "64 hex digits"),
        // The negated twin of valuesAreRead's key (sign bit set), and the neutral point (small order).
        ("[gossip]\nadmin_keys = [\"da4766e7a9b80a5945c84f18b5418c776988fdda097909245c04bf2c38ba1d94\"]\n", "gossip.admin_keys", "not a canonical Ed25519 key"),
        ("[gossip]\nadmin_keys = [\"0100000000000000000000000000000000000000000000000000000000000000\"]\n", "gossip.admin_keys", "not a point"),
        ("[gossip]\nseeds = []\n", "gossip.seeds", "unknown key"),
        ("[gossip]\nbeacon_port = 70000\nmodes = [\"nearest\"]\n", "gossip.beacon_port", "not a port"),
        ("[gossip]\nbeacon_port = 0\nmodes = [\"nearest\"]\n", "gossip.beacon_port", "wrong type or value"),
        ("[gossip]\nbeacon_interval_ms = 50\nmodes = [\"nearest\"]\n", "gossip.beacon_interval_ms", "out of range"),
        ("[gossip]\nbeacon_interval_ms = \"2s\"\nmodes = [\"nearest\"]\n", "gossip.beacon_interval_ms", "wrong type"),
        ("[gossip]\nbeacon_interfaces = [\"eth 0\"]\nmodes = [\"nearest\"]\n", "gossip.beacon_interfaces", "bad interface name"),
        ("[gossip]\nbeacon_interfaces = \"eth0\"\nmodes = [\"nearest\"]\n", "gossip.beacon_interfaces", "wrong type"),
        ("[gossip]\nbeacon_port = 7399\nmodes = [\"master\"]\n", "gossip.beacon_port", "only mode nearest"),
    ])
    func badGossipKeysAreNamedWithTheirLine(text: String, key: String, words: String) throws {
        let e = try #require(parseError(text))
        #expect(e.key == key)
        #expect(e.line == 2)
        #expect(e.description.contains(words), "\(e)")
    }
}

@Suite struct KeyFileTests {
    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "iotaf-test-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func writeReadAndRefuseOverwrite() throws {
        let path = tempDir() + "/id.key"
        let id = NodeIdentity.generate()
        try KeyFile.write(id, to: path, force: false)
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect(try KeyFile.read(path).nodeID == id.nodeID)
        #expect(throws: RuntimeError.self) { try KeyFile.write(NodeIdentity.generate(), to: path, force: false) }
        try KeyFile.write(NodeIdentity.generate(), to: path, force: true)
        #expect(try KeyFile.read(path).nodeID != id.nodeID)
    }

    @Test func missingCorruptAndOpenKeysAreRefusedClearly() throws {
        let dir = tempDir()
        do { _ = try KeyFile.read(dir + "/nope.key"); Issue.record("missing key accepted") } catch {
            #expect("\(error)".contains("iotaf keygen --out"))
        }
        let bad = dir + "/bad.key"
        _ = FileManager.default.createFile(atPath: bad, contents: Data("hello\n".utf8), attributes: [.posixPermissions: 0o600])
        do { _ = try KeyFile.read(bad); Issue.record("corrupt key accepted") } catch { #expect("\(error)".contains("not this kind of key file")) }
        let open = dir + "/open.key"
        try KeyFile.write(NodeIdentity.generate(), to: open, force: false)
        chmod(open, 0o644)
        do { _ = try KeyFile.read(open); Issue.record("world-readable key accepted") } catch { #expect("\(error)".contains("chmod 600")) }
    }
}

@Suite struct PeerStoreTests {
    @Test func savesLoadsAndSurvivesCorruption() throws {
        let dir = NSTemporaryDirectory() + "iotaf-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/peers.sqlite"
        let (store, warning) = try PeerStore.open(path: path)
        #expect(warning == nil)
        let key = NodeIdentity.generate().publicKey.bytes
        let now = Int64(Date().timeIntervalSince1970)
        try store.save([.init(publicKey: key, address: UnderlayAddress(parsing: "[::1]:7401")!, lastSeenUnix: now)])
        try store.save([.init(publicKey: key, address: UnderlayAddress(parsing: "[::1]:7402")!, lastSeenUnix: now)])
        let (rows, skipped) = try PeerStore.open(path: path).0.load()
        #expect(skipped == 0)
        #expect(rows.count == 1)
        #expect(rows.first?.address.port == 7402)

        let broken = dir + "/broken.sqlite"
        _ = FileManager.default.createFile(atPath: broken, contents: Data(repeating: 0x41, count: 4096))
        let (fresh, w) = try PeerStore.open(path: broken)
        #expect(w?.contains("moved it to") == true)
        #expect(try fresh.load().rows.isEmpty)
        let moved = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("broken.sqlite.corrupt-") }
        #expect(moved.count == 1, "the corrupt file is kept, not deleted")
    }
}
