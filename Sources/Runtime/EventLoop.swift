import CLibuv
import MeshCore

/// One libuv loop on one thread. It owns every handle created on it; node state lives on
/// this thread only, and blocking work is sent to libuv's thread pool with `offload`.
public final class EventLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>
    private let startHR: UInt64

    public init() throws {
        raw = .allocate(capacity: 1)
        let rc = uv_loop_init(raw)
        guard rc == 0 else {
            raw.deallocate()
            throw UVError(code: rc, operation: "uv_loop_init")
        }
        startHR = uv_hrtime()
    }

    /// Monotonic time since this loop was made, in nanoseconds: the `now` cores are given.
    public var now: Instant { Instant(nanoseconds: Int64(uv_hrtime() - startHR)) }

    /// Runs until no handle is active (every handle closed).
    public func run() { uv_run(raw, UV_RUN_DEFAULT) }

    /// Runs one iteration, waiting for I/O if `wait`.
    public func runOnce(wait: Bool = true) { uv_run(raw, wait ? UV_RUN_ONCE : UV_RUN_NOWAIT) }

    public func stop() { uv_stop(raw) }

    /// Runs `work` on libuv's thread pool, then `completion` with its result back on the loop thread.
    public func offload<T: Sendable>(_ work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) {
        let box = WorkBox(work: work, completion: completion)
        let req = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(box).toOpaque()
        let rc = uv_queue_work(raw, req, { req in
            let box = Unmanaged<AnyWorkBox>.fromOpaque(req!.pointee.data).takeUnretainedValue()
            box.runWork()
        }, { req, _ in
            let box = Unmanaged<AnyWorkBox>.fromOpaque(req!.pointee.data).takeRetainedValue()
            req!.deallocate()
            box.runCompletion()
        })
        if rc != 0 {
            // Thread pool refused the job: run it inline rather than lose it.
            let box = Unmanaged<AnyWorkBox>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deallocate()
            box.runWork()
            box.runCompletion()
        }
    }

    deinit {
        uv_loop_close(raw)
        raw.deallocate()
    }
}

/// Carries a job across to the pool thread and its result back.
class AnyWorkBox: @unchecked Sendable {
    func runWork() {}
    func runCompletion() {}
}

final class WorkBox<T: Sendable>: AnyWorkBox, @unchecked Sendable {
    let work: @Sendable () -> T
    let completion: (T) -> Void
    var result: T?

    init(work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) {
        self.work = work
        self.completion = completion
    }

    override func runWork() { result = work() }
    override func runCompletion() { if let result { completion(result) } }
}

/// A libuv error with the operation that produced it.
public struct UVError: Error, CustomStringConvertible {
    public let code: Int32
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    public var description: String {
        let name = String(cString: uv_err_name(code))
        let text = String(cString: uv_strerror(code))
        return "\(operation) failed: \(name) (\(text))"
    }
}

/// Closes any libuv handle and frees its memory once libuv is done with it.
func closeAndFree<H>(_ handle: UnsafeMutablePointer<H>) {
    let h = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
    if uv_is_closing(h) != 0 { return }
    uv_close(h) { h in
        if let ctx = h?.pointee.data { Unmanaged<AnyObject>.fromOpaque(ctx).release() }
        UnsafeMutableRawPointer(h!).deallocate()
    }
}

func asHandle<H>(_ p: UnsafeMutablePointer<H>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)
}

func asStream<H>(_ p: UnsafeMutablePointer<H>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_stream_t.self)
}
