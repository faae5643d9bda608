import Foundation

/// The report contract of ../shared/DESIGN.md. Only `wall_seconds` may differ between two runs
/// of the same scenario and seed, so everything else is built from the run alone.
public struct SimReport: Codable, Sendable {
    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var passed: Bool
        public var detail: String
        /// Safety (judged after every step) or liveness (judged at the end, after faults heal).
        public var phase: CheckPhase?
    }

    public var scenario: String
    public var seed: UInt64
    public var nodes: Int
    public var virtual_seconds: Double
    public var wall_seconds: Double
    public var events: UInt64
    public var metrics: [String: Double]
    public var checks: [Check]
    /// Plot data: name → [[t, value]] (markers: [[t]] of timeline events).
    public var series: [String: [[Double]]]
    /// What the timeline did and when, including the nodes each random pick chose.
    public var timeline: [String]

    public var passed: Bool { checks.allSatisfy(\.passed) }

    public func json() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return (try? e.encode(self)) ?? Data()
    }
}
