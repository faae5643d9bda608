import Foundation
import Logging
@testable import Runtime
import Testing

/// `[log] format = "json"`: one line, one object, whatever the message and metadata hold.
@Suite struct LogOutputTests {
    @Test func aJSONLineIsOneObjectWithTheFieldsAndMetadata() throws {
        let line = NodeLogHandler.jsonLine(time: Date(timeIntervalSince1970: 1_765_000_000.25), level: .warning, label: "iotaf.node",
                                           message: "two\nlines and a \"quote\"",
                                           metadata: ["peer": "ab12", "message": "clash", "nested": .dictionary(["k": .array(["1", "2"])])],
                                           source: "Runtime", file: "/x/y/NodeRuntime.swift", line: 42)
        #expect(line.hasSuffix("\n"))
        #expect(line.dropLast().firstIndex(of: "\n") == nil, "a newline in the message stays escaped: \(line)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(obj["message"] as? String == "two\nlines and a \"quote\"")
        #expect(obj["meta_message"] as? String == "clash", "metadata never overwrites the line's own fields")
        #expect(obj["level"] as? String == "warning")
        #expect(obj["time"] as? String == "2025-12-06T05:46:40.250Z")
        #expect(obj["file"] as? String == "NodeRuntime.swift")
        #expect(obj["line"] as? Int == 42)
        #expect(((obj["nested"] as? [String: Any])?["k"] as? [String]) == ["1", "2"])
    }

    @Test func theSharedLevelReachesEveryHandler() {
        let level = SharedLogLevel(.warning)
        var a = NodeLogHandler(label: "a", format: .json, level: level)
        let b = NodeLogHandler(label: "b", format: .text, level: level)
        #expect(b.logLevel == .warning)
        a.logLevel = .debug
        #expect(b.logLevel == .debug)
    }

    @Test func theConfigTakesLogFormatAndMetricsListen() throws {
        var s = NodeSettings()
        try ConfigLoader.parse("[log]\nformat = \"json\"\n[metrics]\nlisten = \"[::1]:9464\"\n", file: "t.toml", into: &s)
        #expect(s.logFormat == .json)
        #expect(s.metricsListen?.description == "[::1]:9464")
        var bad = NodeSettings()
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("[log]\nformat = \"xml\"\n", file: "t.toml", into: &bad) }
    }
}
