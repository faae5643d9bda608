import Testing
import Meters
import MeshCore

@Suite struct WireTests {
    @Test func everyMessageRoundTripsAndFitsADatagram() throws {
        var m = TestMeter(20)
        let reads = (0..<6).map { _ in m.read() }
        #expect(MeterMessage.fits(reads))
        #expect(!MeterMessage.fits(reads + reads))
        let op = NodeIdentity.deterministic(runSeed: 2026, index: 50)
        let cmd = try OperatorCommand(meter: m.identity.publicKey, operator: op, nonce: 7, issuedAt: 1_780_000_000, action: "hvac-off 15m")
        let ack = CommandAck(meter: m.identity, commandHash: cmd.hash, status: .done)
        let messages: [MeterMessage] = [
            .solicit(token: 42), .advert(token: 42, rank: 512, parent: op.nodeID), .advert(token: 0, rank: 0, parent: nil),
            .reads(batch: 9, reads), .ack(batch: 9, status: .loop),
            .command(origin: op.nodeID, cmd), .commandAck(origin: op.nodeID, ack),
        ]
        for msg in messages {
            let b = msg.encode()
            #expect(b.count <= MeterMessage.maxDatagram)
            #expect(try MeterMessage.decode(b) == msg)
            #expect(Array(b.prefix(2)) == MeterMessage.magic)
        }
    }

    @Test func badMessagesAreRefusedWithTheirReason() throws {
        var m = TestMeter(21)
        let op = NodeIdentity.deterministic(runSeed: 2026, index: 51)
        func reason(_ b: [UInt8]) -> MeterError? { do { _ = try MeterMessage.decode(b); return nil } catch { return error } }
        #expect(reason(MeterMessage.solicit(token: 1).encode() + [0]) == .trailingBytes)
        #expect(reason([0x69, 0x4D, 1, 77]) == .badType)
        #expect(reason([0x69, 0x4D, 2, 1]) == .badVersion)
        #expect(reason([0x69, 0x4D, 1]) == .truncated)
        #expect(reason([0x69, 0x4D, 1, 4, 0, 0, 0, 0, 0, 0, 0, 1, 9]) == .badType)
        #expect(reason([UInt8](repeating: 0x69, count: 1185)) == .oversized)
        var reads = MeterMessage.reads(batch: 1, [m.read()]).encode()
        reads[reads.count - 1] ^= 1
        #expect(reason(reads) == .badSignature)
        // A command whose action was changed after signing, and an empty action.
        var c = MeterMessage.command(origin: op.nodeID, try OperatorCommand(meter: m.identity.publicKey, operator: op, nonce: 1, issuedAt: 1, action: "open")).encode()
        c[c.count - 64 - 1] ^= 0x20
        #expect(reason(c) == .badSignature)
        #expect(throws: MeterError.badAction) { try OperatorCommand(meter: m.identity.publicKey, operator: op, nonce: 1, issuedAt: 1, action: "") }
        #expect(throws: MeterError.badAction) {
            try OperatorCommand(meter: m.identity.publicKey, operator: op, nonce: 1, issuedAt: 1, action: String(repeating: "x", count: 65))
        }
    }

    @Test func ranksGrowWithHopsAndRoundTripsAndSaturate() {
        let fast = MeterRank.linkCost(rtt: .milliseconds(5)), slow = MeterRank.linkCost(rtt: .milliseconds(400))
        #expect(fast >= MeterRank.minHopIncrease && slow > fast)
        #expect(MeterRank.linkCost(rtt: .seconds(30)) == MeterRank.minHopIncrease * 9)
        #expect(MeterRank.through(parentRank: MeterRank.collector, cost: fast) == fast)
        #expect(MeterRank.through(parentRank: 0xFF00, cost: 0x200) == MeterRank.infinite)
    }
}
