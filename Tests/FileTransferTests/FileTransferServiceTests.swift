import Channels
import FileTransfer
import Foundation
import MeshCore
import Node
import Sodium
import Testing

/// Files in memory for one test.
final class MemoryFiles: FileStore, @unchecked Sendable {
    let lock = NSLock()
    var files: [String: [UInt8]] = [:]
    let capacity: UInt64
    init(capacity: UInt64 = 1 << 30) { self.capacity = capacity }
    subscript(_ p: String) -> [UInt8]? {
        get { lock.withLock { files[p] } }
        set { lock.withLock { files[p] = newValue } }
    }
    func size(of path: String) -> Result<UInt64, FileStoreError> {
        self[path].map { .success(UInt64($0.count)) } ?? .failure(FileStoreError("no such file"))
    }
    func hash(of path: String) -> Result<[UInt8], FileStoreError> {
        self[path].map { .success(Blake2b.hash($0)) } ?? .failure(FileStoreError("no such file"))
    }
    func read(_ path: String, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> FileStoreError? {
        guard let b = self[path], Int(offset) + buffer.count <= b.count else { return FileStoreError("short") }
        b.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) }
        return nil
    }
    func create(_ path: String, reserving bytes: UInt64) -> FileStoreError? {
        guard bytes <= capacity else { return FileStoreError("no space: \(capacity) bytes free", noSpace: true) }
        self[path] = []
        return nil
    }
    func append(_ path: String, _ chunks: [ArraySlice<UInt8>]) -> FileStoreError? {
        lock.withLock { for c in chunks { files[path]!.append(contentsOf: c) } }
        return nil
    }
    func sync(_ path: String) -> FileStoreError? { nil }
    func place(_ part: String, at path: String) -> Result<String, FileStoreError> {
        lock.withLock {
            for n in 1...100 where files[InboxNames.candidate(path, n)] == nil {
                files[InboxNames.candidate(path, n)] = files.removeValue(forKey: part)
                return .success(InboxNames.candidate(path, n))
            }
            return .failure(FileStoreError("full"))
        }
    }
    func remove(_ path: String) { self[path] = nil }
}

struct OneMember: MemberDirectory {
    let member: ProvenPeer
    func peer(_ id: NodeID) -> ProvenPeer? { id == member.nodeID ? member : nil }
    func isReachable(_ id: NodeID) -> Bool { id == member.nodeID }
    func isCulled(_ id: NodeID) -> Bool { false }
    func isNeighbour(_ id: NodeID) -> Bool { true }
}

/// The service under test, and the remote side played by a bare channel endpoint: what the test
/// sends as the remote node, and what the service answers. Offloaded jobs run at once.
struct Harness {
    let me = NodeIdentity.deterministic(runSeed: 7, index: 0)
    let them = NodeIdentity.deterministic(runSeed: 7, index: 1)
    var service: FileTransferService
    var remote: ChannelEndpoint<NodeID>
    let files: MemoryFiles
    var now = Instant.zero
    var events: [FileEvent] = []
    /// Whole transfer messages the remote received from the service.
    var remoteGot: [TransferWire.Message] = []
    var pendingToService: [[UInt8]] = []
    var remoteWake: Instant?

    init(files: MemoryFiles = MemoryFiles(), maxFileSize: UInt64 = 1 << 40) {
        self.files = files
        service = FileTransferService(me: me.nodeID, files: files, inbox: "inbox", maxFileSize: maxFileSize, rng: SeededGenerator(seed: 1))
        remote = ChannelEndpoint(config: FileTransferService.channelConfig, rng: SeededGenerator(seed: 2))
    }

    var peer: ProvenPeer { ProvenPeer(identity: them.peer, address: UnderlayAddress(ip: [UInt8](repeating: 0, count: 15) + [1], port: 2)) }

    mutating func command(_ c: FileCommand) {
        carry(service.handle(.command(.service(FileTransferService.protocolID, ServicePayload(c))), now: now, members: OneMember(member: peer)))
        settle()
    }

    /// The remote sends one transfer message.
    mutating func remoteSends(_ message: [UInt8]) {
        let (_, outs) = remote.send(message, stream: 8, to: me.nodeID, now: now)
        absorbRemote(outs)
        settle()
    }

    /// The remote sends raw plaintext with the service's prefix (a frame of its own making).
    mutating func rawToService(_ bytes: [UInt8]) {
        carry(service.handle(.message(from: peer, bytes: bytes, reliable: false), now: now, members: OneMember(member: peer)))
        settle()
    }

    mutating func carry(_ outs: [ServiceOutput<NodeCommand, NodeEvent>]) {
        for o in outs {
            switch o {
            case let .send(_, bytes):
                absorbRemote(remote.receive(frame: Array(bytes.dropFirst()), from: me.nodeID, now: now))
            case let .offload(job):
                carry(service.handle(.offloaded(job.ticket, job.work()), now: now, members: OneMember(member: peer)))
            case let .event(.service(_, p)):
                if let e = p.as(FileEvent.self) { events.append(e) }
            default:
                break
            }
        }
    }

    mutating func absorbRemote(_ outs: [ChannelOutput<NodeID>]) {
        for o in outs {
            switch o {
            case let .frame(_, bytes): pendingToService.append([FileTransferService.prefix] + bytes)
            case let .delivered(_, _, message): if let m = try? TransferWire.decode(message).get() { remoteGot.append(m) }
            case let .wake(at): remoteWake = at
            default: break
            }
        }
    }

    /// Hands frames back and forth, advancing the clock to the next deadline, until both sides are quiet (at most 5 virtual s).
    mutating func settle() {
        let limit = now + .seconds(5)
        while true {
            while !pendingToService.isEmpty {
                let f = pendingToService.removeFirst()
                carry(service.handle(.message(from: peer, bytes: f, reliable: false), now: now, members: OneMember(member: peer)))
            }
            let next = [service.deadline, remoteWake].compactMap { $0 }.min()
            guard let next, next <= limit else { return }
            now = max(now, next)
            if let w = remoteWake, now >= w { remoteWake = nil; absorbRemote(remote.tick(now: now)) }
            if let d = service.deadline, now >= d { carry(service.handle(.timer, now: now, members: OneMember(member: peer))) }
            if pendingToService.isEmpty, service.deadline.map({ $0 > limit }) ?? true, remoteWake.map({ $0 > limit }) ?? true { return }
        }
    }

    func result(_ id: UInt64) -> (TransferWire.Status, String)? {
        for case let .result(rid, status, detail) in remoteGot where rid == id { return (status, detail) }
        return nil
    }
}

@Suite struct FileTransferServiceTests {
    static func chunk(_ id: UInt64, _ offset: UInt64, _ data: [UInt8]) -> [UInt8] {
        TransferWire.chunk(id: id, offset: offset, count: data.count) { $0.copyBytes(from: data) }
    }

    @Test func aFileFromThePeerIsPlacedBesideAnEarlierOneOfTheSameName() {
        var h = Harness()
        h.files["inbox/\(h.them.nodeID.hex)/notes.txt"] = Array("first".utf8)
        let data = Array("second".utf8)
        h.remoteSends(TransferWire.offer(id: 9, size: UInt64(data.count), hash: Blake2b.hash(data), name: "notes.txt"))
        h.remoteSends(Self.chunk(9, 0, data))
        #expect(h.result(9)?.0 == .ok)
        #expect(h.files["inbox/\(h.them.nodeID.hex)/notes.txt"] == Array("first".utf8))
        #expect(h.files["inbox/\(h.them.nodeID.hex)/notes-2.txt"] == data)
        #expect(h.events.contains { if case .received(9, _, let p, 6, _) = $0 { return p.hasSuffix("notes-2.txt") }; return false })
    }

    @Test func bytesThatDoNotMatchTheOfferedHashAreRefusedAndNotKept() {
        var h = Harness()
        h.remoteSends(TransferWire.offer(id: 3, size: 4, hash: Blake2b.hash([9, 9, 9, 9]), name: "a.bin"))
        h.remoteSends(Self.chunk(3, 0, [1, 2, 3, 4]))
        #expect(h.result(3)?.0 == .hashMismatch)
        #expect(h.files.files.keys.allSatisfy { !$0.hasPrefix("inbox/") }, "no file and no part file left: \(h.files.files.keys)")
        #expect(h.service.reports(now: h.now).contains { $0.direction == "in" && $0.state == "failed" })
    }

    @Test func aFileLargerThanAllowedOrThanTheFreeSpaceIsRefused() {
        var h = Harness(files: MemoryFiles(capacity: 1000), maxFileSize: 5000)
        h.remoteSends(TransferWire.offer(id: 1, size: 6000, hash: Blake2b.hash([]), name: "big.bin"))
        #expect(h.result(1)?.0 == .refused)
        h.remoteSends(TransferWire.offer(id: 2, size: 4000, hash: Blake2b.hash([]), name: "mid.bin"))
        #expect(h.result(2)?.0 == .refused)
        #expect(h.result(2)?.1.contains("no space") == true, "\(String(describing: h.result(2)))")
        #expect(h.service.counters.refusedOffers == 2)
    }

    @Test func malformedAndUnknownTransferMessagesAreCountedDrops() {
        var h = Harness()
        h.remoteSends(Self.chunk(77, 0, [1, 2, 3]))           // no such transfer
        h.remoteSends([0x69, 0x46, 0x54, 9, 0, 0])            // unknown kind
        h.remoteSends(Array("hello".utf8))                    // not a transfer message
        h.rawToService([FileTransferService.prefix, 0xff, 0]) // not a channel frame
        #expect(h.service.counters.drops[.unknownTransfer] == 1)
        #expect(h.service.counters.drops[.malformed] == 1)
        #expect(h.service.counters.drops[.notATransfer] == 1)
        #expect(h.service.endpoint.stats.totalDrops >= 1)
        #expect(h.events.isEmpty)
    }

    @Test func sendingOffersReadsAWindowOfChunksAndCompletesOnTheVerdict() {
        var h = Harness()
        let data = [UInt8](repeating: 7, count: 3 * TransferWire.chunkSize + 5)
        h.files["/data/x.bin"] = data
        h.command(.send(path: "/data/x.bin", to: h.them.nodeID, stream: 8))
        guard case let .accepted(id, _, "x.bin")? = h.events.first else { Issue.record("not accepted: \(h.events)"); return }
        var got: [UInt8] = []
        for case let .chunk(cid, offset, bytes) in h.remoteGot where cid == id {
            #expect(offset == UInt64(got.count))
            got += bytes
        }
        #expect(got == data)
        #expect(h.service.report(id: id, now: h.now)?.state == "awaiting_result")
        h.remoteSends(TransferWire.result(id: id, status: .ok, detail: ""))
        #expect(h.service.report(id: id, now: h.now)?.state == "completed")
        #expect(h.events.contains(.delivered(transfer: id, to: h.them.nodeID, name: "x.bin", size: UInt64(data.count))))
    }

    /// The receiver closed the connection as idle, and the news was lost, just as the next file
    /// began on it: the receiver resets the stale connection and the sender begins again once.
    @Test func aFileThatMeetsAConnectionClosedAsIdleBeginsAgain() {
        var h = Harness()
        h.files["/d/a.bin"] = [1, 2, 3]
        h.command(.send(path: "/d/a.bin", to: h.them.nodeID, stream: 8))
        guard case let .accepted(first, _, _)? = h.events.last else { Issue.record("\(h.events)"); return }
        h.remoteSends(TransferWire.result(id: first, status: .ok, detail: ""))
        #expect(h.service.report(id: first, now: h.now)?.state == "completed")
        _ = h.remote.reset(peer: h.me.nodeID, now: h.now)  // its reset frame is lost
        h.remoteGot = []
        h.files["/d/b.bin"] = [4, 5, 6, 7]
        h.command(.send(path: "/d/b.bin", to: h.them.nodeID, stream: 8))
        guard case let .accepted(second, _, _)? = h.events.last else { Issue.record("\(h.events)"); return }
        var got: [UInt8] = []
        for case let .chunk(id, _, bytes) in h.remoteGot where id == second { got += bytes }
        #expect(got == [4, 5, 6, 7])
        #expect(h.service.endpoint.stats.resetsReceived >= 1, "the stale connection was reset")
        h.remoteSends(TransferWire.result(id: second, status: .ok, detail: ""))
        #expect(h.service.report(id: second, now: h.now)?.state == "completed")
    }

    @Test func aSendToANonMemberOrOfAnUnsafeNameIsRefusedAtOnce() {
        var h = Harness()
        h.files["/d/.hidden"] = [1]
        h.command(.send(path: "/d/.hidden", to: h.them.nodeID, stream: 8))
        h.command(.send(path: "/d/x", to: NodeIdentity.deterministic(runSeed: 7, index: 2).nodeID, stream: 8))
        #expect(h.events.count == 2)
        #expect(h.events.allSatisfy { if case .refused = $0 { return true }; return false })
    }
}
