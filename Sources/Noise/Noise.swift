/// Noise Protocol Framework (revision 34) over libsodium. See Docs/noise.md.
///
/// The module is sans-IO: it turns bytes into bytes and never touches a socket or a clock, so the
/// node state machine, the simulator and the test vectors all drive the same code.
///
/// Layers, as the specification names them:
/// - ``CipherState``: one AEAD key and its nonce counter (plus an explicit-nonce API for transports
///   that carry their own counter on a lossy network).
/// - ``SymmetricState``: the chaining key and handshake hash.
/// - ``HandshakeState``: runs a ``HandshakePattern`` parsed from the protocol name.
/// - ``ReplayWindow``: the sliding window that explicit counters need.

/// Why a Noise operation refused to go on. Garbled input never crashes: it ends up here.
public enum NoiseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The protocol name does not follow `Noise_PATTERN_DH_CIPHER_HASH`.
    case invalidProtocolName(String)
    /// A pattern name, modifier or primitive this implementation does not know.
    case unsupported(String)
    /// A key the pattern needs was not given (for example the responder's static key for IK).
    case missingKey(String)
    /// A key of the wrong length, or a Diffie-Hellman result that libsodium refused (low order).
    case invalidKey(String)
    /// The message ends before the pattern says it should.
    case truncated(String)
    /// Authentication failed: wrong key, wrong psk or tampered bytes.
    case decryptionFailed
    /// Noise messages are limited to 65535 bytes.
    case messageTooLong(Int)
    /// The nonce reached 2^64-1, which the specification reserves; the key must be replaced.
    case nonceExhausted
    /// writeMessage/readMessage called out of turn, or after the handshake finished.
    case wrongState(String)

    public var description: String {
        switch self {
        case let .invalidProtocolName(name): return "invalid Noise protocol name \"\(name)\""
        case let .unsupported(what): return "unsupported Noise feature: \(what)"
        case let .missingKey(what): return "missing key: \(what)"
        case let .invalidKey(why): return "invalid key: \(why)"
        case let .truncated(what): return "truncated Noise message: \(what)"
        case .decryptionFailed: return "Noise decryption failed (wrong key or psk, or tampered message)"
        case let .messageTooLong(n): return "Noise message of \(n) bytes exceeds 65535"
        case .nonceExhausted: return "Noise nonce exhausted; rekey or start a new session"
        case let .wrongState(why): return "Noise handshake used out of order: \(why)"
        }
    }
}

/// The specification's limit on every Noise message, handshake or transport.
public let noiseMaxMessageLength = 65535
