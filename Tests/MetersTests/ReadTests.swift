import Testing
import Meters
import MeshCore
import Sodium

@Suite struct ReadTests {
    @Test func aReadRoundTripsThroughItsOneEncodingAndVerifies() throws {
        var m = TestMeter(1)
        let regs = [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, scaler: 0, value: 1_234_567),
                    RegisterValue(obis: .voltageL1, unit: MeterUnit.volt, scaler: -1, value: 2301)]
        let first = m.read()
        let r = try first.next(by: m.identity, intervalStart: first.intervalStart + 900, durationSeconds: 900, registers: regs)
        let bytes = r.encode()
        #expect(bytes.count == r.encodedLength)
        #expect(bytes.count == 1 + 32 + 8 + 8 + 4 + 32 + 1 + 2 * 16 + 64)
        let back = try MeterRead.decode(bytes)
        #expect(back == r)
        #expect(back.hash == r.hash)
        #expect(back.previous == first.hash)
        #expect(back.registers[1].scaler == -1 && back.registers[1].value == 2301)
        // The hash is BLAKE2b-256 of the domain and the body, the bytes the signature covers.
        let body = Array(bytes.dropLast(64))
        #expect(r.hash == Blake2b.hash(MeterRead.domain + body, outputLength: 32))
        #expect(Ed25519.verify(r.signature, message: MeterRead.domain + body, publicKey: m.identity.publicKey.bytes))
    }

    @Test func aChangedValueFailsItsSignature() throws {
        var m = TestMeter(2)
        var bytes = m.read(wh: 500).encode()
        // The register value's last byte: 16 bytes per register, value last, before the signature.
        bytes[bytes.count - 64 - 1] ^= 0x01
        #expect(throws: MeterError.badSignature) { try MeterRead.decode(bytes) }
    }

    @Test func everyMalformedReadIsRefusedWithItsReason() throws {
        var m = TestMeter(3)
        let good = m.read().encode()
        func refused(_ b: [UInt8]) -> MeterError? {
            do { _ = try MeterRead.decode(b); return nil } catch { return error }
        }
        #expect(refused(Array(good.prefix(40))) == .truncated)
        #expect(refused(good + [0]) == .trailingBytes)
        var v = good; v[0] = 2
        #expect(refused(v) == .badVersion)
        var k = good; k[32] |= 0x80   // the key's sign bit: its negated twin
        #expect(refused(k) == .nonCanonicalKey)
        var d = good; for i in 49..<53 { d[i] = 0 }
        #expect(refused(d) == .zeroDuration)
        var c = good; c[85] = 0
        #expect(refused(c) == .badRegisterCount)
        var c2 = good; c2[85] = 33
        #expect(refused(c2) == .badRegisterCount)
        var p = good; p[60] = 1   // sequence 0 naming a predecessor
        #expect(refused(p) == .badPrevious)
        var s = good; s[s.count - 1] ^= 0x40
        #expect(refused(s) == .badSignature)
        #expect(refused([]) == .truncated)
    }

    @Test func makingAReadRefusesWhatCouldNotBeDecoded() {
        let id = NodeIdentity.deterministic(runSeed: 1, index: 1)
        let reg = RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: 1)
        #expect(throws: MeterError.zeroDuration) {
            try MeterRead(meter: id, sequence: 0, intervalStart: 0, durationSeconds: 0, previous: MeterRead.noPrevious, registers: [reg])
        }
        #expect(throws: MeterError.badRegisterCount) {
            try MeterRead(meter: id, sequence: 0, intervalStart: 0, durationSeconds: 900, previous: MeterRead.noPrevious, registers: [])
        }
        #expect(throws: MeterError.badPrevious) {
            try MeterRead(meter: id, sequence: 3, intervalStart: 0, durationSeconds: 900, previous: MeterRead.noPrevious, registers: [reg])
        }
    }

    @Test func obisCodesParseOnlyTheirSixGroups() {
        #expect(ObisCode("1.0.1.8.0.255") == .importedActiveEnergy)
        #expect(ObisCode("1.0.1.8.0.255")?.description == "1.0.1.8.0.255")
        for bad in ["1.0.1.8.0", "1.0.1.8.0.256", "1.0.1.8.0.255.1", "a.0.1.8.0.255", "1..1.8.0.255", "+1.0.1.8.0.255"] {
            #expect(ObisCode(bad) == nil, "\(bad)")
        }
        #expect(MeterUnit.code("Wh") == 30 && MeterUnit.name(30) == "Wh" && MeterUnit.name(200) == "unit-200")
    }

    @Test func mutatedReadsDecodeToARefusalOrToExactlyTheirBytes() {
        var m = TestMeter(4)
        let genuine = m.read().encode()
        var g = SeededGenerator(seed: 9)
        var decoded = 0, refused = 0
        for i in 0..<3000 {
            var b = genuine
            switch i % 3 {
            case 0: b[Int(g.next() % UInt64(b.count))] ^= UInt8(truncatingIfNeeded: g.next() | 1)
            case 1: b = Array(b.prefix(Int(g.next() % UInt64(b.count))))
            default: b = (0..<Int(g.next() % 300)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            }
            if let r = try? MeterRead.decode(b) { #expect(r.encode() == b); decoded += 1 } else { refused += 1 }
        }
        // A flipped bit anywhere breaks the signature: only untouched inputs decode.
        #expect(refused > 2900 && decoded == 0)
    }
}
