// libFuzzer harness for every meter decoder: the interval read (MeterRead.decode), the proof
// (MeterProof.decode, then verify), the "iM" messages (MeterMessage.decode) and the operator
// command (OperatorCommand.decode). Built by Fuzz/run-meters.sh with -sanitize=fuzzer,address.
//
// Input layout: byte 0 selects the decoder (mod 4); bit 7 set: the rest is XORed over a genuine
// input of that decoder, so mutations land inside well-formed structures.
// Properties checked: no decoder traps; whatever decodes re-encodes to the same bytes (one
// canonical encoding); a read or command whose bytes differ from the genuine one never decodes
// (its signature covers every byte); a changed proof never verifies.
import Glibc
import Meters
import MeshCore

let meter = try! NodeIdentity(seed: [UInt8](repeating: 7, count: 32))
let op = NodeIdentity.deterministic(runSeed: 1, index: 2)
let reg = [RegisterValue(obis: .importedActiveEnergy, unit: MeterUnit.wattHour, value: 1234)]
let r0 = try! MeterRead(meter: meter, sequence: 0, intervalStart: 1_780_000_200, durationSeconds: 900, previous: MeterRead.noPrevious, registers: reg)
let r1 = try! r0.next(by: meter, intervalStart: 1_780_001_100, durationSeconds: 900, registers: reg)
let tree = MeterMerkleTree(readHashes: [r0.hash, r1.hash])
let anchor = MeterAnchor(collector: op.publicKey, intervalStart: 1_780_000_200, batch: 0, count: 2, root: tree.root)
let proof = MeterProof(read: r1, inclusion: MeterInclusion(anchor: anchor, index: UInt32(tree.index(of: r1.hash)!), path: tree.path(tree.index(of: r1.hash)!)),
                       predecessor: MeterInclusion(anchor: anchor, index: UInt32(tree.index(of: r0.hash)!), path: tree.path(tree.index(of: r0.hash)!)))
let book = AnchorBook([anchor])
let command = try! OperatorCommand(meter: meter.publicKey, operator: op, nonce: 3, issuedAt: 1_780_000_000, action: "hvac-off")
let genuine: [[UInt8]] = [
    r1.encode(),
    proof.encode(),
    MeterMessage.reads(batch: 5, [r0, r1]).encode(),
    command.encode(),
]

/// Writes the genuine inputs as seeds once, when METERS_FUZZ_WRITE_SEEDS names a directory.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    guard let dir = getenv("METERS_FUZZ_WRITE_SEEDS") else { return 0 }
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
        if let r = try? MeterRead.decode(input) {
            precondition(r.encode() == input, "read encoding is not canonical")
            precondition(input == genuine[0], "a changed read decoded")
        }
    case 1:
        if let p = try? MeterProof.decode(input) {
            precondition(p.encode() == input, "proof encoding is not canonical")
            if input != genuine[1] {
                if p.verify(anchors: book) == .verified { preconditionFailure("a changed proof verified") }
            }
        }
    case 2:
        if let m = try? MeterMessage.decode(input) { precondition(m.encode() == input, "message encoding is not canonical") }
    default:
        if let c = try? OperatorCommand.decode(input) {
            precondition(c.encode() == input, "command encoding is not canonical")
            precondition(input == genuine[3], "a changed command decoded")
        }
    }
    return 0
}
