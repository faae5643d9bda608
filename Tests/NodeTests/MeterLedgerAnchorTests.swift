import Ledger
import LedgerService
import MeshCore
import MeterService
import Meters
import Node
import NodeService
import Testing

/// A collector with the ledger anchorer, driven by hand (sans-IO): the anchor goes to the ledger
/// service only once its row is durable, a timed-out submission is made again, a commit confirms
/// it (persisted), and a restart submits again exactly the anchors not confirmed.
@Suite struct MeterLedgerAnchorTests {
    static let epoch: UInt64 = 1_780_000_200
    typealias Output = ServiceOutput<NodeCommand, NodeEvent>

    /// The driver's part: every persist is durable at once (its rows kept in `disk`, its `then`
    /// carried out); what is not a persist is returned.
    struct Driver {
        var disk: [String: [[UInt8]: [UInt8]]] = [:]

        mutating func carry(_ outs: [Output], _ s: inout MeterService, now: Instant) -> [Output] {
            var rest: [Output] = []
            for o in outs {
                guard case let .persist(batch, then) = o else { rest.append(o); continue }
                for op in batch.ops {
                    switch op {
                    case let .put(t, k, v): disk[t, default: [:]][k] = v
                    case let .delete(t, k): disk[t]?[k] = nil
                    case let .replace(t, rows): disk[t] = Dictionary(rows.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
                    }
                }
                rest += carry(then, &s, now: now)
                rest += carry(s.handle(.persisted(batch.ticket, .durable), now: now, members: NoMembers()), &s, now: now)
            }
            return rest
        }

        var rows: [StoredRow] { disk.flatMap { t, kv in kv.map { StoredRow(table: t, key: $0.key, value: $0.value) } } }
    }

    static func collector() -> MeterService {
        var c = MeterService.Config(role: .collector)
        c.intervalSeconds = 60
        c.anchorGrace = .seconds(5)
        c.unixAtZero = epoch
        return MeterService(identity: NodeIdentity.deterministic(runSeed: 9, index: 0), config: c, anchorer: LedgerAnchorer(), rng: SeededGenerator(seed: 3))
    }

    /// The anchor submissions among `outs`: (request, the invoke's arguments).
    static func submissions(_ outs: [Output]) -> [(UInt64, [[UInt8]])] {
        outs.compactMap { o in
            guard case let .command(.service(id, payload)) = o, id == LedgerService.protocolID,
                  case let .submitFor(replyTo, request, chaincode, function, args)? = payload.as(LedgerRequest.self),
                  replyTo == MeterService.protocolID, chaincode == "anchor", function == "put" else { return nil }
            return (request, args)
        }
    }

    static func answer(_ e: LedgerEvent) -> ServiceInput<NodeCommand> { .command(.service(MeterService.protocolID, ServicePayload(e))) }

    @Test func anAnchorIsSubmittedOnceDurableRetriedAfterATimeoutAndConfirmedByItsBlock() throws {
        var s = Self.collector()
        var d = Driver()
        let none = NoMembers()
        _ = d.carry(s.handle(.start, now: .zero, members: none), &s, now: .zero)
        let meter = NodeIdentity.deterministic(runSeed: 9, index: 1)
        let read = try MeterRead(meter: meter, sequence: 0, intervalStart: Self.epoch - 60, durationSeconds: 60, previous: MeterRead.noPrevious,
                                 registers: [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: 5)])
        _ = d.carry(s.handle(.command(.service(MeterService.protocolID, ServicePayload(MeterCommand.submit([read])))), now: .zero + .seconds(1), members: none), &s, now: .zero + .seconds(1))

        // The interval (the minute before the epoch) closes 5 s in: the anchor row, then (durable) the submission.
        let t1 = try #require(s.deadline)
        let outs = d.carry(s.handle(.timer, now: t1, members: none), &s, now: t1)
        #expect(s.anchors.count == 1 && d.disk[MeterService.Table.anchors]?.count == 1)
        let anchor = s.anchors[0]
        let first = Self.submissions(outs)
        #expect(first.count == 1)
        guard first.count == 1 else { return }
        #expect(first[0].1 == [Array(anchor.objectID.utf8), Array(Hex.encode(anchor.digest).utf8), Array("meter-interval".utf8), Array(String(Self.epoch - 60).utf8)])
        #expect(s.anchorsUnconfirmedCount == 1 && s.anchorsOnLedgerCount == 0)

        // Accepted, then not committed in time: submitted again 5 s later, under a new request.
        #expect(d.carry(s.handle(Self.answer(.accepted(request: first[0].0, txID: [1])), now: t1, members: none), &s, now: t1).isEmpty)
        _ = d.carry(s.handle(Self.answer(.timedOut(request: first[0].0, txID: [1])), now: t1 + .seconds(10), members: none), &s, now: t1 + .seconds(10))
        #expect(s.counters.anchorRetries == 1)
        let t2 = try #require(s.deadline)
        #expect(t2 == t1 + .seconds(15))
        let second = Self.submissions(d.carry(s.handle(.timer, now: t2, members: none), &s, now: t2))
        #expect(second.count == 1)
        guard second.count == 1 else { return }
        #expect(second[0].0 != first[0].0 && second[0].1 == first[0].1)

        // A late answer to the first request changes nothing; the block of the second confirms it.
        _ = d.carry(s.handle(Self.answer(.committed(request: first[0].0, txID: [1], height: 3, result: .ok([]))), now: t2, members: none), &s, now: t2)
        #expect(s.anchorsOnLedgerCount == 0)
        let done = d.carry(s.handle(Self.answer(.committed(request: second[0].0, txID: [2], height: 7, result: .ok([]))), now: t2, members: none), &s, now: t2)
        #expect(done.contains { if case let .event(.service(_, p)) = $0, case .anchorOnLedger(anchor, 7)? = p.as(MeterEvent.self) { true } else { false } })
        #expect(s.anchorsOnLedgerCount == 1 && s.anchorsUnconfirmedCount == 0 && s.ledgerHeight(of: anchor.objectID) == 7)
        #expect(d.disk[MeterService.Table.onLedger]?[Array(anchor.objectID.utf8)] != nil)

        // A restart on this disk: confirmed, nothing to submit. Without the confirmation row, the
        // anchor is submitted again at the first timer, and `already_exists` confirms it.
        var again = Self.collector()
        _ = again.handle(.restored(d.rows), now: .zero, members: none)
        #expect(again.anchorsOnLedgerCount == 1 && again.anchorsUnconfirmedCount == 0 && again.anchors == [anchor])
        d.disk[MeterService.Table.onLedger] = nil
        var lost = Self.collector()
        _ = lost.handle(.restored(d.rows), now: .zero, members: none)
        _ = d.carry(lost.handle(.start, now: .zero, members: none), &lost, now: .zero)
        #expect(lost.anchorsUnconfirmedCount == 1)
        let t3 = try #require(lost.deadline)
        let third = Self.submissions(d.carry(lost.handle(.timer, now: t3, members: none), &lost, now: t3))
        #expect(third.count == 1)
        guard third.count == 1 else { return }
        let exists = Refusal(RefusalReason.alreadyExists, "object already anchored")
        _ = d.carry(lost.handle(Self.answer(LedgerEvent.committed(request: third[0].0, txID: [3], height: 9, result: TxResult.refused(exists))), now: t3, members: none), &lost, now: t3)
        #expect(lost.anchorsOnLedgerCount == 1 && lost.ledgerHeight(of: anchor.objectID) == 9)
    }

    @Test func aRefusedAnchorIsRetriedAndAnUnrelatedCommandIsCountedNotTaken() throws {
        var s = Self.collector()
        let a = LedgerAnchorer()
        #expect(a.answer(ServicePayload(LedgerEvent.refused(request: 4, txID: nil, reason: "x"))) == .retry(request: 4, reason: "x"))
        #expect(a.answer(ServicePayload(LedgerEvent.certified(height: 1, headerHash: []))) == .noted)
        #expect(a.answer(ServicePayload(MeterCommand.submit([]))) == nil)
        _ = s.handle(.command(.service(MeterService.protocolID, ServicePayload(LedgerRequest.submit(request: 1, chaincode: "kv", function: "put", args: [])))),
                     now: .zero, members: NoMembers())
        #expect(s.counters.drops["unknown_command"] == 1)
    }
}
