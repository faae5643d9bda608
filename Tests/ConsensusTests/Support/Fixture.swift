import Consensus
import MeshCore

/// Four validators' identities and helpers that build signed messages, for tests that drive one
/// core by hand.
struct Fixture {
    let identities: [NodeIdentity]
    let genesis: Genesis
    var config: ConsensusConfig

    init(validators n: Int = 4) {
        identities = (0..<n).map { NodeIdentity.deterministic(runSeed: 0xF1_C7, index: $0) }
        genesis = Genesis(validators: ValidatorSet(identities.map { ValidatorKey($0.publicKey)! })!)
        config = ConsensusConfig(genesis: genesis)
    }

    func key(_ i: Int) -> ValidatorKey { ValidatorKey(identities[i].publicKey)! }
    var chainID: [UInt8] { genesis.chainID }

    func core(_ i: Int, restoring: SafetyState? = nil) -> ConsensusCore {
        var c = ConsensusCore(config: config, identity: identities[i], restoring: restoring, rng: SeededGenerator(seed: UInt64(i)))
        _ = c.handle(.start, now: .zero)
        return c
    }

    /// Round 1's block (leader 1) on genesis with these payloads.
    func block(round: UInt64 = 1, height: UInt64 = 1, justify: QuorumCertificate? = nil, payloads: [[UInt8]] = []) -> Block {
        Block(chainID: chainID, epoch: 0, round: round, height: height, proposer: UInt16(round % UInt64(identities.count)),
              justify: justify ?? genesis.certificate, payloads: payloads)
    }

    func proposal(_ b: Block, tc: TimeoutCertificate? = nil) -> [UInt8] {
        ConsensusMessage.proposal(Proposal.signed(b, timeoutCertificate: tc, by: identities[Int(b.proposer)], chainID: chainID)).encoded()
    }

    func vote(_ b: Block, by v: Int) -> Vote {
        Vote.signed(round: b.round, block: b.hash, voter: UInt16(v), by: identities[v], chainID: chainID)
    }

    /// A certificate for `b` signed by `signers`.
    func certificate(_ b: Block, signers: [Int]) -> QuorumCertificate {
        QuorumCertificate(epoch: 0, round: b.round, blockHash: b.hash,
                          signers: SignerBitmap(count: identities.count, signers: signers),
                          signatures: signers.sorted().map { vote(b, by: $0).signature })
    }
}

extension [ConsensusOutput] {
    /// Messages that leave, with those behind a `.persist` (and whether they were behind one).
    var messages: [(message: ConsensusMessage, persisted: Bool)] {
        var out: [(ConsensusMessage, Bool)] = []
        func add(_ o: ConsensusOutput, _ behind: Bool) {
            switch o {
            case .send(_, let b), .broadcast(let b):
                if let m = try? ConsensusMessage.decode(b, chainID: [UInt8](repeating: 0, count: 0)) { out.append((m, behind)) }
            case .persist(_, _, let then): for t in then { add(t, true) }
            case .commit: break
            }
        }
        for o in self { add(o, false) }
        return out
    }

    var votes: [Vote] { messages.compactMap { if case .vote(let v) = $0.message { v } else { nil } } }
    var persists: Int { filter { if case .persist = $0 { true } else { false } }.count }
}
