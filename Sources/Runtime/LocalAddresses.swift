#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MeshCore

/// The addresses of this host's interfaces, for showing the node's own address where it listens
/// on a wildcard (`[::]:7400`), which nobody can send to.
enum LocalAddresses {
    /// One address of this host that a neighbour could reach the socket at, with the socket's
    /// port: a global (or ULA) IPv6 address first, then a non-loopback IPv4 one, then a link-local
    /// one with its interface, then loopback. `bound` itself when it is not a wildcard.
    static func usable(for bound: UnderlayAddress) -> UnderlayAddress {
        guard bound.isUnspecified else { return bound }
        let all = interfaceAddresses()
        func rank(_ a: UnderlayAddress) -> Int {
            if a.isLoopback { return 3 }
            if a.isLinkLocal { return 2 }
            if a.isIPv4Mapped { return 1 }
            return 0
        }
        guard let best = all.min(by: { (rank($0), $0) < (rank($1), $1) }) else {
            return UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: bound.port)
        }
        return UnderlayAddress(high: best.high, low: best.low, port: bound.port, scope: best.isLinkLocal ? best.scope : 0)
    }

    /// Every IPv4 and IPv6 address of an interface that is up (port 0; link-local ones scoped).
    static func interfaceAddresses() -> [UnderlayAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var out: [UnderlayAddress] = []
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            p = ifa.pointee.ifa_next
            guard ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0, let sa = ifa.pointee.ifa_addr,
                  let a = UDPSocket.address(from: sa), !a.isUnspecified else { continue }
            out.append(a)
        }
        return out
    }
}

extension UnderlayAddress {
    /// ::1 or 127.0.0.0/8.
    var isLoopback: Bool {
        (high == 0 && low == 1) || (isIPv4Mapped && (low >> 24) & 0xff == 127)
    }
}
