import Consensus
import Ledger
import LedgerService
import MeshCore
import Node
import NodeService
import Testing

/// Every node of a `ServicePump` is a member of every other.
struct AllMembers: MemberDirectory {
    let peers: [NodeID: ProvenPeer]
    func peer(_ id: NodeID) -> ProvenPeer? { peers[id] }
    func isReachable(_ id: NodeID) -> Bool { peers[id] != nil }
    func isCulled(_ id: NodeID) -> Bool { false }
    func isNeighbour(_ id: NodeID) -> Bool { peers[id] != nil }
}

/// Ledger services driven by hand, without consensus rounds: the fixture's certified blocks are
/// handed to validators as their consensus service would (`ConsensusEvent.committed` commands),
/// messages are delivered in order, persists are durable at once (after which their `then` sends
/// leave), offloaded jobs run at once. Records what each node persisted and what it reported.
struct ServicePump {
    var nodes: [LedgerService]
    let proven: [ProvenPeer]
    var messages: [(from: Int, to: Int, bytes: [UInt8])] = []
    var disk: [[StorageOp]]
    var events: [[LedgerEvent]]
    var consensusSubmits: [[[UInt8]]]
    /// Per node: the kinds of outputs in order at top level ("persist", "send", …), to check ordering.
    var topLevel: [[String]]
    var now = Instant.zero
    /// Drop messages from this node to that node (a partition).
    var cut: Set<[Int]> = []
    /// When set, offloaded jobs wait here (node, job) until `runHeldJobs` instead of running at once.
    var heldJobs: [(Int, OffloadJob)]?

    init(fixture f: Fixture, validators: Int = 4, replicas: Int = 0) throws {
        var nodes: [LedgerService] = [], proven: [ProvenPeer] = []
        for i in 0..<(validators + replicas) {
            let id = try NodeIdentity(seed: TransactionSigner.testSeed(UInt64(i < validators ? i : 1000 + i)))
            let role: LedgerRole = i < validators ? .validator : .replica
            nodes.append(try LedgerService(config: LedgerServiceConfig(role: role, genesis: f.genesis), identity: id))
            proven.append(ProvenPeer(identity: id.peer, address: UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: UInt16(7000 + i))))
        }
        self.nodes = nodes
        self.proven = proven
        disk = Array(repeating: [], count: nodes.count)
        events = Array(repeating: [], count: nodes.count)
        consensusSubmits = Array(repeating: [], count: nodes.count)
        topLevel = Array(repeating: [], count: nodes.count)
        for i in nodes.indices { input(i, .start) }
    }

    var members: AllMembers { AllMembers(peers: Dictionary(uniqueKeysWithValues: proven.map { ($0.nodeID, $0) })) }

    func index(of id: NodeID) -> Int? { proven.firstIndex { $0.nodeID == id } }

    mutating func input(_ i: Int, _ input: ServiceInput<NodeCommand>) {
        let outs = nodes[i].handle(input, now: now, members: members)
        for o in outs { topLevel[i].append(Self.kind(o)) }
        carry(i, outs)
    }

    static func kind(_ o: ServiceOutput<NodeCommand, NodeEvent>) -> String {
        switch o {
        case .send: "send"
        case .sendReliable: "sendReliable"
        case .persist: "persist"
        case .offload: "offload"
        case .event: "event"
        case .command: "command"
        case .membership: "membership"
        }
    }

    mutating func carry(_ i: Int, _ outs: [ServiceOutput<NodeCommand, NodeEvent>]) {
        for o in outs {
            switch o {
            case let .send(.peer(p), bytes), let .sendReliable(p, bytes):
                if let j = index(of: p.nodeID), !cut.contains([i, j]) { messages.append((i, j, bytes)) }
            case let .send(.member(id), bytes):
                if let j = index(of: id), !cut.contains([i, j]) { messages.append((i, j, bytes)) }
            case .send(.address, _), .membership:
                break
            case let .offload(job):
                // Run at once, as the simulator does (`offloadsRunInline`), unless held.
                if heldJobs != nil { heldJobs!.append((i, job)) } else { input(i, .offloaded(job.ticket, job.work())) }
            case let .persist(batch, then):
                disk[i] += batch.ops
                carry(i, then)
                let outs = nodes[i].handle(.persisted(batch.ticket, .durable), now: now, members: members)
                carry(i, outs)
            case let .event(.service(_, payload)):
                if let e = payload.as(LedgerEvent.self) { events[i].append(e) }
            case .event:
                break
            case let .command(.service(id, payload)):
                if id == ConsensusService.protocolID, case let .submit(bytes)? = payload.as(ConsensusRequest.self) { consensusSubmits[i].append(bytes) }
            case .command:
                break
            }
        }
    }

    /// Runs the held jobs, first held first (and those they lead to), until none is left.
    mutating func runHeldJobs() {
        while let (i, job) = heldJobs?.first {
            heldJobs!.removeFirst()
            input(i, .offloaded(job.ticket, job.work()))
        }
    }

    /// Delivers queued messages until none is left.
    mutating func settle() {
        while !messages.isEmpty {
            let m = messages.removeFirst()
            input(m.to, .message(from: proven[m.from], bytes: m.bytes, reliable: m.bytes.count > 1184))
        }
    }

    /// Hands `block` to every validator as its consensus service would.
    mutating func commit(_ block: CommittedBlock, validators: Range<Int> = 0..<4) {
        for i in validators { input(i, .command(.service(LedgerService.protocolID, ServicePayload(ConsensusEvent.committed(block))))) }
    }

    /// Advances time by `step`, firing due timers, `rounds` times.
    mutating func run(for rounds: Int, step: Duration = .milliseconds(100)) {
        for _ in 0..<rounds {
            now = now + step
            for i in nodes.indices where nodes[i].deadline.map({ now >= $0 }) ?? false { input(i, .timer) }
            settle()
        }
    }

    func tables(_ i: Int, _ table: String) -> [[UInt8]] {
        disk[i].compactMap { if case let .put(t, key, _) = $0, t == table { return key }; return nil }
    }
}

@Suite struct ServiceTests {
    @Test func validatorsCertifyEveryHeaderOnceItsRowsAreDurable() throws {
        var f = Fixture()
        var pump = try ServicePump(fixture: f)
        var blocks: [CommittedBlock] = []
        for h in 1...5 {
            let block = f.chain.next([f.alice.invoke(f, "kv", "put", "k\(h)", "v\(h)")])
            blocks.append(block)
            pump.commit(block)
            pump.settle()
        }
        for i in 0..<4 {
            let s = pump.nodes[i]
            #expect(s.ledger.height == 5)
            #expect(s.durableHeight == 5)
            #expect(s.certifiedHeight == 5, "validator \(i) certified up to \(s.certifiedHeight)")
            #expect(pump.tables(i, LedgerRows.blocks).count == 5)
            #expect(pump.tables(i, LedgerRows.headerCertificates).count == 5)
            // Persist before send: no vote leaves at top level, only in the `then` of the block's persist.
            #expect(!pump.topLevel[i].contains("send"))
            let applied = pump.events[i].compactMap { if case let .applied(b) = $0 { return b.height }; return nil }
            #expect(applied == [1, 2, 3, 4, 5])
        }
        #expect(Set((0..<4).map { pump.nodes[$0].ledger.headHash }).count == 1)
        // Each stored certificate checks against the node's header.
        let s = pump.nodes[0]
        let cert = try #require(s.headCertificate)
        try cert.check(headerHash: s.ledger.headHash, height: 5, genesis: f.genesis)
        // A commit replayed after a restart (the core emits again from 1) changes nothing.
        pump.commit(blocks[0], validators: 0..<1)
        #expect(pump.nodes[0].counters.commitsAlreadyApplied == 1)
        #expect(pump.nodes[0].ledger.headHash == s.ledger.headHash)
    }

    @Test func aReplicaFetchesVerifiesAndCertifiesTheChain() throws {
        var f = Fixture()
        var pump = try ServicePump(fixture: f, replicas: 1)
        for h in 1...7 {
            pump.commit(f.chain.next([f.alice.invoke(f, "kv", "put", "k\(h)", "v\(h)"), f.bob.invoke(f, "kv", "put", "b\(h)", "w")]))
            pump.settle()
        }
        pump.run(for: 10)
        let replica = pump.nodes[4], validator = pump.nodes[0]
        #expect(replica.ledger.height == 7)
        #expect(replica.ledger.headHash == validator.ledger.headHash)
        #expect(replica.ledger.state.root == validator.ledger.state.root)
        #expect(replica.certifiedHeight == 7)
        #expect(replica.counters.headerMismatches == 0)
        #expect(pump.tables(4, LedgerRows.headerCertificates).count == 7)
        // And it keeps up while the validators go on.
        pump.commit(f.chain.next([f.alice.invoke(f, "kv", "put", "late", "x")]))
        pump.settle()
        pump.run(for: 5)
        #expect(pump.nodes[4].ledger.height == 8)
    }

    @Test func aReplicaRefusesABlockWhosePayloadsAreNotTheCertifiedOnes() throws {
        var f = Fixture()
        var pump = try ServicePump(fixture: f, validators: 4, replicas: 1)
        let good = f.chain.next([f.alice.invoke(f, "kv", "put", "k", "v")])
        pump.commit(good)
        pump.settle()
        // A lying peer serves block 1's genuine header with another payload under it.
        let forged = try #require(pump.nodes[0].ledger.head)
        var w = ByteWriter()
        w.raw([0x69, 0x42, 4]); w.u64(1); w.u64(1); w.u16(1)
        w.u32(UInt32(forged.encoded.count)); w.raw(forged.encoded); w.u32(1); w.u32(3); w.raw([1, 2, 3]); w.u16(0)
        pump.input(4, .message(from: pump.proven[1], bytes: w.bytes, reliable: true))
        #expect(pump.nodes[4].ledger.height == 0)
        #expect(pump.nodes[4].counters.badBlocks == 1)
        // Garbage is a counted drop.
        pump.input(4, .message(from: pump.proven[1], bytes: [0x69, 0x42, 9, 9], reliable: false))
        #expect(pump.nodes[4].counters.drops["malformed"] == 1)
        // The honest validators still bring it up to date.
        pump.run(for: 5)
        #expect(pump.nodes[4].ledger.headHash == pump.nodes[0].ledger.headHash)
    }

    @Test func aSubmissionIsAnsweredOnceItsBlockIsDurableAndBadOnesAtOnce() throws {
        var f = Fixture()
        var pump = try ServicePump(fixture: f, replicas: 1)
        let tx = f.alice.invoke(f, "kv", "put", "key", "value")
        // Through a replica: forwarded to a validator, which hands it to consensus.
        pump.input(4, .command(.service(LedgerService.protocolID, ServicePayload(LedgerRequest.submitSigned(request: 7, transaction: tx)))))
        pump.settle()
        #expect(pump.consensusSubmits[0...3].contains { $0 == [tx] })
        let id = try Transaction.decode(tx).id
        #expect(pump.events[4].contains(.accepted(request: 7, txID: id)))
        pump.commit(f.chain.next([tx]))
        pump.settle()
        pump.run(for: 5)
        #expect(pump.events[4].contains { if case let .committed(7, txID, 1, .ok) = $0 { return txID == id }; return false })
        // The same bytes again: the nonce is spent, refused at once with the reason.
        pump.input(4, .command(.service(LedgerService.protocolID, ServicePayload(LedgerRequest.submitSigned(request: 8, transaction: tx)))))
        #expect(pump.events[4].contains { if case let .refused(8, _, reason) = $0 { return reason.contains("replayed_nonce") }; return false })
        // A bad signature.
        var bad = f.bob.invoke(f, "kv", "put", "x", "y")
        bad[bad.count - 1] ^= 1
        pump.input(0, .command(.service(LedgerService.protocolID, ServicePayload(LedgerRequest.submitSigned(request: 9, transaction: bad)))))
        #expect(pump.events[0].contains { if case let .refused(9, _, reason) = $0 { return reason.contains("bad_signature") }; return false })
        // Signed by the node itself; never committed: timed out.
        pump.input(0, .command(.service(LedgerService.protocolID, ServicePayload(LedgerRequest.submit(request: 10, chaincode: "kv", function: "put", args: [[1], [2]])))))
        pump.run(for: 110)
        #expect(pump.events[0].contains { if case .timedOut(10, _) = $0 { return true }; return false })
    }

    /// A block that deploys or invokes a contract is executed on the thread pool (an `.offload`
    /// job over a copy of the ledger); the blocks after it wait for it, so heights stay in order,
    /// and every validator and the replica reach the same roots.
    @Test func blocksThatRunContractsExecuteOffTheLoopInHeightOrder() throws {
        var f = Fixture()
        var pump = try ServicePump(fixture: f, replicas: 1)
        pump.heldJobs = []
        let blocks = [
            f.chain.next([f.alice.deploy(f, "counter", ContractExamples.module("counter"))]),
            f.chain.next([f.alice.invoke(f, "kv", "put", "k", "v")]),
            f.chain.next([f.bob.invoke(f, "counter", "bump", "x"), f.alice.invoke(f, "counter", "bump", "x"), f.alice.invoke(f, "kv", "put", "j", "w")]),
        ]
        for b in blocks { pump.commit(b) }
        // Only signature checks so far; nothing is applied while they are out.
        #expect((0..<4).allSatisfy { pump.nodes[$0].ledger.height == 0 })
        // The checks come back: block 1 (a deploy) leaves for the pool; block 2 waits behind it.
        let checks = pump.heldJobs!.count
        for _ in 0..<checks { let (i, job) = pump.heldJobs!.removeFirst(); pump.input(i, .offloaded(job.ticket, job.work())) }
        #expect((0..<4).allSatisfy { pump.nodes[$0].ledger.height == 0 && pump.nodes[$0].counters.blocksOffLoop == 1 })
        #expect(pump.heldJobs!.count == 4)
        pump.runHeldJobs()
        pump.settle()
        for i in 0..<4 {
            let s = pump.nodes[i]
            #expect(s.ledger.height == 3)
            #expect(s.counters.blocksOffLoop == 2, "validator \(i): blocks 1 and 3 run contracts, block 2 does not")
            #expect(s.certifiedHeight == 3)
            let applied = pump.events[i].compactMap { if case let .applied(b) = $0 { return b.height }; return nil }
            #expect(applied == [1, 2, 3])
        }
        #expect(Set((0..<4).map { pump.nodes[$0].ledger.state.root }).count == 1)
        #expect(pump.nodes[0].ledger.query(chaincode: "counter", function: "value", args: [Fixture.b("x")]).result.contractOutput == [2, 0, 0, 0, 0, 0, 0, 0])
        // The replica syncs the three blocks and runs the contract blocks off its loop too.
        pump.heldJobs = nil
        pump.run(for: 10)
        let replica = pump.nodes[4]
        #expect(replica.ledger.height == 3)
        #expect(replica.counters.blocksOffLoop == 2)
        #expect(replica.ledger.state.root == pump.nodes[0].ledger.state.root)
        #expect(replica.counters.headerMismatches == 0)
        #expect(replica.certifiedHeight == 3)
    }

    @Test func aValidatorKeyOutsideTheSetIsRefusedAtStart() throws {
        let f = Fixture()
        let stranger = try NodeIdentity(seed: TransactionSigner.testSeed(999))
        #expect(throws: ConsensusServiceError.self) {
            _ = try LedgerService(config: LedgerServiceConfig(role: .validator, genesis: f.genesis), identity: stranger)
        }
    }
}
