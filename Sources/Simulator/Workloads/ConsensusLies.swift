import Consensus
import MeshCore
import Node

/// What one validator's core signed, vote by vote: the `consensus_votes` checker's record. A core
/// must never sign votes for two blocks in one round, across restarts (its safety state is durable
/// before a vote leaves). A restart with the state lost (the disk wiped) starts a new life: such a
/// validator is byzantine by the protocol's definition, so only votes within one life are compared.
final class VoteLog: @unchecked Sendable {
    private var chosen: [UInt64: BlockHash] = [:]
    /// The first round in which the core signed two different votes (bumped on the node's thread,
    /// read by the driver between steps).
    private(set) var firstDouble: String?
    private(set) var votes: UInt64 = 0

    func record(round: UInt64, block: BlockHash, node: Int) {
        votes += 1
        if let earlier = chosen[round] {
            if earlier != block, firstDouble == nil {
                firstDouble = "validator \(node) signed votes for blocks \(earlier) and \(block) in round \(round)"
            }
            return
        }
        chosen[round] = block
        if chosen.count > 4096, let low = chosen.keys.min() { chosen[low] = nil }
    }

    /// The validator restarted with its safety state lost.
    func newLife() { chosen = [:] }
}

/// Installed in every simulated validator's `ConsensusService`: records each vote its core signs
/// (`VoteLog`), and while the timeline makes the node byzantine (`ServiceLie`), lies with the
/// validator's own key:
/// - `conflicting_proposals`: as leader, signs a second block for the round (the first block's
///   payloads less the last one, or with a payload submitted here when the first is empty) and
///   sends one block first to the even-indexed validators and the other first to the odd ones,
///   then each the other block: every validator hears both, in a different order.
/// - `double_vote`: sends, beside each vote, a vote for a block that does not exist.
/// Its own core stays honest (it votes for its first block only).
struct ConsensusLiar: ConsensusRewriter {
    let lie: ServiceLie
    let votes: VoteLog
    let identity: NodeIdentity
    let genesis: Genesis
    let node: Int
    var rng: SeededGenerator
    /// The last payload submitted here (a genuine payload for an empty block's twin).
    var lastSubmitted: [UInt8]?

    mutating func rewrite(_ outputs: [ConsensusOutput], after input: ConsensusInput, core: ConsensusCore) -> [ConsensusOutput] {
        if case let .submit(p) = input { lastSubmitted = p }
        var out: [ConsensusOutput] = []
        out.reserveCapacity(outputs.count)
        for o in outputs {
            switch o {
            case let .persist(state, token, then):
                var sends: [ConsensusOutput] = []
                for s in then { rewrite(send: s, core: core, into: &sends) }
                out.append(.persist(state, token: token, then: sends))
            case .send, .broadcast:
                rewrite(send: o, core: core, into: &out)
            case .commit:
                out.append(o)
            }
        }
        return out
    }

    private mutating func rewrite(send o: ConsensusOutput, core: ConsensusCore, into out: inout [ConsensusOutput]) {
        let bytes: [UInt8]
        switch o {
        case let .send(_, b), let .broadcast(b): bytes = b
        default: out.append(o); return
        }
        // Byte 1 is the message type (Docs/consensus.md): only votes and proposals matter here.
        guard bytes.count > 2, bytes[1] == 1 || bytes[1] == 2,
              let message = try? ConsensusMessage.decode(bytes, chainID: genesis.chainID) else {
            out.append(o)
            return
        }
        switch message {
        case let .vote(v):
            votes.record(round: v.round, block: v.blockHash, node: node)
            out.append(o)
            guard lie.behaviour == .doubleVote, case let .send(to, _) = o else { return }
            var fake = [UInt8](repeating: 0, count: 32)
            for i in 0..<32 { fake[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let second = Vote.signed(round: v.round, block: BlockHash(bytes: fake)!, voter: v.voter, by: identity, chainID: genesis.chainID, epoch: v.epoch)
            out.append(.send(to: to, bytes: ConsensusMessage.vote(second).encoded()))
            lie.acts += 1
        case let .proposal(p):
            guard lie.behaviour == .conflictingProposals, case .broadcast = o, let twin = twin(of: p) else {
                out.append(o)
                return
            }
            let first = ConsensusMessage.proposal(p).encoded(), second = ConsensusMessage.proposal(twin).encoded()
            let others = genesis.validators.keys.indices.filter { genesis.validators.keys[$0] != core.key }
            for v in others { out.append(.send(to: genesis.validators.keys[v], bytes: v % 2 == 0 ? first : second)) }
            for v in others { out.append(.send(to: genesis.validators.keys[v], bytes: v % 2 == 0 ? second : first)) }
            lie.acts += 1
        default:
            out.append(o)
        }
    }

    /// A second, different, validly signed block for the proposal's round; nil when there is no
    /// genuine payload to tell them apart with.
    private func twin(of p: Proposal) -> Proposal? {
        let b = p.block
        var payloads = b.payloads
        if !payloads.isEmpty {
            payloads.removeLast()
        } else if let extra = lastSubmitted {
            payloads = [extra]
        } else {
            return nil
        }
        let other = Block(chainID: genesis.chainID, epoch: b.epoch, round: b.round, height: b.height, proposer: b.proposer,
                          justify: b.justify, payloads: payloads, time: b.time)
        return Proposal.signed(other, timeoutCertificate: p.timeoutCertificate, by: identity, chainID: genesis.chainID)
    }
}
