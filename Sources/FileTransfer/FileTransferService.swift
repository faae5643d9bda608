import Channels
import MeshCore
import Node
import NodeService
import Sessions

/// File transfer (`iotaf send`) as a node service, sans-IO. A sender offers a file (name, size,
/// BLAKE2b-256), sends its bytes in order as chunk messages and waits for the receiver's verdict;
/// the receiver writes the chunks to a hidden part file, hashes what is on disk, and only when the
/// hash matches moves it into `inbox/<sender node id>/<name>` without replacing an earlier file of
/// that name (TransferWire.swift, Docs/encoding.md).
///
/// Every file access is an `.offload` job over the injected `FileStore`: measuring and hashing the
/// file, reading a chunk, creating, appending, syncing and hashing the part file, placing it. The
/// runtime runs the jobs on libuv's thread pool, the simulator inline against a node's virtual
/// disk with their `cost` charged to its virtual CPU. One job per transfer at a time.
///
/// Transport: a `ChannelEndpoint` of the service's own, its frames prefixed `0x03` in the session
/// plaintext. The service needs each chunk's acknowledgement to keep a window of chunks in flight
/// (and read no more of the file than that), and back-pressure to pause; the node's reliable stream
/// reports neither and grants 512 KiB per peer, and the users' channels report to the driver, not
/// to a service. Its own endpoint has the users' congestion control and buffers, so goodput is the
/// users' channels'.
public struct FileTransferService: NodeService {
    public typealias Command = NodeCommand
    public typealias Event = NodeEvent
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    public static let prefix: UInt8 = 0x03
    public static let protocolID = ProtocolID(prefix)
    public var protocolIDs: [ProtocolID] { [Self.protocolID] }
    /// Its frames are a channel endpoint's: bulk (`NodeService.sendsBulk`).
    public var sendsBulk: Bool { true }

    /// Chunks in flight (sent, not acknowledged) per outgoing transfer.
    public static let window = 8
    /// A transfer with no progress for this long fails (the receiver stopped answering, or the sender).
    public static let idleTimeout: Duration = .seconds(120)
    /// Finished transfers kept for reports.
    public static let keepFinished = 32
    /// Connections to a peer with no transfer that sent nothing for this long are closed (their
    /// receive grant returns); longer than the channel's own failure timeout.
    static let connectionIdle: Duration = .seconds(30)
    static let sweepEvery: Duration = .seconds(5)

    public static var channelConfig: ChannelConfig {
        var c = ChannelService.defaultConfig
        c.maxFrame = SessionManager.maxPlaintext - 1
        // The largest transfer message is a chunk (1 MiB and its header).
        c.maxMessage = 2 << 20
        // A window of chunks, with room: five senders at once before a sixth waits for a grant.
        c.perPeerReceiveBuffer = 12 << 20
        return c
    }

    public struct Counters: Sendable, Equatable {
        public var sent: UInt64 = 0, received: UInt64 = 0
        public var failedOut: UInt64 = 0, failedIn: UInt64 = 0
        public var refusedOffers: UInt64 = 0
        public var jobs: UInt64 = 0
        public var drops: [FileDropReason: UInt64] = [:]
        mutating func drop(_ r: FileDropReason) { drops[r, default: 0] += 1 }
    }

    struct Outgoing {
        let id: UInt64
        let peer: NodeID
        let stream: UInt16
        let path: String
        let name: String
        let started: Instant
        var size: UInt64 = 0
        var hash: [UInt8] = []
        var state = TransferState.hashing
        var error: String?
        var nextOffset: UInt64 = 0
        var acked: UInt64 = 0
        var reading = false
        var inFlight: [MessageID: Int] = [:]
        /// A message refused with back-pressure, sent again on `.writable`.
        var blocked: (message: [UInt8], length: Int)?
        var lastProgress: Instant
        var finishedAt: Instant?
        /// Times the transfer began again from its offer (see `restart`).
        var restarts = 0
    }

    struct Incoming {
        let peer: NodeID
        let id: UInt64
        let name: String
        let size: UInt64
        let hash: [UInt8]
        let stream: UInt16
        let started: Instant
        let part: String
        var finalPath: String
        var state = TransferState.receiving
        var error: String?
        var received: UInt64 = 0
        var written: UInt64 = 0
        var queue: [ArraySlice<UInt8>] = []
        /// A job of this transfer is running.
        var busy = false
        var lastProgress: Instant
        var finishedAt: Instant?
    }

    /// What a running job was for.
    enum Job {
        case measure(UInt64), hash(UInt64), read(UInt64, offset: UInt64, count: Int)
        case create(NodeID, UInt64), append(NodeID, UInt64, bytes: UInt64), finish(NodeID, UInt64), place(NodeID, UInt64)
        case discard
    }

    public let files: any FileStore
    /// Where received files go: `<inbox>/<sender node id>/<name>`.
    public let inbox: String
    public let me: NodeID
    /// Largest file this node accepts.
    public var maxFileSize: UInt64
    public internal(set) var endpoint: ChannelEndpoint<NodeID>
    public private(set) var counters = Counters()
    var rng: SeededGenerator
    // Arrays, not dictionaries: what is sent never depends on hash order.
    var outgoing: [Outgoing] = []
    var incoming: [Incoming] = []
    var finished: [TransferReport] = []
    var byMessage: [MessageID: UInt64] = [:]
    var jobs: [UInt64: Job] = [:]
    var nextJob: UInt64 = 0
    var channelWake: Instant?
    var sweepAt: Instant?
    /// When a transfer with each peer last ended or progressed, to close idle connections.
    var peerUse: [NodeID: Instant] = [:]

    public init(me: NodeID, files: any FileStore, inbox: String, maxFileSize: UInt64 = 1 << 40, rng: SeededGenerator) {
        self.me = me
        self.files = files
        self.inbox = inbox
        self.maxFileSize = maxFileSize
        self.rng = rng
        endpoint = ChannelEndpoint(config: Self.channelConfig, rng: rng.derived(0xf11e))
    }

    public var deadline: Instant? {
        switch (channelWake, sweepAt) {
        case let (a?, b?): return min(a, b)
        case let (a, b): return a ?? b
        }
    }

    public func takes(_ command: NodeCommand) -> Bool {
        if case let .service(id, _) = command { return id == Self.protocolID }
        return false
    }

    public func purpose(ofSent bytes: [UInt8]) -> String? { "file_transfer" }

    public mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        var out: [Output] = []
        switch input {
        case let .message(from, bytes, _):
            guard from.nodeID != me else { counters.drop(.fromSelf); return [] }
            // A peer that is sending is not idle, even before its offer is whole (else the
            // receiver could close the connection under the sender's next file).
            peerUse[from.nodeID] = now
            armSweep(now)
            absorb(endpoint.receive(frame: Array(bytes.dropFirst()), from: from.nodeID, now: now), now: now, into: &out)
        case let .command(.service(_, payload)):
            guard let c = payload.as(FileCommand.self) else { break }
            switch c {
            case let .send(path, to, stream): start(path: path, to: to, stream: stream, now: now, members: members, into: &out)
            }
        case .timer:
            if let w = channelWake, now >= w {
                channelWake = nil
                absorb(endpoint.tick(now: now), now: now, into: &out)
            }
            if let s = sweepAt, now >= s { sweep(now: now, into: &out) }
        case let .membership(.down(peer)), let .membership(.culled(peer)):
            let id = peer.nodeID
            for k in outgoing.indices.reversed() where outgoing[k].peer == id {
                failOut(k, "the receiver \(id.short) went down (dead, left or culled)", now: now, into: &out)
            }
            for k in incoming.indices.reversed() where incoming[k].peer == id {
                failIn(k, .protocolError, "the sender died", now: now, into: &out)
            }
            absorb(endpoint.reset(peer: id, now: now), now: now, into: &out)
        case let .offloaded(ticket, outcome):
            guard let job = jobs.removeValue(forKey: ticket.sequence) else { break }
            finished(job, outcome, now: now, into: &out)
        case .start, .command, .membership, .persisted, .restored, .stop:
            break
        }
        return out
    }

    // MARK: - Jobs

    private mutating func offload(_ job: Job, cost: Duration, into out: inout [Output], _ work: @escaping @Sendable () -> JobOutcome) {
        nextJob += 1
        jobs[nextJob] = job
        counters.jobs += 1
        out.append(.offload(OffloadJob(ticket: JobTicket(service: Self.protocolID, sequence: nextJob), cost: cost, work: work)))
    }

    private mutating func finished(_ job: Job, _ outcome: JobOutcome, now: Instant, into out: inout [Output]) {
        switch job {
        case let .measure(id):
            guard let k = outIndex(id), outgoing[k].state == .hashing else { return }
            switch outcome {
            case let .failed(e): failOut(k, "cannot read \(outgoing[k].path): \(FileStoreError.decode(e))", now: now, into: &out)
            case let .bytes(b):
                var r = ByteReader(b)
                outgoing[k].size = (try? r.u64()) ?? 0
                let (files, path) = (files, outgoing[k].path)
                offload(.hash(id), cost: FileCosts.hash(outgoing[k].size), into: &out) {
                    switch files.hash(of: path) {
                    case let .success(h): return .bytes(h)
                    case let .failure(e): return .failed(e.encoded)
                    }
                }
            }
        case let .hash(id):
            guard let k = outIndex(id), outgoing[k].state == .hashing else { return }
            switch outcome {
            case let .failed(e): failOut(k, "cannot read \(outgoing[k].path): \(FileStoreError.decode(e))", now: now, into: &out)
            case let .bytes(h):
                outgoing[k].hash = h
                outgoing[k].state = .sending
                outgoing[k].lastProgress = now
                let t = outgoing[k]
                sendOut(k, TransferWire.offer(id: t.id, size: t.size, hash: h, name: t.name), length: 0, now: now, into: &out)
                pump(id, now: now, into: &out)
            }
        case let .read(id, offset, count):
            guard let k = outIndex(id) else { return }
            outgoing[k].reading = false
            guard outgoing[k].state == .sending else { return }
            switch outcome {
            case let .failed(e):
                failOut(k, "cannot read \(outgoing[k].path) at offset \(offset): \(FileStoreError.decode(e))", now: now, into: &out)
            case let .bytes(message):
                // Read before a restart: not the chunk the transfer needs now.
                guard offset == outgoing[k].nextOffset else { pump(id, now: now, into: &out); return }
                outgoing[k].nextOffset = offset + UInt64(count)
                sendOut(k, message, length: count, now: now, into: &out)
                pump(id, now: now, into: &out)
            }
        case let .create(peer, id), let .finish(peer, id), let .place(peer, id), let .append(peer, id, _):
            guard let k = inIndex(peer, id) else { return }
            incoming[k].busy = false
            guard incoming[k].state != .failed else { discard(incoming[k].part, into: &out); incoming.remove(at: k); return }
            if case let .failed(e) = outcome {
                let err = FileStoreError.decode(e)
                failIn(k, err.noSpace ? .refused : .writeFailed, err.message, now: now, into: &out)
                return
            }
            guard case let .bytes(b) = outcome else { return }
            switch job {
            case let .append(_, _, bytes):
                incoming[k].written += bytes
                drain(k, now: now, into: &out)
            case .finish:
                guard b == incoming[k].hash else {
                    failIn(k, .hashMismatch, "BLAKE2b of the received bytes differs from the offer", now: now, into: &out)
                    return
                }
                incoming[k].busy = true
                let (files, part, path) = (files, incoming[k].part, incoming[k].finalPath)
                offload(.place(peer, id), cost: FileCosts.copy(0), into: &out) {
                    switch files.place(part, at: path) {
                    case let .success(p): return .bytes(Array(p.utf8))
                    case let .failure(e): return .failed(e.encoded)
                    }
                }
            case .place:
                incoming[k].finalPath = String(decoding: b, as: UTF8.self)
                completeIn(k, now: now, into: &out)
            default:
                drain(k, now: now, into: &out)
            }
        case .discard:
            break
        }
    }

    private mutating func discard(_ path: String, into out: inout [Output]) {
        let files = files
        offload(.discard, cost: FileCosts.copy(0), into: &out) { files.remove(path); return .bytes([]) }
    }

    private func outIndex(_ id: UInt64) -> Int? { outgoing.firstIndex { $0.id == id } }
    private func inIndex(_ peer: NodeID, _ id: UInt64) -> Int? { incoming.firstIndex { $0.peer == peer && $0.id == id } }

    // MARK: - Outgoing

    private mutating func start(path: String, to: NodeID, stream: UInt16, now: Instant, members: some MemberDirectory, into out: inout [Output]) {
        let name = String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
        guard TransferWire.isSafeName(name) else {
            out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.refused(to: to, reason:
                "file name \"\(name)\" cannot be sent: it must be one path component of at most 255 bytes, not starting with '.'")))))
            return
        }
        guard members.peer(to) != nil else {
            out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.refused(to: to, reason: MessageSendError.unknownPeer(to).description)))))
            return
        }
        guard members.isReachable(to) else {
            out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.refused(to: to, reason: MessageSendError.peerDead(to).description)))))
            return
        }
        var id = rng.next()
        while outIndex(id) != nil { id = rng.next() }
        outgoing.append(Outgoing(id: id, peer: to, stream: stream, path: path, name: name, started: now, lastProgress: now))
        out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.accepted(transfer: id, to: to, name: name)))))
        armSweep(now)
        let files = files
        offload(.measure(id), cost: FileCosts.copy(0), into: &out) {
            switch files.size(of: path) {
            case let .success(n): var w = ByteWriter(capacity: 8); w.u64(n); return .bytes(w.bytes)
            case let .failure(e): return .failed(e.encoded)
            }
        }
    }

    private mutating func sendOut(_ k: Int, _ message: [UInt8], length: Int, now: Instant, into out: inout [Output]) {
        let t = outgoing[k]
        let (result, outputs) = endpoint.send(message, stream: t.stream, to: t.peer, now: now)
        switch result {
        case let .success(mid):
            outgoing[k].inFlight[mid] = length
            byMessage[mid] = t.id
        case .failure(.backpressure):
            outgoing[k].blocked = (message, length)
        case let .failure(e):
            absorb(outputs, now: now, into: &out)
            if let k = outIndex(t.id) { failOut(k, "the channel refused a message: \(e)", now: now, into: &out) }
            return
        }
        absorb(outputs, now: now, into: &out)
    }

    /// The peer reset the connection before acknowledging anything of this transfer: it had
    /// closed the connection as idle (`sweep`) just as this transfer began on it, and dropped the
    /// offer. Begin once more, from the offer, on the fresh connection.
    private mutating func restart(_ k: Int, now: Instant, into out: inout [Output]) {
        for mid in outgoing[k].inFlight.keys { byMessage.removeValue(forKey: mid) }
        outgoing[k].inFlight = [:]
        outgoing[k].blocked = nil
        outgoing[k].nextOffset = 0
        outgoing[k].restarts += 1
        outgoing[k].lastProgress = now
        let t = outgoing[k]
        sendOut(k, TransferWire.offer(id: t.id, size: t.size, hash: t.hash, name: t.name), length: 0, now: now, into: &out)
        pump(t.id, now: now, into: &out)
    }

    /// Reads the next chunk when the window has room and nothing is blocked.
    private mutating func pump(_ id: UInt64, now: Instant, into out: inout [Output]) {
        guard let k = outIndex(id) else { return }
        let t = outgoing[k]
        guard t.state == .sending, !t.reading, t.blocked == nil else { return }
        if t.nextOffset >= t.size {
            if t.inFlight.isEmpty {
                outgoing[k].state = .awaitingResult
                outgoing[k].lastProgress = now
            }
            return
        }
        guard t.inFlight.count < Self.window else { return }
        let offset = t.nextOffset
        let count = Int(min(UInt64(TransferWire.chunkSize), t.size - offset))
        outgoing[k].reading = true
        let (files, path) = (files, t.path)
        offload(.read(id, offset: offset, count: count), cost: FileCosts.copy(UInt64(count)), into: &out) {
            var failure: FileStoreError?
            let message = TransferWire.chunk(id: id, offset: offset, count: count) { buffer in
                failure = files.read(path, offset: offset, into: buffer)
            }
            return failure.map { .failed($0.encoded) } ?? .bytes(message)
        }
    }

    private mutating func failOut(_ k: Int, _ why: String, now: Instant, into out: inout [Output]) {
        guard !outgoing[k].state.isOver else { return }
        outgoing[k].state = .failed
        outgoing[k].error = why
        counters.failedOut += 1
        let t = outgoing[k]
        out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.failed(transfer: t.id, peer: t.peer, outgoing: true, name: t.name, reason: why)))))
        endOut(k, now: now)
    }

    private mutating func endOut(_ k: Int, now: Instant) {
        outgoing[k].finishedAt = now
        for mid in outgoing[k].inFlight.keys { byMessage.removeValue(forKey: mid) }
        peerUse[outgoing[k].peer] = now
        remember(report(outgoing[k], now: now))
        outgoing.remove(at: k)
    }

    // MARK: - Incoming

    private mutating func received(_ bytes: [UInt8], from peer: NodeID, stream: UInt16, now: Instant, into out: inout [Output]) {
        guard TransferWire.isTransfer(bytes) else { counters.drop(.notATransfer); return }
        switch TransferWire.decode(bytes) {
        case .failure:
            counters.drop(.malformed)
        case let .success(.offer(id, size, hash, name)):
            offer(from: peer, id: id, size: size, hash: hash, name: name, stream: stream, now: now, into: &out)
        case let .success(.chunk(id, offset, data)):
            guard let k = inIndex(peer, id), incoming[k].state == .receiving else { counters.drop(.unknownTransfer); return }
            let t = incoming[k]
            guard offset == t.received, !data.isEmpty, UInt64(data.count) <= t.size - t.received else {
                failIn(k, .protocolError, "chunk at \(offset) (+\(data.count)) does not follow \(t.received) of \(t.size)", now: now, into: &out)
                return
            }
            incoming[k].received += UInt64(data.count)
            incoming[k].lastProgress = now
            incoming[k].queue.append(data)
            drain(k, now: now, into: &out)
        case let .success(.result(id, status, detail)):
            guard let k = outIndex(id), outgoing[k].peer == peer else { counters.drop(.unknownTransfer); return }
            if status == .ok, outgoing[k].state == .awaitingResult || outgoing[k].state == .sending {
                outgoing[k].state = .completed
                outgoing[k].acked = outgoing[k].size
                counters.sent += 1
                let t = outgoing[k]
                out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.delivered(transfer: id, to: peer, name: t.name, size: t.size)))))
                endOut(k, now: now)
            } else {
                failOut(k, "the receiver refused the file: \(status.text)\(detail.isEmpty ? "" : " (\(detail))")", now: now, into: &out)
            }
        }
    }

    private mutating func offer(from peer: NodeID, id: UInt64, size: UInt64, hash: [UInt8], name: String, stream: UInt16,
                                now: Instant, into out: inout [Output]) {
        if let k = inIndex(peer, id) {
            // The same offer again before any byte: the sender began once more (`restart`).
            let t = incoming[k]
            if t.state == .receiving, t.received == 0, t.size == size, t.hash == hash { return }
            reply(peer, id, stream, .protocolError, "transfer id offered twice", now: now, into: &out)
            return
        }
        guard size <= maxFileSize else {
            counters.refusedOffers += 1
            reply(peer, id, stream, .refused, "a file of \(size) bytes is larger than this node accepts (\(maxFileSize))", now: now, into: &out)
            return
        }
        let dir = inbox + "/" + peer.hex + "/"
        let part = dir + ".\(name).\(TransferReport.hex(id)).part"
        incoming.append(Incoming(peer: peer, id: id, name: name, size: size, hash: hash, stream: stream, started: now,
                                 part: part, finalPath: dir + name, busy: true, lastProgress: now))
        armSweep(now)
        let files = files
        offload(.create(peer, id), cost: FileCosts.copy(0), into: &out) {
            files.create(part, reserving: size).map { .failed($0.encoded) } ?? .bytes([])
        }
    }

    /// Writes queued chunks, one job at a time; verifies once every byte is written.
    private mutating func drain(_ k: Int, now: Instant, into out: inout [Output]) {
        let t = incoming[k]
        guard !t.busy, t.state == .receiving else { return }
        let files = files
        if t.queue.isEmpty {
            guard t.written == t.size else { return }
            incoming[k].state = .verifying
            incoming[k].busy = true
            let part = t.part
            offload(.finish(t.peer, t.id), cost: FileCosts.hash(t.size) + FileCosts.sync, into: &out) {
                if let e = files.sync(part) { return .failed(e.encoded) }
                switch files.hash(of: part) {
                case let .success(h): return .bytes(h)
                case let .failure(e): return .failed(e.encoded)
                }
            }
            return
        }
        let batch = t.queue
        let bytes = batch.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        incoming[k].queue = []
        incoming[k].busy = true
        let part = t.part
        offload(.append(t.peer, t.id, bytes: bytes), cost: FileCosts.copy(bytes), into: &out) {
            files.append(part, batch).map { .failed($0.encoded) } ?? .bytes([])
        }
    }

    private mutating func completeIn(_ k: Int, now: Instant, into out: inout [Output]) {
        incoming[k].state = .completed
        incoming[k].finishedAt = now
        counters.received += 1
        let t = incoming[k]
        reply(t.peer, t.id, t.stream, .ok, "", now: now, into: &out)
        out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.received(transfer: t.id, from: t.peer, path: t.finalPath, size: t.size, hash: t.hash)))))
        peerUse[t.peer] = now
        remember(report(t, now: now))
        incoming.remove(at: k)
    }

    /// Fails an incoming transfer and answers the sender. The part file goes at once, or when the
    /// job using it completes.
    private mutating func failIn(_ k: Int, _ status: TransferWire.Status, _ why: String, now: Instant, into out: inout [Output]) {
        guard !incoming[k].state.isOver else { return }
        incoming[k].state = .failed
        incoming[k].error = "\(status.text): \(why)"
        incoming[k].queue = []
        incoming[k].finishedAt = now
        if status == .refused { counters.refusedOffers += 1 }
        counters.failedIn += 1
        let t = incoming[k]
        reply(t.peer, t.id, t.stream, status, why, now: now, into: &out)
        out.append(.event(.service(Self.protocolID, ServicePayload(FileEvent.failed(transfer: t.id, peer: t.peer, outgoing: false, name: t.name, reason: t.error!)))))
        peerUse[t.peer] = now
        remember(report(t, now: now))
        if t.busy { return }  // removed when its job completes
        discard(t.part, into: &out)
        incoming.remove(at: k)
    }

    private mutating func reply(_ peer: NodeID, _ id: UInt64, _ stream: UInt16, _ status: TransferWire.Status, _ detail: String,
                                now: Instant, into out: inout [Output]) {
        let (_, outputs) = endpoint.send(TransferWire.result(id: id, status: status, detail: detail), stream: stream, to: peer, now: now)
        absorb(outputs, now: now, into: &out)
    }

    // MARK: - Channel

    private mutating func absorb(_ outputs: [ChannelOutput<NodeID>], now: Instant, into out: inout [Output]) {
        var sawWake = false
        var broken: [NodeID] = []
        for o in outputs {
            switch o {
            case let .frame(to, bytes):
                var framed = [UInt8]()
                framed.reserveCapacity(bytes.count + 1)
                framed.append(Self.prefix)
                framed.append(contentsOf: bytes)
                out.append(.send(.member(to), bytes: framed))
            case let .delivered(from, stream, message):
                received(message, from: from, stream: stream, now: now, into: &out)
            case let .sent(mid, _):
                guard let id = byMessage.removeValue(forKey: mid), let k = outIndex(id),
                      let n = outgoing[k].inFlight.removeValue(forKey: mid) else { continue }
                outgoing[k].acked += UInt64(n)
                outgoing[k].lastProgress = now
                pump(id, now: now, into: &out)
            case let .failed(mid, to, reason):
                if reason == .timeout { broken.append(to) }
                guard let id = byMessage.removeValue(forKey: mid), let k = outIndex(id) else { continue }
                if reason == .peerReset, outgoing[k].acked == 0, outgoing[k].restarts == 0, outgoing[k].state == .sending {
                    restart(k, now: now, into: &out)
                    continue
                }
                failOut(k, "the channel to \(to.short) failed (\(reason.rawValue)): the peer stopped answering, restarted or died", now: now, into: &out)
            case let .writable(peer):
                for t in outgoing where t.peer == peer && t.blocked != nil {
                    guard let k = outIndex(t.id), let b = outgoing[k].blocked else { continue }
                    outgoing[k].blocked = nil
                    sendOut(k, b.message, length: b.length, now: now, into: &out)
                    pump(t.id, now: now, into: &out)
                }
            case let .wake(at):
                sawWake = true
                channelWake = at
            }
        }
        if !sawWake { channelWake = nil }
        // A connection that timed out may hold the rest of its stream behind a lost message: start clean.
        for peer in broken { absorb(endpoint.reset(peer: peer, now: now), now: now, into: &out) }
    }

    // MARK: - Timeouts

    private mutating func armSweep(_ now: Instant) {
        if sweepAt == nil { sweepAt = now + Self.sweepEvery }
    }

    /// Fails transfers without progress for `idleTimeout`; closes connections to peers with no
    /// transfer, idle for `connectionIdle`.
    private mutating func sweep(now: Instant, into out: inout [Output]) {
        sweepAt = nil
        for k in outgoing.indices.reversed() where now - outgoing[k].lastProgress > Self.idleTimeout && outgoing[k].state != .hashing {
            failOut(k, "no progress for \(Self.idleTimeout): the receiver stopped answering", now: now, into: &out)
        }
        for k in incoming.indices.reversed() where now - incoming[k].lastProgress > Self.idleTimeout && !incoming[k].busy {
            failIn(k, .protocolError, "no data for \(Self.idleTimeout)", now: now, into: &out)
        }
        var idle: [NodeID] = []
        for (peer, used) in peerUse where now - used >= Self.connectionIdle {
            if !outgoing.contains(where: { $0.peer == peer }) && !incoming.contains(where: { $0.peer == peer }) { idle.append(peer) }
        }
        for peer in idle.sorted() {
            peerUse.removeValue(forKey: peer)
            absorb(endpoint.reset(peer: peer, now: now), now: now, into: &out)
        }
        if !outgoing.isEmpty || !incoming.isEmpty || !peerUse.isEmpty { sweepAt = now + Self.sweepEvery }
    }

    // MARK: - Reports

    /// One outgoing transfer, active or among the last finished.
    public func report(id: UInt64, now: Instant) -> TransferReport? {
        if let k = outIndex(id) { return report(outgoing[k], now: now) }
        return finished.last { $0.id == TransferReport.hex(id) && $0.direction == "out" }
    }

    /// The last finished transfers, then the active ones by id.
    public func reports(now: Instant) -> [TransferReport] {
        let active = outgoing.map { report($0, now: now) } + incoming.filter { !$0.state.isOver }.map { report($0, now: now) }
        return finished + active.sorted { $0.id < $1.id }
    }

    private mutating func remember(_ r: TransferReport) {
        finished.append(r)
        if finished.count > Self.keepFinished { finished.removeFirst(finished.count - Self.keepFinished) }
    }

    private func report(_ t: Outgoing, now: Instant) -> TransferReport {
        TransferReport(id: TransferReport.hex(t.id), direction: "out", peer: t.peer.hex, name: t.name, size: t.size, bytes_done: t.acked,
                       state: t.state.rawValue, error: t.error, path: nil, stream: t.stream,
                       elapsed_s: ((t.finishedAt ?? now) - t.started).secondsDouble)
    }

    private func report(_ t: Incoming, now: Instant) -> TransferReport {
        TransferReport(id: TransferReport.hex(t.id), direction: "in", peer: t.peer.hex, name: t.name, size: t.size, bytes_done: t.written,
                       state: t.state.rawValue, error: t.error, path: t.state == .completed ? t.finalPath : nil, stream: t.stream,
                       elapsed_s: ((t.finishedAt ?? now) - t.started).secondsDouble)
    }
}
