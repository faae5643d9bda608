// libFuzzer target for the channel frame decoder and the endpoint behind it.
// Built by Fuzz/run-channels.sh together with the Channels sources (one module) and the
// Sodium-free part of MeshCore.
import MeshCore

/// Checks that a decoded frame re-encodes to the same bytes (the encoding is canonical), then feeds
/// the input, cut into length-prefixed frames, to an endpoint: nothing may trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func channelFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let config = ChannelConfig()
    if case .success(let packet) = ChannelWire.decode(bytes, maxFrame: config.maxFrame, maxMessage: config.maxMessage) {
        let again = ChannelWire.encode(packet)
        if again != bytes { fatalError("non-canonical frame accepted: \(bytes.count) bytes") }
    }
    var small = ChannelConfig()
    small.maxMessage = 4096
    small.perPeerReceiveBuffer = 8192
    small.perPeerSendBuffer = 8192
    small.nodeReceiveBuffer = 16384
    small.nodeSendBuffer = 16384
    small.initialWindow = 4096
    var endpoint = ChannelEndpoint<Int>(config: small, rng: SeededGenerator(seed: 1))
    var offset = 0
    var t: Int64 = 0
    var frames = 0
    while offset + 3 <= bytes.count && frames < 64 {
        let peer = Int(bytes[offset] & 3)
        let length = Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
        offset += 3
        let end = min(bytes.count, offset + length)
        let frame = Array(bytes[offset..<end])
        offset = end
        t += 7_000_000
        _ = endpoint.receive(frame: frame, from: peer, now: Instant(nanoseconds: t))
        if frames % 4 == 3 { _ = endpoint.send([1, 2, 3], stream: UInt16(frames), to: peer, now: Instant(nanoseconds: t)) }
        frames += 1
    }
    _ = endpoint.tick(now: Instant(nanoseconds: t + 60_000_000_000))
    if endpoint.bufferedReceiveBytes > UInt64(small.nodeReceiveBuffer) { fatalError("receive buffer over its bound") }
    return 0
}
