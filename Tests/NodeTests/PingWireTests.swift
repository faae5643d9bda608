import MeshCore
@testable import Node
import Testing

@Suite struct PingWireTests {
    let key = NodeIdentity.deterministic(runSeed: 1, index: 0).publicKey.bytes

    @Test func pongRoundTripsWithSample() throws {
        let entry = PingWire.SampleEntry(publicKey: key, address: UnderlayAddress(parsing: "[fd00::5]:7400")!)
        let m = PingWire.Message(kind: .pong, network: .defaultNetwork, senderKey: key, seq: 99, sample: [entry, entry])
        let bytes = PingWire.encode(m)
        #expect(bytes.count == PingWire.headerLength + 1 + 2 * PingWire.sampleEntryLength)
        #expect(try PingWire.decode(bytes).get() == m)
    }

    @Test func everyTruncationIsRefusedNotCrashed() {
        let entry = PingWire.SampleEntry(publicKey: key, address: UnderlayAddress(parsing: "[fd00::5]:7400")!)
        let bytes = PingWire.encode(.init(kind: .pong, network: .defaultNetwork, senderKey: key, seq: 1, sample: [entry]))
        for n in 0..<bytes.count {
            guard case .failure = PingWire.decode(Array(bytes.prefix(n))) else {
                Issue.record("prefix of \(n) bytes was accepted")
                return
            }
        }
        #expect(PingWire.decode(bytes + [0]) == .failure(.trailingBytes))
    }

    @Test func headerFieldsAreChecked() {
        var bytes = PingWire.encode(.init(kind: .ping, network: .defaultNetwork, senderKey: key, seq: 1))
        var b = bytes; b[0] = 0
        #expect(PingWire.decode(b) == .failure(.badMagic))
        b = bytes; b[2] = 9
        #expect(PingWire.decode(b) == .failure(.unsupportedVersion))
        b = bytes; b[3] = 77
        #expect(PingWire.decode(b) == .failure(.unknownType))
        bytes = [UInt8](repeating: 0x69, count: 2000)
        #expect(PingWire.decode(bytes) == .failure(.oversized))
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 400)
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if n > 4, rng.next() % 2 == 0 { bytes[0] = 0x69; bytes[1] = 0x46; bytes[2] = 1; bytes[3] = UInt8(1 + rng.next() % 2) }
            _ = PingWire.decode(bytes)
        }
    }
}

/// The in-place reader `NodeCore` uses for the pings and pongs nodes send.
@Suite struct PingWireBareTests {
    let key = NodeIdentity.deterministic(runSeed: 1, index: 0).publicKey.bytes
    let other = NodeIdentity.deterministic(runSeed: 1, index: 1).publicKey.bytes

    @Test func bareMessagesReadAsDecodeReadsThem() throws {
        for kind in [PingWire.Kind.ping, .pong] {
            var bytes = PingWire.bare(kind, network: .defaultNetwork, senderKey: key)
            PingWire.setSeq(0x0102_0304_0506_0708, in: &bytes)
            let full = try PingWire.decode(bytes).get()
            #expect(full.kind == kind && full.seq == 0x0102_0304_0506_0708 && full.sample.isEmpty && full.senderKey == key)
            let bare = PingWire.decodeBare(bytes, network: .defaultNetwork, senderKey: key)
            #expect(bare?.kind == kind && bare?.seq == full.seq)
        }
    }

    @Test func anythingElseIsLeftToDecode() {
        let ping = PingWire.encode(.init(kind: .ping, network: .defaultNetwork, senderKey: key, seq: 3))
        // Another sender key or network: the full decoder and the core's checks name the reason.
        #expect(PingWire.decodeBare(ping, network: .defaultNetwork, senderKey: other) == nil)
        let elsewhere = PingWire.encode(.init(kind: .ping, network: NetworkID(bytes: [UInt8](repeating: 9, count: NetworkID.length))!,
                                              senderKey: key, seq: 3))
        #expect(PingWire.decodeBare(elsewhere, network: .defaultNetwork, senderKey: key) == nil)
        // A pong with a sample, trailing bytes, every truncation, a bad header byte.
        let entry = PingWire.SampleEntry(publicKey: key, address: UnderlayAddress(parsing: "[fd00::5]:7400")!)
        let sampled = PingWire.encode(.init(kind: .pong, network: .defaultNetwork, senderKey: key, seq: 3, sample: [entry]))
        #expect(PingWire.decodeBare(sampled, network: .defaultNetwork, senderKey: key) == nil)
        #expect(PingWire.decodeBare(ping + [0], network: .defaultNetwork, senderKey: key) == nil)
        for n in 0..<ping.count { #expect(PingWire.decodeBare(Array(ping.prefix(n)), network: .defaultNetwork, senderKey: key) == nil) }
        for i in 0..<4 {
            var b = ping; b[i] ^= 0xff
            #expect(PingWire.decodeBare(b, network: .defaultNetwork, senderKey: key) == nil)
        }
    }
}
