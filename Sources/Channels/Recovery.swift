import MeshCore

/// RFC 6298 round-trip estimator, in nanoseconds. Samples come only from packets sent once
/// (packet numbers are never reused), so Karn's ambiguity does not arise.
struct RTTEstimator: Sendable {
    private(set) var smoothed: Int64?
    private(set) var variance: Int64 = 0
    private(set) var latest: Int64 = 0
    private(set) var minimum: Int64 = .max
    private(set) var rto: Int64
    let minRTO: Int64
    let maxRTO: Int64
    /// Clock granularity G of RFC 6298.
    static let granularity: Int64 = 1_000_000

    init(initialRTO: Duration, minRTO: Duration, maxRTO: Duration) {
        rto = initialRTO.nanoseconds
        self.minRTO = minRTO.nanoseconds
        self.maxRTO = maxRTO.nanoseconds
    }

    mutating func sample(_ measured: Int64, ackDelay: Int64) {
        guard measured > 0 else { return }
        minimum = min(minimum, measured)
        // Discount the receiver's deliberate delay unless that would go below the path minimum.
        var r = measured
        if r - ackDelay >= minimum { r -= ackDelay }
        latest = r
        if let s = smoothed {
            variance = (3 * variance + abs(s - r)) / 4
            smoothed = (7 * s + r) / 8
        } else {
            smoothed = r
            variance = r / 2
        }
        rto = min(max(smoothed! + max(Self.granularity, 4 * variance), minRTO), maxRTO)
    }

    /// RFC 9002 6.2.1's probe timeout before backoff: SRTT + max(4·RTTVAR, G) + the peer's ACK
    /// delay; before any sample, the initial RTO. At most `maxRTO`.
    /// At least `minProbeTimeout`: a runtime's timers and thread pool add milliseconds that a
    /// sub-millisecond path's RTT variance does not show.
    func probeTimeout(maxAckDelay: Int64) -> Int64 {
        guard let s = smoothed else { return rto }
        return min(max(s + max(4 * variance, Self.granularity) + maxAckDelay, Self.minProbeTimeout), maxRTO)
    }
    static let minProbeTimeout: Int64 = 25_000_000

    /// RFC 9002's time threshold: a packet this much older than an acknowledged one is lost.
    var lossDelay: Int64 {
        let base = max(smoothed ?? rto, latest)
        return max(base + base / 8, Self.granularity)
    }
}

/// One delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation): the bytes acknowledged
/// between sending a packet and acknowledging it, over the longer of the send and ack intervals.
struct RateSample: Sendable {
    var bytesPerSecond: Double
    /// The connection's delivered count when the sampled packet was sent (round accounting).
    var priorDelivered: Int
    /// The sender had nothing to send for part of the interval: the sample may understate the path.
    var appLimited: Bool
}

/// BBR-style rate control (after BBR v1, Cardwell et al.): the sender models the path as a
/// bottleneck bandwidth (the largest delivery rate measured over the last 10 rounds) and a
/// propagation delay (the smallest RTT of the last 10 s), paces at a gain times that bandwidth
/// and keeps at most two bandwidth-delay products in flight. Loss is repaired but is not read as
/// congestion, so random loss on a radio link costs only the lost share. Congestion still slows the
/// sender: a competing flow lowers the measured delivery rate and the max filter forgets the old
/// one within 10 rounds; a growing queue raises RTT but not the minimum, so the window cap of two
/// BDPs bounds what this flow adds to the queue.
struct RateController: Sendable {
    enum Mode: Sendable, Equatable { case startup, drain, probeBandwidth }

    /// 2/ln 2: doubles the delivery rate every round in startup.
    static let startupGain = 2.885
    /// Probe-bandwidth gains, one per minimum RTT: probe up, drain what the probe queued, cruise.
    static let cycle: [Double] = [1.25, 0.75, 1, 1, 1, 1, 1, 1]
    static let bandwidthWindowRounds: UInt64 = 10
    /// A bandwidth sample also outlives 250 ms: on a sub-millisecond path ten rounds last a few
    /// milliseconds, less than a loaded machine's scheduling stalls, and the estimate collapsed.
    static let bandwidthWindowMinimum: Int64 = 250_000_000
    static let minRTTWindow: Int64 = 10_000_000_000

    let mss: Int
    let minWindow: Int
    let maxWindow: Int
    let initialWindow: Int
    /// The peer may hold an acknowledgement this long: the window covers it on top of the BDP.
    let ackDelay: Int64
    private(set) var window: Int
    private(set) var mode = Mode.startup
    private(set) var pacingGain = startupGain
    /// Two BDPs in flight at most, in startup too (BBRv2's choice): startup's 2.885 overfilled a
    /// one-BDP bottleneck queue by almost a BDP and lost it.
    private var windowGain = 2.0
    /// Monotone deque over (round, rate): the front holds the windowed maximum.
    private var bandwidthFilter: [(round: UInt64, at: Instant, rate: Double)] = []
    private(set) var minRTT: Int64 = .max
    private var minRTTAt = Instant.zero
    private(set) var round: UInt64 = 0
    private var nextRoundDelivered = 0
    private var fullBandwidth = 0.0
    private var fullBandwidthRounds = 0
    private(set) var filledPipe = false
    private var cycleIndex = 0
    private var cycleStart = Instant.zero
    // This round's evidence for the congestion test.
    private var roundLost = 0
    private var roundAcked = 0
    private var roundMinRTT: Int64 = .max
    private var roundMaxRate = 0.0
    /// Moving average (1/8 per round) of the share of packets lost per round, at most 0.3.
    private(set) var lossShare = 0.0

    init(mss: Int, initialFrames: Int, maxWindow: Int, ackDelay: Duration) {
        self.mss = mss
        self.ackDelay = ackDelay.nanoseconds
        initialWindow = mss * max(2, initialFrames)
        window = initialWindow
        minWindow = 4 * mss
        self.maxWindow = max(maxWindow, 4 * mss)
    }

    /// Bottleneck bandwidth estimate in bytes per second; 0 before the first sample.
    var bandwidth: Double { bandwidthFilter.first?.rate ?? 0 }

    /// Bandwidth-delay product, or nil while either half is unknown.
    var bdp: Int? {
        guard bandwidth > 0, minRTT != .max else { return nil }
        return Int(bandwidth * Double(minRTT) / 1e9)
    }

    /// Bytes per second to pace at, or nil (unpaced) before the first bandwidth sample. Until the
    /// pipe is full, never below the initial window per minimum RTT (as BBR initialises it), so a
    /// first sample taken from a tiny flight (a window probe) does not throttle startup.
    var pacingRate: Double? {
        guard bandwidth > 0 else { return nil }
        // BtlBw counts delivered bytes only: sending at it would leave the lost share of the link
        // idle, so the rate is raised by that share (a real queue still trips the congestion test).
        var rate = pacingGain * bandwidth / (1 - lossShare)
        if !filledPipe, minRTT != .max, minRTT > 0 {
            rate = max(rate, pacingGain * Double(initialWindow) * 1e9 / Double(minRTT))
        }
        return rate
    }

    /// A packet was declared lost by the packet or time threshold.
    mutating func onLost() { roundLost += 1 }

    /// Called once per acknowledgement that newly acknowledged `acked` ack-eliciting bytes in
    /// `packets` packets. Returns true when the round it ended showed congestion.
    mutating func onAck(acked: Int, packets: Int, delivered: Int, sample: RateSample?, rtt: Int64?, bytesInFlight: Int, now: Instant) -> Bool {
        if let rtt, rtt > 0, rtt <= minRTT || now.nanoseconds - minRTTAt.nanoseconds > Self.minRTTWindow {
            minRTT = rtt
            minRTTAt = now
        }
        if let rtt, rtt > 0 { roundMinRTT = min(roundMinRTT, rtt) }
        roundAcked += packets
        if let sample, !sample.appLimited { roundMaxRate = max(roundMaxRate, sample.bytesPerSecond) }
        var roundStart = false
        var congested = false
        if let sample, sample.priorDelivered >= nextRoundDelivered {
            nextRoundDelivered = delivered
            round += 1
            roundStart = true
            congested = endRound(now: now)
        }
        if let sample, sample.bytesPerSecond > 0, !sample.appLimited || sample.bytesPerSecond >= bandwidth {
            while let last = bandwidthFilter.last, last.rate <= sample.bytesPerSecond { bandwidthFilter.removeLast() }
            bandwidthFilter.append((round, now, sample.bytesPerSecond))
        }
        func stale(_ e: (round: UInt64, at: Instant, rate: Double)) -> Bool {
            e.round + Self.bandwidthWindowRounds <= round && now.nanoseconds - e.at.nanoseconds > Self.bandwidthWindowMinimum
        }
        while let first = bandwidthFilter.first, stale(first), bandwidthFilter.count > 1 { bandwidthFilter.removeFirst() }
        if let first = bandwidthFilter.first, stale(first) {
            // Only stale samples left: keep the newest until a fresh one arrives.
            bandwidthFilter = [(round, now, first.rate)]
        }
        if roundStart && !filledPipe, let sample, !sample.appLimited {
            // Startup ends when three rounds in a row failed to raise the rate by a quarter.
            if bandwidth >= fullBandwidth * 1.25 {
                fullBandwidth = bandwidth
                fullBandwidthRounds = 0
            } else {
                fullBandwidthRounds += 1
                if fullBandwidthRounds >= 3 { filledPipe = true }
            }
        }
        if mode == .startup && filledPipe {
            mode = .drain
            pacingGain = 1 / Self.startupGain
        }
        if mode == .drain, let bdp, bytesInFlight <= bdp { enterProbeBandwidth(now: now) }
        // A phase lasts one RTprop; the draining phase ends as soon as the flight is one BDP (BBR v1).
        if mode == .probeBandwidth, minRTT != .max,
           now.nanoseconds - cycleStart.nanoseconds >= minRTT || (pacingGain < 1 && bytesInFlight <= bdp ?? 0) {
            cycleIndex = (cycleIndex + 1) % Self.cycle.count
            cycleStart = now
            pacingGain = Self.cycle[cycleIndex]
        }
        updateWindow(acked: acked, delivered: delivered)
        return congested
    }

    /// Below this much added delay a "queue" may be a loaded host's scheduling, not the path.
    static let standingQueueMinimum: Int64 = 5_000_000

    /// The congestion test at the end of a round, after TCP Veno's split of random from congestive
    /// loss: loss above 2 % of the round's packets is congestion only if the queue stood all round
    /// (even the round's smallest RTT exceeds `RTprop` by a quarter, at least 2 ms). Then the
    /// bandwidth model is replaced by what the round actually delivered, the window follows it, and
    /// startup ends; random loss on an unqueued path (radio) leaves the model alone.
    private mutating func endRound(now: Instant) -> Bool {
        defer { roundLost = 0; roundAcked = 0; roundMinRTT = .max; roundMaxRate = 0 }
        if roundLost + roundAcked > 0 {
            let share = Double(roundLost) / Double(roundLost + roundAcked)
            lossShare = min(0.3, lossShare + (share - lossShare) / 8)
        }
        guard roundLost >= 3, Double(roundLost) > 0.02 * Double(roundLost + roundAcked),
              minRTT != .max, roundMinRTT != .max, roundMaxRate > 0,
              roundMinRTT > minRTT + max(minRTT / 4, Self.standingQueueMinimum) else { return false }
        if roundMaxRate < bandwidth { bandwidthFilter = [(round, now, roundMaxRate)] }
        filledPipe = true
        return true
    }

    private mutating func enterProbeBandwidth(now: Instant) {
        mode = .probeBandwidth
        windowGain = 2
        // Start cruising (not in the drain phase), as BBR does.
        cycleIndex = 2
        cycleStart = now
        pacingGain = Self.cycle[cycleIndex]
    }

    private mutating func updateWindow(acked: Int, delivered: Int) {
        guard let bdp else {
            window = min(window + acked, maxWindow)
            return
        }
        // Room for delayed and aggregated acknowledgements on top of the gain: a flight must last
        // until the acknowledgement the peer may hold back arrives.
        let target = Int(windowGain * Double(bdp) + bandwidth * Double(ackDelay) / 1e9) + 4 * mss
        if filledPipe {
            window = min(window + acked, target)
        } else if window < target || delivered < initialWindow {
            window += acked
        }
        window = min(max(window, minWindow), maxWindow)
    }

    /// Several probe timeouts in a row with no acknowledgement: the path may be gone or changed
    /// (RFC 9002 7.6, persistent congestion). The model is kept; the window restarts small and
    /// regrows toward it as acknowledgements return.
    mutating func onPersistentCongestion() {
        window = minWindow
    }
}
