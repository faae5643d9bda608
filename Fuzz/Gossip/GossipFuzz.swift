// libFuzzer harness for the gossip message decoder and the gossip core's receive path.
// Built by Fuzz/run-gossip.sh with -sanitize=fuzzer,address.
//
// Input layout: byte 0 selects a mode, the rest is the message.
// - bit 0 set: decode as a reliable-channel message (limit 256 KiB) instead of a datagram.
// - bit 1 set: the message is a genuine one (chosen by the next byte) with the rest of the input
//   XORed over it, so mutations land inside well-formed structures.
// - bit 2 set: the bytes are handed to a running GossipCore that has neighbours, suspects,
//   an open exchange and a pending probe, as if they came from one of its neighbours.
// With GOSSIP_FUZZ_DECODER=NAME (Fuzz/run-gossip.sh --each runs one per message type, and
// `beacon`) the target
// is that one decoder: the input (after the mode byte) is the body behind NAME's header, or with
// bit 1 set is XORed over the genuine NAME message; the transport is NAME's own.
// Every input (after the mode byte) is also decoded as a `nearest` LAN beacon (Beacon.decode and
// the runtime's verdict Beacon.accept); a decoded beacon must re-encode to the same bytes.
// Properties checked: decode never traps; a decoded message re-encodes to the same bytes; the core
// never traps, counts a drop for every message it cannot decode, and never emits a datagram
// larger than GossipWire.maxDatagram (a precondition inside the core).
import Glibc
import MeshCore
import Gossip

let network = NetworkID(bytes: [UInt8](repeating: 3, count: 16))!
func entry(_ i: Int) -> PeerEntry {
    PeerEntry(peer: NodeIdentity.deterministic(runSeed: 11, index: i).peer,
              address: UnderlayAddress(high: 0xfe80 << 48, low: 1, port: UInt16(1000 + i)))
}
let admin = NodeIdentity.deterministic(runSeed: 11, index: 99)

struct FuzzState {
    var core: GossipCore
    var now = Instant.zero
    var genuine: [[UInt8]] = []
    /// Message names (the enum case), in `genuine`'s order.
    var names: [String] = []
    /// The one message type under test (GOSSIP_FUZZ_DECODER), as an index into `genuine`.
    var fixed: Int?
    let neighbours: [PeerEntry]
    let beaconTag = Beacon.networkTag(network)
    /// A private mesh's beacon key and replay guard (`PrivateBeacon`).
    let privateBeaconKey = PrivateBeacon.key(network: network, networkKey: [UInt8](repeating: 3, count: 32))
    var beaconReplay = BeaconReplayGuard()

    init() {
        neighbours = (1...6).map(entry)
        var config = GossipConfig(network: network)
        config.adminKeys = [admin.publicKey]
        config.seeds = [neighbours[0].address]
        core = GossipCore(me: entry(0), config: config, rng: SeededGenerator(seed: 1))
        var outs = core.handle(.start, now: now)
        for (i, n) in neighbours.enumerated() {
            outs += core.handle(.received(from: n, bytes: GossipWire.encode(.neighbor(priority: .high))), now: now)
            outs += core.handle(.received(from: n, bytes: GossipWire.encode(.gossip(updates: [.alive(n, incarnation: UInt32(i), attributeVersion: 1)]))), now: now)
        }
        let cull = CullRecord.sign(subject: entry(9).nodeID, issuedAt: 1, network: network, admin: admin)
        let messages: [GossipMessage] = [
            .ping(seq: 1, updates: [.alive(entry(7), incarnation: 1, attributeVersion: 2), .suspect(entry(2).peer, incarnation: 1, accuser: 5), .cull(cull)]),
            .ack(seq: 1, updates: [.dead(entry(3).peer, incarnation: 9), .left(entry(4).peer, incarnation: 1)]),
            .pingRequest(seq: 2, target: entry(5)), .nack(seq: 1), .join(incarnation: 0),
            .joinReply(sample: [entry(8)]), .forwardJoin(ttl: 3, joiner: entry(8)), .neighbor(priority: .nearer),
            .neighborReply(accepted: true, sample: []), .disconnect,
            .shuffle(id: 1, ttl: 2, origin: entry(8), sample: [entry(10)]), .shuffleReply(id: 1, sample: [entry(11)]),
            .query(QueryMessage(id: 1, origin: entry(8), hops: 1, hopLimit: 4, mode: .master, query: AttributeQuery(key: "type", value: "m", match: .prefix))),
            .queryAnswer(id: 1, hops: 1, pairs: [AttributePair(key: "type", value: "meter")]),
            .digest(exchange: 1, buckets: Array(repeating: 1, count: 64), cullCount: 0, cullHash: 0),
            .digestReply(exchange: 1, differing: 3, cullsDiffer: true, busy: false), .attributesRequest(version: 0),
            .gossip(updates: [.alive(entry(13), incarnation: 4, attributeVersion: 1), .left(entry(6).peer, incarnation: 2)]),
            .delta(exchange: 1, records: [MemberRecord(entry: entry(12), state: .alive, incarnation: 1, attributeVersion: 1)], culls: [cull]),
            .attributes(version: 3, try! Attributes([("type", "meter")])),
        ]
        genuine = messages.map(GossipWire.encode)
        names = messages.map { m in String(String(describing: m).prefix { $0 != "(" }) }
        genuine.append(Beacon(networkTag: Beacon.networkTag(network), port: 7400, nonce: 42).encoded())
        names.append("beacon")
        genuine.append(PrivateBeacon.seal(port: 7400, nonce: 42, sentAtMs: 1_000, salt: [1, 2, 3, 4], key: privateBeaconKey))
        names.append("privateBeacon")
        if let wanted = getenv("GOSSIP_FUZZ_DECODER").map({ String(cString: $0) }) {
            guard let i = names.firstIndex(of: wanted) else {
                fatalError("GOSSIP_FUZZ_DECODER=\(wanted): no such message; known: \(names.joined(separator: " "))")
            }
            fixed = i
        }
        for _ in 0..<20 {
            now = now + .milliseconds(500)
            outs += core.handle(.timer, now: now)
        }
        _ = outs
    }
}

nonisolated(unsafe) var state = FuzzState()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    var bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var reliable = mode & 1 != 0
    if let fixed = state.fixed {
        let genuine = state.genuine[fixed]
        let isBeacon = state.names[fixed] == "beacon" || state.names[fixed] == "privateBeacon"
        reliable = !isBeacon && genuine[3] >= 64
        if mode & 2 != 0 || isBeacon && bytes.isEmpty {
            var mixed = genuine
            for (i, b) in bytes.enumerated() {
                if i < mixed.count { mixed[i] ^= b } else { mixed.append(b) }
            }
            bytes = mixed
        } else if !isBeacon {
            bytes = Array(genuine.prefix(GossipWire.headerLength)) + bytes
        }
    } else if mode & 2 != 0, !bytes.isEmpty {
        var mixed = state.genuine[Int(bytes[0]) % (state.genuine.count - 1)] // not the beacon
        for (i, b) in bytes.dropFirst().enumerated() {
            if i < mixed.count { mixed[i] ^= b } else { mixed.append(b) }
        }
        bytes = mixed
    }
    // The `nearest` LAN beacon (Sources/Gossip/Beacon.swift): whatever decodes re-encodes to the
    // same bytes, and the runtime's verdict never traps.
    if case let .success(b) = Beacon.decode(bytes) {
        precondition(b.encoded() == bytes, "beacon decode/encode round trip changed the bytes")
    }
    _ = Beacon.accept(bytes, networkTag: state.beaconTag, ownNonce: 1)
    // A private mesh's beacon: what opens re-seals to the same bytes, and the verdict (with its
    // replay guard) never traps.
    if case let .success(o) = PrivateBeacon.open(bytes, key: state.privateBeaconKey) {
        precondition(PrivateBeacon.seal(port: o.port, nonce: o.nonce, sentAtMs: o.sentAtMs, salt: o.salt, key: state.privateBeaconKey) == bytes,
                     "private beacon open/seal round trip changed the bytes")
    }
    _ = PrivateBeacon.accept(bytes, key: state.privateBeaconKey, ownNonce: 1, nowMs: 1_000, replay: &state.beaconReplay)
    let decoded = GossipWire.decode(bytes, transport: reliable ? .reliable : .datagram)
    if case let .success(m) = decoded {
        precondition(GossipWire.encode(m) == bytes, "decode/encode round trip changed the bytes")
    }
    if mode & 4 != 0 {
        let from = state.neighbours[Int(mode >> 4) % state.neighbours.count]
        let before = state.core.counters.totalDrops
        state.now = state.now + .milliseconds(30)
        _ = state.core.handle(reliable ? .reliableReceived(from: from, bytes: bytes) : .received(from: from, bytes: bytes), now: state.now)
        if case .failure = decoded {
            precondition(state.core.counters.totalDrops == before + 1, "an undecodable message was not counted")
        }
        if state.core.counters.messagesIn % 64 == 0 {
            _ = state.core.handle(.timer, now: state.now)
        }
        precondition(state.core.activeView.count <= state.core.config.activeViewSize)
        precondition(state.core.queuedUpdates <= state.core.config.maxQueuedUpdates)
    }
    return 0
}
