import MeshCore
import MeterService
import Meters
@testable import Node
import Testing

/// The meter service in real node cores (real sessions, the node's router), three nodes on the
/// test pump: 0 a collector, 1 a relay, 2 a meter.
@Suite struct MeterServiceTests {
    static let op = NodeIdentity.deterministic(runSeed: 77, index: 1)
    static let epoch: UInt64 = 1_780_000_200

    static func config(_ role: MeterRole) -> MeterService.Config {
        var c = MeterService.Config(role: role)
        c.intervalSeconds = 60
        c.anchorGrace = .seconds(5)
        c.unixAtZero = epoch
        c.operatorKeys = [op.publicKey]
        return c
    }

    static func service(_ p: Pump, _ i: Int, _ role: MeterRole) -> MeterService {
        MeterService(identity: NodeIdentity.deterministic(runSeed: 5, index: i), config: config(role), rng: SeededGenerator(seed: UInt64(40 + i)))
    }

    static let roles: [MeterRole] = [.collector, .relay, .meter]

    func mesh() throws -> Pump {
        var p = Pump(count: 3)
        for i in 0..<3 { try p.cores[i].add(Self.service(p, i, Self.roles[i])) }
        for i in 1..<3 { p.feed(i, .command(.addSeed(p.addresses[0]))) }
        for i in 0..<3 { p.feed(i, .start) }
        p.run(for: .seconds(10))
        return p
    }

    func meterEvents(_ p: Pump, at node: Int) -> [MeterEvent] {
        p.events.compactMap { if $0.0 == node, case let .service(MeterService.protocolID, payload) = $0.1 { return payload.as(MeterEvent.self) } else { return nil } }
    }

    func record(_ p: inout Pump, _ node: Int, start: UInt64, wh: Int64) {
        p.feed(node, .command(.service(MeterService.protocolID, ServicePayload(MeterCommand.record(
            meter: nil, intervalStart: start, durationSeconds: 60,
            registers: [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: wh)])))))
    }

    func meterService(_ p: Pump, _ i: Int) -> MeterService { p.cores[i].service(MeterService.self)! }

    @Test func readsReachTheCollectorAreAnchoredAndEachProofVerifies() throws {
        var p = try mesh()
        #expect(meterService(p, 2).parent != nil && meterService(p, 1).parent != nil)
        for k in 0..<5 {
            record(&p, 2, start: Self.epoch + UInt64(k) * 60, wh: 100 + Int64(k))
            p.run(for: .seconds(2))
        }
        p.run(for: .seconds(400))
        let collector = meterService(p, 0)
        let accepted = meterEvents(p, at: 0).compactMap { if case let .accepted(r) = $0 { return r } else { return nil } }
        #expect(accepted.map(\.sequence) == [0, 1, 2, 3, 4])
        #expect(meterService(p, 2).heldCount == 0 && meterService(p, 1).heldCount == 0)
        #expect(collector.anchors.count >= 1)
        for r in accepted {
            let proof = try #require(collector.proof(of: r.hash))
            #expect(proof.verify(anchors: collector.anchorBook, meter: r.meter) == .verified)
        }
        // Custody rows were written at the meter and deleted once the next hop had the reads.
        let custodyPuts = p.disk.filter { $0.0 == 2 }.flatMap { $0.1.ops }.filter { if case .put(MeterService.Table.custody, _, _) = $0 { true } else { false } }
        let custodyDeletes = p.disk.filter { $0.0 == 2 }.flatMap { $0.1.ops }.filter { if case .delete(MeterService.Table.custody, _) = $0 { true } else { false } }
        #expect(custodyPuts.count == 5 && custodyDeletes.count == 5)
    }

    @Test func readsWaitInCustodyWhileNoCollectorIsReachableAndArriveAfter() throws {
        var p = try mesh()
        p.down.insert(0)
        p.run(for: .seconds(20))
        for k in 0..<3 { record(&p, 2, start: Self.epoch + UInt64(k) * 60, wh: 7); p.run(for: .seconds(1)) }
        p.run(for: .seconds(30))
        // The collector is gone: the reads are held by the meter or the relay, none lost.
        #expect(meterService(p, 2).heldCount + meterService(p, 1).heldCount == 3)
        p.bringUp(0)
        p.run(for: .seconds(200))
        let accepted = meterEvents(p, at: 0).compactMap { if case let .accepted(r) = $0 { return r.sequence } else { return nil } }
        #expect(accepted.sorted() == [0, 1, 2])
        #expect(meterService(p, 2).heldCount + meterService(p, 1).heldCount == 0)
    }

    @Test func anOperatorCommandReachesTheMeterOnceAndItsAckComesBack() throws {
        var p = try mesh()
        record(&p, 2, start: Self.epoch, wh: 1)
        p.run(for: .seconds(10))
        let meterKey = NodeIdentity.deterministic(runSeed: 5, index: 2).publicKey
        let cmd = try OperatorCommand(meter: meterKey, operator: Self.op, nonce: 1, issuedAt: Self.epoch, action: "hvac-off 15m")
        func send(_ c: OperatorCommand) {
            p.feed(0, .command(.service(MeterService.protocolID, ServicePayload(MeterCommand.operatorCommand(c)))))
            p.run(for: .seconds(5))
        }
        send(cmd)
        send(cmd)   // replayed
        let stranger = NodeIdentity.deterministic(runSeed: 77, index: 2)
        send(try OperatorCommand(meter: meterKey, operator: stranger, nonce: 5, issuedAt: Self.epoch, action: "open"))
        let handled = meterEvents(p, at: 2).compactMap { if case let .commandHandled(c, s) = $0 { return (c.nonce, s) } else { return nil } }
        #expect(handled.map { $0.1 } == [.done, .replayed, .untrustedOperator])
        let acks = meterEvents(p, at: 0).compactMap { if case let .commandAcknowledged(a) = $0 { return a } else { return nil } }
        #expect(acks.map(\.status) == [.done, .replayed, .untrustedOperator])
        #expect(acks.allSatisfy { $0.meter == meterKey })
        #expect(acks.first?.commandHash == cmd.hash)
        // The nonce was persisted before the ack left.
        let nonceRows = p.disk.filter { $0.0 == 2 }.flatMap { $0.1.ops }.filter { if case .put(MeterService.Table.nonces, _, _) = $0 { true } else { false } }
        #expect(nonceRows.count == 1)
    }

    @Test func aRestartedMeterKeepsItsChainAndItsCustody() throws {
        var p = try mesh()
        p.down.insert(1)
        p.down.insert(0)
        record(&p, 2, start: Self.epoch, wh: 1)
        record(&p, 2, start: Self.epoch + 60, wh: 2)
        #expect(meterService(p, 2).heldCount == 2)
        // The meter's process restarts: the rows it persisted come back.
        var rows: [String: [[UInt8]: [UInt8]]] = [:]
        for (i, batch) in p.disk where i == 2 {
            for op in batch.ops {
                switch op {
                case let .put(t, k, v): rows[t, default: [:]][k] = v
                case let .delete(t, k): rows[t]?[k] = nil
                case let .replace(t, rs): rows[t] = Dictionary(uniqueKeysWithValues: rs.map { ($0.key, $0.value) })
                }
            }
        }
        p.restart(2)
        try p.cores[2].add(Self.service(p, 2, .meter))
        let stored = rows.flatMap { t, kv in kv.map { StoredRow(table: t, key: $0.key, value: $0.value) } }
        p.feed(2, .restored(stored))
        p.feed(2, .command(.addSeed(p.addresses[0])))
        p.feed(2, .start)
        #expect(meterService(p, 2).heldCount == 2)
        record(&p, 2, start: Self.epoch + 120, wh: 3)
        p.bringUp(0)
        p.bringUp(1)
        p.run(for: .seconds(200))
        let accepted = meterEvents(p, at: 0).compactMap { if case let .accepted(r) = $0 { return r.sequence } else { return nil } }
        #expect(accepted.sorted() == [0, 1, 2])
        #expect(meterService(p, 0).missing().isEmpty)
    }
}
