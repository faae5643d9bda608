import Foundation
import Logging
import MeshCore

/// The runtime side of `SeedWatch`: one timer for its reports and the logger they go to.
/// `NodeRuntime` tells it of seeds, datagrams and sessions; `answeredElsewhere` lets it see a seed
/// the core no longer asks (a member answers from that address, or it is this node's own).
final class SeedMonitor {
    @exclusivity(unchecked) private(set) var watch: SeedWatch
    private let loop: EventLoop
    private let logger: Logger
    private var timer: LoopTimer!
    private let answeredElsewhere: (UnderlayAddress) -> Bool

    init(loop: EventLoop, network: NetworkID, logger: Logger, answeredElsewhere: @escaping (UnderlayAddress) -> Bool) {
        self.loop = loop
        self.logger = logger
        self.answeredElsewhere = answeredElsewhere
        watch = SeedWatch(network: network)
        timer = LoopTimer(loop: loop) { [unowned self] in self.check() }
    }

    func watchSeed(_ address: UnderlayAddress) {
        watch.watch(address, now: loop.now)
        if answeredElsewhere(address) { answered(address) }
        reschedule()
    }

    /// Called for every datagram; does nothing once every seed has answered.
    @inline(__always) func heard(from address: UnderlayAddress) {
        if watch.anyPending { watch.heard(from: address) }
    }

    func answered(_ address: UnderlayAddress) {
        guard watch.anyPending else { return }
        if let d = watch.answered(address, now: loop.now) { logger.notice("\(d.message)") }
    }

    var reports: [SeedReport] { watch.reports(now: loop.now) }

    private func check() {
        for s in watch.seeds where s.state != .answered && answeredElsewhere(s.address) { answered(s.address) }
        for d in watch.check(now: loop.now) { logger.warning("\(d.message)") }
        reschedule()
    }

    private func reschedule() {
        if let at = watch.nextDeadline { timer.schedule(at: at) }
    }

    func close() { timer.close() }
}
