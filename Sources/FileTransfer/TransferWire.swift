import MeshCore

/// The framing of a file sent over a channel (Docs/channels.md, "File transfer"): an offer
/// naming the file, its size and its BLAKE2b-256 hash, then the bytes in order as chunk
/// messages of at most `chunkSize`, and the receiver's verdict back on the same stream.
/// Every message starts with the magic "iFT", so other users of a stream can tell them apart.
public enum TransferWire {
    public static let magic: [UInt8] = [0x69, 0x46, 0x54] // "iFT"
    /// Bytes of file per chunk message: well under the channel's 16 MiB maximum, so several
    /// chunks are in flight at once and one lost frame does not stall a whole 16 MiB.
    public static let chunkSize = 1 << 20
    public static let hashLength = 32
    public static let maxName = 255
    /// magic, kind, transfer id, offset.
    public static let chunkHeader = 3 + 1 + 8 + 8

    public enum Kind: UInt8 { case offer = 1, chunk = 2, result = 3 }

    public enum Status: UInt8, Sendable {
        case ok = 0
        case hashMismatch = 1
        case writeFailed = 2
        case refused = 3
        case protocolError = 4

        public var text: String {
            switch self {
            case .ok: return "ok"
            case .hashMismatch: return "hash_mismatch"
            case .writeFailed: return "write_failed"
            case .refused: return "refused"
            case .protocolError: return "protocol_error"
            }
        }
    }

    public enum Message: Equatable {
        case offer(id: UInt64, size: UInt64, hash: [UInt8], name: String)
        case chunk(id: UInt64, offset: UInt64, data: ArraySlice<UInt8>)
        case result(id: UInt64, status: Status, detail: String)
    }

    public static func offer(id: UInt64, size: UInt64, hash: [UInt8], name: String) -> [UInt8] {
        let n = Array(name.utf8)
        var w = ByteWriter(capacity: 4 + 8 + 8 + hashLength + 1 + n.count)
        w.raw(magic); w.u8(Kind.offer.rawValue); w.u64(id); w.u64(size); w.raw(hash); w.u8(UInt8(n.count)); w.raw(n)
        return w.bytes
    }

    /// Builds a chunk message around `count` bytes that `fill` writes into place (no second copy).
    public static func chunk(id: UInt64, offset: UInt64, count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) -> [UInt8] {
        var w = ByteWriter(capacity: chunkHeader)
        w.raw(magic); w.u8(Kind.chunk.rawValue); w.u64(id); w.u64(offset)
        let header = w.bytes
        return [UInt8](unsafeUninitializedCapacity: chunkHeader + count) { buf, initialized in
            for i in 0..<chunkHeader { buf[i] = header[i] }
            fill(UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buf)[chunkHeader...]))
            initialized = chunkHeader + count
        }
    }

    public static func result(id: UInt64, status: Status, detail: String) -> [UInt8] {
        let d = Array(detail.utf8.prefix(1000))
        var w = ByteWriter(capacity: 4 + 8 + 1 + 2 + d.count)
        w.raw(magic); w.u8(Kind.result.rawValue); w.u64(id); w.u8(status.rawValue); w.u16(UInt16(d.count)); w.raw(d)
        return w.bytes
    }

    public static func isTransfer(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == magic[0] && bytes[1] == magic[1] && bytes[2] == magic[2]
    }

    /// A file name a receiver will create: one path component, UTF-8, no control characters.
    public static func isSafeName(_ name: String) -> Bool {
        let b = Array(name.utf8)
        return !b.isEmpty && b.count <= maxName && name != "." && name != ".." && !name.hasPrefix(".")
            && !b.contains(0x2f) && !b.contains(where: { $0 < 0x20 || $0 == 0x7f })
    }

    /// Decodes one message, or names what is wrong with it.
    public static func decode(_ bytes: [UInt8]) -> Result<Message, TransferWireError> {
        guard isTransfer(bytes) else { return .failure(.badMagic) }
        guard let kind = Kind(rawValue: bytes[3]) else { return .failure(.unknownKind) }
        var r = ByteReader(bytes, offset: 4)
        do {
            let id = try r.u64()
            switch kind {
            case .offer:
                let size = try r.u64()
                let hash = try r.raw(hashLength)
                let n = Int(try r.u8())
                let nameBytes = try r.raw(n)
                guard r.remaining == 0 else { return .failure(.trailingBytes) }
                guard let name = String(validating: nameBytes, as: UTF8.self), isSafeName(name) else { return .failure(.badName) }
                return .success(.offer(id: id, size: size, hash: hash, name: name))
            case .chunk:
                let offset = try r.u64()
                return .success(.chunk(id: id, offset: offset, data: bytes[chunkHeader...]))
            case .result:
                guard let status = Status(rawValue: try r.u8()) else { return .failure(.unknownKind) }
                let n = Int(try r.u16())
                let detail = try r.raw(n)
                guard r.remaining == 0 else { return .failure(.trailingBytes) }
                return .success(.result(id: id, status: status, detail: String(decoding: detail, as: UTF8.self)))
            }
        } catch {
            return .failure(.truncated)
        }
    }
}

public enum TransferWireError: String, Error, Sendable {
    case badMagic = "bad_magic"
    case unknownKind = "unknown_kind"
    case truncated
    case trailingBytes = "trailing_bytes"
    case badName = "bad_name"
}
