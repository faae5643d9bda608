import Meters
import MeshCore

/// A meter with a deterministic key producing a chain of reads.
struct TestMeter {
    let identity: NodeIdentity
    var last: MeterRead?

    init(_ index: Int) { identity = NodeIdentity.deterministic(runSeed: 2026, index: index) }

    /// The next read of a 15-minute load profile: imported energy in Wh.
    mutating func read(wh: Int64 = 120, start: UInt64? = nil) -> MeterRead {
        let s = start ?? ((last?.intervalStart).map { $0 + 900 } ?? 1_780_000_200)
        let regs = [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: wh)]
        let r: MeterRead
        if let last {
            r = try! last.next(by: identity, intervalStart: s, durationSeconds: 900, registers: regs)
        } else {
            r = try! MeterRead(meter: identity, sequence: 0, intervalStart: s, durationSeconds: 900, previous: MeterRead.noPrevious, registers: regs)
        }
        last = r
        return r
    }
}
