import Consensus
import Foundation
import Logging
import MeshCore
import Runtime
import Testing

/// The genesis file (one canonical text form) and a validator's start: `[consensus]` in a config,
/// and a node whose key is not a validator refusing to start with a message that says so.
@Suite struct GenesisConsensusTests {
    static func keys(_ n: Int) -> [NodeIdentity] {
        var out: [NodeIdentity] = []
        while out.count < n { let id = NodeIdentity.generate(); if ValidatorKey(id.publicKey) != nil { out.append(id) } }
        return out
    }

    @Test func theTextFormRoundTripsAndIsCanonical() throws {
        let ids = Self.keys(4)
        let g = GenesisFile(validators: ids.map { ValidatorKey($0.publicKey)! }, admins: [ids[0].publicKey.bytes])
        let text = g.text
        #expect(text.hasPrefix("iotaf-genesis-v1\nvalidator "))
        #expect(text.split(separator: "\n").count == 6)
        let back = try GenesisFile.parse("# a comment\n\n" + text)
        #expect(back == g)
        #expect(back.text == text)
        #expect(back.genesis.chainID == Genesis(validators: ValidatorSet(ids.map { ValidatorKey($0.publicKey)! })!).chainID)
    }

    @Test func badLinesAreNamed() {
        let k = Hex.encode(Self.keys(1)[0].publicKey)
        let cases: [(String, String)] = [
            ("validator \(k)\n", "line 1: expected \"iotaf-genesis-v1\""),
            ("iotaf-genesis-v1\nvalidator \(k)\nvalidator \(k)\n", "line 3: validator listed twice"),
            ("iotaf-genesis-v1\nvalidator zz\n", "line 2: expected"),
            ("iotaf-genesis-v1\nobserver \(k)\n", "line 2: unknown kind"),
            ("iotaf-genesis-v1\nadmin \(k)\n", "needs 1…1024 validator lines"),
            ("", "empty file"),
        ]
        for (text, want) in cases {
            do {
                _ = try GenesisFile.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect("\(error)".contains(want), "\(error) for \(text.debugDescription)")
            }
        }
        // A key whose sign bit is set is not an identity (one key, one identity).
        var neg = Self.keys(1)[0].publicKey.bytes
        neg[31] |= 0x80
        #expect(throws: (any Error).self) { try GenesisFile.parse("iotaf-genesis-v1\nvalidator \(Hex.encode(neg))\n") }
    }

    @Test func configTakesTheConsensusSection() throws {
        var s = NodeSettings()
        try ConfigLoader.parse("[consensus]\nrole = \"validator\"\ngenesis = \"net/genesis\"\nround_timeout_ms = 500\n", file: "x.toml", baseDirectory: "/etc/iotaf", into: &s)
        #expect(s.consensus?.genesisPath == "/etc/iotaf/net/genesis")
        #expect(s.consensus?.roundTimeout == .milliseconds(500))
        var t = NodeSettings()
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("[consensus]\nrole = \"observer\"\n", file: "x.toml", into: &t) }
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("[consensus]\ngenesis = \"g\"\n", file: "x.toml", into: &t) }
    }

    @Test func aNodeWhoseKeyIsNotAValidatorRefusesToStartAndSaysWhy() throws {
        let dir = NSTemporaryDirectory() + "iotaf-genesis-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = Self.keys(5)
        let g = GenesisFile(validators: ids.prefix(4).map { ValidatorKey($0.publicKey)! }, admins: [])
        try Data(g.text.utf8).write(to: URL(fileURLWithPath: dir + "/genesis"))
        var s = NodeSettings()
        s.listen = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 0)
        s.consensus = ConsensusSettings(genesisPath: dir + "/genesis")
        let loop = try EventLoop()
        var logger = Logger(label: "test")
        logger.logLevel = .error
        do {
            _ = try NodeRuntime(settings: s, identity: ids[4], loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
            Issue.record("a non-validator started as a validator")
        } catch {
            #expect("\(error)".contains("is not one of the 4 validators in the genesis file"), "\(error)")
        }
        let v = try NodeRuntime(settings: s, identity: ids[1], loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
        #expect(v.consensus?.status.index == 1)
        try v.start()
        v.stop()
        loop.run()
    }
}
