import Testing
import Meters
import MeshCore

@Suite struct ProofTests {
    /// Two intervals of three meters, each interval one anchored batch.
    struct Fixture {
        var meters = [TestMeter(10), TestMeter(11), TestMeter(12)]
        let collector = NodeIdentity.deterministic(runSeed: 2026, index: 99)
        var reads: [[MeterRead]] = []      // by interval
        var anchors: [MeterAnchor] = []
        var trees: [MeterMerkleTree] = []

        init() {
            for interval in 0..<2 {
                let rs = meters.indices.map { meters[$0].read(wh: Int64(100 * interval + $0)) }
                let t = MeterMerkleTree(readHashes: rs.map(\.hash))
                reads.append(rs)
                trees.append(t)
                anchors.append(MeterAnchor(collector: collector.publicKey, intervalStart: rs[0].intervalStart, batch: 0,
                                           count: UInt32(t.count), root: t.root))
            }
        }

        func inclusion(_ interval: Int, _ hash: [UInt8]) -> MeterInclusion {
            let i = trees[interval].index(of: hash)!
            return MeterInclusion(anchor: anchors[interval], index: UInt32(i), path: trees[interval].path(i))
        }

        func proof(meter m: Int, interval: Int) -> MeterProof {
            let r = reads[interval][m]
            return MeterProof(read: r, inclusion: inclusion(interval, r.hash),
                              predecessor: interval == 0 ? nil : inclusion(interval - 1, r.previous))
        }
    }

    @Test func aProofOfAnAnchoredReadVerifiesAndRoundTrips() throws {
        let f = Fixture()
        let book = AnchorBook(f.anchors)
        for m in 0..<3 {
            for interval in 0..<2 {
                let p = f.proof(meter: m, interval: interval)
                #expect(p.verify(anchors: book, meter: f.meters[m].identity.publicKey) == .verified)
                let back = try MeterProof.decode(p.encode())
                #expect(back == p)
                #expect(back.verify(anchors: book) == .verified)
            }
        }
    }

    @Test func eachWayAProofCanBeWrongFailsWithItsReason() throws {
        var f = Fixture()
        let book = AnchorBook(f.anchors)
        let good = f.proof(meter: 1, interval: 1)
        #expect(good.verify(anchors: book, meter: f.meters[0].identity.publicKey) == .failed(.wrongMeter))
        // A read re-signed with another value (the meter's key, so the signature holds) is not the anchored one.
        let altered = try f.reads[0][1].next(by: f.meters[1].identity, intervalStart: good.read.intervalStart, durationSeconds: 900,
                                             registers: [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: 7)])
        #expect(MeterProof(read: altered, inclusion: good.inclusion, predecessor: good.predecessor).verify(anchors: book) == .failed(.notInTree))
        // Never anchored.
        #expect(good.verify(anchors: AnchorBook([f.anchors[0]])) == .failed(.notAnchored))
        // Anchored under that id, but another root.
        var other = f.anchors[1]; other.root = f.trees[0].root
        #expect(good.verify(anchors: AnchorBook([f.anchors[0], other])) == .failed(.rootMismatch))
        // A later read without its predecessor, a first read with one, a predecessor that is another read.
        #expect(MeterProof(read: good.read, inclusion: good.inclusion, predecessor: nil).verify(anchors: book) == .failed(.chainBreak))
        let first = f.proof(meter: 1, interval: 0)
        #expect(MeterProof(read: first.read, inclusion: first.inclusion, predecessor: first.inclusion).verify(anchors: book) == .failed(.chainBreak))
        let wrongPred = f.inclusion(0, f.reads[0][2].hash)
        #expect(MeterProof(read: good.read, inclusion: good.inclusion, predecessor: wrongPred).verify(anchors: book) == .failed(.predecessorNotInTree))
        // The predecessor's batch was never anchored: a read dropped before this one.
        #expect(good.verify(anchors: AnchorBook([f.anchors[1]])) == .failed(.predecessorNotAnchored))
        // A read dropped from the chain: meter 1's read 2 names read 1, which no anchor holds.
        let skipped = f.meters[1].read(wh: 1)
        let lateRead = try skipped.next(by: f.meters[1].identity, intervalStart: skipped.intervalStart + 900, durationSeconds: 900, registers: skipped.registers)
        let t = MeterMerkleTree(readHashes: [lateRead.hash])
        let a = MeterAnchor(collector: f.collector.publicKey, intervalStart: lateRead.intervalStart, batch: 0, count: 1, root: t.root)
        var withLate = book; withLate.record(a)
        let gapProof = MeterProof(read: lateRead, inclusion: MeterInclusion(anchor: a, index: 0, path: []),
                                  predecessor: MeterInclusion(anchor: a, index: 0, path: []))
        #expect(gapProof.verify(anchors: withLate) == .failed(.predecessorNotInTree))
    }

    /// An inclusion path can stay valid under another leaf count; the anchor digest covers the count.
    @Test func aChangedLeafCountIsCaughtByTheAnchorDigest() {
        let f = Fixture()
        let p = f.proof(meter: 0, interval: 0)
        let leaf0 = f.trees[0].leaves[0]
        #expect(MeterMerkleTree.verify(readHash: leaf0, index: 0, count: 4, path: f.trees[0].path(0), root: f.trees[0].root))
        let first = f.reads[0].first { $0.hash == leaf0 }!
        var anchor = f.anchors[0]
        anchor.count = 4
        let forged = MeterProof(read: first, inclusion: MeterInclusion(anchor: anchor, index: 0, path: f.trees[0].path(0)), predecessor: nil)
        #expect(forged.inclusion.leads(from: leaf0))
        #expect(forged.verify(anchors: AnchorBook(f.anchors)) == .failed(.rootMismatch))
        #expect(p.verify(anchors: AnchorBook(f.anchors)) == .verified)
    }

    @Test func malformedProofsAreRefusedNeverTrap() {
        let f = Fixture()
        let genuine = f.proof(meter: 2, interval: 1).encode()
        func reason(_ b: [UInt8]) -> MeterError? { do { _ = try MeterProof.decode(b); return nil } catch { return error } }
        #expect(reason(genuine + [0]) == .trailingBytes)
        #expect(reason(Array(genuine.prefix(300))) == .truncated)
        var v = genuine; v[0] = 9
        #expect(reason(v) == .badVersion)
        #expect(reason([UInt8](repeating: 1, count: MeterProof.maxEncodedLength + 1)) == .oversized)
        var g = SeededGenerator(seed: 3)
        var decodedChanged = 0
        for i in 0..<3000 {
            var b = genuine
            switch i % 3 {
            case 0: b[Int(g.next() % UInt64(b.count))] ^= UInt8(truncatingIfNeeded: g.next() | 1)
            case 1: b = Array(b.prefix(Int(g.next() % UInt64(b.count))))
            default: b = (0..<Int(g.next() % 700)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            }
            if let p = try? MeterProof.decode(b) {
                #expect(p.encode() == b)
                // A change outside the read survives decoding only to fail verification.
                if b != genuine { decodedChanged += 1; #expect(p.verify(anchors: AnchorBook(f.anchors)) != .verified) }
            }
        }
        #expect(decodedChanged > 0)
    }
}
