import Testing
import Consensus
import MeshCore
import Sodium

/// One core driven by hand: each refusal is counted under its reason, votes wait for their
/// persist, and a restarted validator never votes twice in a round.
@Suite struct CoreRuleTests {
    let f = Fixture()

    @Test func aVoteLeavesOnlyBehindThePersistOfTheStateThatForbidsASecondOne() {
        // Validator 3: its round-1 vote goes to round 2's leader, validator 2.
        var c = f.core(3)
        let outs = c.handle(.message(from: f.key(1), bytes: f.proposal(f.block())), now: .zero)
        #expect(outs.persists == 1)
        let m = outs.messages
        #expect(m.count == 1 && m[0].persisted, "\(m)")
        guard case .persist(let state, _, _)? = outs.first else { Issue.record("no persist first"); return }
        #expect(state.lastVotedRound == 1)
        #expect(outs.votes.first?.round == 1)
    }

    @Test func restartedValidatorNeverVotesTwiceInARound() {
        var c = f.core(3)
        let first = f.block(payloads: [Array("a".utf8)])
        let outs = c.handle(.message(from: f.key(1), bytes: f.proposal(first)), now: .zero)
        guard case .persist(let state, _, _)? = outs.first else { Issue.record("no persist"); return }
        // The leader equivocates after our restart: a different block for the same round.
        let second = f.block(payloads: [Array("b".utf8)])
        var restarted = f.core(3, restoring: try! SafetyState.decode(state.encoded))
        let again = restarted.handle(.message(from: f.key(1), bytes: f.proposal(second)), now: .zero)
        #expect(again.votes.isEmpty, "voted twice in round 1 after a restart")
        // Without its state the same validator would vote again: the state is what prevents it.
        var amnesiac = f.core(3)
        #expect(amnesiac.handle(.message(from: f.key(1), bytes: f.proposal(second)), now: .zero).votes.count == 1)
    }

    @Test func equivocatingProposalGetsNoSecondVoteAndIsCounted() {
        var c = f.core(3)
        let a = f.block(payloads: [Array("a".utf8)])
        let b = f.block(payloads: [Array("b".utf8)])
        #expect(c.handle(.message(from: f.key(1), bytes: f.proposal(a)), now: .zero).votes.count == 1)
        #expect(c.handle(.message(from: f.key(1), bytes: f.proposal(b)), now: .zero).votes.isEmpty)
        #expect(c.counters.dropped(.equivocatingProposal) == 1)
    }

    @Test func messageFromAKeyOutsideTheValidatorSetIsDropped() {
        var c = f.core(2)
        let stranger = NodeIdentity.deterministic(runSeed: 77, index: 0)
        _ = c.handle(.message(from: ValidatorKey(stranger.publicKey)!, bytes: f.proposal(f.block())), now: .zero)
        #expect(c.counters.dropped(.notValidator) == 1)
        #expect(c.safety.lastVotedRound == 0)
    }

    @Test func badSignaturesAreDropped() {
        var c = f.core(2)
        let b = f.block()
        let v = f.vote(b, by: 0)
        var sig = v.signature
        sig[0] ^= 1
        let forged = Vote.signed(round: 1, block: b.hash, voter: 0, by: f.identities[3], chainID: f.chainID)
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.vote(forged).encoded()), now: .zero)
        #expect(c.counters.dropped(.badSignature) == 1)
        let p = Proposal.signed(b, timeoutCertificate: nil, by: f.identities[0], chainID: f.chainID)
        _ = c.handle(.message(from: f.key(1), bytes: ConsensusMessage.proposal(p).encoded()), now: .zero)
        #expect(c.counters.dropped(.badSignature) == 2)
    }

    @Test func voteCarryingAnotherValidatorsIndexIsASenderMismatch() {
        var c = f.core(2)
        let v = f.vote(f.block(), by: 3)
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.vote(v).encoded()), now: .zero)
        #expect(c.counters.dropped(.senderMismatch) == 1)
    }

    @Test func certificateWithTooFewSignersIsRefused() {
        var c = f.core(2)
        let b = f.block()
        let short = f.certificate(b, signers: [0, 1])
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.sync(short, nil).encoded()), now: .zero)
        #expect(c.counters.dropped(.tooFewSigners) == 1)
        #expect(c.safety.highQC.round == 0)
        // A full one is taken, and moves the core to the next round.
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.sync(f.certificate(b, signers: [0, 1, 3]), nil).encoded()), now: .zero)
        #expect(c.safety.highQC.round == 1 && c.round == 2)
    }

    @Test func forgedCopyOfACheckedCertificateIsCheckedAgain() {
        var c = f.core(2)
        let b = f.block()
        let good = f.certificate(b, signers: [0, 1, 3])
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.sync(good, nil).encoded()), now: .zero)
        #expect(c.counters.totalDrops == 0)
        // Same round and block, one signer fewer: once accepted on the strength of the genuine
        // one, such a block could not be served to a validator catching up.
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.sync(good.droppingLastSigner, nil).encoded()), now: .zero)
        #expect(c.counters.dropped(.tooFewSigners) == 1)
    }

    @Test func certificateWithASignatureFromTheWrongSignerIsRefused() {
        var c = f.core(2)
        let b = f.block()
        let good = f.certificate(b, signers: [0, 1, 3])
        var sigs = good.signatures
        sigs[2] = f.vote(b, by: 2).signature
        let bad = QuorumCertificate(epoch: 0, round: 1, blockHash: b.hash, signers: good.signers, signatures: sigs)
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.sync(bad, nil).encoded()), now: .zero)
        #expect(c.counters.dropped(.badSignature) == 1)
    }

    @Test func farFutureVotesAndTimeoutsAreDropped() {
        var c = f.core(1)
        let far = f.block(round: 5_000)
        let v = Vote.signed(round: 5_000, block: far.hash, voter: 0, by: f.identities[0], chainID: f.chainID)
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.vote(v).encoded()), now: .zero)
        #expect(c.counters.dropped(.farFutureRound) == 1)
        let huge = Vote.signed(round: .max, block: far.hash, voter: 0, by: f.identities[0], chainID: f.chainID)
        _ = c.handle(.message(from: f.key(0), bytes: ConsensusMessage.vote(huge).encoded()), now: .zero)
        #expect(c.counters.dropped(.farFutureRound) == 2)
    }

    @Test func proposalFromAValidatorWhoIsNotTheRoundsLeaderIsDropped() {
        var c = f.core(2)
        let b = Block(chainID: f.chainID, epoch: 0, round: 1, height: 1, proposer: 3, justify: f.genesis.certificate, payloads: [])
        _ = c.handle(.message(from: f.key(3), bytes: ConsensusMessage.proposal(Proposal.signed(b, timeoutCertificate: nil, by: f.identities[3], chainID: f.chainID)).encoded()), now: .zero)
        #expect(c.counters.dropped(.wrongLeader) == 1)
    }

    @Test func proposalThatSkipsARoundWithoutATimeoutCertificateIsInvalid() {
        var c = f.core(2)
        let b = f.block(round: 3, height: 1)
        _ = c.handle(.message(from: f.key(3), bytes: f.proposal(b)), now: .zero)
        #expect(c.counters.dropped(.invalidProposal) == 1)
    }

    @Test func proposalWithAPayloadTwiceIsInvalid() {
        var c = f.core(2)
        let p = Array("twice".utf8)
        _ = c.handle(.message(from: f.key(1), bytes: f.proposal(f.block(payloads: [p, p]))), now: .zero)
        #expect(c.counters.dropped(.invalidProposal) == 1)
        #expect(c.safety.lastVotedRound == 0)
    }

    @Test func malformedAndUnknownMessagesAreCounted() {
        var c = f.core(2)
        _ = c.handle(.message(from: f.key(1), bytes: []), now: .zero)
        _ = c.handle(.message(from: f.key(1), bytes: [1, 99]), now: .zero)
        let good = f.proposal(f.block())
        _ = c.handle(.message(from: f.key(1), bytes: Array(good.dropLast())), now: .zero)
        _ = c.handle(.message(from: f.key(1), bytes: good + [0]), now: .zero)
        #expect(c.counters.dropped(.malformed) == 3)
        #expect(c.counters.dropped(.unknownType) == 1)
    }

    @Test func timeoutsFromAQuorumFormACertificateAndTheNextLeaderProposesOnIt() {
        // Validator 2 leads round 2; round 1's leader is silent.
        var c = f.core(2)
        var outs = c.handle(.timer, now: .zero + .seconds(2))
        #expect(outs.messages.contains { if case .timeout(let t) = $0.message { t.round == 1 && $0.persisted } else { false } })
        // Our own timeout counts toward the certificate once its persist is durable.
        for case .persist(_, let token, _) in outs { outs += c.handle(.persisted(token: token), now: .zero + .seconds(2)) }
        for v in [0, 3] {
            let sig = f.identities[v].sign(timeoutDigestBytes(f, round: 1, high: 0))
            let t = TimeoutFixture.make(round: 1, voter: v, high: f.genesis.certificate, signature: sig)
            outs += c.handle(.message(from: f.key(v), bytes: t), now: .zero + .seconds(2))
        }
        #expect(c.highTC?.round == 1)
        #expect(c.round == 2)
        outs = c.handle(.timer, now: .zero + .seconds(3))
        let proposals = outs.messages.compactMap { if case .proposal(let p) = $0.message { p } else { nil } }
        #expect(proposals.count == 1 && proposals[0].timeoutCertificate?.round == 1 && proposals[0].block.round == 2)
    }

    @Test func aTimeoutWhoseWriteNeverCameBackIsWrittenAgainAtTheNextRoundTimer() {
        // Validator 2 times out round 1; the write fails (an I/O error: no `.persisted`, and its
        // broadcast never left). Regression: consensus-4 seeds where one validator's disk failed
        // while another was halted stalled for good, as the timeout was only re-broadcast once durable.
        var c = f.core(2)
        let first = c.handle(.timer, now: .zero + .seconds(2))
        #expect(first.persists == 1 && first.messages.contains { if case .timeout = $0.message { $0.persisted } else { false } })
        let again = c.handle(.timer, now: .zero + .seconds(4))
        #expect(again.persists == 1, "the timeout's state is written again")
        #expect(again.messages.contains { if case .timeout(let t) = $0.message { t.round == 1 && $0.persisted } else { false } })
        // Once that write is durable, later timers re-broadcast the timeout without writing.
        for case .persist(_, let token, _) in again { _ = c.handle(.persisted(token: token), now: .zero + .seconds(4)) }
        let later = c.handle(.timer, now: .zero + .seconds(8))
        #expect(later.persists == 0)
        #expect(later.messages.contains { if case .timeout(let t) = $0.message { t.round == 1 && !$0.persisted } else { false } })
    }

    @Test func aValidatorStillBehindIsSyncedAgainARoundTimeoutLater() {
        // Validator 2 forms the timeout certificate of round 1 and enters round 2; validator 1
        // keeps re-broadcasting its round-1 timeout (it never got the certificate). Regression:
        // consensus-4 seed 155, where the one `sync` of the round was lost and the two sides
        // stayed a round apart for good.
        var c = f.core(2)
        let t0 = Instant.zero + .seconds(2)
        var outs = c.handle(.timer, now: t0)
        for case .persist(_, let token, _) in outs { outs += c.handle(.persisted(token: token), now: t0) }
        func timeout(_ v: Int) -> [UInt8] {
            TimeoutFixture.make(round: 1, voter: v, high: f.genesis.certificate, signature: f.identities[v].sign(timeoutDigestBytes(f, round: 1, high: 0)))
        }
        for v in [0, 3] { _ = c.handle(.message(from: f.key(v), bytes: timeout(v)), now: t0) }
        #expect(c.round == 2)
        func syncs(_ o: [ConsensusOutput]) -> Int { o.messages.filter { if case .sync = $0.message { true } else { false } }.count }
        #expect(syncs(c.handle(.message(from: f.key(1), bytes: timeout(1)), now: t0)) == 1)
        #expect(syncs(c.handle(.message(from: f.key(1), bytes: timeout(1)), now: t0 + .milliseconds(500))) == 0, "at most once per round timeout")
        #expect(syncs(c.handle(.message(from: f.key(1), bytes: timeout(1)), now: t0 + .milliseconds(1100))) == 1, "still behind: synced again")
    }

    @Test func inABackedOffRoundTheVoteIsSentAgainEveryBaseTimeout() {
        // Validator 2 enters round 3 through two timeout certificates in a row (rounds 1 and 2),
        // so round 3 lasts 2 × the 1 s base timeout. It votes for round 3's proposal; the vote
        // goes to round 4's leader, validator 0. Regression: consensus-4 seed 837, where the next
        // leader was degraded when the votes left and nothing was sent again until the backed-off
        // timer (8 s there) ran out, past the 4 s liveness bound.
        var c = f.core(2)
        let t0 = Instant.zero + .milliseconds(100)
        func durable(_ outs: [ConsensusOutput]) { for case .persist(_, let token, _) in outs { _ = c.handle(.persisted(token: token), now: t0) } }
        for round: UInt64 in [1, 2] {
            for v in [0, 1, 3] {
                let t = TimeoutFixture.make(round: round, voter: v, high: f.genesis.certificate,
                                            signature: f.identities[v].sign(timeoutDigestBytes(f, round: round, high: 0)))
                durable(c.handle(.message(from: f.key(v), bytes: t), now: t0))
            }
        }
        #expect(c.round == 3 && c.highTC?.round == 2)
        let b = f.block(round: 3, height: 1)
        let voted = c.handle(.message(from: f.key(3), bytes: f.proposal(b, tc: c.highTC)), now: t0)
        #expect(voted.votes.map(\.round) == [3])
        durable(voted)
        #expect(c.deadline == t0 + .seconds(1), "the re-send comes before the 2 s round timer")
        #expect(c.handle(.timer, now: t0 + .milliseconds(500)).messages.isEmpty)
        let again = c.handle(.timer, now: t0 + .seconds(1))
        #expect(again.persists == 0, "nothing new is signed or written")
        #expect(again.messages.count == 1 && again.votes.map(\.round) == [3] && !again.messages[0].persisted, "\(again.messages)")
        if case .send(let to, _)? = again.first { #expect(to == f.key(0)) } else { Issue.record("not sent to the next leader") }
        #expect(c.counters.resends == 1)
        // The round timer still fires at 2 s: a timeout, not another re-send.
        let timedOut = c.handle(.timer, now: t0 + .seconds(2))
        #expect(timedOut.messages.contains { if case .timeout(let t) = $0.message { t.round == 3 } else { false } })
    }

    @Test func inABackedOffRoundTheLeaderSendsItsProposalAgain() {
        // Validator 3 leads round 3, entered through two timeout certificates (a 2 s round). Its
        // proposal and, once durable, its vote (to round 4's leader, validator 0) go out again
        // at 1 s; the round timer still fires at 2 s.
        var c = f.core(3)
        let t0 = Instant.zero + .milliseconds(100)
        func durable(_ outs: [ConsensusOutput], at now: Instant) { for case .persist(_, let token, _) in outs { _ = c.handle(.persisted(token: token), now: now) } }
        for round: UInt64 in [1, 2] {
            for v in [0, 1, 2] {
                let t = TimeoutFixture.make(round: round, voter: v, high: f.genesis.certificate,
                                            signature: f.identities[v].sign(timeoutDigestBytes(f, round: round, high: 0)))
                durable(c.handle(.message(from: f.key(v), bytes: t), now: t0), at: t0)
            }
        }
        #expect(c.round == 3)
        let tp = t0 + .milliseconds(300)
        let proposed = c.handle(.timer, now: tp)
        let first = proposed.messages.compactMap { if case .proposal(let p) = $0.message { p } else { nil } }
        #expect(first.count == 1 && first.first?.block.round == 3)
        durable(proposed, at: tp)
        let again = c.handle(.timer, now: t0 + .seconds(1))
        #expect(again.persists == 0)
        let resent = again.messages.compactMap { if case .proposal(let p) = $0.message { p } else { nil } }
        #expect(resent == first, "the same signed proposal")
        #expect(again.votes.map(\.round) == [3])
    }

    @Test func aRoundThatIsNotBackedOffSendsNothingAgainBeforeItsTimer() {
        var c = f.core(3)
        let outs = c.handle(.message(from: f.key(1), bytes: f.proposal(f.block())), now: .zero)
        for case .persist(_, let token, _) in outs { _ = c.handle(.persisted(token: token), now: .zero) }
        #expect(c.deadline == .zero + .seconds(1))
        #expect(c.handle(.timer, now: .zero + .milliseconds(999)).messages.isEmpty)
        #expect(c.counters.resends == 0)
    }

    @Test func safetyStateRoundTripsAndATornWriteIsRefused() throws {
        let s = SafetyState(epoch: 0, lastVotedRound: 42, highQC: f.certificate(f.block(), signers: [0, 1, 2]))
        #expect(try SafetyState.decode(s.encoded) == s)
        let torn = Array(s.encoded.prefix(40))
        #expect(throws: SafetyStateError.self) { try SafetyState.decode(torn) }
        var flipped = s.encoded
        flipped[10] ^= 1
        #expect(throws: SafetyStateError.self) { try SafetyState.decode(flipped) }
    }

    @Test func genesisParsesKeysAndNamesTheBadLine() throws {
        let g = try Genesis.parse("# validators\n" + f.genesis.text)
        #expect(g == f.genesis)
        #expect(throws: GenesisError.badKey(line: 2)) { try Genesis.parse(Hex.encode(f.identities[0].publicKey) + "\nnot-a-key\n") }
        // The negated twin of a validator's key (sign bit set) names no validator.
        var twin = f.identities[1].publicKey.bytes
        twin[31] |= 0x80
        #expect(ValidatorKey(twin) == nil)
        #expect(throws: GenesisError.badKey(line: 1)) { try Genesis.parse(Hex.encode(twin) + "\n") }
        #expect(throws: GenesisError.badSet(count: 2)) {
            try Genesis.parse(Hex.encode(f.identities[0].publicKey) + "\n" + Hex.encode(f.identities[0].publicKey) + "\n")
        }
    }

    @Test func quorumFollowsTheSetSize() {
        for (n, q) in [(1, 1), (4, 3), (5, 4), (7, 5), (10, 7), (100, 67)] {
            let keys = (0..<n).map { ValidatorKey(NodeIdentity.deterministic(runSeed: 3, index: $0).publicKey)! }
            #expect(ValidatorSet(keys)!.quorum == q, "n=\(n)")
        }
    }
}

/// Builds a timeout message's bytes field by field (Docs/consensus.md, "Encodings"), so the test
/// checks the documented layout rather than reusing the encoder.
enum TimeoutFixture {
    static func make(round: UInt64, voter: Int, high: QuorumCertificate, signature: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.u8(1)
        w.u8(3)
        w.u64(0)
        w.u64(round)
        w.u16(UInt16(voter))
        w.raw(high.encoded)
        w.raw(signature)
        return w.bytes
    }
}
