import Foundation

/// The benchmark contract: one figure of ours beside its baseline, and their ratio, where 1.0
/// always means "as fast as the baseline".
public struct BenchResult: Sendable {
    public struct Row: Sendable {
        public var metric: String
        public var unit: String
        public var ours: Double
        public var baseline: Double
        /// true for rates (higher is better): ratio = ours / baseline; costs: baseline / ours.
        public var higherIsBetter: Bool
        public var ratio: Double { higherIsBetter ? ours / baseline : baseline / ours }
    }

    public var bench: String
    public var results: [Row]
    /// Conditions of the run printed beside the rows (e.g. the machine's load average), so a
    /// figure from a shared machine says how shared it was. Empty for most benches.
    public var context: [String: Double] = [:]

    public func jsonString() -> String {
        let rows: [[String: Any]] = results.map {
            ["metric": $0.metric, "unit": $0.unit, "ours": round3($0.ours), "baseline": round3($0.baseline), "ratio": round3($0.ratio)]
        }
        var object: [String: Any] = ["bench": bench, "results": rows]
        if !context.isEmpty { object["context"] = context.mapValues(round3) }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    public func table() -> String {
        var s = "bench \(bench)\n"
        for (key, value) in context.sorted(by: { $0.key < $1.key }) { s += "  \(key): \(String(format: "%.2f", value))\n" }
        for r in results {
            s += "  \(r.metric): ours \(String(format: "%.1f", r.ours)) \(r.unit), baseline \(String(format: "%.1f", r.baseline)) \(r.unit), ratio \(String(format: "%.3f", r.ratio))\n"
        }
        return s
    }

    private func round3(_ d: Double) -> Double { (d * 1000).rounded() / 1000 }
}
