import Foundation
import MeshCore
#if canImport(Glibc)
import Glibc
#endif

/// Asks the kernel whether a UDP address can be reached at all, before a node tries to join
/// through it: an empty datagram from a connected socket. A closed port answers with an ICMP
/// "port unreachable" (the next receive fails with ECONNREFUSED) and an address without a route
/// fails the send; silence means something may listen there (a node counts the empty datagram
/// as a drop and answers nothing). This tells "nothing listens" and "no route" apart from "a
/// node there ignores us" (most likely another network key), which the node itself cannot:
/// its socket is unconnected, so the kernel keeps ICMP errors from it.
public enum PeerProbe {
    public enum Outcome: Sendable, Equatable {
        /// Nothing listens on that port (ICMP port unreachable).
        case refused
        /// No route, network or host unreachable, or another send error; the reason.
        case unreachable(String)
        /// No error within the wait: the datagram went out and nothing refused it.
        case silent
    }

    public static func probe(_ address: UnderlayAddress, waitMilliseconds: Int32 = 500) -> Outcome {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return .unreachable("cannot open a UDP socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var sa = UDPSocket.sockaddr6(address)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        if rc != 0 { return .unreachable(String(cString: strerror(errno))) }
        if send(fd, nil, 0, 0) < 0 { return errno == ECONNREFUSED ? .refused : .unreachable(String(cString: strerror(errno))) }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, waitMilliseconds) > 0 else { return .silent }
        var byte: UInt8 = 0
        if recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) < 0 {
            switch errno {
            case ECONNREFUSED: return .refused
            case EAGAIN: return .silent
            default: return .unreachable(String(cString: strerror(errno)))
            }
        }
        return .silent
    }
}
