/// One token of a handshake message pattern (spec section 7.1).
public enum NoiseToken: String, Sendable, Equatable {
    case e, s, ee, es, se, ss, psk
}

/// A handshake pattern: pre-messages plus alternating message patterns, the first sent by the
/// initiator. Built from a pattern name such as `XXpsk3`, `X1K1` or `NXpsk0+psk1+psk2`.
public struct HandshakePattern: Sendable, Equatable {
    public let name: String
    public let initiatorPreMessage: [NoiseToken]
    public let responderPreMessage: [NoiseToken]
    public let messages: [[NoiseToken]]

    /// One-way patterns (N, K, X) have a single message and then only the initiator sends.
    public var isOneWay: Bool { messages.count == 1 }

    /// With a psk modifier every `e` token is also mixed into the key (section 9.2).
    public var hasPSK: Bool { messages.contains { $0.contains(.psk) } }

    public var pskCount: Int { messages.reduce(0) { $0 + $1.filter { $0 == .psk }.count } }

    public init(name: String, initiatorPreMessage: [NoiseToken], responderPreMessage: [NoiseToken],
                messages: [[NoiseToken]]) {
        self.name = name
        self.initiatorPreMessage = initiatorPreMessage
        self.responderPreMessage = responderPreMessage
        self.messages = messages
    }

    /// Parses a pattern name: a base pattern (fundamental or deferred) followed by modifiers
    /// joined with `+`. Only `pskN` modifiers are supported.
    public init(parsing name: String) throws {
        guard let firstLower = name.firstIndex(where: { $0.isLowercase }) else {
            self = try Self.base(name, fullName: name)
            return
        }
        let baseName = String(name[..<firstLower])
        var pattern = try Self.base(baseName, fullName: name)
        var messages = pattern.messages
        for modifier in name[firstLower...].split(separator: "+", omittingEmptySubsequences: false) {
            guard modifier.hasPrefix("psk"), let n = Int(modifier.dropFirst(3)), String(n) == modifier.dropFirst(3) else {
                throw NoiseError.unsupported("pattern modifier \"\(modifier)\" in \(name)")
            }
            if n == 0 {
                messages[0].insert(.psk, at: 0)
            } else if n <= messages.count {
                messages[n - 1].append(.psk)
            } else {
                throw NoiseError.invalidProtocolName("\(name): psk\(n) but the pattern has \(messages.count) messages")
            }
        }
        pattern = HandshakePattern(name: name, initiatorPreMessage: pattern.initiatorPreMessage,
                                   responderPreMessage: pattern.responderPreMessage, messages: messages)
        self = pattern
    }

    private static func base(_ baseName: String, fullName: String) throws -> HandshakePattern {
        guard let pattern = basePatterns[baseName] else {
            throw NoiseError.unsupported("handshake pattern \"\(baseName)\" in \(fullName)")
        }
        return pattern
    }

    /// The table below, parsed once: a handshake should not re-parse token strings.
    private static let basePatterns: [String: HandshakePattern] = {
        func tokens(_ text: String) -> [NoiseToken] {
            text.split(separator: ",").compactMap { NoiseToken(rawValue: String($0.filter { $0 != " " })) }
        }
        return Dictionary(uniqueKeysWithValues: patternTable.map { name, spec in
            (name, HandshakePattern(name: name, initiatorPreMessage: tokens(spec.0),
                                    responderPreMessage: tokens(spec.1), messages: spec.2.map(tokens)))
        })
    }()

    /// All base patterns of sections 7.4, 7.5 and 18 (deferred): (initiator pre-message,
    /// responder pre-message, messages alternating from the initiator).
    static let patternTable: [String: (String, String, [String])] = [
        // One-way.
        "N": ("", "s", ["e, es"]),
        "K": ("s", "s", ["e, es, ss"]),
        "X": ("", "s", ["e, es, s, ss"]),
        // Fundamental interactive.
        "NN": ("", "", ["e", "e, ee"]),
        "NK": ("", "s", ["e, es", "e, ee"]),
        "NX": ("", "", ["e", "e, ee, s, es"]),
        "KN": ("s", "", ["e", "e, ee, se"]),
        "KK": ("s", "s", ["e, es, ss", "e, ee, se"]),
        "KX": ("s", "", ["e", "e, ee, se, s, es"]),
        "XN": ("", "", ["e", "e, ee", "s, se"]),
        "XK": ("", "s", ["e, es", "e, ee", "s, se"]),
        "XX": ("", "", ["e", "e, ee, s, es", "s, se"]),
        "IN": ("", "", ["e, s", "e, ee, se"]),
        "IK": ("", "s", ["e, es, s, ss", "e, ee, se"]),
        "IX": ("", "", ["e, s", "e, ee, se, s, es"]),
        // Deferred.
        "NK1": ("", "s", ["e", "e, ee, es"]),
        "NX1": ("", "", ["e", "e, ee, s", "es"]),
        "X1N": ("", "", ["e", "e, ee", "s", "se"]),
        "X1K": ("", "s", ["e, es", "e, ee", "s", "se"]),
        "XK1": ("", "s", ["e", "e, ee, es", "s, se"]),
        "X1K1": ("", "s", ["e", "e, ee, es", "s", "se"]),
        "X1X": ("", "", ["e", "e, ee, s, es", "s", "se"]),
        "XX1": ("", "", ["e", "e, ee, s", "es, s, se"]),
        "X1X1": ("", "", ["e", "e, ee, s", "es, s", "se"]),
        "K1N": ("s", "", ["e", "e, ee", "se"]),
        "K1K": ("s", "s", ["e, es", "e, ee", "se"]),
        "KK1": ("s", "s", ["e", "e, ee, se, es"]),
        "K1K1": ("s", "s", ["e", "e, ee, es", "se"]),
        "K1X": ("s", "", ["e", "e, ee, s, es", "se"]),
        "KX1": ("s", "", ["e", "e, ee, se, s", "es"]),
        "K1X1": ("s", "", ["e", "e, ee, s", "se, es"]),
        "I1N": ("", "", ["e, s", "e, ee", "se"]),
        "I1K": ("", "s", ["e, es, s", "e, ee", "se"]),
        "IK1": ("", "s", ["e, s", "e, ee, se, es"]),
        "I1K1": ("", "s", ["e, s", "e, ee, es", "se"]),
        "I1X": ("", "", ["e, s", "e, ee, s, es", "se"]),
        "IX1": ("", "", ["e, s", "e, ee, se, s", "es"]),
        "I1X1": ("", "", ["e, s", "e, ee, s", "se, es"]),
    ]
}

/// A full protocol name, `Noise_PATTERN_DH_CIPHER_HASH`, split into its parts.
public struct NoiseProtocol: Sendable, Equatable {
    public let name: String
    public let pattern: HandshakePattern
    public let dh: NoiseDH
    public let cipher: NoiseCipher
    public let hash: NoiseHash

    public init(name: String) throws {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[0] == "Noise", !parts[1].isEmpty else {
            throw NoiseError.invalidProtocolName(name)
        }
        guard let dh = NoiseDH(rawValue: parts[2]) else { throw NoiseError.unsupported("DH function \(parts[2])") }
        guard let cipher = NoiseCipher(rawValue: parts[3]) else { throw NoiseError.unsupported("cipher \(parts[3])") }
        guard let hash = NoiseHash(rawValue: parts[4]) else { throw NoiseError.unsupported("hash \(parts[4])") }
        self.name = name
        self.pattern = try HandshakePattern(parsing: parts[1])
        self.dh = dh
        self.cipher = cipher
        self.hash = hash
    }
}
