import Ledger
import MeshCore

/// The ledger service's messages (prefix `iB`, Docs/ledger.md "Wire"). All integers big-endian;
/// `bytes x` = `u32 length ‖ x`.
///
/// | type | body |
/// | --- | --- |
/// | 1 header vote | `u64 height ‖ header_hash(32) ‖ signature(64)` (the sender is the voter) |
/// | 2 forward | one signed transaction (a replica hands it to a validator) |
/// | 3 sync request | `u64 from ‖ u64 cert_from` |
/// | 4 sync response | `u64 head ‖ u64 oldest ‖ u16 n ‖ n × (bytes header ‖ u32 m ‖ m × bytes payload) ‖ u16 k ‖ k × bytes header_certificate` |
enum LedgerWire {
    static let prefix: [UInt8] = [0x69, 0x42]

    enum Message: Equatable {
        case vote(height: UInt64, headerHash: [UInt8], signature: [UInt8])
        case forward([UInt8])
        case syncRequest(from: UInt64, certFrom: UInt64)
        case syncResponse(head: UInt64, oldest: UInt64, blocks: [WireBlock], certificates: [[UInt8]])
    }

    struct WireBlock: Equatable {
        var header: [UInt8]
        var payloads: [[UInt8]]
    }

    struct Malformed: Error {}

    static let maxBlocks = 4096
    static let maxPayloads = 4096
    static let maxCertificates = 4096

    static func encode(_ m: Message) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.raw(prefix)
        switch m {
        case let .vote(height, hash, sig):
            w.u8(1); w.u64(height); w.raw(hash); w.raw(sig)
        case let .forward(tx):
            w.u8(2); w.raw(tx)
        case let .syncRequest(from, certFrom):
            w.u8(3); w.u64(from); w.u64(certFrom)
        case let .syncResponse(head, oldest, blocks, certs):
            w.u8(4); w.u64(head); w.u64(oldest)
            w.u16(UInt16(blocks.count))
            for b in blocks {
                w.u32(UInt32(b.header.count)); w.raw(b.header)
                w.u32(UInt32(b.payloads.count))
                for p in b.payloads { w.u32(UInt32(p.count)); w.raw(p) }
            }
            w.u16(UInt16(certs.count))
            for c in certs { w.u32(UInt32(c.count)); w.raw(c) }
        }
        return w.bytes
    }

    /// Decodes one message (prefix included); every malformed input is `Malformed`, never a trap.
    static func decode(_ bytes: [UInt8]) throws(Malformed) -> Message {
        guard bytes.count >= 3, bytes[0] == prefix[0], bytes[1] == prefix[1] else { throw Malformed() }
        var r = ByteReader(bytes, offset: 2)
        do {
            let m: Message
            switch try r.u8() {
            case 1:
                m = .vote(height: try r.u64(), headerHash: try r.raw(32), signature: try r.raw(64))
            case 2:
                let tx = try r.raw(r.remaining)
                guard !tx.isEmpty else { throw Malformed() }
                m = .forward(tx)
            case 3:
                m = .syncRequest(from: try r.u64(), certFrom: try r.u64())
            case 4:
                let head = try r.u64(), oldest = try r.u64()
                let n = Int(try r.u16())
                guard n <= maxBlocks else { throw Malformed() }
                var blocks: [WireBlock] = []
                for _ in 0..<n {
                    let header = try r.raw(Int(try r.u32()))
                    let count = Int(try r.u32())
                    guard count <= maxPayloads else { throw Malformed() }
                    var payloads: [[UInt8]] = []
                    payloads.reserveCapacity(count)
                    for _ in 0..<count { payloads.append(try r.raw(Int(try r.u32()))) }
                    blocks.append(WireBlock(header: header, payloads: payloads))
                }
                let k = Int(try r.u16())
                guard k <= maxCertificates else { throw Malformed() }
                var certs: [[UInt8]] = []
                for _ in 0..<k { certs.append(try r.raw(Int(try r.u32()))) }
                m = .syncResponse(head: head, oldest: oldest, blocks: blocks, certificates: certs)
            default:
                throw Malformed()
            }
            guard r.remaining == 0 else { throw Malformed() }
            return m
        } catch {
            throw Malformed()
        }
    }
}
