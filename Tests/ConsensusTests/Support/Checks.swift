import Consensus
import MeshCore

/// Safety checks at every commit (agreement, validity, consecutive heights) and the records the
/// liveness checks read. Violations are collected, not trapped, so a test can count them per seed.
struct Checks {
    private(set) var submitted: Set<[UInt8]> = []
    /// The block every checked slot committed at each height.
    private(set) var decided: [UInt64: BlockHash] = [:]
    private var payloadHeight: [[UInt8]: UInt64] = [:]
    /// Per slot: height of its last commit in this life, and when it happened.
    private(set) var height: [Int: UInt64] = [:]
    private(set) var lastCommitAt: [Int: Instant] = [:]
    private(set) var violations: [String] = []
    /// The highest round of any block a checked slot committed.
    private(set) var maxCommittedRound: UInt64 = 0
    /// Each decided height's block time (`CommittedBlock.time`).
    private(set) var times: [UInt64: UInt64] = [:]

    mutating func submitted(_ payload: [UInt8]) { submitted.insert(payload) }

    mutating func restarted(slot: Int) { height[slot] = 0 }

    mutating func committed(_ c: CommittedBlock, slot: Int, checked: Bool, at t: Instant) {
        let previous = height[slot] ?? 0
        height[slot] = c.height
        lastCommitAt[slot] = t
        guard checked else { return }
        maxCommittedRound = max(maxCommittedRound, c.round)
        if c.height != previous + 1 { violations.append("slot \(slot): height \(c.height) after \(previous)") }
        if c.certificate.blockHash != c.hash { violations.append("slot \(slot): height \(c.height) certificate names another block") }
        if let d = decided[c.height] {
            if d != c.hash { violations.append("agreement: slot \(slot) committed \(c.hash) at height \(c.height), another slot \(d)") }
        } else {
            decided[c.height] = c.hash
            times[c.height] = c.time
        }
        for p in c.payloads {
            if !submitted.contains(p) { violations.append("validity: height \(c.height) holds a payload nobody submitted") }
            if let h = payloadHeight[p], h != c.height {
                violations.append("validity: a payload committed at heights \(h) and \(c.height)")
            }
            payloadHeight[p] = c.height
        }
        if Set(c.payloads).count != c.payloads.count { violations.append("validity: height \(c.height) holds a payload twice") }
    }

    func isCommitted(_ payload: [UInt8]) -> Bool { payloadHeight[payload] != nil }
    var committedPayloads: Int { payloadHeight.count }
    var maxDecidedHeight: UInt64 { decided.keys.max() ?? 0 }
}
