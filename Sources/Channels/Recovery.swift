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

    /// RFC 9002's time threshold: a packet this much older than an acknowledged one is lost.
    var lossDelay: Int64 {
        let base = max(smoothed ?? rto, latest)
        return max(base + base / 8, Self.granularity)
    }
}

/// NewReno-style congestion control (slow start, congestion avoidance, one reduction per
/// recovery period) made tolerant of random loss: losses count as congestion only when more than
/// `lossTolerance` of a round's packets (and at least three) are lost. Queue overflow at a
/// bottleneck loses bursts and still triggers the reduction; a lossy radio link does not collapse
/// the window. The reduction factor is CUBIC's 0.7 rather than Reno's 0.5.
struct CongestionController: Sendable {
    private(set) var window: Int
    private(set) var slowStartThreshold: Int = .max
    private var recoveryStart: Instant?
    private var avoidanceCredit = 0
    let mss: Int
    let minWindow: Int
    let maxWindow: Int
    let tolerance: Double
    // Round accounting: a round ends when a packet sent after it began is acknowledged.
    private var roundEnd: UInt64 = 0
    private var roundSent = 0
    private var roundLost = 0
    private var previousRoundSent = 0

    init(mss: Int, initialFrames: Int, maxWindow: Int, tolerance: Double) {
        self.mss = mss
        window = mss * max(2, initialFrames)
        minWindow = 2 * mss
        self.maxWindow = max(maxWindow, 2 * mss)
        self.tolerance = tolerance
    }

    var inSlowStart: Bool { window < slowStartThreshold }

    mutating func onSent(number: UInt64) {
        roundSent += 1
        if roundEnd == 0 { roundEnd = number }
    }

    mutating func onAcked(bytes: Int, number: UInt64, sentAt: Instant, nextNumber: UInt64) {
        if number >= roundEnd {
            roundEnd = nextNumber
            previousRoundSent = roundSent
            roundSent = 0
            roundLost = 0
        }
        if let start = recoveryStart, sentAt <= start { return }
        recoveryStart = nil
        if inSlowStart {
            window = min(window + bytes, maxWindow)
        } else {
            avoidanceCredit += bytes
            if avoidanceCredit >= window {
                avoidanceCredit -= window
                window = min(window + mss, maxWindow)
            }
        }
    }

    /// Returns true when this loss started a congestion event.
    mutating func onLost(sentAt: Instant, now: Instant) -> Bool {
        roundLost += 1
        if let start = recoveryStart, sentAt <= start { return false }
        // Losses found early in a round belong to the previous one: judge them against the
        // larger of the two rounds and the window, never against a handful of fresh packets.
        let sent = max(roundSent, previousRoundSent, window / mss, 1)
        guard roundLost >= 3, Double(roundLost) > tolerance * Double(sent) else { return false }
        recoveryStart = now
        slowStartThreshold = max(window * 7 / 10, minWindow)
        window = slowStartThreshold
        avoidanceCredit = 0
        return true
    }

    /// The retransmission timer fired: the path may have changed entirely (RFC 5681 3.1).
    mutating func onTimeout(now: Instant) {
        slowStartThreshold = max(window / 2, minWindow)
        window = minWindow
        recoveryStart = now
        avoidanceCredit = 0
    }
}
