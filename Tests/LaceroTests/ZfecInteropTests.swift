import Foundation
import Lacero
import MeshCore
import Testing

/// Byte compatibility with zfec (PyPI `zfec`, Tahoe-LAFS's coder), run as a real Python process:
/// zfec decodes shares we made, we decode shares zfec made, and both make the same parity.
@Suite(.serialized) struct ZfecInteropTests {
    static let script = """
        import sys, json
        import zfec
        req = json.load(sys.stdin)
        k, n = req["k"], req["n"]
        data = bytes.fromhex(req["data"])
        size = len(data) // k
        blocks = [data[i*size:(i+1)*size] for i in range(k)]
        theirs = zfec.Encoder(k, n).encode(blocks)
        pick = req["pick"]
        ours = [bytes.fromhex(req["ours"][str(i)]) for i in pick]
        decoded = zfec.Decoder(k, n).decode(ours, pick)
        print(json.dumps({"decoded": b"".join(decoded).hex(), "shares": [bytes(s).hex() for s in theirs]}))
        """

    static let zfecMissing: String? = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import zfec"]
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return "python3 is not available (\(error))" }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? nil : "the Python package zfec is missing"
    }()

    static let skipReason = "zfec interop skipped: \(zfecMissing ?? "") — run scripts/install-deps.sh (it installs the Python package zfec)"

    struct Answer: Decodable {
        let decoded: String
        let shares: [String]
    }

    func runZfec(k: Int, n: Int, data: [UInt8], ours: [[UInt8]], pick: [Int]) throws -> Answer {
        var oursByIndex: [String: String] = [:]
        for i in pick { oursByIndex[String(i)] = Hex.encode(ours[i]) }
        let request: [String: Any] = ["k": k, "n": n, "data": Hex.encode(data), "ours": oursByIndex, "pick": pick]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", Self.script]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        input.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: request))
        try input.fileHandleForWriting.close()
        let bytes = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        return try JSONDecoder().decode(Answer.self, from: bytes)
    }

    @Test(.enabled(if: zfecMissing == nil, Comment(rawValue: skipReason)),
          arguments: [(1, 2), (2, 3), (3, 10), (10, 14), (16, 32), (100, 255)])
    func sharesDecodeAcrossZfecBothWays(k: Int, n: Int) throws {
        var rng = SeededGenerator(seed: UInt64(k * 1000 + n))
        let length = 1 + Int(rng.next() % 700)
        let data = (0..<(k * length)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let code = try ReedSolomon(k: k, n: n)
        let ours = code.encode(data)
        // zfec gets the last k shares we made (as many parity shares as there are).
        let pick = Array((n - k)..<n)
        let answer = try runZfec(k: k, n: n, data: data, ours: ours, pick: pick)
        #expect(answer.decoded == Hex.encode(data), "zfec decodes our shares")
        let theirs = try answer.shares.map { try #require(Hex.decode($0)) }
        #expect(theirs == ours, "zfec's shares equal ours byte for byte")
        // We decode zfec's parity-heaviest set of shares.
        let theirPick = pick.map { (index: $0, bytes: theirs[$0]) }
        #expect(try code.decode(theirPick) == data)
    }
}
