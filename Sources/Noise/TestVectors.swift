import MeshCore
import Foundation

/// Runs the public Noise test vectors (the cacophony and snow JSON format, `{"vectors": [...]}`).
/// Lives in the module, not in the tests, so `iotaf noise vectors` and the test suite share it.
public enum NoiseTestVectors {
    /// One vector. Older noise-c files call the protocol `name`; that is accepted too.
    public struct Vector: Decodable, Sendable {
        public struct Message: Decodable, Sendable {
            public let payload: String
            public let ciphertext: String
        }

        public let protocolName: String
        public let initPrologue: String?
        public let initPSKs: [String]?
        public let initStatic: String?
        public let initEphemeral: String?
        public let initRemoteStatic: String?
        public let respPrologue: String?
        public let respPSKs: [String]?
        public let respStatic: String?
        public let respEphemeral: String?
        public let respRemoteStatic: String?
        /// Absent from snow's file; checked when present.
        public let handshakeHash: String?
        public let messages: [Message]

        enum CodingKeys: String, CodingKey {
            case protocolName = "protocol_name", name
            case initPrologue = "init_prologue", initPSKs = "init_psks", initStatic = "init_static"
            case initEphemeral = "init_ephemeral", initRemoteStatic = "init_remote_static"
            case respPrologue = "resp_prologue", respPSKs = "resp_psks", respStatic = "resp_static"
            case respEphemeral = "resp_ephemeral", respRemoteStatic = "resp_remote_static"
            case handshakeHash = "handshake_hash", messages
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let name = try c.decodeIfPresent(String.self, forKey: .protocolName) {
                protocolName = name
            } else {
                protocolName = try c.decode(String.self, forKey: .name)
            }
            initPrologue = try c.decodeIfPresent(String.self, forKey: .initPrologue)
            initPSKs = try c.decodeIfPresent([String].self, forKey: .initPSKs)
            initStatic = try c.decodeIfPresent(String.self, forKey: .initStatic)
            initEphemeral = try c.decodeIfPresent(String.self, forKey: .initEphemeral)
            initRemoteStatic = try c.decodeIfPresent(String.self, forKey: .initRemoteStatic)
            respPrologue = try c.decodeIfPresent(String.self, forKey: .respPrologue)
            respPSKs = try c.decodeIfPresent([String].self, forKey: .respPSKs)
            respStatic = try c.decodeIfPresent(String.self, forKey: .respStatic)
            respEphemeral = try c.decodeIfPresent(String.self, forKey: .respEphemeral)
            respRemoteStatic = try c.decodeIfPresent(String.self, forKey: .respRemoteStatic)
            handshakeHash = try c.decodeIfPresent(String.self, forKey: .handshakeHash)
            messages = try c.decode([Message].self, forKey: .messages)
        }
    }

    private struct File: Decodable {
        let vectors: [Vector]
    }

    public enum Outcome: Sendable, Equatable {
        case passed
        case failed(String)
        case skipped(String)
    }

    /// Totals for one or more files, with the reason for every failure and skip.
    public struct Report: Sendable {
        public var passed = 0
        public var failed = 0
        public var skipped = 0
        /// (protocol name, reason) for each failed vector.
        public var failures: [(String, String)] = []
        /// How many vectors were skipped for each reason.
        public var skipReasons: [String: Int] = [:]

        public init() {}

        public mutating func add(_ name: String, _ outcome: Outcome) {
            switch outcome {
            case .passed: passed += 1
            case let .failed(why):
                failed += 1
                failures.append((name, why))
            case let .skipped(why):
                skipped += 1
                skipReasons[why, default: 0] += 1
            }
        }

        /// The summary line scripts look for.
        public var summary: String { "\(passed) passed, \(failed) failed, \(skipped) skipped" }
    }

    public enum LoadError: Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case malformed(path: String, reason: String)

        public var description: String {
            switch self {
            case let .unreadable(path, reason): return "cannot read vector file \(path): \(reason)"
            case let .malformed(path, reason): return "vector file \(path) is not Noise vector JSON: \(reason)"
            }
        }
    }

    public static func load(path: String) throws -> [Vector] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw LoadError.unreadable(path: path, reason: error.localizedDescription)
        }
        do {
            return try JSONDecoder().decode(File.self, from: data).vectors
        } catch {
            throw LoadError.malformed(path: path, reason: "\(error)")
        }
    }

    public static func run(file path: String) throws -> Report {
        var report = Report()
        for vector in try load(path: path) {
            report.add(vector.protocolName, run(vector))
        }
        return report
    }

    /// Why a vector's suite is out of scope, or nil when this implementation should pass it.
    public static func skipReason(_ protocolName: String) -> String? {
        let parts = protocolName.split(separator: "_").map(String.init)
        guard parts.count == 5, parts[0] == "Noise" else { return "not a revision-34 Noise name" }
        if NoiseDH(rawValue: parts[2]) == nil { return "DH \(parts[2]) unsupported (libsodium has no X448)" }
        guard let cipher = NoiseCipher(rawValue: parts[3]) else { return "cipher \(parts[3]) unsupported" }
        if !cipher.isAvailable { return "AESGCM unavailable on this CPU" }
        if NoiseHash(rawValue: parts[4]) == nil { return "hash \(parts[4]) unsupported (libsodium has no BLAKE2s)" }
        return nil
    }

    /// Runs one vector: both sides are built from it, every handshake message must match byte
    /// for byte, and then the transport messages (alternating, or all from the initiator for a
    /// one-way pattern).
    public static func run(_ v: Vector) -> Outcome {
        if let reason = skipReason(v.protocolName) { return .skipped(reason) }
        do {
            func bytes(_ hex: String?, _ what: String) throws -> [UInt8]? {
                guard let hex else { return nil }
                guard let b = Hex.decode(hex) else { throw VectorError("\(what) is not hex") }
                return b
            }
            func pair(_ hex: String?, _ what: String) throws -> DHKeyPair? {
                try bytes(hex, what).map { try DHKeyPair(secretKey: $0) }
            }
            func source(_ key: [UInt8]?) -> () -> [UInt8] {
                { key ?? [] }
            }
            let initiator = try HandshakeState(
                protocolName: v.protocolName, initiator: true, prologue: try bytes(v.initPrologue, "init_prologue") ?? [],
                localStatic: try pair(v.initStatic, "init_static"),
                remoteStatic: try bytes(v.initRemoteStatic, "init_remote_static"),
                psks: try (v.initPSKs ?? []).map { try bytes($0, "init_psks")! },
                ephemeralSource: source(try bytes(v.initEphemeral, "init_ephemeral")))
            let responder = try HandshakeState(
                protocolName: v.protocolName, initiator: false, prologue: try bytes(v.respPrologue, "resp_prologue") ?? [],
                localStatic: try pair(v.respStatic, "resp_static"),
                remoteStatic: try bytes(v.respRemoteStatic, "resp_remote_static"),
                psks: try (v.respPSKs ?? []).map { try bytes($0, "resp_psks")! },
                ephemeralSource: source(try bytes(v.respEphemeral, "resp_ephemeral")))

            var initTransport: NoiseTransport?
            var respTransport: NoiseTransport?
            for (i, message) in v.messages.enumerated() {
                guard let payload = Hex.decode(message.payload), let expected = Hex.decode(message.ciphertext) else {
                    throw VectorError("message \(i) is not hex")
                }
                let got: [UInt8]
                let read: [UInt8]
                if !initiator.isFinished {
                    let (writer, reader) = initiator.isMyTurnToWrite ? (initiator, responder) : (responder, initiator)
                    got = try writer.writeMessage(payload: payload)
                    guard got == expected else { return .failed("handshake message \(i) differs") }
                    read = try reader.readMessage(got)
                    if initiator.isFinished {
                        initTransport = try initiator.finish()
                        respTransport = try responder.finish()
                        if let hh = v.handshakeHash, Hex.decode(hh) != initTransport?.handshakeHash {
                            return .failed("handshake hash differs")
                        }
                        guard initTransport?.handshakeHash == respTransport?.handshakeHash else {
                            return .failed("the two sides' handshake hashes differ")
                        }
                    }
                } else {
                    guard let it = initTransport, let rt = respTransport else { throw VectorError("no transport") }
                    let initiatorSends = initiator.pattern.isOneWay || i % 2 == 0
                    let (send, receive) = initiatorSends ? (it.sender, rt.receiver) : (rt.sender, it.receiver)
                    got = try send.encryptWithAd([], payload)
                    guard got == expected else { return .failed("transport message \(i) differs") }
                    read = try receive.decryptWithAd([], got)
                }
                guard read == payload else { return .failed("message \(i): payload read back differs") }
            }
            return .passed
        } catch {
            return .failed("\(error)")
        }
    }

    private struct VectorError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
