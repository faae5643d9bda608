import Sodium

/// The keys a session layer derives from the mesh's 32-byte network key.
///
/// The network key itself is never used as a key: each use gets its own labelled derivation, so
/// a leak or misuse of one (say the mac1 key, which every packet exposes to offline guessing)
/// tells nothing about the others. The KDF is keyed BLAKE2b-256 with the network key as the key
/// and an ASCII label as the message:
///
///     psk       = BLAKE2b-256(key: networkKey, "iotaf/sessions/v1/psk")
///     mac1Key   = BLAKE2b-256(key: networkKey, "iotaf/sessions/v1/mac1")
///     cookieKey = BLAKE2b-256(key: networkKey, "iotaf/sessions/v1/cookie")
///
/// A reference type so that the keys are wiped exactly once, when the last owner lets go.
public final class NetworkSecrets: @unchecked Sendable {
    /// The Noise pre-shared key (psk3 in XXpsk3, psk2 in IKpsk2).
    public private(set) var psk: [UInt8]
    /// Keys mac1, the pre-filter every handshake message carries.
    public private(set) var mac1Key: [UInt8]
    /// Encrypts cookie replies, so only members can read a cookie.
    public private(set) var cookieKey: [UInt8]

    public static let networkKeyLength = 32

    /// Derives the keys; throws if the network key is not 32 bytes.
    public init(networkKey: [UInt8]) throws {
        guard networkKey.count == Self.networkKeyLength else {
            throw SessionConfigError.badNetworkKey(networkKey.count)
        }
        psk = Self.derive(networkKey, label: "psk")
        mac1Key = Self.derive(networkKey, label: "mac1")
        cookieKey = Self.derive(networkKey, label: "cookie")
    }

    /// The labelled KDF: keyed BLAKE2b-256 of `iotaf/sessions/v1/LABEL` under the network key.
    public static func derive(_ networkKey: [UInt8], label: String) -> [UInt8] {
        Blake2b.hash(Array("iotaf/sessions/v1/\(label)".utf8), outputLength: 32, key: networkKey)
    }

    deinit {
        Sodium.zero(&psk)
        Sodium.zero(&mac1Key)
        Sodium.zero(&cookieKey)
    }
}

/// A configuration the session layer cannot start with.
public enum SessionConfigError: Error, Equatable, CustomStringConvertible {
    case badNetworkKey(Int)
    case badIdentity(String)

    public var description: String {
        switch self {
        case let .badNetworkKey(n): return "network key must be 32 bytes, got \(n); run `iotaf network init` to make one"
        case let .badIdentity(why): return "node identity unusable as a Noise static key: \(why)"
        }
    }
}
