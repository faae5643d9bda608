/// A sliding anti-replay window over explicit 64-bit packet counters, in the style of RFC 6479:
/// a ring of 64-bit words, where moving forward clears whole words instead of shifting bits, so
/// each check and commit costs O(1) however far the window jumps.
///
/// Check-then-commit: ``check(_:)`` only looks, and ``commit(_:)`` records. A receiver checks a
/// packet's counter, authenticates the packet, and commits only then, so a forged packet with a
/// far-future counter cannot drag the window forward and make real packets look old.
///
/// A pure value type: copying it copies the window.
public struct ReplayWindow: Sendable, Equatable {
    /// Counters this far behind the highest seen are always remembered (at least 2048, as the
    /// sessions need). One extra word is the ring's slack, as in RFC 6479.
    public static let size: UInt64 = 2048
    private static let wordBits: UInt64 = 64
    private static let wordCount = Int(size / wordBits) + 1

    /// What ``check(_:)`` found.
    public enum Verdict: Sendable, Equatable {
        /// Not seen before and inside (or ahead of) the window: decrypt it.
        case fresh
        /// Seen already: a replay or a duplicate from the network.
        case duplicate
        /// Behind the window: it cannot be told apart from a replay, so it is refused.
        case tooOld
        /// 2^64-1, which Noise reserves and no sender may use.
        case invalid
    }

    private var words: [UInt64]
    /// The highest committed counter, or nil before the first commit.
    public private(set) var highest: UInt64?

    public init() {
        words = [UInt64](repeating: 0, count: Self.wordCount)
        highest = nil
    }

    /// Whether a packet with this counter may be accepted. Does not change the window.
    public func check(_ counter: UInt64) -> Verdict {
        guard counter != UInt64.max else { return .invalid }
        guard let highest else { return .fresh }
        if counter > highest { return .fresh }
        if highest - counter >= Self.size { return .tooOld }
        let (word, bit) = Self.position(counter)
        return words[word] & (1 << bit) != 0 ? .duplicate : .fresh
    }

    /// Records a counter after its packet authenticated. Returns false, recording nothing, if the
    /// counter is not fresh (a duplicate that raced the first copy through decryption).
    @discardableResult
    public mutating func commit(_ counter: UInt64) -> Bool {
        guard check(counter) == .fresh else { return false }
        if let highest, counter > highest {
            let oldWord = highest / Self.wordBits
            let newWord = counter / Self.wordBits
            // Clear the words the window slides over; at most the whole ring.
            let steps = min(newWord - oldWord, UInt64(Self.wordCount))
            var i: UInt64 = 1
            while i <= steps {
                words[Int((oldWord &+ i) % UInt64(Self.wordCount))] = 0
                i += 1
            }
            self.highest = counter
        } else if highest == nil {
            self.highest = counter
        }
        let (word, bit) = Self.position(counter)
        words[word] |= 1 << bit
        return true
    }

    /// Check and commit in one step, for callers that have already authenticated the packet.
    @discardableResult
    public mutating func accept(_ counter: UInt64) -> Verdict {
        let verdict = check(counter)
        if verdict == .fresh { commit(counter) }
        return verdict
    }

    private static func position(_ counter: UInt64) -> (Int, UInt64) {
        (Int((counter / wordBits) % UInt64(wordCount)), counter % wordBits)
    }
}
