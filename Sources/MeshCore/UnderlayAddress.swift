#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A UDP endpoint on the real (or simulated) network. IPv4 is stored as an IPv4-mapped IPv6
/// address, so one dual-stack socket and one type serve both families.
///
/// A link-local address (fe80::/10) names a host only together with the interface it is reached
/// through: `scope` is that interface's index (0: none). Scopes are local to this host, so they
/// never travel on the wire; the runtime strips them before the protocol cores see an address and
/// restores them when it sends (see NodeRuntime's scope table and Docs/gossip.md, "nearest").
public struct UnderlayAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The IPv6 address as two big-endian halves: no heap allocation, cheap to hash and compare,
    /// since addresses are looked up on every datagram.
    public let high: UInt64
    public let low: UInt64
    public let port: UInt16
    /// The interface index of a link-local address (sin6_scope_id); 0 for none.
    public let scope: UInt32

    public init(ip: [UInt8], port: UInt16, scope: UInt32 = 0) {
        precondition(ip.count == 16, "an underlay address holds 16 bytes")
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(ip[i]) }
        for i in 8..<16 { l = l << 8 | UInt64(ip[i]) }
        self.init(high: h, low: l, port: port, scope: scope)
    }

    public init(high: UInt64, low: UInt64, port: UInt16, scope: UInt32 = 0) {
        self.high = high
        self.low = low
        self.port = port
        self.scope = scope
    }

    /// fe80::/10: reachable only through one interface, which `scope` names.
    public var isLinkLocal: Bool { high >> 54 == 0xfe80 >> 6 }
    /// The same address with no interface index (what the cores and the wire see).
    public var withoutScope: UnderlayAddress { scope == 0 ? self : UnderlayAddress(high: high, low: low, port: port) }
    public func withScope(_ scope: UInt32) -> UnderlayAddress { UnderlayAddress(high: high, low: low, port: port, scope: scope) }
    public func withPort(_ port: UInt16) -> UnderlayAddress { UnderlayAddress(high: high, low: low, port: port, scope: scope) }

    /// 16 bytes of IPv6 address in network order.
    public var ip: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8((high >> UInt64(56 - 8 * i)) & 0xff)
            out[8 + i] = UInt8((low >> UInt64(56 - 8 * i)) & 0xff)
        }
        return out
    }

    /// Writes the 16 address bytes into raw memory (a sockaddr), without an intermediate array.
    public func copyIP(to destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= 16)
        for i in 0..<8 {
            destination[i] = UInt8((high >> UInt64(56 - 8 * i)) & 0xff)
            destination[8 + i] = UInt8((low >> UInt64(56 - 8 * i)) & 0xff)
        }
    }

    public var isIPv4Mapped: Bool { high == 0 && (low >> 32) == 0xffff }
    public var isUnspecified: Bool { high == 0 && low == 0 }

    /// Parses `[v6]:port`, `v4:port`, `[v6]` or `v4` with a default port; a link-local v6 may name
    /// its interface, `[fe80::1%eth0]:7400` or `[fe80::1%3]:7400` (an interface that does not
    /// exist, or a zone on any other address, is refused).
    /// Returns nil with no partial guesses: callers turn that into an error naming the setting.
    public init?(parsing text: String, defaultPort: UInt16? = nil) {
        var host = Substring(text)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else if let colon = host.lastIndex(of: ":") {
            // Bare IPv6 without brackets is ambiguous with a port; only IPv4 may omit them.
            if host.filter({ $0 == ":" }).count > 1 { return nil }
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        let port: UInt16
        if let portText {
            guard let p = UInt16(portText) else { return nil }
            port = p
        } else if let defaultPort {
            port = defaultPort
        } else {
            return nil
        }
        var scope: UInt32 = 0
        if let percent = host.firstIndex(of: "%") {
            let zone = String(host[host.index(after: percent)...])
            host = host[..<percent]
            guard let s = Self.interfaceIndex(zone) else { return nil }
            scope = s
        }
        guard let ip = Self.parseIP(String(host)) else { return nil }
        self.init(ip: ip, port: port, scope: scope)
        if scope != 0 && !isLinkLocal { return nil }
    }

    /// An interface's index from its name or its decimal index; nil if there is no such interface.
    public static func interfaceIndex(_ zone: String) -> UInt32? {
        guard !zone.isEmpty else { return nil }
        if let n = UInt32(zone) { return n > 0 && interfaceName(n) != nil ? n : nil }
        let i = if_nametoindex(zone)
        return i == 0 ? nil : i
    }

    /// The interface's name (eth0), or nil if the index names none.
    public static func interfaceName(_ index: UInt32) -> String? {
        var buf = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &buf) != nil else { return nil }
        let end = buf.firstIndex(of: 0) ?? buf.count
        return String(decoding: buf[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Parses an IPv6 or IPv4 literal into 16 bytes (IPv4 mapped).
    public static func parseIP(_ text: String) -> [UInt8]? {
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            let b = withUnsafeBytes(of: &v4) { Array($0) }
            return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + b
        }
        return nil
    }

    public static func formatIPv6(_ bytes: [UInt8]) -> String {
        var addr = in6_addr()
        withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count)) != nil else { return "?" }
        let end = buf.firstIndex(of: 0) ?? buf.count
        return String(decoding: buf[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var hostString: String {
        if isIPv4Mapped { return [24, 16, 8, 0].map { String((low >> UInt64($0)) & 0xff) }.joined(separator: ".") }
        let text = Self.formatIPv6(ip)
        guard scope != 0 else { return text }
        return "\(text)%\(Self.interfaceName(scope) ?? String(scope))"
    }

    public var description: String {
        isIPv4Mapped ? "\(hostString):\(port)" : "[\(hostString)]:\(port)"
    }

    public static func < (a: UnderlayAddress, b: UnderlayAddress) -> Bool {
        (a.high, a.low, a.port, a.scope) < (b.high, b.low, b.port, b.scope)
    }

    public static let loopbackV6 = [UInt8](repeating: 0, count: 15) + [1]
}
