import Consensus
import MeshCore

/// What a slot does besides running its core. Byzantine behaviours rewrite the honest core's
/// outgoing messages (they sign with the slot's real key, so only the protocol can refuse them).
enum Behaviour: Equatable {
    case honest
    /// As leader, sends one block to half the validators and another to the rest.
    case equivocator
    /// Votes for every proposal of a round (its core runs `.voteTwiceInARound`) and adds a vote
    /// for a block that does not exist to every vote it sends.
    case doubleVoter
    /// Never sends a vote.
    case withholdVotes
    /// As leader, sends a broken proposal (bad signature, wrong height, a payload twice, a short
    /// certificate, or garbage), a different break each round.
    case invalidProposer
    /// An honest core whose identity also runs in another slot (Twins), or that restarts with its
    /// safety state lost: honest code, byzantine identity, so its commits are not checked.
    case twin
}

enum Byzantine {
    static func filter(_ net: VirtualNet, slot s: Int, _ outs: [ConsensusOutput]) -> [ConsensusOutput] {
        let behaviour = net.slots[s].behaviour
        guard behaviour != .honest, behaviour != .twin else { return outs }
        let me = net.slots[s].validator
        let identity = net.identities[me]
        let chainID = net.genesis.chainID
        var result: [ConsensusOutput] = []
        for o in outs {
            let bytes: [UInt8]
            switch o {
            case .send(_, let b), .broadcast(let b): bytes = b
            default:
                result.append(o)
                continue
            }
            let message = try? ConsensusMessage.decode(bytes, chainID: chainID)
            switch (behaviour, message) {
            case (.equivocator, .proposal(let p)?):
                let extra = Array("byz-\(me)-\(p.block.round)".utf8)
                net.checks.submitted(extra)
                net.byzantineActs += 1
                let b = p.block
                let other = Block(chainID: chainID, epoch: b.epoch, round: b.round, height: b.height, proposer: b.proposer,
                                  justify: b.justify, payloads: b.payloads + [extra])
                let second = Proposal.signed(other, timeoutCertificate: p.timeoutCertificate, by: identity, chainID: chainID)
                for v in 0..<net.identities.count where v != me {
                    let chosen = v % 2 == 0 ? p : second
                    result.append(.send(to: net.key(v), bytes: ConsensusMessage.proposal(chosen).encoded()))
                }
            case (.doubleVoter, .vote(let v)?):
                result.append(o)
                var fake = [UInt8](repeating: 0, count: 32)
                for i in 0..<32 { fake[i] = UInt8(truncatingIfNeeded: net.rng.next()) }
                let second = Vote.signed(round: v.round, block: BlockHash(bytes: fake)!, voter: v.voter, by: identity, chainID: chainID)
                if case .send(let to, _) = o { result.append(.send(to: to, bytes: ConsensusMessage.vote(second).encoded())) }
                net.byzantineActs += 1
            case (.withholdVotes, .vote?):
                net.byzantineActs += 1
                continue
            case (.invalidProposer, .proposal(let p)?):
                net.byzantineActs += 1
                result.append(.broadcast(bytes: broken(p, identity: identity, chainID: chainID, net: net)))
            default:
                result.append(o)
            }
        }
        return result
    }

    static func broken(_ p: Proposal, identity: NodeIdentity, chainID: [UInt8], net: VirtualNet) -> [UInt8] {
        let b = p.block
        func resign(_ block: Block, justify: QuorumCertificate? = nil) -> [UInt8] {
            ConsensusMessage.proposal(Proposal.signed(block, timeoutCertificate: p.timeoutCertificate, by: identity, chainID: chainID)).encoded()
        }
        switch b.round % 5 {
        case 0:
            var sig = p.signature
            sig[7] ^= 0x40
            return ConsensusMessage.proposal(p.withSignature(sig)).encoded()
        case 1:
            return resign(Block(chainID: chainID, epoch: b.epoch, round: b.round, height: b.height + 5, proposer: b.proposer,
                                justify: b.justify, payloads: b.payloads))
        case 2:
            let dup = Array("byz-dup-\(b.round)".utf8)
            net.checks.submitted(dup)
            return resign(Block(chainID: chainID, epoch: b.epoch, round: b.round, height: b.height, proposer: b.proposer,
                                justify: b.justify, payloads: b.payloads + [dup, dup]))
        case 3 where b.justify.round > 0:
            return resign(Block(chainID: chainID, epoch: b.epoch, round: b.round, height: b.height, proposer: b.proposer,
                                justify: b.justify.droppingLastSigner, payloads: b.payloads))
        default:
            let enc = ConsensusMessage.proposal(p).encoded()
            return Array(enc.prefix(enc.count / 2))
        }
    }
}
