import MeshCore

/// One per node: a connection per peer, each with any number of streams. Every call takes `now`
/// and returns the outputs the driver must carry out, in order; the last one is at most one
/// `.wake(at:)` (the earliest timer over all connections).
public struct ChannelEndpoint<Peer: Hashable & Sendable & Comparable>: Sendable {
    public let config: ChannelConfig
    private var rng: SeededGenerator
    private var connections: [Peer: Connection<Peer>] = [:]
    /// Peers in ascending order: timers are walked in this order so runs repeat.
    private var order: [Peer] = []
    private var counters = ChannelCounters()
    private var budget: NodeBudget
    private var nextMessage: UInt64 = 1
    /// Peers whose `send` was refused, ascending, waiting for `.writable`.
    private var waiting: [Peer] = []

    public init(config: ChannelConfig = ChannelConfig(), rng: SeededGenerator) {
        precondition(config.validationError() == nil, "ChannelConfig: \(config.validationError()!)")
        self.config = config
        self.rng = rng
        budget = NodeBudget(receiveLimit: UInt64(config.nodeReceiveBuffer), sendLimit: config.nodeSendBuffer)
    }

    // MARK: Reads

    public var stats: ChannelCounters { counters }
    /// Bytes of messages queued and not yet acknowledged, over all peers.
    public var bufferedSendBytes: Int { budget.sendBuffered }
    /// Bytes held for partly received or out-of-order messages, over all peers.
    public var bufferedReceiveBytes: UInt64 {
        order.reduce(0) { $0 + (connections[$1]?.receiveBuffered ?? 0) }
    }
    public func bufferedSendBytes(to peer: Peer) -> Int { connections[peer]?.sendBuffered ?? 0 }
    public func bufferedReceiveBytes(from peer: Peer) -> UInt64 { connections[peer]?.receiveBuffered ?? 0 }
    public func congestionWindow(to peer: Peer) -> Int? { connections[peer]?.congestionWindow }
    public func smoothedRTT(to peer: Peer) -> Duration? { connections[peer]?.smoothedRTT.map { .nanoseconds($0) } }
    /// The rate controller's bottleneck-bandwidth estimate towards this peer, bytes per second (0 before a sample).
    public func bandwidthEstimate(to peer: Peer) -> Double? { connections[peer]?.bandwidthEstimate }
    /// The rate controller's state towards this peer, for diagnostics: mode, pacing gain, minimum RTT.
    public func rateState(to peer: Peer) -> String? { connections[peer]?.rateState }
    public var peers: [Peer] { order }

    // MARK: Inputs

    /// Queues a message and sends what the windows allow. A refused message allocates nothing.
    public mutating func send(_ message: [UInt8], stream: UInt16, to peer: Peer, now: Instant) -> (Result<MessageID, ChannelError>, [ChannelOutput<Peer>]) {
        guard message.count <= config.maxMessage else {
            return (.failure(.messageTooLarge(size: message.count, max: config.maxMessage)), [])
        }
        guard let slot = connectionSlot(peer) else { return (.failure(.tooManyConnections), []) }
        let buffered = connections.values[slot].sendBuffered
        if buffered + message.count > config.perPeerSendBuffer || budget.sendBuffered + message.count > budget.sendLimit {
            insertWaiting(peer)
            return (.failure(.backpressure), [])
        }
        let id = MessageID(raw: nextMessage)
        nextMessage += 1
        var ctx = context()
        connections.values[slot].enqueue(message, stream: stream, id: id, now: now, ctx: &ctx)
        connections.values[slot].flush(now: now, ctx: &ctx)
        return (.success(id), finish(&ctx))
    }

    /// Where `peer`'s connection is stored, made if there is room. Connections are reached through
    /// `connections.values[slot]`, which mutates in place: `connections[peer]!` copied the whole
    /// connection on every frame.
    private mutating func connectionSlot(_ peer: Peer) -> Dictionary<Peer, Connection<Peer>>.Index? {
        if let slot = connections.index(forKey: peer) { return slot }
        return ensureConnection(peer) ? connections.index(forKey: peer) : nil
    }

    /// A frame the session delivered from `peer`.
    public mutating func receive(frame: [UInt8], from peer: Peer, now: Instant) -> [ChannelOutput<Peer>] {
        counters.framesIn += 1
        counters.bytesIn += UInt64(frame.count)
        let packet: ChannelWire.Packet
        switch ChannelWire.decode(frame, maxFrame: config.maxFrame, maxMessage: config.maxMessage) {
        case .failure(let reason):
            counters.drop(reason)
            return []
        case .success(let p):
            packet = p
        }
        guard let slot = connectionSlot(peer) else {
            counters.drop(.tooManyConnections)
            return []
        }
        var ctx = context()
        let fresh = freshID()
        connections.values[slot].receive(packet, now: now, freshID: fresh, ctx: &ctx)
        connections.values[slot].flush(now: now, ctx: &ctx)
        return finish(&ctx)
    }

    /// Timers: retransmission, loss detection, delayed acks, probes, failure timeouts.
    public mutating func tick(now: Instant) -> [ChannelOutput<Peer>] {
        var ctx = context()
        for peer in order {
            let fresh = freshID()
            let slot = connections.index(forKey: peer)!
            connections.values[slot].onTimers(now: now, freshID: fresh, ctx: &ctx)
            connections.values[slot].flush(now: now, ctx: &ctx)
        }
        return finish(&ctx)
    }

    /// Forgets a peer (its session is gone, or it was culled): pending messages fail with `.closed`.
    public mutating func reset(peer: Peer, now: Instant) -> [ChannelOutput<Peer>] {
        guard var conn = connections.removeValue(forKey: peer) else { return [] }
        var ctx = context()
        conn.close(.closed, ctx: &ctx)
        order.removeAll { $0 == peer }
        return finish(&ctx)
    }

    // MARK: Helpers

    private mutating func freshID() -> UInt64 { UInt64.random(in: 1...UInt64.max, using: &rng) }

    private mutating func ensureConnection(_ peer: Peer) -> Bool {
        guard connections.count < config.maxConnections else { return false }
        let id = freshID()
        connections[peer] = Connection(peer: peer, config: config, localID: id, budget: &budget)
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if order[mid] < peer { lo = mid + 1 } else { hi = mid }
        }
        order.insert(peer, at: lo)
        return true
    }

    private func context() -> ConnectionContext<Peer> {
        ConnectionContext(counters: counters, budget: budget)
    }

    private mutating func insertWaiting(_ peer: Peer) {
        var lo = 0, hi = waiting.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if waiting[mid] < peer { lo = mid + 1 } else { hi = mid }
        }
        if lo < waiting.count && waiting[lo] == peer { return }
        waiting.insert(peer, at: lo)
    }

    /// Copies the context back, announces freed buffers, and appends the wake.
    private mutating func finish(_ ctx: inout ConnectionContext<Peer>) -> [ChannelOutput<Peer>] {
        counters = ctx.counters
        budget = ctx.budget
        if budget.freed {
            budget.freed = false
            if budget.sendBuffered < budget.sendLimit {
                var still: [Peer] = []
                for peer in waiting {
                    let buffered = connections.index(forKey: peer).map { connections.values[$0].sendBuffered } ?? 0
                    if buffered < config.perPeerSendBuffer {
                        ctx.outputs.append(.writable(peer))
                    } else {
                        still.append(peer)
                    }
                }
                waiting = still
            }
        }
        var wake: Instant?
        for peer in order {
            if let d = connections.values[connections.index(forKey: peer)!].deadline(), wake == nil || d < wake! { wake = d }
        }
        if let wake { ctx.outputs.append(.wake(at: wake)) }
        return ctx.outputs
    }
}
