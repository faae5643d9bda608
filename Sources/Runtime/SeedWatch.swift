import Foundation
import MeshCore

/// Watches the addresses a node was told to join through (`[node] peers`, `[gossip] masters`,
/// `iotaf join`) until each answers, so that a node nobody answers says why within seconds
/// instead of retrying in silence.
///
/// From the joining side a different network key, an unreachable address and a wrong port look
/// alike: nothing comes back (a member drops a handshake made under another key before any
/// Diffie-Hellman and answers nothing, by design). The watch therefore names all three, the most
/// likely first, and says so once after `firstReport`, then again at a slowly growing interval
/// (doubling up to `maxReportInterval`) while the seed stays silent. When datagrams do arrive
/// from the seed but no session forms, the keys differ for certain, and the report says that.
///
/// Sans-IO: every call takes `now`; the runtime (`SeedMonitor`) owns the timer and the logger.
public struct SeedWatch: Sendable {
    public enum State: String, Sendable {
        /// Asked, no answer yet, not reported.
        case waiting
        /// A session with the seed formed (or a member answers from its address).
        case answered
        /// Reported as not answering; still asked.
        case notAnswering = "not_answering"
    }

    struct Seed: Sendable {
        let address: UnderlayAddress
        var since: Instant
        var state: State = .waiting
        var answeredAfter: Duration?
        /// Datagrams from the seed's address that formed no session yet.
        var datagramsHeard: UInt64 = 0
        var reports = 0
        var nextReport: Instant
    }

    /// What the runtime logs: a seed not answering (a warning) or one answering after a report.
    public struct Diagnosis: Sendable, Equatable {
        public let address: UnderlayAddress
        public let answered: Bool
        public let message: String
    }

    public static let firstReport: Duration = .seconds(5)
    public static let maxReportInterval: Duration = .seconds(600)

    private(set) var seeds: [Seed] = []
    /// The mesh this node is in, named in the reports.
    let network: NetworkID
    let isDefaultNetwork: Bool

    public init(network: NetworkID) {
        self.network = network
        isDefaultNetwork = network == .defaultNetwork
    }

    /// True while some seed has not answered: the per-datagram `heard` is skipped otherwise.
    public private(set) var anyPending = false

    /// Starts watching `address` (again, if it answered before: `iotaf join` asks anew).
    public mutating func watch(_ address: UnderlayAddress, now: Instant) {
        if let i = seeds.firstIndex(where: { $0.address == address }) {
            guard seeds[i].state == .answered else { return }
            seeds.remove(at: i)
        }
        seeds.append(Seed(address: address, since: now, nextReport: now + Self.firstReport))
        anyPending = true
    }

    /// A datagram came from `address` (before any session check).
    public mutating func heard(from address: UnderlayAddress) {
        guard anyPending, let i = seeds.firstIndex(where: { $0.address == address && $0.state != .answered }) else { return }
        seeds[i].datagramsHeard += 1
    }

    /// A session with `address` formed, or a member answers from it. Returns a line to log when
    /// the seed had been reported as not answering.
    public mutating func answered(_ address: UnderlayAddress, now: Instant) -> Diagnosis? {
        guard anyPending, let i = seeds.firstIndex(where: { $0.address == address && $0.state != .answered }) else { return nil }
        let wasReported = seeds[i].state == .notAnswering
        seeds[i].state = .answered
        seeds[i].answeredAfter = now - seeds[i].since
        anyPending = seeds.contains { $0.state != .answered }
        guard wasReported else { return nil }
        return Diagnosis(address: address, answered: true,
                         message: "seed \(address) answered after \(Self.seconds(now - seeds[i].since)); joined through it")
    }

    /// The reports due at `now`.
    public mutating func check(now: Instant) -> [Diagnosis] {
        var out: [Diagnosis] = []
        for i in seeds.indices where seeds[i].state != .answered && now >= seeds[i].nextReport {
            seeds[i].state = .notAnswering
            seeds[i].reports += 1
            let interval = min(Self.firstReport * (1 << min(seeds[i].reports, 16)) * 6, Self.maxReportInterval)
            seeds[i].nextReport = now + interval
            out.append(Diagnosis(address: seeds[i].address, answered: false,
                                 message: reason(seeds[i], now: now) + "; next report in \(Self.seconds(interval))"))
        }
        return out
    }

    /// When `check` has something to say next.
    public var nextDeadline: Instant? {
        seeds.filter { $0.state != .answered }.map(\.nextReport).min()
    }

    /// Why `seed` is probably silent, naming it, this node's network, and what to check.
    func reason(_ seed: Seed, now: Instant) -> String {
        let waited = Self.seconds(now - seed.since)
        let mesh = isDefaultNetwork ? "the open default network (no --network-key / network_key)" : "network \(network)"
        if seed.datagramsHeard > 0 {
            return "seed \(seed.address) sends datagrams (\(seed.datagramsHeard)) but no handshake with it completed in \(waited):"
                + " it uses a different network key; this node is in \(mesh), so give both the same network.key"
        }
        return "seed \(seed.address) has not answered in \(waited). Likely causes, most likely first:"
            + " (1) it uses a different network key (this node is in \(mesh); a node drops handshakes made under another key without a word),"
            + " (2) its address is unreachable from here (check the route and firewalls),"
            + " (3) nothing listens on port \(seed.address.port) there. Still trying"
    }

    /// One line per seed for `iotaf status`.
    public func reports(now: Instant) -> [SeedReport] {
        seeds.map { s in
            SeedReport(address: s.address.description, state: s.state.rawValue,
                       asked_s_ago: Self.rounded(now - s.since),
                       answered_after_s: s.answeredAfter.map(Self.rounded),
                       datagrams_heard: s.datagramsHeard,
                       reason: s.state == .notAnswering ? reason(s, now: now) : nil)
        }
    }

    static func rounded(_ d: Duration) -> Double { (d.secondsDouble * 10).rounded() / 10 }
    static func seconds(_ d: Duration) -> String { String(format: "%.1f s", d.secondsDouble) }
}

/// A seed as `iotaf status --json` shows it under `seeds`.
public struct SeedReport: Codable, Sendable, Equatable {
    public var address: String
    /// `waiting`, `answered` or `not_answering`.
    public var state: String
    public var asked_s_ago: Double
    public var answered_after_s: Double?
    public var datagrams_heard: UInt64
    /// Why it is probably silent (`not_answering` only).
    public var reason: String?
}
