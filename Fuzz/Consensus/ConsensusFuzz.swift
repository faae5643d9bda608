// libFuzzer harness for every consensus message decoder and a running core's receive path.
// Built by Fuzz/run-consensus.sh with -sanitize=fuzzer,address.
//
// Input layout: byte 0 selects a mode, byte 1 a sender (validator index mod 4), the rest is the message.
// - bit 0 set: the message is a genuine one (chosen by byte 2) with the rest of the input XORed
//   over it, so mutations land inside well-formed structures.
// With CONSENSUS_FUZZ_DECODER=NAME (run-consensus.sh --each runs one per message type) every
// input is XORed over that genuine message.
// Properties checked: decode never traps; a decoded message re-encodes to the same bytes; the core
// never traps and counts a drop for every message it cannot decode.
import Glibc
import MeshCore
import Consensus

let identities = (0..<4).map { NodeIdentity.deterministic(runSeed: 0xF0_22, index: $0) }
let genesis = Genesis(validators: ValidatorSet(identities.map { ValidatorKey($0.publicKey)! })!)
let chainID = genesis.chainID

func certificate(_ b: Block, _ signers: [Int]) -> QuorumCertificate {
    QuorumCertificate(epoch: 0, round: b.round, blockHash: b.hash, signers: SignerBitmap(count: 4, signers: signers),
                      signatures: signers.map { Vote.signed(round: b.round, block: b.hash, voter: UInt16($0), by: identities[$0], chainID: chainID).signature })
}

struct FuzzState {
    var core: ConsensusCore
    var genuine: [[UInt8]] = []
    var names: [String] = []
    var fixed: Int?

    init() {
        var config = ConsensusConfig(genesis: genesis)
        config.roundTimeout = .seconds(3600)
        core = ConsensusCore(config: config, identity: identities[2], rng: SeededGenerator(seed: 1))
        _ = core.handle(.start, now: .zero)
        let b1 = Block(chainID: chainID, epoch: 0, round: 1, height: 1, proposer: 1, justify: genesis.certificate, payloads: [Array("a".utf8), [1, 2, 3]])
        let qc1 = certificate(b1, [0, 1, 3])
        let b2 = Block(chainID: chainID, epoch: 0, round: 2, height: 2, proposer: 2, justify: qc1, payloads: [])
        var t = ByteWriter()
        t.u8(1); t.u8(3); t.u64(0); t.u64(3); t.u16(1); t.raw(qc1.encoded)
        var digest = ByteWriter()
        digest.raw(Array("iotaf/consensus/timeout/v1".utf8)); digest.raw(chainID); digest.u64(0); digest.u64(3); digest.u64(1)
        t.raw(identities[1].sign(digest.bytes))
        let messages: [(String, [UInt8])] = [
            ("proposal", ConsensusMessage.proposal(Proposal.signed(b1, timeoutCertificate: nil, by: identities[1], chainID: chainID)).encoded()),
            ("vote", ConsensusMessage.vote(Vote.signed(round: 1, block: b1.hash, voter: 0, by: identities[0], chainID: chainID)).encoded()),
            ("timeout", t.bytes),
            ("sync", ConsensusMessage.sync(qc1, nil).encoded()),
            ("blockRequest", ConsensusMessage.blockRequest(b1.hash, count: 4).encoded()),
            ("blockResponse", ConsensusMessage.blockResponse([b2, b1]).encoded()),
            ("payloads", ConsensusMessage.payloads([Array("p".utf8), []]).encoded()),
        ]
        names = messages.map(\.0)
        genuine = messages.map(\.1)
        if let wanted = getenv("CONSENSUS_FUZZ_DECODER").map({ String(cString: $0) }) {
            guard let i = names.firstIndex(of: wanted) else {
                fatalError("CONSENSUS_FUZZ_DECODER=\(wanted): no such message; known: \(names.joined(separator: " "))")
            }
            fixed = i
        }
        // Write the genuine messages as seeds when asked (run-consensus.sh does, into its corpus).
        if let dir = getenv("CONSENSUS_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) {
            for (i, m) in genuine.enumerated() {
                let path = "\(dir)/seed-\(names[i])"
                guard let file = fopen(path, "wb") else { continue }
                _ = ([0, 0] + m).withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
                fclose(file)
            }
        }
    }
}

nonisolated(unsafe) var state = FuzzState()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let mode = input[0]
    let sender = Int(input[1] % 4)
    var bytes = Array(input.dropFirst(2))
    if mode & 1 == 1 || state.fixed != nil {
        let pick = state.fixed ?? Int((bytes.first ?? 0) % UInt8(state.genuine.count))
        var base = state.genuine[pick]
        let mask = state.fixed == nil ? Array(bytes.dropFirst()) : bytes
        for (i, m) in mask.enumerated() {
            if i < base.count { base[i] ^= m } else { base.append(m) }
        }
        bytes = base
    }
    let before = state.core.counters.totalDrops
    var refused = false
    do {
        let m = try ConsensusMessage.decode(bytes, chainID: chainID)
        precondition(m.encoded() == bytes, "decoded message re-encodes differently")
    } catch {
        refused = true
    }
    _ = state.core.handle(.message(from: ValidatorKey(identities[sender].publicKey)!, bytes: bytes), now: .zero)
    if refused { precondition(state.core.counters.totalDrops == before + 1, "an undecodable message was not counted") }
    return 0
}
