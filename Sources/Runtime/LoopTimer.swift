import CLibuv
#if canImport(Glibc)
import Glibc
#endif
import MeshCore

/// A one-shot libuv timer. Cores ask for wake-ups; they never get repeating timers.
public final class LoopTimer {
    private let handle: UnsafeMutablePointer<uv_timer_t>
    private let loop: EventLoop
    @exclusivity(unchecked) public var fire: () -> Void = {}

    public init(loop: EventLoop, fire: @escaping () -> Void) {
        self.loop = loop
        self.fire = fire
        handle = .allocate(capacity: 1)
        uv_timer_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// When the timer is armed for, nil when idle.
    @exclusivity(unchecked) private var armedAt: Instant?

    /// Fires once at `instant` (or on the next loop turn if it is already past).
    public func schedule(at instant: Instant) {
        armedAt = instant
        let delta = instant.nanoseconds - loop.now.nanoseconds
        let ms = delta <= 0 ? 0 : UInt64((delta + 999_999) / 1_000_000)
        uv_timer_start(handle, { h in
            let timer = Unmanaged<LoopTimer>.fromOpaque(h!.pointee.data).takeUnretainedValue()
            timer.armedAt = nil
            timer.fire()
        }, ms, 0)
    }

    /// Makes sure the timer fires no later than `instant`, re-arming only when that is earlier
    /// than the instant it is armed for. A node core's deadline moves with almost every datagram
    /// (mostly later); a timer that fires early costs the core one `.timer` input that asks
    /// again, while re-arming costs a libuv heap removal and insertion per datagram.
    public func scheduleNoLater(than instant: Instant) {
        if let armed = armedAt, armed <= instant { return }
        schedule(at: instant)
    }

    public func cancel() {
        armedAt = nil
        uv_timer_stop(handle)
    }

    /// Releases the handle; the timer never fires again.
    public func close() {
        armedAt = nil
        uv_timer_stop(handle)
        fire = {}
        closeAndFree(handle)
    }
}

/// Watches a POSIX signal on the loop (SIGINT, SIGTERM) without a process-wide handler in Swift.
public final class SignalWatcher {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    var onSignal: (Int32) -> Void

    public init(loop: EventLoop, signal: Int32, onSignal: @escaping (Int32) -> Void) {
        self.onSignal = onSignal
        // A parent (a test runner, a supervisor) may have spawned us with the signal blocked;
        // then libuv would never see it and the node could not be stopped gracefully.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        handle = .allocate(capacity: 1)
        uv_signal_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_signal_start(handle, { h, sig in
            Unmanaged<SignalWatcher>.fromOpaque(h!.pointee.data).takeUnretainedValue().onSignal(sig)
        }, signal)
    }

    public func close() {
        uv_signal_stop(handle)
        onSignal = { _ in }
        closeAndFree(handle)
    }
}
