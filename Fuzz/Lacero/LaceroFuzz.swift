// libFuzzer harness for every Lacero decoder: the relay/fetch wire (LaceroMessage.decode), the
// metadata object (LaceroMetadata.decode), sealed metadata (LaceroMetadata.open) and fragment
// verification with reassembly (Reassembler). Built by Fuzz/run-lacero.sh with
// -sanitize=fuzzer,address.
//
// Input layout: byte 0 selects the decoder (mod 4); bit 7 set: the rest is XORed over a genuine
// input of that decoder, so mutations land inside well-formed structures.
// Properties checked: no decoder traps; whatever decodes re-encodes to the same bytes (one
// canonical encoding); a fragment whose bytes differ from the genuine one is never accepted.
import Glibc
import Lacero
import MeshCore
import Sodium

let requester = try! Ed25519.keyPair(seed: [UInt8](repeating: 3, count: 32))
let parameters = try! LaceroParameters(k: 2, n: 4, segmentSize: 64)
let object = (0..<150).map { UInt8(truncatingIfNeeded: $0 &* 7) }
let shredded = try! Shredder.shred(object, parameters: parameters, key: [UInt8](repeating: 1, count: 32),
                                   deleteSecret: [UInt8](repeating: 2, count: 32),
                                   available: [NodeID(publicKey: requester.publicKey)])
let id = shredded.metadata.fragmentIDs[0]
let genuine: [[UInt8]] = [
    LaceroMessage.store(.init(id: id, register: 0, threshold: 2, hops: 6, token: [UInt8](repeating: 4, count: 16),
                              segmentTag: [UInt8](repeating: 5, count: 16), deleteCheck: [UInt8](repeating: 6, count: 32),
                              leaseSeconds: 600, visited: [7, 8], bytes: Array(shredded.segments[0].fragment(0)))).encode(),
    shredded.metadata.encode(),
    try! shredded.metadata.seal(to: requester.publicKey),
    Array(shredded.segments[1].fragment(3)),
]

/// Writes the genuine inputs as seeds once, when LACERO_FUZZ_WRITE_SEEDS names a directory.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    guard let dir = getenv("LACERO_FUZZ_WRITE_SEEDS") else { return 0 }
    for (i, g) in genuine.enumerated() {
        let path = String(cString: dir) + "/seed-\(i)"
        guard let f = fopen(path, "wb") else { continue }
        let bytes = [UInt8(i) | 0x80] + [UInt8](repeating: 0, count: g.count)
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = Int(data[0] & 0x7f) % genuine.count
    var input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if data[0] & 0x80 != 0 {
        var base = genuine[mode]
        for i in 0..<min(base.count, input.count) { base[i] ^= input[i] }
        if input.count > base.count { base += input[base.count...] }
        input = base
    }
    switch mode {
    case 0:
        if let m = try? LaceroMessage.decode(input) { precondition(m.encode() == input, "message encoding is not canonical") }
    case 1:
        if let m = try? LaceroMetadata.decode(input) { precondition(m.encode() == input, "metadata encoding is not canonical") }
    case 2:
        if let m = try? LaceroMetadata.open(sealed: input, ed25519SecretKey: requester.secretKey) {
            precondition(m.encode().count + 48 == input.count)
        }
    default:
        var r = try! Reassembler(metadata: shredded.metadata)
        let accepted = r.verify(segment: 1, share: 3, bytes: input[...])
        precondition(!accepted || input == genuine[3], "a fragment other than the genuine one was accepted")
    }
    return 0
}
