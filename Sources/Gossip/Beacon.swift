import MeshCore
import Sodium

/// The `nearest` mode's LAN beacon: "a node of network N listens on port P at the address this
/// datagram came from". Unauthenticated on purpose: it only tells a node where to start a Noise
/// handshake, and the handshake proves who answers. One canonical encoding (Docs/encoding.md):
///
///     magic "iotb" (4) | version (1) = 1 | network tag (8) | port (2, big-endian) | nonce (8)
///
/// 23 bytes, nothing else. The network tag keeps nodes of other meshes on the same LAN from
/// handshaking with us without putting the network id itself on the wire; the nonce, random per
/// process, lets a node drop its own beacons (multicast loops back to the sender's host).
public struct Beacon: Equatable, Sendable {
    public static let magic: [UInt8] = Array("iotb".utf8)
    public static let version: UInt8 = 1
    public static let length = 23

    public var networkTag: [UInt8]
    /// The port the sender's node socket listens on (the beacon's source port is the beacon port).
    public var port: UInt16
    public var nonce: UInt64

    public init(networkTag: [UInt8], port: UInt16, nonce: UInt64) {
        precondition(networkTag.count == 8, "a network tag is 8 bytes")
        self.networkTag = networkTag
        self.port = port
        self.nonce = nonce
    }

    /// The first 8 bytes of BLAKE2b-128 keyed with "iotaf beacon v1" over the 16-byte network id.
    public static func networkTag(_ network: NetworkID) -> [UInt8] {
        Array(Blake2b.hash(network.bytes, outputLength: 16, key: Array("iotaf beacon v1".utf8)).prefix(8))
    }

    public func encoded() -> [UInt8] {
        var out = Self.magic
        out.reserveCapacity(Self.length)
        out.append(Self.version)
        out += networkTag
        out.append(UInt8(port >> 8))
        out.append(UInt8(port & 0xff))
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((nonce >> UInt64(shift)) & 0xff)) }
        return out
    }

    /// Decodes exactly one version-1 beacon; anything else is refused with the reason it is counted under.
    public static func decode(_ bytes: [UInt8]) -> Result<Beacon, BeaconDropReason> {
        guard bytes.count >= magic.count + 1 else { return .failure(.truncated) }
        guard Array(bytes[0..<4]) == magic else { return .failure(.badMagic) }
        guard bytes[4] == version else { return .failure(.badVersion) }
        guard bytes.count >= length else { return .failure(.truncated) }
        guard bytes.count == length else { return .failure(.trailingBytes) }
        let port = UInt16(bytes[13]) << 8 | UInt16(bytes[14])
        guard port != 0 else { return .failure(.badPort) }
        var nonce: UInt64 = 0
        for b in bytes[15..<23] { nonce = nonce << 8 | UInt64(b) }
        return .success(Beacon(networkTag: Array(bytes[5..<13]), port: port, nonce: nonce))
    }

    /// What a node does with a received datagram: the beacon to act on, or why it is dropped
    /// (malformed, its own, or of another network).
    public static func accept(_ bytes: [UInt8], networkTag: [UInt8], ownNonce: UInt64) -> Result<Beacon, BeaconDropReason> {
        decode(bytes).flatMap { b in
            if b.nonce == ownNonce { return .failure(.own) }
            if b.networkTag != networkTag { return .failure(.otherNetwork) }
            return .success(b)
        }
    }
}

/// Why a received beacon was not handed to the node (counted in `iotaf status`, `beacon_drops`).
public enum BeaconDropReason: String, Error, CaseIterable, Sendable {
    case truncated
    case badMagic = "bad_magic"
    case badVersion = "bad_version"
    case trailingBytes = "trailing_bytes"
    case badPort = "bad_port"
    /// A well-formed beacon of another mesh on the same LAN.
    case otherNetwork = "other_network"
    /// Our own beacon, looped back.
    case own
    /// Over the budget of beacons handed to the node per second (a flood on the LAN).
    case rateLimited = "rate_limited"
    /// From an address family or source a node cannot be reached at (IPv4, unspecified).
    case badSource = "bad_source"
}
