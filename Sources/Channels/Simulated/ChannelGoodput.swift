import MeshCore

/// Simulated goodput of one bulk transfer over a lossy, rate-limited virtual link: pure and
/// deterministic (same arguments, same figure), for `iotaf bench channel`.
public enum ChannelGoodput {
    public struct Result: Sendable, Equatable {
        public var goodputBytesPerSecond: Double
        public var configuredBandwidth: Double
        /// Virtual seconds from the first send to the last delivery.
        public var seconds: Double
        public var retransmittedChunks: UInt64
        public var congestionEvents: UInt64
        public var probeTimeouts: UInt64
        public var probes: UInt64
        public var completed: Bool
    }

    /// Sends `bytes` from node 0 to node 1 as 1 MiB messages on one stream, refilling the send
    /// buffer as backpressure allows. Loss applies to both directions; the bottleneck queue holds
    /// one bandwidth-delay product.
    public static func simulate(bytes: Int, lossRate: Double, rtt: Duration, bandwidthBytesPerSecond: Double,
                                seed: UInt64, config: ChannelConfig = ChannelConfig()) -> (goodputBytesPerSecond: Double, configuredBandwidth: Double) {
        let r = run(bytes: bytes, lossRate: lossRate, rtt: rtt, bandwidthBytesPerSecond: bandwidthBytesPerSecond, seed: seed, config: config)
        return (r.goodputBytesPerSecond, r.configuredBandwidth)
    }

    public static func run(bytes: Int, lossRate: Double, rtt: Duration, bandwidthBytesPerSecond: Double,
                           seed: UInt64, config: ChannelConfig = ChannelConfig()) -> Result {
        let bdp = Int(bandwidthBytesPerSecond * rtt.secondsDouble)
        let profile = LinkProfile(latency: .nanoseconds(rtt.nanoseconds / 2), loss: lossRate,
                                  bandwidthBytesPerSecond: bandwidthBytesPerSecond, queueBytes: max(bdp, 64 * config.maxFrame))
        var sim = ChannelNetworkSim(nodes: 2, config: config, profile: profile, seed: seed)
        let chunk = min(1 << 20, config.maxMessage)
        var queued = 0
        var pattern = SeededGenerator(seed: seed ^ 0x5eed)
        func fill(_ sim: inout ChannelNetworkSim) {
            while queued < bytes {
                let n = min(chunk, bytes - queued)
                var msg = [UInt8](repeating: 0, count: n)
                let word = pattern.next()
                for i in stride(from: 0, to: n, by: 4096) { msg[i] = UInt8(truncatingIfNeeded: word &+ UInt64(i)) }
                guard case .success = sim.send(msg, stream: 1, from: 0, to: 1) else { return }
                queued += n
            }
        }
        fill(&sim)
        let limit = Instant.zero + .seconds(max(60, Int64(Double(bytes) / bandwidthBytesPerSecond * 50)))
        var delivered = 0
        var last = Instant.zero
        while delivered < bytes && sim.step(until: limit) {
            if !sim.writable[0].isEmpty { sim.writable[0] = []; fill(&sim) }
            let got = sim.deliveries[1].reduce(0) { $0 + $1.message.count }
            if got != delivered { delivered = got; last = sim.now }
        }
        let seconds = max(last.seconds, 1e-9)
        let stats = sim.nodes[0].stats
        return Result(goodputBytesPerSecond: Double(delivered) / seconds, configuredBandwidth: bandwidthBytesPerSecond,
                      seconds: seconds, retransmittedChunks: stats.retransmittedChunks, congestionEvents: stats.congestionEvents,
                      probeTimeouts: stats.probeTimeouts, probes: stats.probes,
                      completed: delivered >= bytes)
    }
}
