import Channels
@_exported import FileTransfer
import Foundation
import LaceroService
import LedgerService
import LedgerStore
import Logging
import MeshCore
import MeterService
import Node
import Sodium

/// The libuv driver of one node: it owns the socket, the timer, the control socket and the
/// peer store, feeds the core its inputs with `now`, and carries out the outputs in order.
public final class NodeRuntime {
    /// The settings it runs with; a reload (SIGHUP, ConfigReload.swift) changes the live keys.
    public internal(set) var settings: NodeSettings
    public let identity: NodeIdentity
    // The loop thread is the only one that touches these, once per datagram: no dynamic
    // exclusivity checks (a runtime call each) on the hot ones.
    @exclusivity(unchecked) public private(set) var core: NodeCore
    let loop: EventLoop
    var logger: Logger
    private let socket: UDPSocket
    private var timer: LoopTimer!
    private var leaveTimer: LoopTimer?
    private var control: ControlServer?
    /// `[metrics] listen`: GET /metrics over HTTP; nil when not configured.
    public private(set) var metricsServer: MetricsHTTPServer?
    /// Every counter and gauge of `status`, and the latency histograms, as Prometheus text.
    public let metrics = NodeMetrics()
    /// Builds the settings again for a SIGHUP reload (the config file, then the same flags);
    /// without it SIGHUP is logged and ignored.
    public var reloadSettings: (() throws -> NodeSettings)?
    private var signals: [SignalWatcher] = []
    private var store: PeerStore?
    /// `[ledger]`: the ledger's own SQLite file; `.persist` batches of `ledger.*` tables go here.
    var ledgerStore: LedgerStore?
    /// Control-socket submissions waiting for the ledger service's answer (LedgerRuntime.swift).
    var pendingLedgerSubmits: [UInt64: PendingLedgerSubmit] = [:]
    var nextLedgerRequest: UInt64 = 1
    /// The core's `.persist` batches, carried out one at a time in order on the thread pool
    /// (two in flight could land out of order and leave the older state on disk).
    private var persistQueue: [(batch: PersistBatch, then: [NodeOutput])] = []
    private var persisting = false
    /// Called once the persist queue is empty (a stop waits for it).
    private var whenPersisted: (() -> Void)?
    /// Persist batches that failed (the core heard `.failed`).
    public private(set) var persistFailures: UInt64 = 0
    /// Persist transactions written, the batches they carried (more than one a transaction when
    /// batches queued behind a write: group commit), and the time from each write's start to
    /// its completion on the loop.
    public struct PersistStats: Sendable, Equatable {
        public var transactions: UInt64 = 0
        public var batches: UInt64 = 0
        public var busy: Duration = .zero
    }
    public private(set) var persistStats = PersistStats()
    private let startedAt: Instant
    public private(set) var boundAddress: UnderlayAddress
    @exclusivity(unchecked) var stopping = false
    /// Mode `nearest`'s LAN beacon; nil in the other modes.
    private var beacon: MulticastBeacon?
    /// Says which seeds do not answer, and the likely reason (SeedWatch.swift).
    var seeds: SeedMonitor!
    /// Link-local IP → the interface it was last heard on. The cores see link-local addresses
    /// without their interface (scopes are local to this host and gossip carries none); sends to
    /// them get it back from here. One address per IP: two hosts with the same link-local address
    /// on two links would share an entry (addresses derived from MACs make that rare).
    @exclusivity(unchecked) private var scopes: [LinkLocalIP: UInt32] = [:]
    @exclusivity(unchecked) private var lastScoped: UnderlayAddress?
    /// Sends to a link-local address whose interface is unknown (several links, never heard from).
    public private(set) var unscopedSends: UInt64 = 0
    static let maxScopes = 4096
    /// Messages received that no local user claimed (not a file transfer).
    public private(set) var unclaimedMessages: UInt64 = 0
    /// Called for every core event, after it is logged (benchmarks and the mesh view use it).
    @exclusivity(unchecked) public var onEvent: ((NodeEvent) -> Void)?
    public var onStopped: (() -> Void)?
    /// `iotaf query` requests collecting answers until their timeout (ControlQueries.swift).
    var pendingQueries: [UInt64: PendingQuery] = [:]
    /// `meter_record` requests waiting for their read to be durable, by read hash.
    var pendingRecords: [[UInt8]: ControlServer.Reply] = [:]
    /// The mesh told this node an admin culled it; the node stopped.
    public private(set) var wasCulled = false
    /// The last Lacero operation number handed out (LaceroRuntime.swift).
    var laceroOperations: UInt64 = 0

    /// After `leave`, the node keeps running this long so the leave reaches its neighbours and
    /// rides a few gossip rounds.
    static let leaveGrace: Duration = .seconds(2)

    /// Binds the socket and opens the control socket and peer store; nothing is sent until `start`.
    public init(settings: NodeSettings, identity: NodeIdentity, loop: EventLoop, logger: Logger,
                withControlSocket: Bool = true, withPeerStore: Bool = true) throws {
        self.settings = settings
        self.identity = identity
        self.loop = loop
        self.logger = logger
        self.logger[metadataKey: "node"] = "\(identity.nodeID.short)"
        var seed: UInt64 = 0
        for b in Sodium.randomBytes(8) { seed = seed << 8 | UInt64(b) }
        let network = try settings.resolvedNetworkKey()
        var discovery = settings.discovery
        do {
            discovery.attributes = try Attributes(settings.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        } catch {
            throw RuntimeError("attributes: \(error)")
        }
        startedAt = loop.now
        socket = UDPSocket(loop: loop)
        do {
            try socket.bind(settings.listen)
        } catch {
            socket.close()
            throw RuntimeError("\(error); is another node using port \(settings.listen.port)? Choose another --listen")
        }
        boundAddress = socket.localAddress ?? settings.listen
        do {
            // Gossip tells members where to reach us: the bound address (its port when the
            // listen port was 0). A wildcard listen address is corrected by every peer that
            // hears from us directly (gossip trusts the source address of direct contact).
            core = try NodeCore(identity: identity, network: network.id, networkKey: network.key, address: boundAddress,
                                timing: settings.timing, discovery: discovery, rng: SeededGenerator(seed: seed))
            // `[consensus] role = "validator"`: refused here, before anything is sent, when the key is not a validator.
            let wallAtZero = UInt64(max(0, Date().timeIntervalSince1970 * 1000)) &- UInt64(max(0, loop.now.nanoseconds) / 1_000_000)
            if var service = try Self.consensusService(settings: settings, identity: identity, seed: seed, unixMillisAtZero: wallAtZero) {
                // The commit seam: a validating ledger executes what this node's consensus commits.
                if settings.ledger?.role == .validator { service.commitSink = LedgerService.protocolID }
                try core.add(service)
            }
            // `[ledger]`: resumes from DATA/ledger.sqlite; refused here when the store or the genesis is wrong.
            if let built = try Self.ledgerService(settings: settings, identity: identity) {
                try core.add(built.0)
                ledgerStore = built.1
            }
            // `[meter] role`: the meter relay service (Docs/meters.md).
            if let service = Self.meterService(settings: settings, identity: identity, seed: seed, loopNow: loop.now) { try core.add(service) }
        } catch {
            socket.close()
            throw error
        }
        timer = LoopTimer(loop: loop) { [unowned self] in self.feed(.timer) }
        seeds = SeedMonitor(loop: loop, network: network.id, logger: self.logger) { [unowned self] a in
            !self.core.unansweredSeeds.contains(a) || self.core.members.values.contains { $0.state == .alive && $0.address == a }
        }
        if settings.discovery.modes.contains(.nearest) {
            do {
                // A private mesh's beacons are sealed under its key; the open network's stay plain.
                beacon = try MulticastBeacon(loop: loop, settings: settings.beacon, network: network.id,
                                             networkKey: network == .defaultNetwork ? nil : network.key,
                                             advertisedPort: boundAddress.port, logger: self.logger) { [unowned self] address in
                    self.feed(.command(.beaconHeard(self.unscoped(address))))
                }
            } catch {
                timer.close()
                socket.close()
                throw error
            }
        }
        // File transfers are a service; the runtime only runs its file jobs (`PosixFiles`) on the thread pool.
        do {
            try core.add(FileTransferService(me: identity.nodeID, files: PosixFiles(),
                                             inbox: (settings.dataDir as NSString).appendingPathComponent("inbox"),
                                             rng: SeededGenerator(seed: seed).derived(0xf11e)))
            // Lacero: every node can put and get; it keeps others' fragments only with [lacero] store.
            try core.add(Self.laceroService(settings: settings, identity: identity, seed: seed))
        } catch {
            timer.close()
            beacon?.close()
            socket.close()
            throw error
        }
        do {
            if withPeerStore || withControlSocket {
                try DataDirectory.create(settings.dataDir)
            }
            if withPeerStore {
                let (store, warning) = try PeerStore.open(path: (settings.dataDir as NSString).appendingPathComponent("peers.sqlite"))
                self.store = store
                if let warning { logger.warning("\(warning)") }
            }
            if withControlSocket {
                control = try ControlServer(loop: loop, path: settings.resolvedControlPath) { [unowned self] in self.answerLater($0, reply: $1) }
            }
            if let listen = settings.metricsListen {
                metricsServer = try MetricsHTTPServer(loop: loop, listen: listen) { [unowned self] in Array(self.metricsText.utf8) }
            }
        } catch {
            closeHandles()
            if error is RuntimeError { throw error }
            throw RuntimeError("cannot prepare data directory \(settings.dataDir): \(DataDirectory.reason(error))")
        }
    }

    /// Starts receiving, hands the core its seeds and remembered peers, and handles SIGINT/SIGTERM when asked.
    public func start(handleSignals: Bool = false) throws {
        try socket.startReceiving { [unowned self] from, bytes in
            let from = from.scope == 0 ? from : self.unscoped(from)
            self.seeds.heard(from: from)
            self.feed(.datagram(from: from, bytes: bytes))
        }
        logger.info("node started", metadata: [
            "node_id": "\(identity.nodeID.hex)", "overlay": "\(core.overlayAddress)", "listen": "\(boundAddress)",
            "control": "\(control?.path ?? "none")",
            "metrics": "\(metricsServer.map { "http://\($0.boundAddress)/metrics" } ?? "none")",
        ])
        if let store {
            do {
                // What the services persisted in the last life (`.persist` outputs): gossip's
                // self record and remembered peers.
                let rows = try store.loadServiceRows()
                if !rows.isEmpty { feed(.restored(rows)) }
                let remembered = rows.filter { $0.table == GossipService.peersTable }.count
                if remembered > 0 { logger.info("remembered \(remembered) peers from \(store.path)") }
                // A store written before services kept their own rows has its own tables.
                if !rows.contains(where: { $0.table == GossipService.peersTable }) {
                    let (old, skipped) = try store.load()
                    if skipped > 0 { logger.warning("peer store: skipped \(skipped) malformed rows") }
                    var refused = 0
                    for row in old {
                        if let peer = PeerIdentity(publicKey: row.publicKey) {
                            feed(.command(.rememberPeer(peer, row.address)))
                        } else {
                            refused += 1
                        }
                    }
                    // Only a store written by other software holds one: this node never admits such a key.
                    if refused > 0 { logger.warning("peer store: skipped \(refused) rows whose key is not a canonical identity key") }
                }
                if !rows.contains(where: { $0.table == "gossip.self" }), let last = try store.loadSelfState() {
                    feed(.command(.membership(.resume(incarnation: last.incarnation, attributeVersion: last.attributeVersion))))
                }
                if core.gossip.incarnation > 0 || core.gossip.attributeVersion > 0 {
                    logger.info("resuming above the last life's incarnation and attribute version: now \(core.gossip.incarnation) and \(core.gossip.attributeVersion)")
                }
            } catch {
                logger.warning("peer store \(store.path) could not be read (\(error)); starting from seeds only, at incarnation 0 (the mesh's refutation brings this node back, a little later)")
            }
        }
        for peer in settings.peers + settings.discovery.masters { feed(.command(.addSeed(unscoped(peer)))) }
        feed(.start)
        for peer in settings.peers + settings.discovery.masters { seeds.watchSeed(unscoped(peer)) }
        if let beacon {
            try beacon.start()
            logger.info("nearest: beaconing", metadata: ["beacon": "\(beacon.summary)"])
            if !boundAddress.isUnspecified {
                logger.warning("nearest: listening on \(boundAddress), not on [::]; neighbours that hear the beacon answer at a link-local address this socket may not receive")
            }
        }
        if handleSignals {
            for sig in [SIGINT, SIGTERM] {
                signals.append(SignalWatcher(loop: loop, signal: sig) { [unowned self] sig in
                    self.logger.info("received signal \(sig), stopping")
                    self.stop()
                })
            }
            signals.append(SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] _ in self.reloadOnSignal() })
        }
    }

    public func command(_ command: NodeCommand) { feed(.command(command)) }

    /// SIGHUP: re-reads the settings and applies the live keys; a config that no longer loads is
    /// refused with its reason and the running settings are kept.
    func reloadOnSignal() {
        guard let reloadSettings else {
            logger.warning("received SIGHUP, but this node was started without a config to reload; nothing changed")
            return
        }
        do {
            reload(try reloadSettings())
        } catch {
            logger.error("config reload refused, the running settings are kept: \(error)")
        }
    }

    /// The Prometheus text `iotaf metrics` and `GET /metrics` answer with.
    public var metricsText: String {
        var report: ConsensusReport?
        if let c = consensus {
            var r = ConsensusReport(c.status)
            r.payloads_committed = c.payloadsCommitted
            report = r
        }
        return metrics.render(status, consensus: report)
    }

    /// Adds a service to the node before `start` (see `NodeCore.add`).
    public func add(_ service: some NodeService<NodeCommand, NodeEvent>) throws { try core.add(service) }

    /// Queues a message to a member over its channel; events about it come through `onEvent`.
    public func sendMessage(_ bytes: [UInt8], stream: UInt16, to: NodeID) -> Result<MessageID, MessageSendError> {
        guard !stopping else { return .failure(.unknownPeer(to)) }
        let (result, outputs) = core.sendMessage(bytes, stream: stream, to: to, now: loop.now)
        carryOut(outputs)
        return result
    }

    /// Starts sending a file (read by this process) to a member; see `FileTransferService`.
    public func sendFile(path: String, to: NodeID, stream: UInt16) -> Result<UInt64, RuntimeError> {
        guard !stopping else { return .failure(RuntimeError("the node is stopping")) }
        guard core.members[to] != nil else { return .failure(RuntimeError(MessageSendError.unknownPeer(to).description)) }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            return .failure(RuntimeError("\(path) is not a readable file (the node process opens it: give an absolute path it can read)"))
        }
        let outputs = core.handle(.command(.service(FileTransferService.protocolID, ServicePayload(FileCommand.send(path: path, to: to, stream: stream)))),
                                  now: loop.now)
        var result: Result<UInt64, RuntimeError> = .failure(RuntimeError("the node has no file-transfer service"))
        for case let .event(.service(_, payload)) in outputs {
            switch payload.as(FileEvent.self) {
            case let .accepted(id, _, _)?: result = .success(id)
            case let .refused(_, reason)?: result = .failure(RuntimeError(reason))
            default: break
            }
        }
        carryOut(outputs)
        return result
    }

    var fileTransfers: FileTransferService? { core.service(FileTransferService.self) }

    public var transferReports: [TransferReport] { fileTransfers?.reports(now: loop.now) ?? [] }

    /// Saves the peer table (on the thread pool), then closes every handle; the loop then ends.
    public func stop() {
        guard !stopping else { return }
        // The services persist what outlives this life (gossip: its remembered peers); the
        // handles close once every persist is on disk.
        carryOut(core.handle(.stop, now: loop.now))
        stopping = true
        let finish = { [self] in
            closeHandles()
            logger.info("node stopped")
            onStopped?()
        }
        if persisting || !persistQueue.isEmpty { whenPersisted = finish } else { finish() }
    }

    // MARK: - Driving the core

    func feed(_ input: NodeInput) {
        guard !stopping else { return }
        carryOut(core.handle(input, now: loop.now))
    }

    /// Queues a `.persist` batch; its `then` outputs are carried out once it is durable.
    private func persist(_ batch: PersistBatch, then: [NodeOutput]) {
        guard store != nil || (ledgerStore != nil && Self.isLedgerBatch(batch)) else {
            // No store (benchmarks, tests that ask for none): nothing to wait for.
            carryOut(then)
            feed(.persisted(batch.ticket, .durable))
            return
        }
        persistQueue.append((batch, then))
        if !persisting { persistNext() }
    }

    /// Writes every queued batch in one transaction (group commit: one fsync for all the
    /// batches that queued up while the previous write was on disk), then carries out each
    /// batch's `then` and reports it durable, in queue order. All or none: a failed write fails
    /// every batch in it.
    private func persistNext() {
        guard !persistQueue.isEmpty else {
            persisting = false
            if let w = whenPersisted { whenPersisted = nil; w() }
            return
        }
        persisting = true
        // One queue for both stores, so batches keep the order the core gave them; a group is the
        // run of queued batches bound for the same store.
        let toLedger = Self.isLedgerBatch(persistQueue[0].batch)
        var count = 1
        while count < persistQueue.count, Self.isLedgerBatch(persistQueue[count].batch) == toLedger { count += 1 }
        let group = Array(persistQueue.prefix(count))
        persistQueue.removeFirst(count)
        let ops = group.flatMap(\.batch.ops)
        let started = loop.now
        let ledgerStore = toLedger ? self.ledgerStore : nil
        let store = ledgerStore == nil ? self.store : nil
        let path = ledgerStore?.path ?? store?.path ?? "the store"
        loop.offload({ () -> String? in
            do {
                if let ledgerStore { try ledgerStore.apply(ops) } else if let store { try store.apply(ops) }
                return nil
            } catch { return "\(error)" }
        }, completion: { [weak self] failure in
            guard let self else { return }
            self.persistStats.transactions += 1
            self.persistStats.batches += UInt64(group.count)
            self.persistStats.busy += self.loop.now - started
            if let failure {
                self.logger.warning("could not write to \(path): \(failure); the messages waiting for it (\(group.count) batches) are dropped (the node retries with its next change); check free space and permissions")
            }
            for (batch, then) in group {
                if let failure {
                    self.persistFailures += 1
                    self.feed(.persisted(batch.ticket, .failed(failure)))
                } else {
                    if !self.stopping { self.carryOut(then) }
                    self.feed(.persisted(batch.ticket, .durable))
                }
            }
            self.persistNext()
        })
    }

    /// Runs an `.offload` job on the thread pool and hands its result back.
    private func offload(_ job: OffloadJob) {
        let work = job.work
        loop.offload({ work() }, completion: { [weak self] outcome in self?.feed(.offloaded(job.ticket, outcome)) })
    }

    private func carryOut(_ outputs: [NodeOutput]) {
        // A burst of channel frames to one peer leaves as one segmented send (UDPSocket).
        socket.holdSends()
        defer { socket.releaseSends() }
        for output in outputs {
            switch output {
            case let .send(to, bytes, bulk):
                // Channel frames take the bulk lane; everything else overtakes frames that wait.
                let lane: UDPSocket.Lane = bulk ? .bulk : .control
                if to.isLinkLocal {
                    guard let scoped = scoped(to) else { unscopedSends += 1; continue }
                    socket.send(bytes, to: scoped, lane: lane)
                } else {
                    socket.send(bytes, to: to, lane: lane)
                }
            case let .wake(at): timer.scheduleNoLater(than: at)
            case let .event(event): report(event)
            case let .persist(batch, then): persist(batch, then: then)
            case let .offload(job): offload(job)
            }
        }
    }

    private func report(_ event: NodeEvent) {
        metrics.observe(event, now: loop.now)
        switch event {
        case let .memberAdded(id, address):
            logger.info("member added", metadata: ["peer": "\(id.short)", "address": "\(address)"])
        case let .memberStateChanged(id, from, to, incarnation):
            let level: Logger.Level = to == .dead || to == .suspect ? .warning : .info
            logger.log(level: level, "member \(to)", metadata: ["peer": "\(id.short)", "was": "\(from)", "incarnation": "\(incarnation)"])
        case let .memberAddressChanged(id, address):
            logger.info("member moved", metadata: ["peer": "\(id.short)", "address": "\(address)"])
        case let .probeAnswered(id, rtt):
            logger.trace("probe answered", metadata: ["peer": "\(id.short)", "rtt_ms": "\(rtt.milliseconds)"])
        case let .memberForgotten(id):
            logger.info("member forgotten", metadata: ["peer": "\(id.short)"])
        case let .sessionEstablished(id, address):
            seeds.answered(address)
            logger.debug("session established", metadata: ["peer": "\(id.short)", "address": "\(address)"])
        case let .sessionFailed(address, reason):
            logger.warning("handshake with \(address) failed: \(reason); if it is a member, check both nodes use the same network key")
        case let .messageQueued(id, to, stream):
            logger.trace("message queued", metadata: ["peer": "\(to.short)", "id": "\(id)", "stream": "\(stream)"])
        case let .messageRefused(to, stream, error):
            logger.debug("message refused", metadata: ["peer": "\(to.short)", "stream": "\(stream)", "error": "\(error)"])
        case let .messageReceived(from, stream, bytes):
            unclaimedMessages += 1
            logger.debug("message received", metadata: ["peer": "\(from.short)", "stream": "\(stream)", "bytes": "\(bytes.count)"])
        case .messageDelivered:
            break
        case let .messageFailed(id, to, reason):
            logger.debug("message failed", metadata: ["peer": "\(to.short)", "id": "\(id)", "reason": "\(reason.rawValue)"])
        case .channelWritable:
            break
        case let .service(id, payload):
            if let e = payload.as(FileEvent.self) {
                logFile(e)
            } else if let e = payload.as(LaceroEvent.self) {
                logLacero(e)
            } else if let e = payload.as(LedgerEvent.self) {
                ledgerEvent(e)
            } else {
                logger.debug("service \(id): \(payload)")
            }
        case let .membership(e):
            switch e {
            case .joined: logger.info("joined the mesh")
            case let .refuted(incarnation): logger.notice("refuted a suspicion about this node", metadata: ["incarnation": "\(incarnation)"])
            default: logger.debug("gossip: \(e)")
            }
        }
        if case let .membership(.queryAnswer(id, from, address, hops, pairs)) = event { collectAnswer(id, from: from, address: address, hops: hops, pairs: pairs) }
        if case let .service(_, payload) = event, case let .recorded(read)? = payload.as(MeterEvent.self),
           let reply = pendingRecords.removeValue(forKey: read.hash) {
            reply(Array(ControlJSON.encode(["recorded": String(read.sequence), "read": Hex.encode(read.hash), "durable": "true"])))
        }
        if case let .memberStateChanged(id, _, .culled, _) = event, id == identity.nodeID {
            // The mesh refuses this identity for good: running on would only knock on closed doors.
            wasCulled = true
            logger.error("an admin culled this node (\(id.short)); the mesh refuses this key for good, stopping. Only a new key (`iotaf keygen`) brings the device back")
            stop()
        }
        onEvent?(event)
    }

    private func logFile(_ e: FileEvent) {
        switch e {
        case let .accepted(id, to, name):
            logger.info("sending file", metadata: ["transfer": "\(TransferReport.hex(id))", "peer": "\(to.short)", "name": "\(name)"])
        case .refused:
            break  // the caller of `sendFile` gets the reason
        case let .delivered(id, to, name, size):
            logger.info("file delivered", metadata: ["transfer": "\(TransferReport.hex(id))", "peer": "\(to.short)", "name": "\(name)", "bytes": "\(size)"])
        case let .received(id, from, path, size, _):
            logger.info("file received", metadata: ["transfer": "\(TransferReport.hex(id))", "peer": "\(from.short)", "path": "\(path)", "bytes": "\(size)"])
        case let .failed(id, peer, outgoing, name, reason):
            logger.warning("\(outgoing ? "sending" : "receiving") \(name) \(outgoing ? "to" : "from") \(peer.short) failed: \(reason)",
                           metadata: ["transfer": "\(TransferReport.hex(id))"])
        }
    }

    private func closeHandles() {
        timer?.close()
        seeds?.close()
        leaveTimer?.close()
        finishPendingQueries()
        finishLedgerSubmits()
        beacon?.close()
        socket.close()
        control?.close()
        metricsServer?.close()
        for s in signals { s.close() }
        signals = []
    }

    // MARK: - Control socket

    public var status: StatusReport {
        var s = StatusReport(core: core, settings: settings, listen: boundAddress, uptime: loop.now - startedAt,
                             sendErrors: socket.sendErrors, receiveErrors: socket.receiveErrors,
                             unclaimedMessages: unclaimedMessages, transfers: transferReports, files: fileTransfers)
        s.counters["link_local_unscoped_sends"] = unscopedSends
        s.counters["udp_gso_enabled"] = socket.segmentationEnabled ? 1 : 0
        s.counters["udp_gso_fallbacks"] = socket.gsoFallbacks
        s.counters["udp_gso_sends"] = socket.gsoSends
        s.counters["udp_gso_datagrams"] = socket.gsoDatagrams
        s.counters["udp_gro_reads"] = socket.groReads
        s.counters["udp_gro_datagrams"] = socket.groDatagrams
        s.counters["udp_bulk_waited"] = socket.bulkWaited
        s.counters["udp_control_waited"] = socket.controlWaited
        s.counters["udp_control_overtook"] = socket.controlOvertook
        s.seeds = seeds.reports
        if let beacon {
            s.beacon = beacon.counters
            s.beacon_drops = beacon.dropCounters
        }
        return s
    }

    public var memberReports: [MemberReport] {
        let now = loop.now
        return core.sortedMembers.map { m in
            var r = MemberReport(m, network: core.network, now: now)
            // Link-local members are shown with the interface they are reached through.
            if m.address.isLinkLocal, let a = scoped(m.address) { r.address = a.description }
            return r
        }
    }

    // MARK: - Link-local scopes

    /// Remembers the interface of a link-local address and returns the address without it.
    private func unscoped(_ address: UnderlayAddress) -> UnderlayAddress {
        guard address.scope != 0, address.isLinkLocal else { return address.withoutScope }
        if address != lastScoped {
            let key = LinkLocalIP(address)
            if scopes[key] != address.scope {
                if scopes.count >= Self.maxScopes { scopes.removeAll(keepingCapacity: true) }
                scopes[key] = address.scope
            }
            lastScoped = address
        }
        return address.withoutScope
    }

    /// A link-local address with the interface it was heard on, else the beacon's only interface.
    func scoped(_ address: UnderlayAddress) -> UnderlayAddress? {
        if address.scope != 0 { return address }
        if let s = scopes[LinkLocalIP(address)] ?? beacon?.soleInterface { return address.withScope(s) }
        return nil
    }

    func answer(_ request: [UInt8]) -> [UInt8] {
        let parsed = (try? JSONSerialization.jsonObject(with: Data(request))) as? [String: Any]
        guard let command = parsed?["command"] as? String else {
            return Array(ControlJSON.error("request must be a JSON object with a \"command\" string"))
        }
        switch command {
        case "status": return Array(ControlJSON.encode(status))
        case "metrics": return Array(ControlJSON.encode(["metrics": metricsText]))
        case "send":
            guard let to = parsed?["to"] as? String, let path = parsed?["path"] as? String else {
                return Array(ControlJSON.error("send needs \"to\" (node id) and \"path\" (absolute file path)"))
            }
            let stream = UInt16((parsed?["stream"] as? String) ?? "8")
            guard let stream else { return Array(ControlJSON.error("stream must be 0...65535")) }
            let peer: NodeID
            switch resolveMember(to) {
            case let .success(p): peer = p
            case let .failure(e): return Array(ControlJSON.error(e.description))
            }
            switch sendFile(path: path, to: peer, stream: stream) {
            case let .success(id): return Array(ControlJSON.encode(["transfer": TransferReport.hex(id), "to": peer.hex]))
            case let .failure(e): return Array(ControlJSON.error(e.description))
            }
        case "transfer":
            guard let idText = parsed?["id"] as? String, let id = UInt64(idText, radix: 16) else {
                return Array(ControlJSON.error("transfer needs \"id\" (hex, as `send` answered)"))
            }
            guard let r = fileTransfers?.report(id: id, now: loop.now) else {
                return Array(ControlJSON.error("no transfer \(idText) (finished ones are kept for the last \(FileTransferService.keepFinished))"))
            }
            return Array(ControlJSON.encode(r))
        case "members": return Array(ControlJSON.encode(memberReports))
        case "join":
            guard let text = parsed?["address"] as? String, let address = UnderlayAddress(parsing: text) else {
                return Array(ControlJSON.error("join needs \"address\": [IPv6]:port, [fe80::…%interface]:port or IPv4:port"))
            }
            guard unscoped(address) != boundAddress else {
                return Array(ControlJSON.error("\(address) is this node's own address; give a master's or a member's"))
            }
            feed(.command(.addSeed(unscoped(address))))
            seeds.watchSeed(unscoped(address))
            return Array(ControlJSON.encode(["joining": unscoped(address).description]))
        case "leave":
            // Graceful: the mesh learns this node left (state `left`), then the node stops.
            guard leaveTimer == nil else { return Array(ControlJSON.error("already leaving")) }
            feed(.command(.membership(.leave)))
            let t = LoopTimer(loop: loop) { [unowned self] in self.stop() }
            t.schedule(at: loop.now + Self.leaveGrace)
            leaveTimer = t
            return Array(ControlJSON.encode(["leaving": true]))
        case "attributes":
            switch AttributeEdit.apply(parsed ?? [:], to: core.gossip.attributes) {
            case let .failure(e): return Array(ControlJSON.error(e.description))
            case let .success(changed):
                if let changed { feed(.command(.membership(.setAttributes(changed)))) }
                return Array(ControlJSON.encode(AttributesReply(core.gossip.attributes, version: core.gossip.attributeVersion)))
            }
        case "consensus_status", "consensus_submit": return answerConsensus(command, parsed ?? [:])
        case "lacero_put", "lacero_get", "lacero_check", "lacero_repair", "lacero_delete", "lacero_op", "lacero_stats":
            return answerLacero(command, parsed ?? [:])
        case "ledger_status":
            var answered: [UInt8] = []
            answerLedger(command, parsed ?? [:]) { answered = $0 }
            return answered
        case "meter_status", "meter_record", "meter_host", "meter_submit", "meter_command", "meter_proof": return answerMeter(command, parsed ?? [:])
        case "stop":
            loop.offload({ () }, completion: { [weak self] in self?.stop() })
            return Array(ControlJSON.encode(["stopping": true]))
        default: return Array(ControlJSON.error("unknown command \"\(command)\"; known: status, metrics, members, join, leave, attributes, query, cull, send, transfer, consensus_status, consensus_submit, lacero_put, lacero_get, lacero_check, lacero_repair, lacero_delete, lacero_op, lacero_stats, ledger_status, ledger_query, ledger_submit, ledger_history, meter_status, meter_record, meter_host, meter_submit, meter_command, meter_proof, stop"))
        }
    }
}

extension NodeRuntime {
    /// A member by full node id or by a prefix that names exactly one member.
    func resolveMember(_ text: String) -> Result<NodeID, RuntimeError> {
        let t = text.lowercased()
        if let id = NodeID(hex: t) {
            return core.members[id] != nil ? .success(id) : .failure(RuntimeError(MessageSendError.unknownPeer(id).description))
        }
        let matches = core.sortedMembers.filter { $0.nodeID.hex.hasPrefix(t) }
        guard !t.isEmpty, matches.count == 1 else {
            return .failure(RuntimeError(matches.isEmpty ? "no member's node id starts with \"\(text)\"; check `iotaf members`"
                                                        : "\"\(text)\" matches \(matches.count) members; give more digits"))
        }
        return .success(matches[0].nodeID)
    }
}

/// A link-local address's 16 bytes, the scope table's key.
struct LinkLocalIP: Hashable {
    let high: UInt64
    let low: UInt64
    init(_ a: UnderlayAddress) { high = a.high; low = a.low }
}

