/// Disjoint, non-adjacent half-open ranges kept sorted: received packet numbers, received or
/// acknowledged byte ranges of a message. Arrays, not sets, so iteration order is fixed.
struct RangeSet: Equatable, Sendable {
    private(set) var ranges: [Range<UInt64>] = []

    var isEmpty: Bool { ranges.isEmpty }
    var count: Int { ranges.count }
    /// Sum of the lengths.
    private(set) var covered: UInt64 = 0

    /// Index of the first range whose upper bound is >= value.
    private func firstIndex(endingAtOrAfter value: UInt64) -> Int {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func contains(_ value: UInt64) -> Bool {
        if value == .max { return ranges.last.map { $0.upperBound == .max } ?? false }
        let i = firstIndex(endingAtOrAfter: value + 1)
        return i < ranges.count && ranges[i].contains(value)
    }

    func contains(_ r: Range<UInt64>) -> Bool {
        if r.isEmpty { return true }
        if r.lowerBound == .max { return false }
        let i = firstIndex(endingAtOrAfter: r.lowerBound + 1)
        return i < ranges.count && ranges[i].lowerBound <= r.lowerBound && ranges[i].upperBound >= r.upperBound
    }

    /// Inserts `r`; returns how many values were new.
    @discardableResult
    mutating func insert(_ r: Range<UInt64>) -> UInt64 {
        if r.isEmpty { return 0 }
        var i = firstIndex(endingAtOrAfter: r.lowerBound)
        var low = r.lowerBound, high = r.upperBound
        var removed: UInt64 = 0
        let start = i
        while i < ranges.count && ranges[i].lowerBound <= high {
            low = min(low, ranges[i].lowerBound)
            high = max(high, ranges[i].upperBound)
            removed += UInt64(ranges[i].count)
            i += 1
        }
        ranges.replaceSubrange(start..<i, with: [low..<high])
        let added = (high - low) - removed
        covered += added
        return added
    }

    /// Parts of `r` not yet covered, in order.
    func gaps(in r: Range<UInt64>) -> [Range<UInt64>] {
        var out = [Range<UInt64>]()
        var cursor = r.lowerBound
        var i = firstIndex(endingAtOrAfter: r.lowerBound + 1)
        while cursor < r.upperBound {
            if i < ranges.count && ranges[i].lowerBound < r.upperBound {
                let rg = ranges[i]
                if rg.lowerBound > cursor { out.append(cursor..<rg.lowerBound) }
                cursor = max(cursor, rg.upperBound)
                i += 1
            } else {
                out.append(cursor..<r.upperBound)
                break
            }
        }
        return out
    }

    /// Forgets the lowest range (bounding memory); returns its upper bound.
    mutating func removeFirst() -> UInt64 {
        let r = ranges.removeFirst()
        covered -= UInt64(r.count)
        return r.upperBound
    }

    var last: Range<UInt64>? { ranges.last }
}
