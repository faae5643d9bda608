import Noise
import Testing

@Suite struct ReplayWindowTests {
    @Test func inOrder() {
        var w = ReplayWindow()
        for n in UInt64(0)..<10_000 {
            #expect(w.check(n) == .fresh)
            let recorded = w.commit(n)
            #expect(recorded)
        }
        #expect(w.highest == 9_999)
        #expect(w.check(9_999) == .duplicate)
    }

    @Test func reordered() {
        var w = ReplayWindow()
        // Every block of 100 arrives backwards; all must be accepted exactly once.
        for block in UInt64(0)..<50 {
            for n in (block * 100..<(block + 1) * 100).reversed() {
                #expect(w.accept(n) == .fresh, "counter \(n)")
            }
        }
        for n in UInt64(3_000)..<5_000 { #expect(w.check(n) == .duplicate) }
    }

    @Test func duplicates() {
        var w = ReplayWindow()
        #expect(w.accept(0) == .fresh)
        #expect(w.accept(0) == .duplicate)
        #expect(w.accept(5) == .fresh)
        #expect(w.accept(3) == .fresh)
        #expect(w.accept(3) == .duplicate)
        #expect(w.accept(5) == .duplicate)
        #expect(w.commit(5) == false)
    }

    @Test func checkDoesNotRecord() {
        var w = ReplayWindow()
        #expect(w.check(1_000_000) == .fresh)
        // A forged far-future packet was checked but failed authentication: not committed, so
        // the window has not moved and real packets still pass.
        #expect(w.highest == nil)
        #expect(w.accept(1) == .fresh)
        #expect(w.accept(2) == .fresh)
    }

    @Test func farPast() {
        var w = ReplayWindow()
        w.commit(10_000)
        let edge = 10_000 - ReplayWindow.size  // exactly the window size behind: too old
        #expect(w.check(edge) == .tooOld)
        #expect(w.check(edge + 1) == .fresh)
        #expect(w.check(0) == .tooOld)
        #expect(w.commit(edge) == false)
        // The window is at least 2048 packets: all of these still fit.
        for n in (edge + 1)..<10_000 { #expect(w.accept(n) == .fresh, "counter \(n)") }
    }

    @Test func farFuture() {
        var w = ReplayWindow()
        for n in UInt64(0)..<100 { w.commit(n) }
        #expect(w.accept(1 << 40) == .fresh)
        #expect(w.highest == 1 << 40)
        // The jump cleared the whole ring: old bits must not reappear as duplicates.
        #expect(w.check((1 << 40) - 1) == .fresh)
        #expect(w.check((1 << 40) - 64) == .fresh)
        #expect(w.check(50) == .tooOld)
        #expect(w.accept(1 << 40) == .duplicate)
    }

    @Test func ringWrap() {
        // Move forward by less than the window, many times, so the ring index wraps repeatedly,
        // and check stale bits from an earlier lap never show up as duplicates.
        var w = ReplayWindow()
        var n: UInt64 = 0
        for step in 0..<2_000 {
            n += UInt64(97 + step % 300)
            #expect(w.accept(n) == .fresh)
            #expect(w.check(n - 1) == .fresh || n - 1 == 0)
            #expect(w.check(n + 1) == .fresh)
        }
    }

    @Test func counterWrap() {
        var w = ReplayWindow()
        let top = UInt64.max - 1
        #expect(w.accept(top) == .fresh)
        #expect(w.accept(top) == .duplicate)
        #expect(w.accept(top - 1) == .fresh)
        #expect(w.check(top - ReplayWindow.size) == .tooOld)
        #expect(w.check(top - ReplayWindow.size + 1) == .fresh)
        // 2^64-1 is reserved by Noise and never valid; it must not wrap to zero either.
        #expect(w.check(UInt64.max) == .invalid)
        #expect(w.commit(UInt64.max) == false)
        #expect(w.check(0) == .tooOld)
    }

    @Test func valueSemantics() {
        var a = ReplayWindow()
        a.commit(7)
        var b = a
        b.commit(8)
        #expect(a.check(8) == .fresh)
        #expect(b.check(8) == .duplicate)
    }
}
