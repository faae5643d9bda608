import Foundation

/// A point on a driver's clock, in nanoseconds since the driver started.
/// Cores never read a clock: every handler is given `now`.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: a.nanoseconds + d.nanoseconds) }
    public static func - (a: Instant, b: Instant) -> Duration { .nanoseconds(a.nanoseconds - b.nanoseconds) }

    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public var description: String { String(format: "%.3fs", seconds) }
}

extension Duration {
    /// Whole nanoseconds, saturating; durations in iotaf are far below 292 years.
    public var nanoseconds: Int64 {
        let (s, atto) = components
        return s &* 1_000_000_000 &+ atto / 1_000_000_000
    }

    public var milliseconds: Double { Double(nanoseconds) / 1e6 }
    public var secondsDouble: Double { Double(nanoseconds) / 1e9 }
}

