/// The simulated CPUs of a run, one per node. Two things cost a node time here:
///
/// - starvation (a `starve` fault): every input the node receives is handled `inputDelay` late,
///   a fixed delay per node so its inputs keep their order;
/// - offloaded work (hashing a file, erasure coding, a batch of signatures): the simulator runs
///   the job inline and `charge`s its cost; jobs queue behind each other on the node's one
///   worker, so the result comes back at the instant `charge` returns and a slow or busy node
///   shows as late results.
///
/// Protocol-free: it knows nanoseconds and node indices only.
struct VirtualCPU {
    /// How late each node handles what it receives (0: not starved).
    private(set) var inputDelay: [Int64]
    /// When each node's worker is free of offloaded work.
    private var busyUntil: [Int64]
    /// Virtual CPU time charged, whole run, over all nodes.
    private(set) var charged: Int64 = 0
    private(set) var jobs: UInt64 = 0

    init(nodes: Int) {
        inputDelay = Array(repeating: 0, count: nodes)
        busyUntil = Array(repeating: 0, count: nodes)
    }

    mutating func starve(_ node: Int, delay: Int64) { inputDelay[node] = delay }
    mutating func feed(_ node: Int) { inputDelay[node] = 0 }

    /// Charges `cost` nanoseconds of work to `node` at `now`; returns when the work is done.
    mutating func charge(_ node: Int, cost: Int64, now: Int64) -> Int64 {
        let start = max(now, busyUntil[node])
        busyUntil[node] = start + max(0, cost)
        charged += max(0, cost)
        jobs += 1
        return busyUntil[node]
    }

    /// The node stopped: its queue of work is gone, and so is any starvation.
    mutating func reset(_ node: Int) {
        inputDelay[node] = 0
        busyUntil[node] = 0
    }
}
