import CSodium
import Channels
import Foundation
import Logging
import MeshCore
import Node
import Sodium
#if canImport(Glibc)
import Glibc
#endif

/// What `iotaf status` and `iotaf send` show of one transfer.
public struct TransferReport: Codable, Sendable, Equatable {
    public var id: String
    /// "out" (this node sends) or "in".
    public var direction: String
    public var peer: String
    public var name: String
    public var size: UInt64
    /// Out: bytes the receiver acknowledged. In: bytes written.
    public var bytes_done: UInt64
    /// hashing, sending, awaiting_result, receiving, verifying, completed, failed.
    public var state: String
    public var error: String?
    /// In: where the file was written.
    public var path: String?
    public var stream: UInt16
    public var elapsed_s: Double
}

/// Sends and receives files over channels (framing: `TransferWire`). File reads, writes and
/// hashing run on libuv's thread pool, one job per transfer at a time, so the loop never
/// blocks on disk; the protocol bookkeeping stays on the loop thread.
final class FileTransfers {
    typealias Sender = (_ bytes: [UInt8], _ stream: UInt16, _ to: NodeID) -> Result<MessageID, MessageSendError>

    /// Chunks in flight (sent, not acknowledged) per outgoing transfer.
    static let window = 8
    /// A receiver that sent nothing for this long, or a verdict that never comes, fails the transfer.
    static let idleTimeout: Duration = .seconds(120)
    /// Finished transfers kept for status.
    static let keepFinished = 32

    private let loop: EventLoop
    private let inbox: String
    private let send: Sender
    private var logger: Logger
    private var outgoing: [UInt64: Outgoing] = [:]
    private var incoming: [IncomingKey: Incoming] = [:]
    private var finished: [TransferReport] = []
    private var byMessage: [MessageID: UInt64] = [:]

    init(loop: EventLoop, inbox: String, logger: Logger, send: @escaping Sender) {
        self.loop = loop
        self.inbox = inbox
        self.logger = logger
        self.send = send
    }

    // MARK: - Outgoing

    final class Outgoing {
        let id: UInt64
        let peer: NodeID
        let stream: UInt16
        let path: String
        let name: String
        let started: Instant
        var size: UInt64 = 0
        var hash: [UInt8] = []
        var state = "hashing"
        var error: String?
        var nextOffset: UInt64 = 0
        var acked: UInt64 = 0
        var reading = false
        var inFlight: [MessageID: Int] = [:]
        /// A message refused with backpressure, retried on `.channelWritable`.
        var blocked: [UInt8]?
        var blockedLength = 0
        var lastProgress: Instant
        var finishedAt: Instant?

        init(id: UInt64, peer: NodeID, stream: UInt16, path: String, name: String, now: Instant) {
            self.id = id; self.peer = peer; self.stream = stream; self.path = path; self.name = name
            started = now; lastProgress = now
        }
    }

    /// Starts sending the file at `path` to `peer`; returns the transfer id or a clear refusal.
    func start(path: String, to peer: NodeID, stream: UInt16) -> Result<UInt64, RuntimeError> {
        let name = (path as NSString).lastPathComponent
        guard TransferWire.isSafeName(name) else {
            return .failure(RuntimeError("file name \"\(name)\" cannot be sent: it must be one path component of at most 255 bytes, not starting with '.'"))
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            return .failure(RuntimeError("\(path) is not a readable file (the node process opens it: give an absolute path it can read)"))
        }
        var id: UInt64 = 0
        for b in Sodium.randomBytes(8) { id = id << 8 | UInt64(b) }
        let t = Outgoing(id: id, peer: peer, stream: stream, path: path, name: name, now: loop.now)
        outgoing[id] = t
        loop.offload({ FileIO.hashFile(path) }, completion: { [weak self] r in
            guard let self, t.state == "hashing" else { return }
            switch r {
            case let .failure(e): self.fail(t, "cannot read \(path): \(e.description)")
            case let .success((size, hash)):
                t.size = size
                t.hash = hash
                t.state = "sending"
                self.logger.info("sending file", metadata: ["transfer": "\(hex(id))", "peer": "\(peer.short)", "name": "\(name)", "bytes": "\(size)"])
                self.sendOut(t, TransferWire.offer(id: id, size: size, hash: hash, name: name), length: 0)
                self.pump(t)
            }
        })
        return .success(id)
    }

    private func sendOut(_ t: Outgoing, _ message: [UInt8], length: Int) {
        switch send(message, t.stream, t.peer) {
        case let .success(mid):
            t.inFlight[mid] = length
            byMessage[mid] = t.id
        case .failure(.backpressure):
            t.blocked = message
            t.blockedLength = length
        case let .failure(e):
            fail(t, "\(e)")
        }
    }

    /// Reads the next chunk when the window has room and nothing is blocked.
    private func pump(_ t: Outgoing) {
        guard t.state == "sending", !t.reading, t.blocked == nil else { return }
        if t.nextOffset >= t.size {
            if t.inFlight.isEmpty {
                t.state = "awaiting_result"
                t.lastProgress = loop.now
            }
            return
        }
        guard t.inFlight.count < Self.window else { return }
        let offset = t.nextOffset
        let count = Int(min(UInt64(TransferWire.chunkSize), t.size - offset))
        t.reading = true
        let (path, id) = (t.path, t.id)
        loop.offload({ FileIO.readChunk(path: path, id: id, offset: offset, count: count) }, completion: { [weak self] r in
            guard let self else { return }
            t.reading = false
            guard t.state == "sending" else { return }
            switch r {
            case let .failure(e): self.fail(t, "cannot read \(path) at offset \(offset): \(e.description)")
            case let .success(message):
                t.nextOffset = offset + UInt64(count)
                self.sendOut(t, message, length: count)
                self.pump(t)
            }
        })
    }

    private func fail(_ t: Outgoing, _ why: String) {
        guard t.state != "failed" && t.state != "completed" else { return }
        t.state = "failed"
        t.error = why
        finish(t)
        logger.warning("sending \(t.name) to \(t.peer.short) failed: \(why)")
    }

    private func finish(_ t: Outgoing) {
        t.finishedAt = loop.now
        for mid in t.inFlight.keys { byMessage.removeValue(forKey: mid) }
        t.inFlight = [:]
        t.blocked = nil
        outgoing.removeValue(forKey: t.id)
        remember(report(t))
    }

    // MARK: - Incoming

    struct IncomingKey: Hashable { var peer: NodeID; var id: UInt64 }

    final class Incoming {
        let key: IncomingKey
        let name: String
        let size: UInt64
        let hash: [UInt8]
        let stream: UInt16
        let started: Instant
        let sink: FileSink
        var state = "receiving"
        var error: String?
        var received: UInt64 = 0
        var written: UInt64 = 0
        var queue: [ArraySlice<UInt8>] = []
        var busy = false
        var lastProgress: Instant

        init(key: IncomingKey, name: String, size: UInt64, hash: [UInt8], stream: UInt16, sink: FileSink, now: Instant) {
            self.key = key; self.name = name; self.size = size; self.hash = hash; self.stream = stream; self.sink = sink
            started = now; lastProgress = now
        }
    }

    /// A message from a peer: a transfer message is handled, anything else is left to the caller.
    func received(_ bytes: [UInt8], from peer: NodeID, stream: UInt16) -> Bool {
        guard TransferWire.isTransfer(bytes) else { return false }
        switch TransferWire.decode(bytes) {
        case let .failure(e):
            logger.warning("bad transfer message from \(peer.short): \(e.rawValue)")
        case let .success(.offer(id, size, hash, name)):
            offer(from: peer, id: id, size: size, hash: hash, name: name, stream: stream)
        case let .success(.chunk(id, offset, data)):
            chunk(from: peer, id: id, offset: offset, data: data, stream: stream)
        case let .success(.result(id, status, detail)):
            guard let t = outgoing[id], t.peer == peer else { return true }
            if status == .ok, t.state == "awaiting_result" || t.state == "sending" {
                t.state = "completed"
                t.acked = t.size
                finish(t)
                logger.info("file delivered", metadata: ["transfer": "\(hex(id))", "peer": "\(peer.short)", "name": "\(t.name)"])
            } else {
                fail(t, "the receiver refused the file: \(status.text)\(detail.isEmpty ? "" : " (\(detail))")")
            }
        }
        return true
    }

    private func offer(from peer: NodeID, id: UInt64, size: UInt64, hash: [UInt8], name: String, stream: UInt16) {
        let key = IncomingKey(peer: peer, id: id)
        guard incoming[key] == nil else { reply(key, stream, .protocolError, "transfer id offered twice"); return }
        let dir = (inbox as NSString).appendingPathComponent(peer.hex)
        let sink = FileSink(directory: dir, name: name, id: id)
        let t = Incoming(key: key, name: name, size: size, hash: hash, stream: stream, sink: sink, now: loop.now)
        incoming[key] = t
        logger.info("receiving file", metadata: ["transfer": "\(hex(id))", "peer": "\(peer.short)", "name": "\(name)", "bytes": "\(size)"])
        t.busy = true
        loop.offload({ sink.open() }, completion: { [weak self] err in
            guard let self, self.jobDone(t) else { return }
            if let err { self.failIncoming(t, .writeFailed, err); return }
            self.drain(t)
        })
    }

    private func chunk(from peer: NodeID, id: UInt64, offset: UInt64, data: ArraySlice<UInt8>, stream: UInt16) {
        let key = IncomingKey(peer: peer, id: id)
        guard let t = incoming[key], t.state == "receiving" else { return }
        guard offset == t.received, !data.isEmpty, UInt64(data.count) <= t.size - t.received else {
            failIncoming(t, .protocolError, "chunk at \(offset) (+\(data.count)) does not follow \(t.received) of \(t.size)")
            return
        }
        t.received += UInt64(data.count)
        t.lastProgress = loop.now
        t.queue.append(data)
        drain(t)
    }

    /// Writes queued chunks one job at a time (the sink's hash state is used by one thread at once).
    private func drain(_ t: Incoming) {
        guard !t.busy, t.state == "receiving" else { return }
        if t.queue.isEmpty {
            if t.written == t.size { verify(t) }
            return
        }
        let batch = t.queue
        t.queue = []
        t.busy = true
        let sink = t.sink
        loop.offload({ sink.write(batch) }, completion: { [weak self] err in
            guard let self, self.jobDone(t) else { return }
            if let err { self.failIncoming(t, .writeFailed, err); return }
            t.written += batch.reduce(0) { $0 + UInt64($1.count) }
            self.drain(t)
        })
    }

    private func verify(_ t: Incoming) {
        t.state = "verifying"
        t.busy = true
        let (sink, expected) = (t.sink, t.hash)
        loop.offload({ sink.finish(expectedHash: expected) }, completion: { [weak self] r in
            guard let self, self.jobDone(t) else { return }
            switch r {
            case let .failure(e):
                self.failIncoming(t, e.status, e.detail)
            case .success:
                t.state = "completed"
                self.incoming.removeValue(forKey: t.key)
                self.remember(self.report(t))
                self.reply(t.key, t.stream, .ok, "")
                self.logger.info("file received", metadata: ["transfer": "\(hex(t.key.id))", "peer": "\(t.key.peer.short)",
                                                             "path": "\(sink.finalPath)", "bytes": "\(t.size)"])
            }
        })
    }

    private func failIncoming(_ t: Incoming, _ status: TransferWire.Status, _ why: String) {
        guard t.state != "failed" && t.state != "completed" else { return }
        t.state = "failed"
        t.error = "\(status.text): \(why)"
        t.queue = []
        incoming.removeValue(forKey: t.key)
        remember(report(t))
        reply(t.key, t.stream, status, why)
        logger.warning("receiving \(t.name) from \(t.key.peer.short) failed: \(t.error!)")
        // The partial file goes once no job uses it (else when that job completes).
        if !t.busy { discard(t.sink) }
    }

    /// Marks a thread-pool job of `t` done; false when the transfer failed meanwhile.
    private func jobDone(_ t: Incoming) -> Bool {
        t.busy = false
        if t.state == "failed" { discard(t.sink); return false }
        return true
    }

    private func discard(_ sink: FileSink) {
        loop.offload({ sink.discard() }, completion: { _ in })
    }

    private func reply(_ key: IncomingKey, _ stream: UInt16, _ status: TransferWire.Status, _ detail: String) {
        if case let .failure(e) = send(TransferWire.result(id: key.id, status: status, detail: detail), stream, key.peer) {
            logger.warning("could not answer transfer \(hex(key.id)) of \(key.peer.short): \(e)")
        }
    }

    // MARK: - Channel events

    func delivered(_ mid: MessageID) {
        guard let id = byMessage.removeValue(forKey: mid), let t = outgoing[id], let n = t.inFlight.removeValue(forKey: mid) else { return }
        t.acked += UInt64(n)
        t.lastProgress = loop.now
        pump(t)
    }

    func failed(_ mid: MessageID, reason: ChannelFailure) {
        guard let id = byMessage.removeValue(forKey: mid), let t = outgoing[id] else { return }
        fail(t, "the channel to \(t.peer.short) failed (\(reason.rawValue)): the peer stopped answering, restarted or died")
    }

    func writable(_ peer: NodeID) {
        for t in outgoing.values.sorted(by: { $0.id < $1.id }) where t.peer == peer {
            guard let m = t.blocked else { continue }
            t.blocked = nil
            sendOut(t, m, length: t.blockedLength)
            pump(t)
        }
    }

    /// A dead member will not finish what it was sending us.
    func peerDied(_ peer: NodeID) {
        for t in incoming.values where t.key.peer == peer {
            failIncoming(t, .protocolError, "the sender died")
        }
    }

    /// Fails transfers that made no progress for `idleTimeout`; called on every status query and offer.
    func expire() {
        let now = loop.now
        for t in outgoing.values where now - t.lastProgress > Self.idleTimeout && t.state != "hashing" {
            fail(t, "no progress for \(Self.idleTimeout): the receiver stopped answering")
        }
        for t in incoming.values where now - t.lastProgress > Self.idleTimeout && !t.busy {
            failIncoming(t, .protocolError, "no data for \(Self.idleTimeout)")
        }
    }

    // MARK: - Reports

    func report(id: UInt64) -> TransferReport? {
        expire()
        if let t = outgoing[id] { return report(t) }
        return finished.last { $0.id == hex(id) && $0.direction == "out" }
    }

    var reports: [TransferReport] {
        expire()
        let active = outgoing.values.map(report) + incoming.values.map(report)
        return finished + active.sorted { $0.id < $1.id }
    }

    private func remember(_ r: TransferReport) {
        finished.append(r)
        if finished.count > Self.keepFinished { finished.removeFirst(finished.count - Self.keepFinished) }
    }

    private func report(_ t: Outgoing) -> TransferReport {
        TransferReport(id: hex(t.id), direction: "out", peer: t.peer.hex, name: t.name, size: t.size, bytes_done: t.acked,
                       state: t.state, error: t.error, path: nil, stream: t.stream,
                       elapsed_s: ((t.finishedAt ?? loop.now) - t.started).secondsDouble)
    }

    private func report(_ t: Incoming) -> TransferReport {
        TransferReport(id: hex(t.key.id), direction: "in", peer: t.key.peer.hex, name: t.name, size: t.size, bytes_done: t.written,
                       state: t.state, error: t.error, path: t.state == "completed" ? t.sink.finalPath : nil, stream: t.stream,
                       elapsed_s: (loop.now - t.started).secondsDouble)
    }
}

func hex(_ id: UInt64) -> String { String(format: "%016llx", id) }

/// The receiving end's file: a hidden part file beside the final name, hashed as it is written,
/// renamed into place only when the hash matches. Used by one thread-pool job at a time.
final class FileSink: @unchecked Sendable {
    let partPath: String
    /// The name the sender gave; an earlier file of that name is kept and this one gets a suffix.
    private(set) var finalPath: String
    let directory: String
    private var fd: Int32 = -1
    private let state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)

    struct Failure: Error { var status: TransferWire.Status; var detail: String }

    init(directory: String, name: String, id: UInt64) {
        self.directory = directory
        partPath = (directory as NSString).appendingPathComponent(".\(name).\(hex(id)).part")
        finalPath = (directory as NSString).appendingPathComponent(name)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
        state.deallocate()
    }

    func open() -> String? {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            return "cannot create \(directory): \(error.localizedDescription)"
        }
        fd = Glibc.open(partPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd < 0 { return "cannot create \(partPath): \(String(cString: strerror(errno)))" }
        Sodium.ensureInitialised()
        crypto_generichash_init(OpaquePointer(state), nil, 0, TransferWire.hashLength)
        return nil
    }

    func write(_ chunks: [ArraySlice<UInt8>]) -> String? {
        for c in chunks {
            let err: String? = c.withUnsafeBytes { p in
                crypto_generichash_update(OpaquePointer(state), p.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(p.count))
                var done = 0
                while done < p.count {
                    let n = Glibc.write(fd, p.baseAddress! + done, p.count - done)
                    if n < 0 { if errno == EINTR { continue }; return "write to \(partPath) failed: \(String(cString: strerror(errno)))" }
                    done += n
                }
                return nil
            }
            if let err { return err }
        }
        return nil
    }

    func finish(expectedHash: [UInt8]) -> Result<Void, Failure> {
        var out = [UInt8](repeating: 0, count: TransferWire.hashLength)
        crypto_generichash_final(OpaquePointer(state), &out, out.count)
        if fsync(fd) != 0 { return .failure(Failure(status: .writeFailed, detail: "fsync \(partPath): \(String(cString: strerror(errno)))")) }
        Glibc.close(fd)
        fd = -1
        guard out == expectedHash else {
            unlink(partPath)
            return .failure(Failure(status: .hashMismatch, detail: "BLAKE2b of the received bytes differs from the offer"))
        }
        switch InboxName.place(partPath, at: finalPath) {
        case let .success(path): finalPath = path
        case let .failure(e): return .failure(Failure(status: .writeFailed, detail: e.description))
        }
        return .success(())
    }

    func discard() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        unlink(partPath)
    }
}

/// Blocking file reads for the thread pool.
enum FileIO {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Size and BLAKE2b-256 of a file, read in chunks.
    static func hashFile(_ path: String) -> Result<(UInt64, [UInt8]), Failure> {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Failure(description: String(cString: strerror(errno)))) }
        defer { Glibc.close(fd) }
        Sodium.ensureInitialised()
        let state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        defer { state.deallocate() }
        crypto_generichash_init(OpaquePointer(state), nil, 0, TransferWire.hashLength)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: TransferWire.chunkSize, alignment: 16)
        defer { buf.deallocate() }
        var size: UInt64 = 0
        while true {
            let n = Glibc.read(fd, buf.baseAddress, buf.count)
            if n < 0 { if errno == EINTR { continue }; return .failure(Failure(description: String(cString: strerror(errno)))) }
            if n == 0 { break }
            crypto_generichash_update(OpaquePointer(state), buf.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(n))
            size += UInt64(n)
        }
        var out = [UInt8](repeating: 0, count: TransferWire.hashLength)
        crypto_generichash_final(OpaquePointer(state), &out, out.count)
        return .success((size, out))
    }

    /// One chunk message, read straight into place.
    static func readChunk(path: String, id: UInt64, offset: UInt64, count: Int) -> Result<[UInt8], Failure> {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Failure(description: String(cString: strerror(errno)))) }
        defer { Glibc.close(fd) }
        var failure: String?
        let message = TransferWire.chunk(id: id, offset: offset, count: count) { dst in
            var done = 0
            while done < count {
                let n = pread(fd, dst.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { failure = n == 0 ? "the file shrank while being sent" : String(cString: strerror(errno)); memset(dst.baseAddress! + done, 0, count - done); return }
                done += n
            }
        }
        if let failure { return .failure(Failure(description: failure)) }
        return .success(message)
    }
}
