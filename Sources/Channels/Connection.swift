import MeshCore

/// A byte range of one message that still has to be (re)sent.
struct Chunk: Sendable, Equatable {
    var stream: UInt16
    var seq: UInt32
    var offset: UInt32
    var length: Int

    static func < (a: Chunk, b: Chunk) -> Bool { (a.seq, a.offset) < (b.seq, b.offset) }
}

struct OutMessage: Sendable {
    let id: MessageID
    let seq: UInt32
    let total: Int
    /// Emptied once the whole message is acknowledged, so memory goes back early.
    var bytes: [UInt8]
    /// First byte never sent yet.
    var nextNew = 0
    /// The message's length has been charged against the receiver's credit.
    var begun = false
    var sentEmpty = false
    var acked = RangeSet()
    var done = false
}

struct SendStream: Sendable {
    let id: UInt16
    /// Messages not yet reported `.sent`, in sequence order (contiguous seqs).
    var queue: [OutMessage] = []
    /// Index into `queue` of the first message with bytes never sent.
    var newIndex = 0
    /// Lost ranges, sorted by (seq, offset).
    var retransmit: [Chunk] = []

    var idle: Bool { queue.isEmpty && retransmit.isEmpty }
}

struct SentPacket: Sendable {
    let number: UInt64
    let sentAt: Instant
    let size: Int
    let chunks: [Chunk]
    let ackEliciting: Bool
    var settled = false
    // Delivery-rate sampling state when it was sent (draft-cheng-iccrg-delivery-rate-estimation).
    var delivered = 0
    var deliveredAt = Instant.zero
    var firstSentAt = Instant.zero
    var appLimited = false
}

struct RecvMessage: Sendable {
    let total: Int
    var buffer: [UInt8]
    var received = RangeSet()
    var gotEmpty = false
    var complete: Bool { total == 0 ? gotEmpty : received.covered == UInt64(total) }
}

struct RecvStream: Sendable {
    var nextDeliver: UInt32 = 0
    var pending: [UInt32: RecvMessage] = [:]
}

/// Node-wide accounting shared by all connections of an endpoint.
struct NodeBudget: Sendable {
    var receiveLimit: UInt64
    /// Sum over connections of (granted credit - released bytes).
    var receiveOutstanding: UInt64 = 0
    var sendLimit: Int
    var sendBuffered = 0
    /// Some send buffer was freed during this call.
    var freed = false
}

/// Everything a connection call may touch outside itself.
struct ConnectionContext<Peer: Hashable & Sendable & Comparable>: Sendable {
    var counters: ChannelCounters
    var budget: NodeBudget
    var outputs: [ChannelOutput<Peer>] = []
}

/// One peer's connection: both directions, all streams. Named by a random local id that changes
/// whenever this side's state is thrown away, so the peer can tell a fresh connection from an old one.
struct Connection<Peer: Hashable & Sendable & Comparable>: Sendable {
    let peer: Peer
    let config: ChannelConfig
    private(set) var localID: UInt64
    private(set) var remoteID: UInt64 = 0
    /// Remote ids replaced by a newer one; their late frames are ignored rather than resetting us again.
    private var retired: [UInt64] = []
    private var lastResetSent: Instant?

    // Send side.
    private var nextPacketNumber: UInt64 = 1
    private var streams: [SendStream] = []
    private var nextSendSeq: [UInt16: UInt32] = [:]
    private var sent: [SentPacket] = []
    private var sentHead = 0
    private(set) var bytesInFlight = 0
    private var largestAcked: UInt64 = 0
    private var rtt: RTTEstimator
    private var cc: RateController
    /// When the last ack-eliciting packet left: the probe timer runs from there (RFC 9002 6.2.1).
    private var lastAckElicitingAt: Instant?
    /// Probe timeouts in a row without an acknowledgement; any acknowledgement resets it, so
    /// repairs do not back off while the peer is still answering.
    private var ptoCount = 0
    /// Packets that may leave beyond the congestion window and pacing (probes after a timeout).
    private var probeCredit = 0
    private var lossTime: Instant?
    // Delivery-rate sampling.
    private var delivered = 0
    private var deliveredAt = Instant.zero
    private var firstSentAt = Instant.zero
    /// Non-zero while packets sent with too little to send are in flight: their samples are app-limited.
    private var appLimitedUntil = 0
    // Pacing: a token bucket filled at the controller's pacing rate.
    private var paceTokens = 0.0
    private var paceUpdatedAt = Instant.zero
    /// When pacing next lets a frame out, if it held one back.
    private var paceDeadline: Instant?
    private var peerMaxData: UInt64
    private var committed: UInt64 = 0
    private(set) var sendBuffered = 0
    private var lastProgress: Instant?
    private var flowBlocked = false
    private var lastProbeAt: Instant?

    // Receive side.
    private var receivedNumbers = RangeSet()
    private var numberFloor: UInt64 = 0
    private var largestReceived: UInt64 = 0
    private var largestReceivedAt = Instant.zero
    private var unackedEliciting = 0
    private var ackDeadline: Instant?
    private var ackNow = false
    private var recvStreams: [UInt16: RecvStream] = [:]
    private var grantedMax: UInt64 = 0
    private var reserved: UInt64 = 0
    private var released: UInt64 = 0

    static var maxTrackedRanges: Int { 64 }

    init(peer: Peer, config: ChannelConfig, localID: UInt64, budget: inout NodeBudget) {
        self.peer = peer
        self.config = config
        self.localID = localID
        rtt = RTTEstimator(initialRTO: config.initialRTO, minRTO: config.minRTO, maxRTO: config.maxRTO)
        cc = RateController(mss: config.maxFrame, initialFrames: config.initialCongestionFrames,
                            maxWindow: config.maxCongestionWindow, ackDelay: config.maxAckDelay)
        peerMaxData = UInt64(config.initialWindow)
        grantInitial(&budget)
    }

    // MARK: Introspection

    var hasPendingSends: Bool { !streams.isEmpty }
    var receiveBuffered: UInt64 { reserved - released }
    var congestionWindow: Int { cc.window }
    var bandwidthEstimate: Double { cc.bandwidth }
    var rateState: String {
        "\(cc.mode) gain \(cc.pacingGain) minRTT \(cc.minRTT == .max ? -1 : cc.minRTT / 1000) us round \(cc.round) inflight \(bytesInFlight)"
    }
    var smoothedRTT: Int64? { rtt.smoothed }

    // MARK: Caller input

    mutating func enqueue(_ message: [UInt8], stream: UInt16, id: MessageID, now: Instant, ctx: inout ConnectionContext<Peer>) {
        if streams.isEmpty { lastProgress = now }
        let seq = nextSendSeq[stream, default: 0]
        nextSendSeq[stream] = seq &+ 1
        let index = streamIndex(stream, create: true)!
        streams[index].queue.append(OutMessage(id: id, seq: seq, total: message.count, bytes: message))
        sendBuffered += message.count
        ctx.budget.sendBuffered += message.count
    }

    // MARK: Receiving

    /// `freshID` is used only if this frame tears the connection down.
    mutating func receive(_ p: ChannelWire.Packet, now: Instant, freshID: UInt64, ctx: inout ConnectionContext<Peer>) {
        if retired.contains(p.source) { ctx.counters.drop(.staleConnection); return }
        if p.reset {
            if p.destination == localID {
                ctx.counters.resetsReceived += 1
                teardown(.peerReset, fresh: freshID, ctx: &ctx)
            } else {
                ctx.counters.drop(.staleConnection)
            }
            return
        }
        if p.destination != 0 && p.destination != localID {
            // Addressed to a connection of ours that no longer exists: tell the sender, once in a while.
            ctx.counters.drop(.staleConnection)
            if p.source != remoteID { sendReset(to: p.source, now: now, ctx: &ctx) }
            return
        }
        if remoteID != 0 && p.source != remoteID {
            // The peer restarted or dropped its state: ours is bound to the old one.
            resetState(.peerReset, ctx: &ctx)
            retired.append(remoteID)
            if retired.count > 8 { retired.removeFirst() }
            remoteID = p.source
        }
        if p.number < numberFloor { ctx.counters.drop(.stalePacket); return }
        if receivedNumbers.contains(p.number) { ctx.counters.drop(.duplicatePacket); return }
        if let ack = p.ack, ack.ranges[0].upperBound >= nextPacketNumber { ctx.counters.drop(.badAck); return }
        if let reason = validateData(p.data) { ctx.counters.drop(reason); return }

        // Accepted.
        remoteID = p.source
        receivedNumbers.insert(p.number..<p.number + 1)
        while receivedNumbers.count > Self.maxTrackedRanges { numberFloor = receivedNumbers.removeFirst() }
        let inOrder = p.number == largestReceived + 1
        if p.number > largestReceived { largestReceived = p.number; largestReceivedAt = now }
        if p.ackEliciting {
            unackedEliciting += 1
            if !inOrder || unackedEliciting >= config.ackEveryPackets { ackNow = true }
            if ackDeadline == nil { ackDeadline = now + config.maxAckDelay }
        }
        if let ack = p.ack { processAck(ack, now: now, ctx: &ctx) }
        for d in p.data { acceptData(d, ctx: &ctx) }
    }

    /// Checks every data record before any is applied, so a refused record never gets its
    /// packet acknowledged (the sender will retransmit it).
    private func validateData(_ data: [ChannelWire.Data]) -> ChannelDropReason? {
        if data.isEmpty { return nil }
        var newMessages: [(UInt16, UInt32, UInt32)] = []
        var extra: UInt64 = 0
        for d in data {
            let rs = recvStreams[d.stream]
            let next = rs?.nextDeliver ?? 0
            if d.seq < next { continue }
            if Int(d.seq - next) >= config.maxPendingMessagesPerStream { return .outOfWindow }
            if let m = rs?.pending[d.seq] {
                if m.total != Int(d.total) { return .inconsistentLength }
            } else if let seen = newMessages.first(where: { $0.0 == d.stream && $0.1 == d.seq }) {
                if seen.2 != d.total { return .inconsistentLength }
            } else {
                newMessages.append((d.stream, d.seq, d.total))
                extra += UInt64(d.total)
            }
        }
        if reserved + extra > grantedMax { return .flowControl }
        return nil
    }

    private mutating func acceptData(_ d: ChannelWire.Data, ctx: inout ConnectionContext<Peer>) {
        // Move values out of the dictionaries so the (possibly 16 MiB) buffer is never copied.
        var rs = recvStreams.removeValue(forKey: d.stream) ?? RecvStream()
        defer { recvStreams[d.stream] = rs }
        if d.seq < rs.nextDeliver { ctx.counters.drop(.duplicateChunk); return }
        var m: RecvMessage
        if let existing = rs.pending.removeValue(forKey: d.seq) {
            m = existing
        } else {
            m = RecvMessage(total: Int(d.total), buffer: [UInt8](repeating: 0, count: Int(d.total)))
            reserved += UInt64(d.total)
        }
        if d.total == 0 {
            if m.gotEmpty { ctx.counters.drop(.duplicateChunk) }
            m.gotEmpty = true
        } else {
            let lo = UInt64(d.offset)
            let added = m.received.insert(lo..<lo + UInt64(d.bytes.count))
            if added == 0 {
                ctx.counters.drop(.duplicateChunk)
            } else {
                // The decoder checked offset + length <= total (the buffer's size); one copy, no per-byte bounds checks.
                let start = Int(d.offset)
                precondition(start + d.bytes.count <= m.buffer.count)
                m.buffer.withUnsafeMutableBytes { dst in
                    d.bytes.withUnsafeBytes { src in
                        (dst.baseAddress! + start).copyMemory(from: src.baseAddress!, byteCount: src.count)
                    }
                }
            }
        }
        rs.pending[d.seq] = m
        // Deliver every complete message at the head of the stream.
        while let head = rs.pending[rs.nextDeliver], head.complete {
            let msg = rs.pending.removeValue(forKey: rs.nextDeliver)!
            rs.nextDeliver &+= 1
            release(UInt64(msg.total), budget: &ctx.budget)
            ctx.counters.messagesDelivered += 1
            ctx.outputs.append(.delivered(from: peer, stream: d.stream, message: msg.buffer))
        }
    }

    private mutating func release(_ n: UInt64, budget: inout NodeBudget) {
        released += n
        budget.receiveOutstanding -= n
        // Tell the sender about large openings promptly; small ones ride on the next ACK.
        if released + UInt64(config.perPeerReceiveBuffer) - grantedMax >= UInt64(config.perPeerReceiveBuffer / 4) {
            ackNow = true
        }
    }

    private mutating func grantInitial(_ budget: inout NodeBudget) {
        let free = budget.receiveLimit - min(budget.receiveLimit, budget.receiveOutstanding)
        grantedMax = min(UInt64(config.initialWindow), free)
        budget.receiveOutstanding += grantedMax
    }

    /// Raises the advertised credit up to the per-peer bound, within what the node has left.
    private mutating func topUpGrant(_ budget: inout NodeBudget) {
        let target = released + UInt64(config.perPeerReceiveBuffer)
        guard target > grantedMax else { return }
        let free = budget.receiveLimit - min(budget.receiveLimit, budget.receiveOutstanding)
        let extra = min(target - grantedMax, free)
        grantedMax += extra
        budget.receiveOutstanding += extra
    }

    // MARK: Acknowledgements and loss

    private func firstSentIndex(atLeast number: UInt64) -> Int {
        var lo = sentHead, hi = sent.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sent[mid].number < number { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private mutating func processAck(_ ack: ChannelWire.Ack, now: Instant, ctx: inout ConnectionContext<Peer>) {
        peerMaxData = max(peerMaxData, ack.maxData)
        var ackedBytes = 0, ackedPackets = 0
        var rttSample: Int64?
        // The newest packet acknowledged here (largest `delivered` when sent) gives the rate sample.
        var newest: SentPacket?
        for range in ack.ranges {
            var i = firstSentIndex(atLeast: range.lowerBound)
            while i < sent.count && sent[i].number <= range.upperBound {
                if !sent[i].settled {
                    sent[i].settled = true
                    let p = sent[i]
                    if p.number == ack.ranges[0].upperBound && p.ackEliciting {
                        rtt.sample((now - p.sentAt).nanoseconds, ackDelay: Int64(ack.delayMicros) * 1000)
                        rttSample = rtt.latest
                    }
                    if p.ackEliciting {
                        bytesInFlight -= p.size
                        ackedBytes += p.size
                        ackedPackets += 1
                        delivered += p.size
                        deliveredAt = now
                        if newest == nil || p.delivered > newest!.delivered || (p.delivered == newest!.delivered && p.sentAt > newest!.sentAt) {
                            newest = p
                        }
                    }
                    for c in p.chunks { ackChunk(c, ctx: &ctx) }
                }
                i += 1
            }
        }
        largestAcked = max(largestAcked, ack.ranges[0].upperBound)
        if ackedBytes > 0 {
            var sample: RateSample?
            if let p = newest {
                firstSentAt = p.sentAt
                let interval = max((p.sentAt - p.firstSentAt).nanoseconds, (now - p.deliveredAt).nanoseconds)
                if interval > 0 {
                    sample = RateSample(bytesPerSecond: Double(delivered - p.delivered) * 1e9 / Double(interval),
                                        priorDelivered: p.delivered, appLimited: p.appLimited)
                }
            }
            if appLimitedUntil > 0 && delivered >= appLimitedUntil { appLimitedUntil = 0 }
            if cc.onAck(acked: ackedBytes, packets: ackedPackets, delivered: delivered, sample: sample, rtt: rttSample,
                        bytesInFlight: bytesInFlight, now: now) {
                ctx.counters.congestionEvents += 1
            }
            ptoCount = 0
            lastProgress = now
        }
        detectLosses(now: now, ctx: &ctx)
        compact()
    }

    private mutating func ackChunk(_ c: Chunk, ctx: inout ConnectionContext<Peer>) {
        guard let si = streamIndex(c.stream, create: false) else { return }
        guard let first = streams[si].queue.first, c.seq >= first.seq else { return }
        let mi = Int(c.seq - first.seq)
        guard mi < streams[si].queue.count, !streams[si].queue[mi].done else { return }
        let total = streams[si].queue[mi].total
        if total == 0 {
            streams[si].queue[mi].done = true
        } else {
            let lo = UInt64(c.offset)
            streams[si].queue[mi].acked.insert(lo..<lo + UInt64(c.length))
            if streams[si].queue[mi].acked.covered == UInt64(total) { streams[si].queue[mi].done = true }
        }
        guard streams[si].queue[mi].done else { return }
        streams[si].queue[mi].bytes = []
        sendBuffered -= total
        ctx.budget.sendBuffered -= total
        ctx.budget.freed = true
        // Report in stream order, so `.sent` implies the receiver can deliver it.
        while let head = streams[si].queue.first, head.done {
            streams[si].queue.removeFirst()
            streams[si].newIndex -= 1
            ctx.counters.messagesSent += 1
            ctx.outputs.append(.sent(head.id, to: peer))
        }
        if streams[si].idle { streams.remove(at: si) }
    }

    private mutating func detectLosses(now: Instant, ctx: inout ConnectionContext<Peer>) {
        lossTime = nil
        guard largestAcked > 0 else { return }
        let delay = rtt.lossDelay
        var i = sentHead
        while i < sent.count && sent[i].number < largestAcked {
            if !sent[i].settled && sent[i].ackEliciting {
                let deadline = sent[i].sentAt + .nanoseconds(delay)
                if largestAcked - sent[i].number >= 3 || deadline <= now {
                    declareLost(i, now: now, ctx: &ctx)
                    cc.onLost()
                } else if lossTime == nil || deadline < lossTime! {
                    lossTime = deadline
                }
            }
            i += 1
        }
    }

    /// Loss is repaired, never read as congestion here: the rate model sees only what is delivered.
    private mutating func declareLost(_ i: Int, now: Instant, ctx: inout ConnectionContext<Peer>) {
        sent[i].settled = true
        let p = sent[i]
        bytesInFlight -= p.size
        ctx.counters.lossEvents += 1
        for c in p.chunks { requeue(c, ctx: &ctx) }
    }

    private mutating func requeue(_ c: Chunk, ctx: inout ConnectionContext<Peer>) {
        guard let si = streamIndex(c.stream, create: false) else { return }
        guard let first = streams[si].queue.first, c.seq >= first.seq else { return }
        let mi = Int(c.seq - first.seq)
        guard mi < streams[si].queue.count, !streams[si].queue[mi].done else { return }
        var pieces: [Chunk] = []
        if c.length == 0 {
            pieces = [c]
        } else {
            let lo = UInt64(c.offset)
            for g in streams[si].queue[mi].acked.gaps(in: lo..<lo + UInt64(c.length)) {
                pieces.append(Chunk(stream: c.stream, seq: c.seq, offset: UInt32(g.lowerBound), length: Int(g.count)))
            }
        }
        for piece in pieces {
            ctx.counters.retransmittedChunks += 1
            var lo = 0, hi = streams[si].retransmit.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if streams[si].retransmit[mid] < piece { lo = mid + 1 } else { hi = mid }
            }
            streams[si].retransmit.insert(piece, at: lo)
        }
    }

    /// Drops settled packets from the front; rebuilds the array once the dead prefix is large.
    private mutating func compact() {
        while sentHead < sent.count && sent[sentHead].settled { sentHead += 1 }
        if sentHead == sent.count { sent.removeAll(keepingCapacity: true); sentHead = 0 }
        else if sentHead > 256 && sentHead * 2 > sent.count { sent.removeFirst(sentHead); sentHead = 0 }
    }

    // MARK: Timers

    /// RFC 9002 6.2: the probe timeout, from the last ack-eliciting packet, doubled per
    /// unanswered probe (at most 64x and `maxRTO`), while anything is in flight.
    private var probeTimeoutDeadline: Instant? {
        guard let last = lastAckElicitingAt, bytesInFlight > 0 else { return nil }
        let base = rtt.probeTimeout(maxAckDelay: config.maxAckDelay.nanoseconds)
        return last + .nanoseconds(min(base << min(ptoCount, 6), max(base, rtt.maxRTO)))
    }

    private var probeDeadline: Instant? {
        guard flowBlocked, bytesInFlight == 0 else { return nil }
        guard let last = lastProbeAt else { return .zero }
        return last + .nanoseconds(rtt.rto)
    }

    private var failureDeadline: Instant? {
        guard hasPendingSends, let p = lastProgress else { return nil }
        return p + config.failureTimeout
    }

    var nextDeadline: Instant? {
        // Asked after every frame: no temporary array.
        var best: Instant? = ackNow && !receivedNumbers.isEmpty ? Instant.zero : ackDeadline
        func consider(_ d: Instant?) { if let d, best == nil || d < best! { best = d } }
        consider(lossTime)
        consider(probeTimeoutDeadline)
        consider(paceDeadline)
        consider(probeDeadline)
        consider(failureDeadline)
        return best
    }

    /// `nextDeadline`, read through the dictionary's in-place accessor (`connections.values[i]`)
    /// rather than its getter, which would copy the whole connection.
    mutating func deadline() -> Instant? { nextDeadline }

    mutating func onTimers(now: Instant, freshID: UInt64, ctx: inout ConnectionContext<Peer>) {
        if let d = failureDeadline, d <= now {
            ctx.counters.timeouts += 1
            teardown(.timeout, fresh: freshID, ctx: &ctx)
            return
        }
        if let t = lossTime, t <= now { detectLosses(now: now, ctx: &ctx) }
        if let d = probeTimeoutDeadline, d <= now {
            // RFC 9002 6.2.4: send up to two probes, beyond the window, carrying the oldest
            // unacknowledged data; nothing else is presumed lost. The tail of a flight is
            // repaired within about one RTT instead of after a backed-off RTO.
            var i = sentHead, requeued = 0
            while i < sent.count && requeued < 2 {
                if !sent[i].settled && sent[i].ackEliciting {
                    declareLost(i, now: now, ctx: &ctx)
                    requeued += 1
                }
                i += 1
            }
            probeCredit = 2
            ptoCount += 1
            ctx.counters.probeTimeouts += 1
            // Persistent congestion (RFC 9002 7.6): three probe timeouts in a row and nothing
            // acknowledged for at least `minRTO`, so a loaded receiver's pause is not mistaken for it.
            if ptoCount >= 3, cc.window > cc.minWindow, let last = lastProgress, now - last >= config.minRTO {
                cc.onPersistentCongestion()
                ctx.counters.congestionEvents += 1
            }
            lastAckElicitingAt = now
            compact()
        }
    }

    // MARK: Sending

    /// Builds and emits as many frames as the congestion window, pacing and the queues allow.
    mutating func flush(now: Instant, ctx: inout ConnectionContext<Peer>) {
        flowBlocked = false
        refillPacing(now: now)
        paceDeadline = nil
        var ranOutOfData = false
        while true {
            let wantAck = unackedEliciting > 0 && (ackNow || (ackDeadline.map { $0 <= now } ?? false))
            var ack: ChannelWire.Ack? = nil
            var space = config.maxFrame - ChannelWire.headerSize
            let probing = probeCredit > 0
            var windowOpen = probing || bytesInFlight == 0 || bytesInFlight + config.maxFrame <= cc.window
            if windowOpen && !probing && !paceAllows(now: now) { windowOpen = false }
            var data: [ChannelWire.Data] = []
            var chunks: [Chunk] = []
            // Piggyback an ACK on data whenever there is anything new to acknowledge.
            if wantAck || (windowOpen && unackedEliciting > 0 && hasPendingSends) || (ackNow && !receivedNumbers.isEmpty) {
                let a = buildAck(now: now, budget: &ctx.budget)
                ack = a
                space -= a.encodedSize
            }
            if windowOpen {
                while space > ChannelWire.dataRecordHeader, let (d, c) = nextChunk(maxLength: space - ChannelWire.dataRecordHeader) {
                    space -= ChannelWire.dataRecordHeader + d.bytes.count
                    data.append(d)
                    chunks.append(c)
                }
                if data.isEmpty { ranOutOfData = true }
            }
            var ping = false
            if data.isEmpty, windowOpen, let pd = probeDeadline, pd <= now {
                ping = true
                lastProbeAt = now
                ctx.counters.probes += 1
            } else if data.isEmpty, probing {
                // A probe with nothing left to repeat still asks for an acknowledgement.
                ping = true
            }
            if data.isEmpty && !ping && ack == nil { break }
            let number = nextPacketNumber
            nextPacketNumber += 1
            let packet = ChannelWire.Packet(source: localID, destination: remoteID, number: number, ack: ack, ping: ping, data: data)
            let bytes = ChannelWire.encode(packet)
            if packet.ackEliciting {
                if bytesInFlight == 0 {
                    // Nothing in flight: sampling restarts from here (the idle gap is not path time).
                    firstSentAt = now
                    deliveredAt = now
                }
                sent.append(SentPacket(number: number, sentAt: now, size: bytes.count, chunks: chunks, ackEliciting: true,
                                       delivered: delivered, deliveredAt: deliveredAt, firstSentAt: firstSentAt,
                                       appLimited: appLimitedUntil > 0))
                bytesInFlight += bytes.count
                lastAckElicitingAt = now
                if probing { probeCredit -= 1 } else if cc.pacingRate != nil { paceTokens -= Double(bytes.count) }
                if lastProgress == nil { lastProgress = now }
            }
            if ack != nil {
                unackedEliciting = 0
                ackNow = false
                ackDeadline = nil
            }
            ctx.counters.framesOut += 1
            ctx.counters.bytesOut += UInt64(bytes.count)
            ctx.outputs.append(.frame(to: peer, bytes: bytes))
            if data.isEmpty { break }
        }
        probeCredit = 0
        if ranOutOfData {
            // Too little to send (or no credit from the receiver) to fill the window: rate samples
            // until these are acknowledged measure the application, not the path.
            appLimitedUntil = max(delivered + bytesInFlight, 1)
        }
    }

    /// Largest burst pacing lets out at once: two milliseconds at the pacing rate (a libuv timer
    /// has millisecond granularity), at least ten frames.
    private func paceBurst(rate: Double) -> Double {
        max(Double(10 * config.maxFrame), rate * 0.002)
    }

    private mutating func refillPacing(now: Instant) {
        if let rate = cc.pacingRate {
            let elapsed = Double(max(0, (now - paceUpdatedAt).nanoseconds)) / 1e9
            // A sender held back by pacing keeps the credit of a late wake-up (a loaded loop fires
            // timers late), up to one window; credit saved while idle is capped at one burst.
            let cap = paceDeadline != nil ? max(paceBurst(rate: rate), Double(cc.window)) : paceBurst(rate: rate)
            paceTokens = min(paceTokens + rate * elapsed, cap)
        }
        paceUpdatedAt = now
    }

    /// Whether pacing lets one more full frame out now; if not, records when it will.
    private mutating func paceAllows(now: Instant) -> Bool {
        guard let rate = cc.pacingRate, paceTokens < Double(config.maxFrame), hasPendingSends else { return true }
        let wait = (Double(config.maxFrame) - paceTokens) / rate
        paceDeadline = now + .nanoseconds(max(1, Int64(wait * 1e9)))
        return false
    }

    private mutating func buildAck(now: Instant, budget: inout NodeBudget) -> ChannelWire.Ack {
        topUpGrant(&budget)
        var ranges: [ClosedRange<UInt64>] = []
        // Lengths and gaps are 32-bit on the wire: acknowledge less rather than wrap.
        let limit = UInt64(UInt32.max)
        for r in receivedNumbers.ranges.reversed().prefix(ChannelWire.maxAckRanges) {
            let high = r.upperBound - 1
            if let previous = ranges.last, previous.lowerBound - high - 2 > limit { break }
            ranges.append(max(r.lowerBound, high - min(high, limit))...high)
        }
        let delay = max(0, (now - largestReceivedAt).nanoseconds / 1000)
        return ChannelWire.Ack(ranges: ranges, delayMicros: UInt32(min(delay, Int64(UInt32.max))), maxData: grantedMax)
    }

    /// Next piece to send: lower stream ids first; within a stream, lost ranges before new bytes.
    private mutating func nextChunk(maxLength: Int) -> (ChannelWire.Data, Chunk)? {
        var si = 0
        while si < streams.count {
            // Retransmissions.
            while var c = streams[si].retransmit.first {
                let first = streams[si].queue.first
                guard let first, c.seq >= first.seq, Int(c.seq - first.seq) < streams[si].queue.count,
                      !streams[si].queue[Int(c.seq - first.seq)].done else {
                    streams[si].retransmit.removeFirst()
                    continue
                }
                let mi = Int(c.seq - first.seq)
                let take = min(c.length, maxLength)
                if take < c.length {
                    streams[si].retransmit[0].offset += UInt32(take)
                    streams[si].retransmit[0].length -= take
                } else {
                    streams[si].retransmit.removeFirst()
                }
                c.length = take
                let m = streams[si].queue[mi]
                let start = Int(c.offset)
                let d = ChannelWire.Data(stream: c.stream, seq: c.seq, total: UInt32(m.total), offset: c.offset,
                                         bytes: Array(m.bytes[start..<start + take]))
                return (d, c)
            }
            // New bytes.
            let ni = streams[si].newIndex
            if ni < streams[si].queue.count {
                let m = streams[si].queue[ni]
                if !m.begun {
                    if committed + UInt64(m.total) > peerMaxData {
                        flowBlocked = true
                        si += 1
                        continue
                    }
                    committed += UInt64(m.total)
                    streams[si].queue[ni].begun = true
                }
                let take = min(m.total - m.nextNew, maxLength)
                let d = ChannelWire.Data(stream: streams[si].id, seq: m.seq, total: UInt32(m.total), offset: UInt32(m.nextNew),
                                         bytes: Array(m.bytes[m.nextNew..<m.nextNew + take]))
                let c = Chunk(stream: streams[si].id, seq: m.seq, offset: UInt32(m.nextNew), length: take)
                streams[si].queue[ni].nextNew += take
                if m.nextNew + take == m.total { streams[si].newIndex += 1 }
                return (d, c)
            }
            si += 1
        }
        return nil
    }

    private mutating func streamIndex(_ id: UInt16, create: Bool) -> Int? {
        var lo = 0, hi = streams.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if streams[mid].id < id { lo = mid + 1 } else { hi = mid }
        }
        if lo < streams.count && streams[lo].id == id { return lo }
        guard create else { return nil }
        streams.insert(SendStream(id: id), at: lo)
        return lo
    }

    private mutating func sendReset(to destination: UInt64, now: Instant, ctx: inout ConnectionContext<Peer>) {
        if let last = lastResetSent, now < last + config.minRTO { return }
        lastResetSent = now
        let bytes = ChannelWire.encode(.init(reset: true, source: localID, destination: destination, number: 0))
        ctx.counters.resetsSent += 1
        ctx.counters.framesOut += 1
        ctx.counters.bytesOut += UInt64(bytes.count)
        ctx.outputs.append(.frame(to: peer, bytes: bytes))
    }

    // MARK: Resets

    /// Fails every pending message and frees every buffer; keeps the ids.
    mutating func resetState(_ reason: ChannelFailure, ctx: inout ConnectionContext<Peer>) {
        for s in streams {
            for m in s.queue {
                if !m.done {
                    sendBuffered -= m.total
                    ctx.budget.sendBuffered -= m.total
                }
                ctx.counters.messagesFailed += 1
                ctx.outputs.append(.failed(m.id, to: peer, reason: reason))
            }
        }
        if !streams.isEmpty { ctx.budget.freed = true }
        streams = []
        nextSendSeq = [:]
        sent = []
        sentHead = 0
        bytesInFlight = 0
        largestAcked = 0
        lastAckElicitingAt = nil
        ptoCount = 0
        probeCredit = 0
        lossTime = nil
        delivered = 0
        deliveredAt = .zero
        firstSentAt = .zero
        appLimitedUntil = 0
        paceTokens = 0
        paceDeadline = nil
        peerMaxData = UInt64(config.initialWindow)
        committed = 0
        lastProgress = nil
        flowBlocked = false
        lastProbeAt = nil
        cc = RateController(mss: config.maxFrame, initialFrames: config.initialCongestionFrames,
                            maxWindow: config.maxCongestionWindow, ackDelay: config.maxAckDelay)

        receivedNumbers = RangeSet()
        numberFloor = 0
        largestReceived = 0
        unackedEliciting = 0
        ackDeadline = nil
        ackNow = false
        recvStreams = [:]
        ctx.budget.receiveOutstanding -= grantedMax - released
        grantedMax = 0
        reserved = 0
        released = 0
        grantInitial(&ctx.budget)
    }

    /// Throws this side away entirely: a new local id tells the peer to start over too.
    mutating func teardown(_ reason: ChannelFailure, fresh: UInt64, ctx: inout ConnectionContext<Peer>) {
        resetState(reason, ctx: &ctx)
        localID = fresh
        remoteID = 0
        retired = []
    }

    /// Frees everything before the connection is forgotten.
    mutating func close(_ reason: ChannelFailure, ctx: inout ConnectionContext<Peer>) {
        resetState(reason, ctx: &ctx)
        ctx.budget.receiveOutstanding -= grantedMax - released
        grantedMax = 0
    }
}
