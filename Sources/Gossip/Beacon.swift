import MeshCore
import Sodium

/// The `nearest` mode's LAN beacon in the open default network: "a node of network N listens on
/// port P at the address this datagram came from". Unauthenticated on purpose: the open network's
/// key is public, so a MAC would prove nothing; the beacon only tells a node where to start a
/// Noise handshake, and the handshake proves who answers. A private mesh's beacon is sealed
/// (`PrivateBeacon`). One canonical encoding (Docs/encoding.md):
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
        // A private mesh's beacon (`PrivateBeacon`) is another network's, whatever it hides.
        if bytes.count == PrivateBeacon.length, bytes.count > 4, Array(bytes[0..<4]) == magic, bytes[4] == PrivateBeacon.version {
            return .failure(.otherNetwork)
        }
        return decode(bytes).flatMap { b in
            if b.nonce == ownNonce { return .failure(.own) }
            if b.networkTag != networkTag { return .failure(.otherNetwork) }
            return .success(b)
        }
    }
}

/// The LAN beacon of a private mesh (one with its own network key): the same announcement, but
/// sealed under a key derived from the network key, so a stranger on the LAN learns neither the
/// mesh, the port nor the sender's per-process nonce, and cannot forge one; and dated, so a
/// recorded beacon is refused once it is older than `window` or heard a second time. One
/// canonical encoding (Docs/encoding.md):
///
///     magic "iotb" (4) | version (1) = 2 | sent at (8, Unix ms, BE) | salt (4, random)
///       | ChaCha20-Poly1305(port (2, BE) | nonce (8)) (10) | tag (16)
///
/// 43 bytes. The AEAD key is BLAKE2b-256 keyed with the network key over
/// "iotaf beacon v2" || network id; its nonce is sent-at || salt; the 17-byte header is the
/// associated data. The open network's beacons stay version 1 (`Beacon`): its key is public.
public enum PrivateBeacon {
    public static let version: UInt8 = 2
    public static let length = 43
    static let headerLength = 17
    /// How far a beacon's date may be from the receiver's clock, either way. Nodes of a private
    /// mesh on one LAN need clocks within this of each other (NTP, or an RTC) to find each other
    /// by beacon.
    public static let window: Duration = .seconds(30)

    public static func key(network: NetworkID, networkKey: [UInt8]) -> [UInt8] {
        Blake2b.hash(Array("iotaf beacon v2".utf8) + network.bytes, outputLength: 32, key: networkKey)
    }

    public static func seal(port: UInt16, nonce: UInt64, sentAtMs: UInt64, salt: [UInt8], key: [UInt8]) -> [UInt8] {
        precondition(salt.count == 4, "a beacon salt is 4 bytes")
        var header = ByteWriter(capacity: length)
        header.raw(Beacon.magic)
        header.u8(version)
        header.u64(sentAtMs)
        header.raw(salt)
        var body = ByteWriter(capacity: 10)
        body.u16(port)
        body.u64(nonce)
        let aeadNonce = Array(header.bytes[5..<17])
        return header.bytes + ChaChaPoly.seal(key: key, nonce: aeadNonce, associatedData: header.bytes, plaintext: body.bytes)
    }

    /// What one authenticated private beacon says.
    public struct Opened: Equatable, Sendable {
        public var port: UInt16
        public var nonce: UInt64
        public var sentAtMs: UInt64
        public var salt: [UInt8]
    }

    /// Opens a private beacon: malformed, of another key (a stranger, or an open-network
    /// beacon), or altered, it is refused before anything in it is read.
    public static func open(_ bytes: [UInt8], key: [UInt8]) -> Result<Opened, BeaconDropReason> {
        guard bytes.count >= Beacon.magic.count + 1 else { return .failure(.truncated) }
        guard Array(bytes[0..<4]) == Beacon.magic else { return .failure(.badMagic) }
        // A version-1 beacon carries no MAC: in a private mesh it is a stranger's.
        guard bytes[4] == version else { return .failure(bytes[4] == Beacon.version ? .unauthenticated : .badVersion) }
        guard bytes.count >= length else { return .failure(.truncated) }
        guard bytes.count == length else { return .failure(.trailingBytes) }
        let header = Array(bytes[0..<headerLength])
        guard let body = try? ChaChaPoly.open(key: key, nonce: Array(bytes[5..<17]), associatedData: header, ciphertext: Array(bytes[headerLength...])) else {
            return .failure(.unauthenticated)
        }
        var r = ByteReader(body)
        var h = ByteReader(Array(bytes[5..<13]))
        guard let port = try? r.u16(), let nonce = try? r.u64(), let sentAt = try? h.u64() else { return .failure(.truncated) }
        guard port != 0 else { return .failure(.badPort) }
        return .success(Opened(port: port, nonce: nonce, sentAtMs: sentAt, salt: Array(bytes[13..<17])))
    }

    /// What a private-mesh node does with a received datagram: the beacon to act on, or why it
    /// is dropped (malformed, a stranger's, dated outside the window, heard before, its own).
    /// `nowMs` is the receiver's Unix clock in milliseconds.
    public static func accept(_ bytes: [UInt8], key: [UInt8], ownNonce: UInt64, nowMs: UInt64, replay: inout BeaconReplayGuard) -> Result<Beacon, BeaconDropReason> {
        open(bytes, key: key).flatMap { o in
            if o.nonce == ownNonce { return .failure(.own) }
            let window = UInt64(window.nanoseconds / 1_000_000)
            let skew = o.sentAtMs > nowMs ? o.sentAtMs - nowMs : nowMs - o.sentAtMs
            if skew > window { return .failure(.stale) }
            if let refused = replay.admit(sentAtMs: o.sentAtMs, salt: o.salt, nowMs: nowMs) { return .failure(refused) }
            return .success(Beacon(networkTag: [UInt8](repeating: 0, count: 8), port: o.port, nonce: o.nonce))
        }
    }
}

/// The private beacons heard within the window (their date and salt), so each is acted on once:
/// a replay inside the window is `replayed`, one outside it is `stale`. Bounded: past `capacity`
/// live entries (a flood of valid beacons, which only key holders can make) new ones are refused
/// as `rateLimited` until old ones expire.
public struct BeaconReplayGuard: Sendable {
    public static let capacity = 4096
    private var seen: Set<[UInt8]> = []
    private var order: [(key: [UInt8], sentAtMs: UInt64)] = []
    private var head = 0

    public init() {}

    public var count: Int { seen.count }

    public mutating func admit(sentAtMs: UInt64, salt: [UInt8], nowMs: UInt64) -> BeaconDropReason? {
        // Forget what has left the window: a beacon that old is refused as stale anyway.
        let window = UInt64(PrivateBeacon.window.nanoseconds / 1_000_000)
        while head < order.count, order[head].sentAtMs + window < nowMs {
            seen.remove(order[head].key)
            head += 1
        }
        if head > 1024, head * 2 > order.count { order.removeFirst(head); head = 0 }
        var w = ByteWriter(capacity: 12)
        w.u64(sentAtMs)
        w.raw(salt)
        let key = w.bytes
        if seen.contains(key) { return .replayed }
        guard seen.count < Self.capacity else { return .rateLimited }
        seen.insert(key)
        // Kept in arrival order; a beacon dated later than one after it expires a little late,
        // which only keeps it refused longer.
        order.append((key, sentAtMs))
        return nil
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
    /// Private mesh: no valid MAC under the network key (a stranger, an open-network beacon, or altered).
    case unauthenticated
    /// Private mesh: dated more than `PrivateBeacon.window` from this node's clock.
    case stale
    /// Private mesh: heard before within the window (a recorded beacon played again).
    case replayed
}
