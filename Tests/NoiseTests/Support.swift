import Foundation

/// Hex helpers for the tests (the module's own are internal).
enum TestHex {
    static func encode(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            guard let byte = UInt8(String(decoding: chars[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
            i += 2
        }
        return out
    }
}

/// Where the shared vectors are: the package root is two levels above this file's folder, and
/// the vectors sit beside it in ../shared/vectors.
enum VectorFiles {
    static var directory: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // NoiseTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .deletingLastPathComponent()
            .appendingPathComponent("shared/vectors")
    }

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static func present(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }
}
