import MeshCore

/// Membership on a narrowband uplink (issue 23, problem 3): a node told its uplink
/// (`GossipConfig.uplinkBytesPerSecond`, the config's `[gossip] uplink_kbps`) keeps its own
/// membership traffic within `uplinkShare` of it.
///
/// Two controls, as RFC 6206 (Trickle) does for RPL on low-power lossy networks:
/// - **A token bucket** over every byte the core sends (plus the session layer's framing), refilled
///   at the budget and holding two seconds of it. The traffic the core chooses to send (gossip
///   rounds, piggybacked updates beyond a ping's own bytes, shuffles, anti-entropy) waits while the
///   bucket is empty; probes, acks and verdicts still go, so failure detection keeps working.
/// - **A pace** (≥ 1) that stretches every period and every timeout of the core together: probing,
///   gossip rounds, shuffles, anti-entropy, dead-member retries, probe and suspicion timeouts. It
///   starts from the uplink (`basePace`) and adapts every `paceWindow` to what the node actually
///   sent: over the budget, it grows in proportion (at most doubling); under half the budget, it
///   shrinks by a sixth, never below its start. Detection times stretch with it (Docs/gossip.md).
/// Without an uplink figure (0, the default) the bucket and the pace are off and nothing changes.
extension GossipCore {
    /// The session layer's framing per datagram (Noise transport: type, index, counter, tag).
    static let framingBytes = 32
    /// Steady-state membership traffic per node at pace 1 (probes, acks, gossip, anti-entropy):
    /// the figure a node divides by its budget to find its starting pace (Docs/gossip.md).
    static let steadyBytesPerSecond = 1200.0
    static let paceWindow: Duration = .seconds(5)
    static let maxPace = 16.0

    /// Bytes per second this node's membership traffic may use; 0: no limit.
    var uplinkBudget: Double { Double(config.uplinkBytesPerSecond) * config.uplinkShare }

    /// The pace a node starts at: what the steady state needs, over what the budget allows.
    var basePace: Double {
        guard uplinkBudget > 0 else { return 1 }
        return min(Self.maxPace, max(1, Self.steadyBytesPerSecond / uplinkBudget))
    }

    /// A period or timeout of the configuration, stretched by the pace.
    func paced(_ d: Duration) -> Duration {
        pace == 1 ? d : .nanoseconds(Int64(Double(d.nanoseconds) * pace))
    }

    func paced(_ nanos: Int64) -> Int64 { pace == 1 ? nanos : Int64(Double(nanos) * pace) }

    /// Whether discretionary traffic may go now (always, without a budget).
    var mayChatter: Bool { uplinkBudget <= 0 || tokens > 0 }

    /// How many bytes of piggybacked updates a ping or ack may carry now.
    func piggybackAllowance(_ spare: Int) -> Int {
        guard uplinkBudget > 0 else { return spare }
        return max(0, min(spare, Int(tokens)))
    }

    mutating func chargeUplink(_ bytes: Int) {
        guard uplinkBudget > 0 else { return }
        let cost = Double(bytes + Self.framingBytes)
        tokens -= cost
        windowBytes += cost
    }

    /// Refills the bucket for the time passed and, once per window, adapts the pace.
    mutating func refillUplink(now: Instant) {
        guard uplinkBudget > 0 else { return }
        guard let last = lastRefill else {
            lastRefill = now
            paceWindowStart = now
            pace = basePace
            tokens = uplinkBudget
            return
        }
        let dt = Double((now - last).nanoseconds) / 1e9
        if dt > 0 {
            tokens = min(2 * uplinkBudget, tokens + dt * uplinkBudget)
            lastRefill = now
        }
        guard let start = paceWindowStart, now - start >= Self.paceWindow else { return }
        let rate = windowBytes / (Double((now - start).nanoseconds) / 1e9)
        if rate > uplinkBudget {
            pace = min(Self.maxPace, pace * min(2, rate / uplinkBudget))
        } else if rate < uplinkBudget / 2 {
            pace = max(basePace, pace * 5 / 6)
        }
        windowBytes = 0
        paceWindowStart = now
    }
}
