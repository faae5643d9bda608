import Foundation
import Noise
import Sodium
import Testing

/// Talks to an independent implementation, the Python package `noiseprotocol`, through a small
/// script that acts as the other peer and takes commands as hex lines on stdin.
@Suite(.serialized) struct InteropTests {
    static let script = """
        import sys
        try:
            from noise.connection import NoiseConnection, Keypair
        except ImportError as e:
            print("ERR import: " + str(e), flush=True)
            sys.exit(3)
        name, role, static_hex, remote_hex, psk_hex, prologue_hex = sys.argv[1:7]
        c = NoiseConnection.from_name(name.encode())
        if role == "initiator":
            c.set_as_initiator()
        else:
            c.set_as_responder()
        c.set_keypair_from_private_bytes(Keypair.STATIC, bytes.fromhex(static_hex))
        if remote_hex != "-":
            c.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, bytes.fromhex(remote_hex))
        c.set_psks(psk=bytes.fromhex(psk_hex))
        c.set_prologue(bytes.fromhex(prologue_hex))
        c.start_handshake()
        print("READY", flush=True)
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            data = bytes.fromhex(arg)
            try:
                if cmd == "WRITE":
                    out = c.write_message(data)
                elif cmd == "READ":
                    out = c.read_message(data)
                elif cmd == "ENC":
                    out = c.encrypt(data)
                elif cmd == "DEC":
                    out = c.decrypt(data)
                elif cmd == "HASH":
                    out = c.get_handshake_hash()
                elif cmd == "FINISHED":
                    out = b"\\x01" if c.handshake_finished else b"\\x00"
                else:
                    raise ValueError("unknown command " + cmd)
                print("OK " + bytes(out).hex(), flush=True)
            except Exception as e:
                print("ERR " + type(e).__name__ + ": " + str(e).replace("\\n", " "), flush=True)
        """

    static let installHint = "run scripts/install-deps.sh (it installs the Python package noiseprotocol)"

    struct PeerError: Error, CustomStringConvertible {
        let description: String
    }

    /// The Python peer as a subprocess with line-based pipes.
    final class PythonPeer {
        let process = Process()
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        var buffer: [UInt8] = []

        init(arguments: [String], scriptURL: URL) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-u", scriptURL.path] + arguments
            process.standardInput = input
            process.standardOutput = output
            process.standardError = errors
            do {
                try process.run()
            } catch {
                throw PeerError(description: "cannot start python3 (\(error)); \(InteropTests.installHint)")
            }
            let ready = try readLine()
            guard ready == "READY" else {
                throw PeerError(description: "the Python peer did not start: \(ready); \(InteropTests.installHint)")
            }
        }

        deinit {
            try? input.fileHandleForWriting.close()
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }

        func readLine() throws -> String {
            while true {
                if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: buffer[..<nl], as: UTF8.self)
                    buffer.removeFirst(nl + 1)
                    return line
                }
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty {
                    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    throw PeerError(description: "the Python peer exited: \(stderr)")
                }
                buffer += chunk
            }
        }

        /// Sends one command and returns the bytes of its OK answer.
        func call(_ command: String, _ argument: [UInt8] = []) throws -> [UInt8] {
            input.fileHandleForWriting.write(Data("\(command) \(TestHex.encode(argument))\n".utf8))
            let line = try readLine()
            guard line.hasPrefix("OK ") || line == "OK" else {
                throw PeerError(description: "Python peer, \(command): \(line)")
            }
            guard let bytes = TestHex.decode(String(line.dropFirst(3))) else {
                throw PeerError(description: "Python peer sent bad hex: \(line)")
            }
            return bytes
        }
    }

    /// Fails with the install hint when python3 or the package is missing.
    static func pythonReady() -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import noise.connection"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do {
            try p.run()
        } catch {
            return "python3 is not available (\(error)); \(installHint)"
        }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? nil : "the Python package noiseprotocol is missing; \(installHint)"
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let protocolName: String
        let iotafIsInitiator: Bool
        var testDescription: String { "\(protocolName), iotaf as \(iotafIsInitiator ? "initiator" : "responder")" }
    }

    static let cases: [Case] = ["Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"]
        .flatMap { name in [Case(protocolName: name, iotafIsInitiator: true), Case(protocolName: name, iotafIsInitiator: false)] }

    @Test("full handshake and transport with Python noiseprotocol", arguments: cases)
    func interop(_ c: Case) throws {
        if let problem = Self.pythonReady() {
            Issue.record("\(problem)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iotaf-noise-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let scriptURL = dir.appendingPathComponent("peer.py")
        try Self.script.write(to: scriptURL, atomically: true, encoding: .utf8)

        let ours = DHKeyPair.generate()
        let theirs = DHKeyPair.generate()
        let psk = Sodium.randomBytes(32)
        let prologue = Array("iotaf interop".utf8)
        let isIK = c.protocolName.contains("_IK")
        // In IK the initiator knows the responder's static key in advance.
        let theirRemote = isIK && !c.iotafIsInitiator ? TestHex.encode(ours.publicKey) : "-"
        let peer = try PythonPeer(arguments: [c.protocolName, c.iotafIsInitiator ? "responder" : "initiator",
                                              TestHex.encode(theirs.secretKey), theirRemote,
                                              TestHex.encode(psk), TestHex.encode(prologue)],
                                  scriptURL: scriptURL)
        let hs = try HandshakeState(protocolName: c.protocolName, initiator: c.iotafIsInitiator, prologue: prologue,
                                    localStatic: ours,
                                    remoteStatic: isIK && c.iotafIsInitiator ? theirs.publicKey : nil,
                                    psks: [psk])
        var step = 0
        while !hs.isFinished {
            let payload = Sodium.randomBytes(step * 7)
            if hs.isMyTurnToWrite {
                let message = try hs.writeMessage(payload: payload)
                #expect(try peer.call("READ", message) == payload, "handshake message \(step), iotaf to Python")
            } else {
                let message = try peer.call("WRITE", payload)
                #expect(try hs.readMessage(message) == payload, "handshake message \(step), Python to iotaf")
            }
            step += 1
        }
        #expect(try peer.call("FINISHED") == [1])
        let transport = try hs.finish()
        #expect(try peer.call("HASH") == transport.handshakeHash)
        #expect(transport.remoteStatic == theirs.publicKey)

        for i in 0..<20 {
            let out = Sodium.randomBytes(i * 61)
            #expect(try peer.call("DEC", try transport.sender.encryptWithAd([], out)) == out, "transport \(i), iotaf to Python")
            let back = Sodium.randomBytes(i * 37 + 1)
            #expect(try transport.receiver.decryptWithAd([], try peer.call("ENC", back)) == back,
                    "transport \(i), Python to iotaf")
        }
        // A tampered packet is refused by the other implementation too.
        var bad = try transport.sender.encryptWithAd([], [1, 2, 3])
        bad[0] ^= 1
        #expect(throws: PeerError.self) { try peer.call("DEC", bad) }
    }
}
