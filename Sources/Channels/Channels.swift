import MeshCore

/// Channels: reliable, ordered messages of up to `maxMessage` bytes between two nodes, carried in
/// the plaintext of their encrypted datagram session. Sans-IO: no clock, no socket, no global
/// randomness. See Docs/channels.md for the contract and the byte-by-byte frame layout.
public enum ChannelsModule {}

/// Tunables. Both ends of a connection should use the same values (the initial window and the
/// maximum message size are part of what a sender assumes about its receiver).
public struct ChannelConfig: Sendable, Equatable {
    /// Largest frame handed to the session (the session's `maxPlaintext`).
    public var maxFrame: Int = 1184
    /// Largest message accepted from the caller or announced by a peer.
    public var maxMessage: Int = 16 << 20
    /// Bytes of not-yet-acknowledged messages queued towards one peer before `send` refuses.
    public var perPeerSendBuffer: Int = 20 << 20
    /// Same, summed over all peers.
    public var nodeSendBuffer: Int = 64 << 20
    /// Receive buffer granted to one peer (flow-control window). Must hold one whole `maxMessage`.
    public var perPeerReceiveBuffer: Int = 20 << 20
    /// Receive buffer granted over all peers together.
    public var nodeReceiveBuffer: Int = 64 << 20
    /// Window a sender may assume before it has heard any grant from the receiver.
    public var initialWindow: Int = 64 << 10
    /// Probe timeout before the first RTT sample (RFC 6298's initial RTO, 1 s); `minRTO` spaces
    /// window probes and resets, `maxRTO` caps a backed-off probe timeout.
    public var initialRTO: Duration = .seconds(1)
    public var minRTO: Duration = .milliseconds(200)
    public var maxRTO: Duration = .seconds(10)
    /// Pending messages fail when the peer has acknowledged nothing for this long.
    public var failureTimeout: Duration = .seconds(15)
    /// Longest a receiver holds back an acknowledgement.
    public var maxAckDelay: Duration = .milliseconds(10)
    /// In-order ack-eliciting packets a receiver takes before it acknowledges at once (RFC 9000
    /// says 2; more means fewer ACK datagrams, each one system call on both ends).
    public var ackEveryPackets: Int = 2
    /// Initial congestion window, in frames.
    public var initialCongestionFrames: Int = 10
    /// Upper bound of the congestion window, in bytes.
    public var maxCongestionWindow: Int = 32 << 20
    /// Connections (peers) tracked at once.
    public var maxConnections: Int = 256
    /// Ahead-of-order messages a receiver buffers per stream.
    public var maxPendingMessagesPerStream: Int = 4096

    public init() {}

    /// Frame header plus one data-record header: the smallest useful frame.
    public static let minimumFrame = ChannelWire.headerSize + ChannelWire.dataRecordHeader + 1 + ChannelWire.maxAckRecordSize

    /// nil when consistent, or what to fix.
    public func validationError() -> String? {
        if maxFrame < Self.minimumFrame { return "maxFrame \(maxFrame) is below \(Self.minimumFrame)" }
        if maxFrame > 65_535 { return "maxFrame \(maxFrame) exceeds 65535" }
        if maxMessage < 0 || maxMessage > Int(UInt32.max) { return "maxMessage must fit in 32 bits" }
        if perPeerReceiveBuffer < maxMessage { return "perPeerReceiveBuffer must hold one maxMessage" }
        if perPeerSendBuffer < maxMessage { return "perPeerSendBuffer must hold one maxMessage" }
        if nodeSendBuffer < perPeerSendBuffer || nodeReceiveBuffer < perPeerReceiveBuffer { return "node buffers must be at least the per-peer buffers" }
        if initialRTO <= .zero || minRTO <= .zero || maxRTO < minRTO { return "RTO bounds are inconsistent" }
        if failureTimeout <= .zero { return "failureTimeout must be positive" }
        if maxConnections < 1 { return "maxConnections must be at least 1" }
        if ackEveryPackets < 1 || ackEveryPackets > 64 { return "ackEveryPackets must be 1...64" }
        return nil
    }
}

/// Identifies a message the caller queued, for `.sent` and `.failed`.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public static func < (a: MessageID, b: MessageID) -> Bool { a.raw < b.raw }
    public var description: String { "m\(raw)" }
}

/// Why `send` refused a message. Nothing was allocated for it.
public enum ChannelError: Error, Equatable, Sendable {
    /// Larger than `maxMessage`: split it or raise the limit on both ends.
    case messageTooLarge(size: Int, max: Int)
    /// The send buffer towards this peer (or the node's) is full: retry after `.writable(peer)`.
    case backpressure
    /// `maxConnections` peers are already tracked.
    case tooManyConnections
}

/// Why a queued message failed. The caller decides whether to retry.
public enum ChannelFailure: String, Sendable, Equatable {
    /// The peer acknowledged nothing for `failureTimeout`.
    case timeout
    /// The peer restarted or dropped its side of the connection; it never got (all of) this.
    case peerReset = "peer_reset"
    /// The driver closed the connection (`reset(peer:)`), e.g. the session was lost.
    case closed
}

/// What a call asks the driver to do, in order.
public enum ChannelOutput<Peer: Hashable & Sendable & Comparable>: Sendable, Equatable {
    /// Hand these bytes to the session towards `to`.
    case frame(to: Peer, bytes: [UInt8])
    /// A whole message, in order within its stream, exactly once.
    case delivered(from: Peer, stream: UInt16, message: [UInt8])
    /// The peer acknowledged this message and every earlier one on its stream.
    case sent(MessageID, to: Peer)
    /// This message will not be delivered by this connection.
    case failed(MessageID, to: Peer, reason: ChannelFailure)
    /// `send` towards this peer may succeed again.
    case writable(Peer)
    /// Call `tick(now:)` at this instant. Replaces any earlier wake; at most one per call, last.
    case wake(at: Instant)
}

/// Why a received frame (or part of it) was dropped. Raw values are what status output prints.
public enum ChannelDropReason: String, Sendable, CaseIterable, Codable, Error {
    case truncated
    case oversized
    case badVersion = "bad_version"
    case badFlags = "bad_flags"
    case unknownRecord = "unknown_record"
    case badRecord = "bad_record"
    case badAck = "bad_ack"
    case messageTooLarge = "message_too_large"
    case staleConnection = "stale_connection"
    case duplicatePacket = "duplicate_packet"
    case stalePacket = "stale_packet"
    case duplicateChunk = "duplicate_chunk"
    case inconsistentLength = "inconsistent_length"
    case flowControl = "flow_control"
    case outOfWindow = "out_of_window"
    case tooManyConnections = "too_many_connections"
}

/// Counters for one endpoint, in one struct as the other subsystems do.
public struct ChannelCounters: Sendable, Equatable {
    public var framesIn: UInt64 = 0
    public var framesOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesDelivered: UInt64 = 0
    public var messagesFailed: UInt64 = 0
    public var retransmittedChunks: UInt64 = 0
    public var lossEvents: UInt64 = 0
    /// Persistent congestion: three probe timeouts in a row, the window restarted small.
    public var congestionEvents: UInt64 = 0
    /// Connections failed by `failureTimeout`.
    public var timeouts: UInt64 = 0
    /// Probe-timeout expirations (RFC 9002 6.2): tail probes sent.
    public var probeTimeouts: UInt64 = 0
    /// Probes sent while the receiver's window was closed.
    public var probes: UInt64 = 0
    public var resetsSent: UInt64 = 0
    public var resetsReceived: UInt64 = 0
    public var drops: [ChannelDropReason: UInt64] = [:]

    public init() {}

    public var totalDrops: UInt64 { drops.values.reduce(0, +) }
    public func drops(_ reason: ChannelDropReason) -> UInt64 { drops[reason] ?? 0 }

    mutating func drop(_ reason: ChannelDropReason) { drops[reason, default: 0] += 1 }
}
