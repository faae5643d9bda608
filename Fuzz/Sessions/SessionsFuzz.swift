// libFuzzer harness for the session layer's datagram decoder and receive path.
// Built by Fuzz/run-sessions.sh with -sanitize=fuzzer,address.
//
// Input layout: byte 0 selects a mode, the rest is the datagram.
// - bit 0 set: if the datagram parses as a handshake, mac1 is recomputed with the network key, so
//   the fuzzer reaches Noise processing instead of dying at the pre-filter every time.
// - bit 1 set: the datagram goes to a manager that has an established session and a pending
//   handshake (so index lookups, replay windows and cookie replies are exercised).
// - bit 2 set: the datagram is a genuine packet captured at start-up (chosen by the next byte)
//   with the rest of the input XORed over it, so mutations land past the index lookup and mac1.
// Properties checked: decode never traps; a decoded packet re-encodes to the same bytes; the
// manager never traps, counts every datagram it does not use, and its tables stay bounded.
import MeshCore
import Sessions

let networkKey = [UInt8](repeating: 7, count: 32)
let secrets = try! NetworkSecrets(networkKey: networkKey)
let peerAddress = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 4000)
let localAddress = UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 4001)

struct FuzzState {
    var fresh: SessionManager
    var busy: SessionManager
    var now = Instant.zero
    var runs = 0
    var genuine: [[UInt8]] = []

    init() {
        let a = NodeIdentity.deterministic(runSeed: 1, index: 0)
        let b = NodeIdentity.deterministic(runSeed: 1, index: 1)
        let c = NodeIdentity.deterministic(runSeed: 1, index: 2)
        fresh = try! SessionManager(identity: a, networkKey: networkKey, rng: SeededGenerator(seed: 1))
        busy = try! SessionManager(identity: a, networkKey: networkKey, rng: SeededGenerator(seed: 2))
        var peer = try! SessionManager(identity: b, networkKey: networkKey, rng: SeededGenerator(seed: 3))
        // Establish busy <-> peer over IK, then leave a pending handshake towards c.
        var pending = busy.send([1], to: peerAddress, peer: b.peer, now: now)
        while !pending.isEmpty {
            var next: [SessionOutput] = []
            for o in pending {
                guard case let .send(to, bytes) = o else { continue }
                genuine.append(bytes)
                if to == peerAddress {
                    next += peer.receive(bytes, from: localAddress, now: now)
                } else if to == localAddress {
                    next += busy.receive(bytes, from: peerAddress, now: now)
                }
            }
            pending = next
        }
        for i in 0..<4 {
            for o in peer.send([UInt8](repeating: UInt8(i), count: 40 * i + 1), to: localAddress, peer: a.peer, now: now) {
                if case let .send(_, bytes) = o { genuine.append(bytes) }
            }
        }
        _ = busy.send([2], to: UnderlayAddress(ip: UnderlayAddress.loopbackV6, port: 4002), peer: c.peer, now: now)
    }
}

nonisolated(unsafe) var state = FuzzState()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    var bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if mode & 4 != 0, !bytes.isEmpty, !state.genuine.isEmpty {
        let base = state.genuine[Int(bytes[0]) % state.genuine.count]
        var mixed = base
        for (i, b) in bytes.dropFirst().enumerated() {
            if i < mixed.count { mixed[i] ^= b } else { mixed.append(b) }
        }
        bytes = mixed
    }

    switch SessionWire.decode(bytes) {
    case .failure:
        break
    case let .success(packet):
        precondition(packet.encoded() == bytes, "decode/encode round trip changed the bytes")
        if mode & 1 != 0, case var .handshake(h) = packet {
            h.mac1 = SessionWire.mac(key: secrets.mac1Key, h.macCovered)
            bytes = h.encoded()
        }
    }

    state.now = state.now + .milliseconds(1)
    state.runs += 1
    if mode & 2 != 0 {
        let before = state.busy.counters
        _ = state.busy.receive(bytes, from: peerAddress, now: state.now)
        let after = state.busy.counters
        precondition(after.datagramsIn == before.datagramsIn + 1)
    } else {
        let before = state.fresh.counters.totalDrops
        let outputs = state.fresh.receive(bytes, from: peerAddress, now: state.now)
        // A manager with no sessions can only answer handshakes; anything else must be a drop.
        if outputs.allSatisfy({ if case .send = $0 { return false } else { return true } }) {
            precondition(state.fresh.counters.totalDrops == before + 1 || state.fresh.tableSizes.pendingResponders > 0,
                         "a datagram vanished without a counted drop")
        }
    }
    if state.runs % 1000 == 0 {
        _ = state.fresh.tick(now: state.now)
        _ = state.busy.tick(now: state.now)
    }
    let sizes = state.fresh.tableSizes
    precondition(sizes.pendingResponders <= 256 && sizes.recentEphemerals <= 4096 && sizes.peers <= 1024)
    return 0
}
