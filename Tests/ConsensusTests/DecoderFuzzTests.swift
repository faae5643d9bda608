import Testing
import Consensus
import MeshCore

/// Random and mutated bytes for every consensus message decoder: decoding never traps, a refusal
/// always names a reason, a message that decodes re-encodes to the same bytes (one encoding), and a
/// running core counts a drop for every message it cannot decode. (Fuzz/Consensus runs the same
/// properties under libFuzzer with coverage for longer.)
@Suite struct DecoderFuzzTests {
    let f = Fixture()

    /// One genuine message of every type.
    var samples: [(String, [UInt8])] {
        let b1 = f.block(payloads: [Array("alpha".utf8), Array("beta".utf8)])
        let qc1 = f.certificate(b1, signers: [0, 1, 2])
        let b2 = f.block(round: 2, height: 2, justify: qc1, payloads: [[0xff, 0x00]])
        let t = Timeout.fixture(f, round: 3, voter: 2, high: qc1)
        let tc = TimeoutCertificate.fixture(f, round: 3, high: qc1)
        let b4 = Block(chainID: f.chainID, epoch: 0, round: 4, height: 2, proposer: 0, justify: qc1, payloads: [])
        let proposalTC = ConsensusMessage.proposal(Proposal.signed(b4, timeoutCertificate: tc, by: f.identities[0], chainID: f.chainID))
        return [
            ("proposal", f.proposal(b2)),
            ("proposalWithTC", proposalTC.encoded()),
            ("vote", ConsensusMessage.vote(f.vote(b1, by: 3)).encoded()),
            ("timeout", ConsensusMessage.timeout(t).encoded()),
            ("sync", ConsensusMessage.sync(qc1, tc).encoded()),
            ("blockRequest", ConsensusMessage.blockRequest(b1.hash, count: 8).encoded()),
            ("blockResponse", ConsensusMessage.blockResponse([b2, b1]).encoded()),
            ("payloads", ConsensusMessage.payloads([Array("x".utf8), [], Array(repeating: 7, count: 300)]).encoded()),
        ]
    }

    @Test func genuineMessagesRoundTrip() throws {
        for (name, bytes) in samples {
            let m = try ConsensusMessage.decode(bytes, chainID: f.chainID)
            #expect(m.encoded() == bytes, "\(name)")
        }
    }

    /// A message is in version 2 exactly when a block in it carries a time: every message without
    /// one, marked version 2, is refused (it would re-encode as version 1: two encodings).
    @Test func versionTwoWithoutABlockTimeIsRefused() {
        for (name, bytes) in samples {
            var marked = bytes
            marked[0] = 2
            #expect(throws: DropReason.malformed, "\(name)") { try ConsensusMessage.decode(marked, chainID: f.chainID) }
        }
    }

    @Test func mutatedMessagesAreRefusedWithAReasonOrDecodeCanonically() {
        var g = SeededGenerator(seed: 2026)
        var core = f.core(2)
        var reasons: [DropReason: Int] = [:]
        var decoded = 0
        let n = 1500
        for (name, genuine) in samples {
            for i in 0..<n {
                var bytes = genuine
                switch i % 5 {
                case 0: for _ in 0..<(1 + Int(g.next() % 4)) { bytes[Int(g.next() % UInt64(bytes.count))] ^= UInt8(1 + g.next() % 255) }
                case 1: bytes = Array(bytes.prefix(Int(g.next() % UInt64(bytes.count))))
                case 2: bytes += (0..<(1 + Int(g.next() % 8))).map { _ in UInt8(truncatingIfNeeded: g.next()) }
                case 3:
                    // A length or count field: overwrite 4 bytes with a large value.
                    let at = Int(g.next() % UInt64(max(1, bytes.count - 4)))
                    for k in 0..<min(4, bytes.count - at) { bytes[at + k] = k == 0 ? 0x7f : 0xff }
                default:
                    let at = Int(g.next() % UInt64(bytes.count))
                    bytes.insert(UInt8(truncatingIfNeeded: g.next()), at: at)
                }
                let before = core.counters.totalDrops
                do {
                    let m = try ConsensusMessage.decode(bytes, chainID: f.chainID)
                    decoded += 1
                    #expect(m.encoded() == bytes, "\(name): a mutation decoded but re-encodes differently")
                    _ = core.handle(.message(from: f.key(Int(g.next() % 4)), bytes: bytes), now: .zero)
                } catch {
                    reasons[error, default: 0] += 1
                    _ = core.handle(.message(from: f.key(Int(g.next() % 4)), bytes: bytes), now: .zero)
                    #expect(core.counters.totalDrops == before + 1, "\(name): an undecodable message was not counted")
                }
            }
        }
        #expect(reasons[.malformed, default: 0] > 0)
        #expect(reasons.values.reduce(0, +) + decoded == samples.count * n)
    }

    @Test func randomBytesNeverTrapAndAlwaysNameAReason() {
        var g = SeededGenerator(seed: 99)
        var core = f.core(1)
        var refused = 0
        for _ in 0..<20_000 {
            let len = Int(g.next() % 400)
            var bytes = (0..<len).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            // Most inputs get a valid version and type, so they reach the body decoders.
            if bytes.count >= 2, g.next() % 4 != 0 { bytes[0] = 1; bytes[1] = UInt8(1 + g.next() % 7) }
            do { _ = try ConsensusMessage.decode(bytes, chainID: f.chainID) } catch { refused += 1 }
            _ = core.handle(.message(from: f.key(0), bytes: bytes), now: .zero)
        }
        #expect(refused > 19_000)
        #expect(core.counters.totalDrops >= refused)
    }
}

extension Timeout {
    static func fixture(_ f: Fixture, round: UInt64, voter: Int, high: QuorumCertificate) -> Timeout {
        let bytes = TimeoutFixture.make(round: round, voter: voter, high: high, signature: f.identities[voter].sign(timeoutDigestBytes(f, round: round, high: high.round)))
        guard case .timeout(let t) = try! ConsensusMessage.decode(bytes, chainID: f.chainID) else { fatalError("not a timeout") }
        return t
    }
}

extension TimeoutCertificate {
    /// A timeout certificate of validators 0, 1 and 3 for `round`, each reporting `high`.
    static func fixture(_ f: Fixture, round: UInt64, high: QuorumCertificate) -> TimeoutCertificate {
        var w = ByteWriter()
        w.u8(1)
        w.u8(4) // sync: a certificate, then an optional timeout certificate
        w.raw(high.encoded)
        w.u8(1)
        w.u64(0)
        w.u64(round)
        w.u16(UInt16(f.identities.count))
        w.u8(0b1101_0000)
        for v in [0, 1, 3] {
            w.u64(high.round)
            w.raw(f.identities[v].sign(timeoutDigestBytes(f, round: round, high: high.round)))
        }
        guard case .sync(_, let tc?) = try! ConsensusMessage.decode(w.bytes, chainID: f.chainID) else { fatalError("no tc") }
        return tc
    }
}

func timeoutDigestBytes(_ f: Fixture, round: UInt64, high: UInt64) -> [UInt8] {
    var w = ByteWriter()
    w.raw(Array("iotaf/consensus/timeout/v1".utf8))
    w.raw(f.chainID)
    w.u64(0)
    w.u64(round)
    w.u64(high)
    return w.bytes
}
