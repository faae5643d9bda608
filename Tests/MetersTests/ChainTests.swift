import Testing
import Meters
import MeshCore

@Suite struct ChainTests {
    @Test func readsLinkInAnyOrderAndGapsAreNamed() {
        var m = TestMeter(5)
        let reads = (0..<6).map { _ in m.read() }
        var c = MeterChain()
        for i in [0, 3, 1, 5] { #expect(c.add(reads[i]) == .accepted) }
        #expect(c.missing() == [2, 4])
        #expect(c.missingCount == 2)
        #expect(c.add(reads[3]) == .duplicate)
        #expect(c.add(reads[4]) == .accepted)
        #expect(c.add(reads[2]) == .accepted)
        #expect(c.missing().isEmpty && c.highest == 5)
    }

    @Test func aSecondReadForOneSequenceIsAForkAndAReadThatDoesNotLinkIsRefused() throws {
        var m = TestMeter(6)
        let r0 = m.read(), r1 = m.read(), r2 = m.read()
        var c = MeterChain()
        #expect(c.add(r0) == .accepted)
        #expect(c.add(r2) == .accepted)
        // Sequence 1 signed again with another value: links to r0, but r2 names the genuine r1.
        let other = try r0.next(by: m.identity, intervalStart: r1.intervalStart, durationSeconds: 900,
                                registers: [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: 9)])
        #expect(c.add(other) == .brokenLink)
        #expect(c.add(r1) == .accepted)
        #expect(c.add(other) == .fork)
        // A read naming a predecessor that is not the one kept.
        let stray = try other.next(by: m.identity, intervalStart: r2.intervalStart, durationSeconds: 900, registers: r2.registers)
        #expect(c.add(stray) == .fork)
        var c2 = MeterChain()
        #expect(c2.add(r1) == .accepted)
        #expect(c2.add(stray) == .brokenLink)
    }
}
