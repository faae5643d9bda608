import CLibuv
import Logging
import Gossip
import MeshCore
import Sodium
#if canImport(Glibc)
import Glibc
#endif

/// `[gossip] beacon_*`: where and how often a `nearest` node announces itself on its links.
public struct BeaconSettings: Sendable, Equatable {
    /// ff02::7a0f, a link-local group unassigned in IANA's IPv6 multicast registry: routers never
    /// forward it, so beacons stay on the link they were sent on.
    public static let group: [UInt8] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7a, 0x0f]
    public static let groupText = "ff02::7a0f"
    public static let defaultPort: UInt16 = 7399

    /// The UDP port beacons are sent to and received on (the same on every node of a LAN).
    public var port = BeaconSettings.defaultPort
    /// Mean time between beacons; each wait is drawn from 75–125 % of it.
    public var interval: Duration = .seconds(2)
    /// Interface names to beacon on; empty: every interface that is up, multicast-capable and has
    /// an IPv6 address (rescanned every beacon, so links that come up later are joined).
    public var interfaces: [String] = []

    public init() {}

    /// The accepted beacon intervals: at least 100 ms (a LAN beacon storm is not discovery), at
    /// most an hour.
    public static func interval(milliseconds: Int) -> Duration? {
        (100...3_600_000).contains(milliseconds) ? .milliseconds(milliseconds) : nil
    }

    /// What Linux accepts as an interface name: 1–15 bytes, no whitespace, '/', ':' or '%'.
    public static func isInterfaceName(_ name: String) -> Bool {
        let u = Array(name.utf8)
        return (1...15).contains(u.count) && !u.contains { $0 <= 0x20 || $0 == 0x2f || $0 == 0x25 || $0 == 0x3a || $0 == 0x7f }
    }
}

/// The multicast beacon of mode `nearest` on the libuv loop: its own UDP socket on
/// [::]:beacon_port (SO_REUSEADDR, so several nodes on one host can share the port), joined to
/// `BeaconSettings.group` on each chosen interface. It sends a `Beacon` per interface every
/// interval (with jitter, so a LAN that powered up together does not beacon in lockstep) and hands
/// the node every valid beacon's source address with the advertised port; everything else is a
/// counted drop.
final class MulticastBeacon {
    private let handle: UnsafeMutablePointer<uv_udp_t>
    private let receiveBuffer: UnsafeMutableRawBufferPointer
    private let loop: EventLoop
    private let settings: BeaconSettings
    private let logger: Logger
    private var timer: LoopTimer!
    private let encoded: [UInt8]
    private let networkTag: [UInt8]
    private let nonce: UInt64
    private let advertisedPort: UInt16
    /// A private mesh's beacon key (`PrivateBeacon.key`); nil in the open network, whose beacons
    /// are plain (`Beacon`).
    private let privateKey: [UInt8]?
    private var replay = BeaconReplayGuard()
    private var onHeard: (UnderlayAddress) -> Void
    /// Interfaces joined to the group: index → name, kept in index order for the send loop.
    private(set) var joined: [(index: UInt32, name: String)] = []
    private var missingWarned: Set<String> = []
    private var sendWarned: Set<UInt32> = []
    private var closed = false

    private(set) var sent: UInt64 = 0
    private(set) var heard: UInt64 = 0
    private(set) var sendErrors: UInt64 = 0
    private(set) var joinErrors: UInt64 = 0
    private(set) var drops: [BeaconDropReason: UInt64] = [:]

    /// Beacons handed to the node: at most `rate` per second, in bursts of at most `burst`.
    private static let rate = 32.0
    private static let burst = 64.0
    private var tokens = MulticastBeacon.burst
    private var tokensAt: Instant

    static let receiveBufferSize = 512

    /// Binds the beacon socket; `advertisedPort` is the node socket's port. With `networkKey`
    /// (a private mesh) beacons are sealed, dated and checked against replays (`PrivateBeacon`).
    init(loop: EventLoop, settings: BeaconSettings, network: NetworkID, networkKey: [UInt8]?, advertisedPort: UInt16, logger: Logger,
         onHeard: @escaping (UnderlayAddress) -> Void) throws {
        self.advertisedPort = advertisedPort
        privateKey = networkKey.map { PrivateBeacon.key(network: network, networkKey: $0) }
        self.loop = loop
        self.settings = settings
        self.logger = logger
        self.onHeard = onHeard
        networkTag = Beacon.networkTag(network)
        var n: UInt64 = 0
        for b in Sodium.randomBytes(8) { n = n << 8 | UInt64(b) }
        nonce = n
        encoded = Beacon(networkTag: networkTag, port: advertisedPort, nonce: n).encoded()
        tokensAt = loop.now
        handle = .allocate(capacity: 1)
        uv_udp_init_ex(loop.raw, handle, UInt32(AF_INET6))
        receiveBuffer = .allocate(byteCount: Self.receiveBufferSize, alignment: 16)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var sa = UDPSocket.sockaddr6(UnderlayAddress(ip: [UInt8](repeating: 0, count: 16), port: settings.port))
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_bind(handle, $0, UInt32(UV_UDP_REUSEADDR.rawValue)) }
        }
        guard rc == 0 else {
            close()
            throw RuntimeError("\(UVError(code: rc, operation: "binding the beacon socket to [::]:\(settings.port)")); set another [gossip] beacon_port (--beacon-port), the same on every node of the LAN")
        }
        timer = LoopTimer(loop: loop) { [unowned self] in self.tick() }
    }

    /// Joins the group on the chosen interfaces, starts receiving and sends the first beacon now.
    func start() throws {
        let rc = uv_udp_recv_start(handle, { h, _, buf in
            let b = Unmanaged<MulticastBeacon>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            buf!.pointee = uv_buf_init(b.receiveBuffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(MulticastBeacon.receiveBufferSize))
        }, { h, nread, buf, addr, flags in
            guard nread >= 0, let addr else { return }
            let b = Unmanaged<MulticastBeacon>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            let bytes = Array(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
            b.received(bytes, from: UDPSocket.address(from: addr), partial: flags & UInt32(UV_UDP_PARTIAL.rawValue) != 0)
        })
        guard rc == 0 else { throw UVError(code: rc, operation: "starting the beacon socket") }
        tick()
    }

    /// The interfaces joined and the group and port, for the node's log.
    var summary: String {
        "group [\(BeaconSettings.groupText)]:\(settings.port) on \(joined.isEmpty ? "no interface yet" : joined.map(\.name).joined(separator: ", "))"
    }

    /// The interface a scope-less link-local address is sent through when nothing better is known:
    /// the only joined interface, or nil when there are several (or none).
    var soleInterface: UInt32? { joined.count == 1 ? joined[0].index : nil }

    func close() {
        guard !closed else { return }
        closed = true
        timer?.close()
        uv_udp_recv_stop(handle)
        onHeard = { _ in }
        let buffer = receiveBuffer
        closeAndFree(handle)
        buffer.deallocate()
    }

    // MARK: - Sending

    private func tick() {
        guard !closed else { return }
        rescanInterfaces()
        for (index, _) in joined { send(to: index) }
        let jittered = Double(settings.interval.nanoseconds) * Double.random(in: 0.75...1.25)
        timer.schedule(at: loop.now + .nanoseconds(Int64(jittered)))
    }

    /// Milliseconds since the Unix epoch: private beacons are dated by the wall clock, which
    /// the receiver compares with its own (`PrivateBeacon.window`).
    static func unixMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(max(0, ts.tv_sec)) * 1000 + UInt64(max(0, ts.tv_nsec)) / 1_000_000
    }

    private func send(to interface: UInt32) {
        // A private beacon is sealed afresh each time: a new date and salt.
        let encoded = privateKey.map {
            PrivateBeacon.seal(port: advertisedPort, nonce: nonce, sentAtMs: Self.unixMilliseconds(), salt: Sodium.randomBytes(4), key: $0)
        } ?? self.encoded
        var sa = UDPSocket.sockaddr6(UnderlayAddress(ip: BeaconSettings.group, port: settings.port, scope: interface))
        let rc: Int32 = encoded.withUnsafeBufferPointer { b in
            var buf = uv_buf_init(UnsafeMutablePointer(mutating: UnsafeRawPointer(b.baseAddress!).assumingMemoryBound(to: CChar.self)), UInt32(b.count))
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_try_send(handle, &buf, 1, $0) }
            }
        }
        // A beacon that the kernel cannot take now is skipped: the next one is due soon.
        if rc >= 0 { sent += 1; return }
        sendErrors += 1
        if !sendWarned.contains(interface) {
            sendWarned.insert(interface)
            logger.warning("beacon cannot be sent on \(UnderlayAddress.interfaceName(interface) ?? String(interface)): \(UVError(code: rc, operation: "send")); counted in `iotaf status` beacon.send_errors")
        }
    }

    /// Joins the group on chosen interfaces not yet joined; forgets the ones that went away (the
    /// kernel dropped their membership with them).
    private func rescanInterfaces() {
        let present = Self.multicastInterfaces()
        var chosen = present
        if !settings.interfaces.isEmpty {
            chosen = present.filter { settings.interfaces.contains($0.name) }
            for name in settings.interfaces where !present.contains(where: { $0.name == name }) && !missingWarned.contains(name) {
                missingWarned.insert(name)
                logger.warning("beacon interface \(name) is not up, not multicast-capable or has no IPv6 address (yet); beacons will use it once it is")
            }
        }
        joined.removeAll { j in !chosen.contains { $0.index == j.index } }
        for c in chosen where !joined.contains(where: { $0.index == c.index }) {
            let rc = uv_udp_set_membership(handle, BeaconSettings.groupText, "::%\(c.name)", UV_JOIN_GROUP)
            if rc == 0 || rc == -EADDRINUSE {
                joined.append(c)
                missingWarned.remove(c.name)
                logger.info("beacon joined \(BeaconSettings.groupText) on \(c.name)", metadata: ["port": "\(settings.port)"])
            } else {
                joinErrors += 1
                logger.debug("beacon could not join \(BeaconSettings.groupText) on \(c.name): \(UVError(code: rc, operation: "join"))")
            }
        }
        joined.sort { $0.index < $1.index }
    }

    /// Interfaces that are up, multicast-capable and have an IPv6 address, by index.
    static func multicastInterfaces() -> [(index: UInt32, name: String)] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var out: [(index: UInt32, name: String)] = []
        let wanted = UInt32(IFF_UP) | UInt32(IFF_MULTICAST)
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            p = ifa.pointee.ifa_next
            guard ifa.pointee.ifa_flags & wanted == wanted, let sa = ifa.pointee.ifa_addr,
                  Int32(sa.pointee.sa_family) == AF_INET6, let cname = ifa.pointee.ifa_name else { continue }
            let name = String(cString: cname)
            let index = if_nametoindex(cname)
            if index != 0, !out.contains(where: { $0.index == index }) { out.append((index, name)) }
        }
        return out.sorted { $0.index < $1.index }
    }

    // MARK: - Receiving

    private func drop(_ reason: BeaconDropReason) { drops[reason, default: 0] += 1 }

    private func received(_ bytes: [UInt8], from source: UnderlayAddress?, partial: Bool) {
        guard !closed else { return }
        guard let source, !source.isIPv4Mapped, !source.isUnspecified else { drop(.badSource); return }
        if partial { drop(.trailingBytes); return }
        let beacon: Beacon
        let verdict = if let privateKey {
            PrivateBeacon.accept(bytes, key: privateKey, ownNonce: nonce, nowMs: Self.unixMilliseconds(), replay: &replay)
        } else {
            Beacon.accept(bytes, networkTag: networkTag, ownNonce: nonce)
        }
        switch verdict {
        case let .success(b): beacon = b
        case let .failure(reason): drop(reason); return
        }
        let now = loop.now
        tokens = min(Self.burst, tokens + Double((now - tokensAt).nanoseconds) / 1e9 * Self.rate)
        tokensAt = now
        guard tokens >= 1 else { drop(.rateLimited); return }
        tokens -= 1
        heard += 1
        onHeard(source.withPort(beacon.port))
    }

    /// `iotaf status` figures.
    var counters: [String: UInt64] {
        ["sent": sent, "heard": heard, "send_errors": sendErrors, "join_errors": joinErrors,
         "interfaces": UInt64(joined.count), "port": UInt64(settings.port), "private": privateKey == nil ? 0 : 1,
         "interval_ms": UInt64(settings.interval.nanoseconds / 1_000_000)]
    }

    var dropCounters: [String: UInt64] {
        var d: [String: UInt64] = [:]
        for r in BeaconDropReason.allCases { d[r.rawValue] = drops[r] ?? 0 }
        return d
    }
}
