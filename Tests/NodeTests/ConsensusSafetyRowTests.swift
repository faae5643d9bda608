import Consensus
import MeshCore
import Node
import NodeService
import Testing

/// The consensus service keeps its safety state in two rows and writes each new state to the row
/// not holding the last state known durable: a write torn by a crash (whose vote never left,
/// the write not being durable) leaves a readable state behind, and the validator resumes from
/// it instead of halting for good (consensus-4 seeds 154, 155, 179 and 185 lost a validator to
/// one torn write, and then their liveness to the next fault).
@Suite struct ConsensusSafetyRowTests {
    static let identities = (0..<4).map { NodeIdentity.deterministic(runSeed: 31, index: $0) }
    static let genesis = Genesis(validators: ValidatorSet(identities.map { ValidatorKey($0.publicKey)! })!)

    static func service() throws -> ConsensusService {
        try ConsensusService(config: ConsensusConfig(genesis: genesis), identity: identities[0], rng: SeededGenerator(seed: 5))
    }

    static func state(_ lastVoted: UInt64) -> [UInt8] {
        SafetyState(epoch: 0, lastVotedRound: lastVoted, highQC: genesis.certificate).encoded
    }

    static func row(_ key: UInt8, _ value: [UInt8]) -> StoredRow {
        StoredRow(table: ConsensusService.safetyTable, key: [key], value: value)
    }

    /// Runs the service to its next round timeout and returns the persist it asks for.
    static func nextPersist(_ s: inout ConsensusService) -> PersistBatch? {
        guard let at = s.deadline else { return nil }
        for o in s.handle(.timer, now: at, members: NoMembers()) {
            if case let .persist(batch, _) = o { return batch }
        }
        return nil
    }

    static func key(of batch: PersistBatch?) -> [UInt8]? {
        guard case let .put(_, key, _)? = batch?.ops.first else { return nil }
        return key
    }

    @Test func writesAlternateOnlyOnceTheOtherRowIsDurable() throws {
        var s = try Self.service()
        _ = s.handle(.start, now: .zero, members: NoMembers())
        let first = Self.nextPersist(&s)
        #expect(Self.key(of: first) == [1])  // row 0 is (taken as) the durable one
        // Not yet durable: the next write goes to the same row, never over row 0.
        let second = Self.nextPersist(&s)
        #expect(Self.key(of: second) == [1])
        _ = s.handle(.persisted(first!.ticket, .durable), now: s.deadline!, members: NoMembers())
        let third = Self.nextPersist(&s)
        #expect(Self.key(of: third) == [0])
        _ = s.handle(.persisted(second!.ticket, .failed("disk")), now: s.deadline!, members: NoMembers())
        #expect(Self.key(of: Self.nextPersist(&s)) == [0], "a failed write leaves the durable row where it was")
    }

    @Test func aTornNewerRowIsSkippedForTheDurableOne() throws {
        var s = try Self.service()
        let torn = Array(Self.state(9).prefix(20))
        _ = s.handle(.restored([Self.row(0, Self.state(7)), Self.row(1, torn)]), now: .zero, members: NoMembers())
        _ = s.handle(.start, now: .zero, members: NoMembers())
        #expect(s.halted == nil)
        #expect(s.status.lastVotedRound == 7)
        #expect(s.counters.tornSafetyRowsSkipped == 1)
        // The readable row is the durable one: the next write goes to the other.
        #expect(Self.key(of: Self.nextPersist(&s)) == [1])
    }

    @Test func theLaterOfTwoReadableRowsWins() throws {
        for rows in [[Self.row(0, Self.state(4)), Self.row(1, Self.state(6))],
                     [Self.row(0, Self.state(6)), Self.row(1, Self.state(4))]] {
            var s = try Self.service()
            _ = s.handle(.restored(rows), now: .zero, members: NoMembers())
            _ = s.handle(.start, now: .zero, members: NoMembers())
            #expect(s.status.lastVotedRound == 6)
            #expect(s.counters.tornSafetyRowsSkipped == 0)
        }
    }

    @Test func noReadableRowHalts() throws {
        var s = try Self.service()
        let out = s.handle(.restored([Self.row(0, Array(Self.state(3).prefix(10))), Self.row(1, [1, 2, 3])]),
                           now: .zero, members: NoMembers())
        _ = s.handle(.start, now: .zero, members: NoMembers())
        #expect(s.halted != nil && s.core == nil)
        #expect(out.count == 1)
        // A data directory from before the second row: key 0 only, resumed as before.
        var old = try Self.service()
        _ = old.handle(.restored([Self.row(0, Self.state(5))]), now: .zero, members: NoMembers())
        _ = old.handle(.start, now: .zero, members: NoMembers())
        #expect(old.halted == nil && old.status.lastVotedRound == 5)
    }
}
