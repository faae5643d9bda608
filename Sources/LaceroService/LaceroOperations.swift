import Lacero
import MeshCore
import Node
import NodeService

/// What a user asks of a whole object (`iotaf lacero put/get/check/repair/delete`), inside
/// `LaceroCommand.operation`. Paths are the node process's: it reads and writes them in
/// offloaded jobs through its `LaceroHost`.
public struct LaceroRequest: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Shred the file at `path` into k-of-n fragments, place them, write the sealed metadata to `out`.
        case put(path: String, out: String, k: Int, n: Int)
        /// Fetch any k fragments per segment, decode, decrypt, write the object to `out`.
        case get(meta: String, out: String)
        /// Ask the mesh who holds each fragment; renew the leases of those that answer.
        case check(meta: String)
        /// Check, then rebuild each segment's missing fragments from any k and place them anew.
        case repair(meta: String)
        /// Ask every holder to delete (with the metadata's proofs), then check that none answers.
        case delete(meta: String)
    }

    public var op: UInt64
    public var kind: Kind

    public init(op: UInt64, kind: Kind) {
        self.op = op
        self.kind = kind
    }
}

/// One operation's progress and outcome, as the control socket shows it (`iotaf lacero ... --json`).
public struct LaceroReport: Sendable, Equatable, Codable {
    public struct Segment: Sendable, Equatable, Codable {
        public var segment: Int
        /// Fragments (of n) that at least one holder said it holds.
        public var answered: Int
        /// Holders that answered, over all the segment's fragments.
        public var holders: Int
        /// Chance that fewer than k fragments survive if each holder is lost with `assumed_holder_loss`.
        public var loss_probability: Double
    }

    public var op: UInt64
    /// put, get, check, repair or delete.
    public var kind: String
    /// reading, shredding, storing, sealing, fetching, decoding, writing, checking, deleting, done, failed.
    public var state: String
    public var done = 0
    public var total = 0
    /// What `done` and `total` count: segments or fragments.
    public var unit = ""
    public var error: String?
    public var elapsed_s = 0.0
    /// The object (put) or the metadata file (the others).
    public var path: String
    public var out: String?
    public var object_bytes: UInt64?
    public var k: Int?
    public var n: Int?
    public var segments: Int?
    public var fragments: Int?
    public var content_hash: String?
    public var fragments_placed: Int?
    public var store_retries: Int?
    /// Segments with fewer than n fragments placed (put) or answering (check, repair).
    public var segments_below_n: [Int]?
    /// Segments with fewer than k fragments: they cannot be rebuilt.
    public var segments_below_k: [Int]?
    public var check: [Segment]?
    /// Chance that some segment falls below k, under the same model.
    public var loss_probability: Double?
    public var assumed_holder_loss: Double?
    public var leases_renewed: Int?
    public var fragments_repaired: Int?
    public var deletes_sent: Int?
    /// Fragments still answering after a delete (holders that were away delete at lease end).
    public var still_held: Int?

    init(op: UInt64, kind: String, path: String) {
        self.op = op
        self.kind = kind
        self.path = path
        state = "reading"
    }
}

extension LaceroService {
    /// Operations run at once and reports of finished ones kept.
    public static let maxOperations = 8
    public static let keepFinished = 32
    /// Segments shredded per offloaded job (`Shredder.shredJob`): several jobs run on the thread
    /// pool's threads at once.
    static let segmentsPerJob = Shredder.segmentsPerJob
    /// Attempts to place one fragment whose walk ended with no node keeping it.
    static let placeAttempts = 3
    /// Largest fragment an operation makes: it must fit one message of the node's reliable stream
    /// with the store header (at most 623 bytes).
    public static var maxFragmentBytes: Int { NodeCore.reliableConfig.maxMessage - 1024 }
    /// The segment size an operation uses for k: 1 MiB, or less when k is so small that a
    /// fragment of 1 MiB would not fit one reliable message.
    public static func segmentSize(k: Int) -> Int { max(1, min(1 << 20, k * maxFragmentBytes - 16)) }

    /// Where operation `op` stands (running or among the last finished).
    public func report(op: UInt64, now: Instant) -> LaceroReport? {
        if let o = operations.active[op] {
            var r = o.report
            r.elapsed_s = Double((now - o.started).nanoseconds) / 1e9
            return r
        }
        return operations.finished.last { $0.op == op }
    }

    public var runningOperations: Int { operations.active.count }

    // MARK: start

    mutating func startOperation(_ request: LaceroRequest, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        let opID = request.op
        guard operations.active[opID] == nil, !operations.finished.contains(where: { $0.op == opID }) else { drop("duplicate_operation"); return [] }
        var op: Operation
        switch request.kind {
        case let .put(path, out, k, n): op = Operation(LaceroReport(op: opID, kind: "put", path: path), started: now); op.report.out = out
            op.report.k = k; op.report.n = n
        case let .get(meta, out): op = Operation(LaceroReport(op: opID, kind: "get", path: meta), started: now); op.report.out = out
        case let .check(meta): op = Operation(LaceroReport(op: opID, kind: "check", path: meta), started: now)
        case let .repair(meta): op = Operation(LaceroReport(op: opID, kind: "repair", path: meta), started: now)
        case let .delete(meta): op = Operation(LaceroReport(op: opID, kind: "delete", path: meta), started: now)
        }
        op.kind = request.kind
        operations.active[opID] = op
        operations.order.append(opID)
        guard let host else {
            return finish(opID, error: "this node has no file access for Lacero operations (a node built without a LaceroHost)", now: now)
        }
        guard operations.active.count <= Self.maxOperations else {
            return finish(opID, error: "\(Self.maxOperations) Lacero operations are running already; wait for one to end (`iotaf lacero stats`)", now: now)
        }
        let limit = config.maxObjectBytes
        switch request.kind {
        case let .put(path, _, k, n):
            let parameters: LaceroParameters
            do { parameters = try LaceroParameters(k: k, n: n, segmentSize: Self.segmentSize(k: k)) } catch {
                return finish(opID, error: "\(error)", now: now)
            }
            guard members.contains(where: { dir.isReachable($0) }) else {
                return finish(opID, error: "this node knows no live member to place fragments on; wait until it has joined the mesh (`iotaf members`)", now: now)
            }
            operations.active[opID]!.parameters = parameters
            return [offload(opID, .read, cost: .milliseconds(1)) {
                switch host.read(path, limit: limit) {
                case let .failure(e):
                    return .failed("cannot read \(path): \(e); give a regular file the node process can read, by absolute path")
                case let .success(bytes):
                    let (key, secret) = host.freshSecrets()
                    var packed = key + secret
                    packed.reserveCapacity(64 + bytes.count)
                    packed += bytes
                    return .bytes(packed)
                }
            }]
        case let .get(meta, _), let .check(meta), let .repair(meta), let .delete(meta):
            return [offload(opID, .readMeta, cost: .milliseconds(1)) {
                switch host.read(meta, limit: 1 << 30) {
                case let .failure(e): return .failed("cannot read the metadata file \(meta): \(e); give the file `iotaf lacero put` wrote, by absolute path")
                case let .success(sealed):
                    switch host.open(sealed) {
                    case let .failure(e): return .failed("\(meta): \(e)")
                    case let .success(m): return .bytes(m.encode())
                    }
                }
            }]
        }
    }

    private mutating func offload(_ op: UInt64, _ job: OperationJob, cost: Duration, _ work: @escaping @Sendable () -> JobOutcome) -> Output {
        sequence += 1
        operations.jobs[sequence] = (op, job)
        return .offload(OffloadJob(ticket: JobTicket(service: Self.protocolID, sequence: sequence), cost: cost, work: work))
    }

    // MARK: jobs

    mutating func jobFinished(_ ticket: JobTicket, _ outcome: JobOutcome, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard let entry = operations.jobs.removeValue(forKey: ticket.sequence), operations.active[entry.op] != nil else { return [] }
        let (opID, job) = entry
        let bytes: [UInt8]
        switch outcome {
        case let .failed(message): return finish(opID, error: message, now: now)
        case let .bytes(b): bytes = b
        }
        switch job {
        case .read: return objectRead(opID, bytes, now: now, dir)
        case let .shred(first, count): return shredded(opID, first: first, count: count, bytes, now: now, dir)
        case .seal:
            operations.active[opID]!.report.done = operations.active[opID]!.report.total
            return finish(opID, error: nil, now: now)
        case .readMeta: return metadataRead(opID, bytes, now: now, dir)
        case let .decode(s): return segmentDecoded(opID, s, bytes, now: now, dir)
        case let .repair(s, missing): return segmentRebuilt(opID, s, missing: missing, bytes, now: now, dir)
        case .write:
            operations.active[opID]!.report.done = operations.active[opID]!.report.total
            return finish(opID, error: nil, now: now)
        }
    }

    // MARK: put

    private mutating func objectRead(_ opID: UInt64, _ packed: [UInt8], now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let p = op.parameters else { return [] }
        op.key = Array(packed[0..<32])
        op.deleteSecret = Array(packed[32..<64])
        let object = packed[64...]
        let size = UInt64(object.count)
        let segments = p.segmentCount(objectSize: size)
        op.report.object_bytes = size
        op.report.segments = segments
        op.report.fragments = segments * p.n
        op.report.state = "shredding"
        op.report.unit = "segments"
        op.report.total = segments
        op.report.done = 0
        op.segmentIDs = Array(repeating: [], count: segments)
        op.segmentFragments = Array(repeating: [], count: segments)
        op.objectSize = size
        let key = op.key
        var out: [Output] = []
        var jobs: [(Int, Int)] = []
        for first in stride(from: 0, to: segments, by: Self.segmentsPerJob) { jobs.append((first, min(Self.segmentsPerJob, segments - first))) }
        op.jobsLeft = jobs.count
        operations.active[opID] = op
        for (first, count) in jobs {
            let bytes = (first..<(first + count)).reduce(0) { $0 + p.plaintextLength(segment: $1, objectSize: size) }
            out.append(offload(opID, .shred(first: first, count: count), cost: .nanoseconds(Int64(bytes) * 4 + 20_000)) {
                guard let code = try? ReedSolomon(k: p.k, n: p.n) else { return .failed("cannot set up Reed-Solomon for k = \(p.k), n = \(p.n)") }
                return .bytes(object.withUnsafeBytes { Shredder.shredJob($0, segments: first..<(first + count), parameters: p, key: key, code: code) })
            })
        }
        return out
    }

    private mutating func shredded(_ opID: UInt64, first: Int, count: Int, _ bytes: [UInt8], now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let p = op.parameters else { return [] }
        var at = 0
        for s in first..<(first + count) {
            let length = p.fragmentLength(segment: s, objectSize: op.objectSize)
            var ids: [[UInt8]] = []
            for _ in 0..<p.n { ids.append(Array(bytes[at..<(at + 32)])); at += 32 }
            var fragments: [[UInt8]] = []
            for _ in 0..<p.n { fragments.append(Array(bytes[at..<(at + length)])); at += length }
            op.segmentIDs[s] = ids
            op.segmentFragments[s] = fragments
        }
        op.report.done += count
        op.jobsLeft -= 1
        guard op.jobsLeft == 0 else { operations.active[opID] = op; return [] }
        // Every segment is coded: the metadata is whole, the fragments go out.
        let metadata = LaceroMetadata(parameters: p, objectSize: op.objectSize, key: op.key, deleteSecret: op.deleteSecret,
                                      fragmentIDs: op.segmentIDs.flatMap { $0 }, available: Array(members.filter { dir.isReachable($0) }.prefix(LaceroMetadata.maxAvailable)))
        op.metadata = metadata
        op.report.content_hash = Hex.encode(metadata.contentHash)
        op.placed = Array(repeating: 0, count: metadata.segmentCount)
        for s in 0..<metadata.segmentCount {
            let tag = metadata.segmentTag(s)
            for i in 0..<p.n {
                let id = op.segmentIDs[s][i]
                op.index[id] = (s, i)
                op.toStore.append(LaceroCommand.Fragment(id: id, bytes: op.segmentFragments[s][i], segmentTag: tag,
                                                         deleteCheck: LaceroMetadata.deleteCheck(proof: metadata.deleteProof(for: id))))
            }
        }
        op.segmentFragments = []
        op.segmentIDs = []
        op.key = []
        op.deleteSecret = []
        op.report.state = "storing"
        op.report.unit = "fragments"
        op.report.done = 0
        op.report.total = op.toStore.count
        op.storeTotal = op.toStore.count
        op.report.store_retries = 0
        operations.active[opID] = op
        return pumpStores(opID, now: now, dir)
    }

    /// Sends the operation's next fragments while fewer than `storeWindow` are unanswered.
    private mutating func pumpStores(_ opID: UInt64, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        var out: [Output] = []
        while let op = operations.active[opID], op.storesInFlight < config.storeWindow, op.nextStore < op.toStore.count {
            let f = op.toStore[op.nextStore]
            operations.active[opID]!.nextStore += 1
            operations.active[opID]!.storesInFlight += 1
            var token = [UInt8](repeating: 0, count: LaceroMessage.tokenLength)
            for i in token.indices { token[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let s = LaceroMessage.Store(id: f.id, register: 0, threshold: config.threshold, hops: config.hops, token: token,
                                        segmentTag: f.segmentTag, deleteCheck: f.deleteCheck, leaseSeconds: config.leaseSeconds,
                                        visited: [me.leadingWord], bytes: f.bytes)
            pending[token] = Pending(message: s, attempts: 0, due: now, op: opID)
            out += sendPending(token, now: now, dir)
        }
        return out
    }

    /// The keep-ack of one of the operation's fragments (or its give-up: `register` 0).
    mutating func operationStored(_ opID: UInt64, id: [UInt8], reached: Bool, register: UInt8, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let place = op.index[id] else { return [] }
        op.storesInFlight -= 1
        if register > 0 {
            op.placed[place.segment] += 1
            op.storesResolved += 1
        } else {
            let attempts = op.placeAttempts[id, default: 1]
            if attempts < Self.placeAttempts, let f = op.toStore.first(where: { $0.id == id }) {
                // No node on the walk kept it: another walk, from another first hop.
                op.placeAttempts[id] = attempts + 1
                op.report.store_retries = (op.report.store_retries ?? 0) + 1
                op.toStore.append(f)
            } else {
                op.storesResolved += 1
            }
        }
        op.report.done = op.storesResolved
        operations.active[opID] = op
        if op.storesResolved == op.storeTotal, op.segmentsOpen == 0 { return storingFinished(opID, now: now) }
        return pumpStores(opID, now: now, dir)
    }

    private mutating func storingFinished(_ opID: UInt64, now: Instant) -> [Output] {
        guard var op = operations.active[opID], let metadata = op.metadata, let host else { return [] }
        let p = metadata.parameters
        op.toStore = []
        if case .repair = op.kind {
            op.report.fragments_repaired = op.placed.reduce(0, +)
            operations.active[opID] = op
            return finish(opID, error: nil, now: now)
        }
        op.report.fragments_placed = op.placed.reduce(0, +)
        op.report.segments_below_n = op.placed.indices.filter { op.placed[$0] < p.n }
        let belowK = op.placed.indices.filter { op.placed[$0] < p.k }
        op.report.segments_below_k = belowK
        operations.active[opID] = op
        if let s = belowK.first {
            return finish(opID, error: "segment \(s): only \(op.placed[s]) of its \(p.n) fragments were placed (\(p.k) are needed; \(belowK.count) segments short): too few members keep fragments; run storage nodes with [lacero] store = true (or --lacero-store) and room in quota_bytes, then put again", now: now)
        }
        guard case let .put(_, out, _, _) = op.kind else { return [] }
        operations.active[opID]!.report.state = "sealing"
        return [offload(opID, .seal, cost: .milliseconds(1)) {
            switch host.seal(metadata) {
            case let .failure(e): return .failed("cannot seal the metadata: \(e)")
            case let .success(sealed):
                if let e = host.write(out, sealed) { return .failed("cannot write the metadata to \(out): \(e); the fragments are placed but nothing can rebuild them without it; choose a writable --out and put again") }
                return .bytes([])
            }
        }]
    }

    // MARK: get, check, repair, delete

    private mutating func metadataRead(_ opID: UInt64, _ bytes: [UInt8], now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID] else { return [] }
        let metadata: LaceroMetadata
        do { metadata = try LaceroMetadata.decode(bytes) } catch { return finish(opID, error: "\(op.report.path): \(error)", now: now) }
        let p = metadata.parameters
        op.metadata = metadata
        op.objectSize = metadata.objectSize
        op.report.object_bytes = metadata.objectSize
        op.report.k = p.k
        op.report.n = p.n
        op.report.segments = metadata.segmentCount
        op.report.fragments = metadata.fragmentIDs.count
        op.report.content_hash = Hex.encode(metadata.contentHash)
        for s in 0..<metadata.segmentCount {
            for i in 0..<p.n { op.index[metadata.fragmentIDs[s * p.n + i]] = (s, i) }
        }
        switch op.kind {
        case .get:
            op.report.state = "fetching"
            op.report.unit = "segments"
            op.report.total = metadata.segmentCount
            op.segments = (0..<metadata.segmentCount).map { _ in SegmentWork(candidates: Array(0..<p.n)) }
            op.plaintexts = Array(repeating: [], count: metadata.segmentCount)
            op.segmentsOpen = metadata.segmentCount
            operations.active[opID] = op
            return fetchSegments(opID, Array(0..<metadata.segmentCount), now: now, dir)
        case .check, .repair:
            operations.active[opID] = op
            return startCheck(opID, now: now, dir)
        case .delete:
            op.report.state = "deleting"
            var proofs: [(id: [UInt8], proof: [UInt8])] = []
            for id in metadata.fragmentIDs { proofs.append((id, metadata.deleteProof(for: id))) }
            op.report.deletes_sent = proofs.count * members.filter { dir.isReachable($0) }.count
            op.deleteDue = now + .seconds(1)
            operations.active[opID] = op
            return command(.delete(proofs, from: []), now: now, dir)
        case .put:
            return []
        }
    }

    /// Asks the mesh about every candidate share of the segments (want-only fetches: ids are
    /// cheap); the first k shares a holder answers for are fetched (`shareHeard`), the others wait
    /// as spares, so a dead holder costs no timeout while another share of its segment answers.
    private mutating func fetchSegments(_ opID: UInt64, _ segments: [Int], now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard let op = operations.active[opID], let m = op.metadata else { return [] }
        var ids: [[UInt8]] = []
        for s in segments {
            for i in op.segments[s].candidates {
                let id = m.fragmentIDs[s * m.parameters.n + i]
                operations.fetchOwners[id] = opID
                ids.append(id)
            }
        }
        return startFetch(ids, from: [], active: false, now: now, dir)
    }

    /// A holder said it has share `id` of an operation's segment: fetch it if fewer than k are
    /// at hand or on their way, else keep it as a spare.
    mutating func shareHeard(_ opID: UInt64, id: [UInt8], now: Instant) -> [Output] {
        guard var op = operations.active[opID], let m = op.metadata, let place = op.index[id],
              op.segments.indices.contains(place.segment), op.segments[place.segment].state == .fetching else { return [] }
        let s = place.segment
        guard op.segments[s].shares[place.share] == .waiting else { return [] }
        op.segments[s].shares[place.share] = .heard
        operations.active[opID] = op
        return pullSpares(opID, s, k: m.parameters.k, now: now)
    }

    /// Fetches heard shares of segment `s` until k are at hand or on their way.
    private mutating func pullSpares(_ opID: UInt64, _ s: Int, k: Int, now: Instant) -> [Output] {
        guard var op = operations.active[opID], let m = op.metadata else { return [] }
        var out: [Output] = []
        var w = op.segments[s]
        for i in w.candidates where w.count(.got) + w.count(.active) < k && w.shares[i] == .heard {
            w.shares[i] = .active
            op.segments[s] = w
            operations.active[opID] = op
            out += activateFetch(m.fragmentIDs[s * m.parameters.n + i], now: now)
            guard let again = operations.active[opID] else { return out }
            op = again
            w = op.segments[s]
        }
        return out
    }

    /// A fragment an operation asked about arrived (verified against its id) or is missing.
    mutating func operationFetched(_ opID: UInt64, id: [UInt8], bytes: [UInt8]?, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        operations.fetchOwners[id] = nil
        guard var op = operations.active[opID], let m = op.metadata, let place = op.index[id] else { return [] }
        let s = place.segment
        guard op.segments.indices.contains(s), op.segments[s].state == .fetching,
              let state = op.segments[s].shares[place.share], state != .got, state != .gone else { return [] }
        if let bytes {
            op.segments[s].shares[place.share] = .got
            op.segments[s].got.append((index: place.share, bytes: bytes))
        } else {
            op.segments[s].shares[place.share] = .gone
        }
        let k = m.parameters.k
        if op.segments[s].got.count >= k {
            op.segments[s].state = .decoding
            let fragments = op.segments[s].got
            op.segments[s].got = []
            // The segment's other shares are not needed: their fetches end here.
            for i in op.segments[s].candidates where op.segments[s].shares[i] != .got && op.segments[s].shares[i] != .gone {
                cancelFetch(m.fragmentIDs[s * m.parameters.n + i])
            }
            operations.active[opID] = op
            let cost = Duration.nanoseconds(Int64(k * m.parameters.fragmentLength(segment: s, objectSize: m.objectSize)) * 4 + 20_000)
            if case .repair = op.kind {
                let missing = op.segments[s].missing
                return [offload(opID, .repair(segment: s, missing: missing), cost: cost) {
                    do {
                        var r = try Reassembler(metadata: m)
                        let e = try r.repairSegment(s, fragments: fragments.map { (index: $0.index, bytes: $0.bytes[...]) })
                        var out: [UInt8] = []
                        for i in missing {
                            let f = e.fragment(i)
                            guard FragmentHash.hash(f) == m.fragmentIDs[s * m.parameters.n + i] else {
                                return .failed("segment \(s): a rebuilt fragment does not match its id; the metadata does not belong to these fragments")
                            }
                            out += f
                        }
                        return .bytes(out)
                    } catch {
                        return .failed("\(error)")
                    }
                }]
            }
            return [offload(opID, .decode(segment: s), cost: cost) {
                do {
                    var r = try Reassembler(metadata: m)
                    return .bytes(try r.decodeSegment(s, fragments: fragments.map { (index: $0.index, bytes: $0.bytes[...]) }))
                } catch {
                    return .failed("\(error)")
                }
            }]
        }
        operations.active[opID] = op
        let out = pullSpares(opID, s, k: k, now: now)
        guard let w = operations.active[opID]?.segments[s] else { return out }
        // Still possible: shares at hand, on their way, heard or not yet answered make k.
        if w.candidates.count - w.count(.gone) >= k { return out }
        let have = w.got.count
        if case .repair = op.kind {
            for i in w.candidates where w.shares[i] != .gone { cancelFetch(m.fragmentIDs[s * m.parameters.n + i]) }
            operations.active[opID]!.segments[s].state = .failed
            operations.active[opID]!.report.segments_below_k = (operations.active[opID]!.report.segments_below_k ?? []) + [s]
            return out + segmentClosed(opID, now: now)
        }
        return out + finish(opID, error: LaceroRebuildError.notEnoughFragments(segment: s, have: have, need: k).description, now: now)
    }

    private mutating func segmentDecoded(_ opID: UInt64, _ s: Int, _ plain: [UInt8], now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let host, case let .get(_, out) = op.kind else { return [] }
        op.plaintexts[s] = plain
        op.segments[s].state = .done
        op.segmentsOpen -= 1
        op.report.done += 1
        guard op.segmentsOpen == 0 else { operations.active[opID] = op; return [] }
        op.report.state = "writing"
        let parts = op.plaintexts
        op.plaintexts = []
        operations.active[opID] = op
        return [offload(opID, .write, cost: .nanoseconds(Int64(op.objectSize) + 2_000_000)) {
            var all: [UInt8] = []
            all.reserveCapacity(parts.reduce(0) { $0 + $1.count })
            for p in parts { all += p }
            if let e = host.write(out, all) { return .failed("cannot write \(out): \(e); choose a writable --out") }
            return .bytes([])
        }]
    }

    /// Repair: segment `s`'s missing fragments are rebuilt; they go out like a put's.
    private mutating func segmentRebuilt(_ opID: UInt64, _ s: Int, missing: [Int], _ bytes: [UInt8], now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let m = op.metadata else { return [] }
        let p = m.parameters
        let length = p.fragmentLength(segment: s, objectSize: m.objectSize)
        let tag = m.segmentTag(s)
        for (j, i) in missing.enumerated() {
            let id = m.fragmentIDs[s * p.n + i]
            op.toStore.append(LaceroCommand.Fragment(id: id, bytes: Array(bytes[(j * length)..<((j + 1) * length)]), segmentTag: tag,
                                                     deleteCheck: LaceroMetadata.deleteCheck(proof: m.deleteProof(for: id))))
            op.storeTotal += 1
        }
        op.segments[s].state = .done
        operations.active[opID] = op
        return segmentClosed(opID, now: now) + pumpStores(opID, now: now, dir)
    }

    /// A repair's segment is rebuilt (or cannot be): the repair ends when none is open and every
    /// rebuilt fragment's store has been answered.
    private mutating func segmentClosed(_ opID: UInt64, now: Instant) -> [Output] {
        guard var op = operations.active[opID] else { return [] }
        op.segmentsOpen -= 1
        op.report.done += 1
        operations.active[opID] = op
        if op.segmentsOpen == 0, op.storesResolved == op.storeTotal { return storingFinished(opID, now: now) }
        return []
    }

    // MARK: check

    /// Asks every live member which of the object's fragments it holds (want), for `checkWait`
    /// or until every member answered.
    private mutating func startCheck(_ opID: UInt64, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let m = op.metadata else { return [] }
        op.report.state = "checking"
        op.report.unit = "members"
        let asked = members.filter { dir.isReachable($0) }
        op.holders = [:]
        for id in m.fragmentIDs { op.holders[id] = held[id] != nil ? [me] : [] }
        op.asked = Set(asked)
        let chunks = (m.fragmentIDs.count + LaceroMessage.maxIDs - 1) / LaceroMessage.maxIDs
        op.expectedHaves = chunks * asked.count
        op.havesHeard = 0
        op.report.total = op.expectedHaves
        op.report.done = 0
        op.checkDue = now + config.checkWait
        op.deleteDue = nil
        operations.active[opID] = op
        if asked.isEmpty { return checkFinished(opID, now: now, dir) }
        var out: [Output] = []
        for c in 0..<chunks {
            let want = LaceroMessage.want(Array(m.fragmentIDs[(c * LaceroMessage.maxIDs)..<min(m.fragmentIDs.count, (c + 1) * LaceroMessage.maxIDs)])).encode()
            for node in asked { out.append(.send(.member(node), bytes: want)) }
        }
        return out
    }

    /// Checks whose every member answered end now rather than at their timer. Only when one
    /// check runs: a `have` names no operation (an empty one names no id either), so with two
    /// checks at once each counts the other's answers, and one ended early on answers meant for
    /// the other reported its segments below k (two repairs on one node in the simulator); then
    /// each waits its `checkWait`.
    mutating func checksAnswered(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard operations.order.filter({ operations.active[$0]?.checkDue != nil }).count == 1 else { return [] }
        var out: [Output] = []
        for opID in operations.order {
            guard let op = operations.active[opID], op.checkDue != nil, op.havesHeard >= op.expectedHaves else { continue }
            out += checkFinished(opID, now: now, dir)
        }
        return out
    }

    private mutating func checkFinished(_ opID: UInt64, now: Instant, _ dir: some MemberDirectory) -> [Output] {
        guard var op = operations.active[opID], let m = op.metadata else { return [] }
        op.checkDue = nil
        let p = m.parameters
        var segments: [LaceroReport.Segment] = []
        var survive = 1.0
        var answeredShares: [[Int]] = []
        for s in 0..<m.segmentCount {
            var counts: [Int] = []
            var shares: [Int] = []
            for i in 0..<p.n {
                let h = op.holders[m.fragmentIDs[s * p.n + i]]?.count ?? 0
                counts.append(h)
                if h > 0 { shares.append(i) }
            }
            let loss = Self.segmentLossProbability(holders: counts, k: p.k, holderLoss: config.holderLoss)
            survive *= 1 - loss
            segments.append(LaceroReport.Segment(segment: s, answered: shares.count, holders: counts.reduce(0, +), loss_probability: loss))
            answeredShares.append(shares)
        }
        op.report.done = op.report.total
        var out: [Output] = []
        if case .delete = op.kind {
            op.report.still_held = segments.reduce(0) { $0 + $1.answered }
            operations.active[opID] = op
            return finish(opID, error: nil, now: now)
        }
        op.report.check = segments
        op.report.loss_probability = 1 - survive
        op.report.assumed_holder_loss = config.holderLoss
        op.report.segments_below_n = segments.filter { $0.answered < p.n }.map(\.segment)
        op.report.segments_below_k = segments.filter { $0.answered < p.k }.map(\.segment)
        // Lease renewal: every holder that answered keeps its fragment for another lease.
        var renewed = 0
        for id in m.fragmentIDs {
            guard let holders = op.holders[id], !holders.isEmpty else { continue }
            let proof = m.deleteProof(for: id)
            let message = LaceroMessage.renew(id: id, proof: proof, seconds: config.leaseSeconds).encode()
            for h in holders.sorted() {
                renewed += 1
                if h == me { out += renewLocally(id, proof: proof, now: now) } else { out.append(.send(.member(h), bytes: message)) }
            }
        }
        op.report.leases_renewed = renewed
        op.holders = [:]
        guard case .repair = op.kind else {
            operations.active[opID] = op
            return out + finish(opID, error: nil, now: now)
        }
        // Repair: rebuild each segment that lost fragments but kept k, from the ones that answered.
        op.report.state = "fetching"
        op.report.unit = "segments"
        op.report.segments_below_k = []
        op.segments = answeredShares.map { SegmentWork(candidates: $0) }
        op.placed = Array(repeating: 0, count: m.segmentCount)
        var toRepair: [Int] = []
        for s in 0..<m.segmentCount {
            let shares = answeredShares[s]
            op.segments[s].missing = (0..<p.n).filter { !shares.contains($0) }
            if shares.count == p.n {
                op.segments[s].state = .done
            } else if shares.count < p.k {
                op.segments[s].state = .failed
                op.report.segments_below_k!.append(s)
            } else {
                toRepair.append(s)
            }
        }
        op.report.total = toRepair.count
        op.report.done = 0
        op.segmentsOpen = toRepair.count
        operations.active[opID] = op
        guard !toRepair.isEmpty else { return out + storingFinished(opID, now: now) }
        return out + fetchSegments(opID, toRepair, now: now, dir)
    }

    private mutating func renewLocally(_ id: [UInt8], proof: [UInt8], now: Instant) -> [Output] {
        guard var h = held[id], LaceroMetadata.deleteCheck(proof: proof) == h.deleteCheck else { return [] }
        h.leaseUntil = max(h.leaseUntil, now + .seconds(Int64(config.leaseSeconds)))
        held[id] = h
        counters.renewed += 1
        return [.persist(PersistBatch(ticket: nextTicket(), ops: [.put(table: Self.table, key: id, value: Self.row(h, now: now))]), then: [])]
    }

    /// The chance that fewer than k of a segment's fragments survive, when each holder is lost
    /// independently with probability `holderLoss` (a fragment is lost when all its holders are:
    /// holderLoss^h; a fragment no one answered for is lost already). Exact: a Poisson-binomial
    /// distribution over the fragments, summed below k.
    public static func segmentLossProbability(holders: [Int], k: Int, holderLoss q: Double) -> Double {
        var dist = [1.0]  // dist[j]: chance that j fragments survive so far
        for h in holders {
            var lost = 1.0
            for _ in 0..<h { lost *= q }
            var next = [Double](repeating: 0, count: dist.count + 1)
            for j in dist.indices {
                next[j] += dist[j] * lost
                next[j + 1] += dist[j] * (1 - lost)
            }
            dist = next
        }
        return min(1, max(0, dist.prefix(k).reduce(0, +)))
    }

    // MARK: timer and end

    mutating func operationsTimer(now: Instant, _ dir: some MemberDirectory) -> [Output] {
        var out: [Output] = []
        for opID in operations.order {
            guard let op = operations.active[opID] else { continue }
            if let d = op.deleteDue, d <= now {
                out += startCheck(opID, now: now, dir)
            } else if let c = op.checkDue, c <= now {
                out += checkFinished(opID, now: now, dir)
            }
        }
        return out
    }

    mutating func finish(_ opID: UInt64, error: String?, now: Instant) -> [Output] {
        guard var op = operations.active.removeValue(forKey: opID) else { return [] }
        operations.order.removeAll { $0 == opID }
        op.report.state = error == nil ? "done" : "failed"
        op.report.error = error
        op.report.elapsed_s = Double((now - op.started).nanoseconds) / 1e9
        // Its fetches still running are dropped (a fragment no one waits for).
        for (id, owner) in operations.fetchOwners where owner == opID {
            operations.fetchOwners[id] = nil
            if let f = fetches.removeValue(forKey: id) { releaseSlot(f.requestedFrom) }
        }
        waitingForSlot.removeAll { fetches[$0] == nil }
        operations.finished.append(op.report)
        if operations.finished.count > Self.keepFinished { operations.finished.removeFirst(operations.finished.count - Self.keepFinished) }
        return [.event(.service(Self.protocolID, ServicePayload(LaceroEvent.finished(op.report))))]
    }
}

/// What an operation's offloaded job was for.
enum OperationJob: Sendable {
    case read, shred(first: Int, count: Int), seal, readMeta, decode(segment: Int), repair(segment: Int, missing: [Int]), write
}

/// One segment of a get or repair: the shares asked about, where each stands, what came back.
struct SegmentWork: Sendable {
    enum State: Sendable { case fetching, decoding, done, failed }
    /// A share: asked about (no holder said so yet), heard (a holder has it: a spare), being
    /// fetched, at hand, or gone (no holder, or every holder failed).
    enum Share: Sendable { case waiting, heard, active, got, gone }
    var candidates: [Int]
    var shares: [Int: Share]
    var got: [(index: Int, bytes: [UInt8])] = []
    /// Repair: the shares no holder answered for.
    var missing: [Int] = []
    var state = State.fetching

    init(candidates: [Int]) {
        self.candidates = candidates
        shares = Dictionary(uniqueKeysWithValues: candidates.map { ($0, Share.waiting) })
    }

    func count(_ s: Share) -> Int { shares.values.filter { $0 == s }.count }
}

/// One running operation.
struct Operation: Sendable {
    var report: LaceroReport
    let started: Instant
    var kind = LaceroRequest.Kind.check(meta: "")
    var parameters: LaceroParameters?
    var metadata: LaceroMetadata?
    var objectSize: UInt64 = 0
    var key: [UInt8] = []
    var deleteSecret: [UInt8] = []
    /// Fragment id → (segment, share), for every fragment of the object.
    var index: [[UInt8]: (segment: Int, share: Int)] = [:]
    var jobsLeft = 0
    var segmentIDs: [[[UInt8]]] = []
    var segmentFragments: [[[UInt8]]] = []
    // Storing (put, repair).
    var toStore: [LaceroCommand.Fragment] = []
    var nextStore = 0
    var storesInFlight = 0
    var storesResolved = 0
    /// Fragments this operation places: the put's all, a repair's rebuilt ones (retries not counted).
    var storeTotal = 0
    var placeAttempts: [[UInt8]: Int] = [:]
    var placed: [Int] = []
    // Fetching (get, repair).
    var segments: [SegmentWork] = []
    var segmentsOpen = 0
    var plaintexts: [[UInt8]] = []
    // Checking (check, repair, delete).
    var holders: [[UInt8]: Set<NodeID>] = [:]
    var asked: Set<NodeID> = []
    var expectedHaves = 0
    var havesHeard = 0
    var checkDue: Instant?
    var deleteDue: Instant?

    init(_ report: LaceroReport, started: Instant) {
        self.report = report
        self.started = started
    }
}

/// Every operation of one service, in start order.
struct Operations: Sendable {
    var active: [UInt64: Operation] = [:]
    var order: [UInt64] = []
    var finished: [LaceroReport] = []
    var jobs: [UInt64: (op: UInt64, job: OperationJob)] = [:]
    /// Fragment id → the operation that fetches it.
    var fetchOwners: [[UInt8]: UInt64] = [:]

    var deadline: Instant? {
        var d: Instant?
        for op in active.values {
            for t in [op.checkDue, op.deleteDue].compactMap({ $0 }) where d == nil || t < d! { d = t }
        }
        return d
    }

    func fetchOwner(_ id: [UInt8]) -> UInt64? { fetchOwners[id] }

    /// A `have` answer: every check running counts the holder of the fragments it asked about.
    mutating func heard(have ids: [[UInt8]], from: NodeID) {
        for opID in order {
            guard var op = active[opID], op.checkDue != nil, op.asked.contains(from) else { continue }
            op.havesHeard += 1
            op.report.done = min(op.report.total, op.havesHeard)
            for id in ids where op.holders[id] != nil { op.holders[id]!.insert(from) }
            active[opID] = op
        }
    }
}
