import Runtime
import Testing

@Suite struct TransferWireTests {
    @Test func messagesRoundTrip() throws {
        let hash = [UInt8](repeating: 9, count: 32)
        #expect(try TransferWire.decode(TransferWire.offer(id: 7, size: 1 << 40, hash: hash, name: "meter-reads.csv")).get()
                == .offer(id: 7, size: 1 << 40, hash: hash, name: "meter-reads.csv"))
        let chunk = TransferWire.chunk(id: 7, offset: 1 << 20, count: 3) { $0.copyBytes(from: [1, 2, 3]) }
        #expect(try TransferWire.decode(chunk).get() == .chunk(id: 7, offset: 1 << 20, data: [1, 2, 3][...]))
        #expect(try TransferWire.decode(TransferWire.result(id: 7, status: .hashMismatch, detail: "x")).get()
                == .result(id: 7, status: .hashMismatch, detail: "x"))
    }

    @Test func badMessagesAreRefusedWithAReason() {
        let hash = [UInt8](repeating: 9, count: 32)
        let offer = TransferWire.offer(id: 1, size: 5, hash: hash, name: "a")
        #expect(TransferWire.decode(Array(offer.dropLast())) == .failure(.truncated))
        #expect(TransferWire.decode(offer + [0]) == .failure(.trailingBytes))
        #expect(TransferWire.decode([0x69, 0x46, 0x54, 9]) == .failure(.unknownKind))
        #expect(TransferWire.decode([1, 2, 3, 4]) == .failure(.badMagic))
        for name in ["../etc", "a/b", ".hidden", "..", "", "tab\there", String(repeating: "x", count: 256)] {
            #expect(!TransferWire.isSafeName(name), "\(name)")
        }
        // A name that would escape the inbox is refused by the decoder too.
        var evil = TransferWire.offer(id: 1, size: 5, hash: hash, name: "abcde")
        evil.replaceSubrange((evil.count - 5)..., with: Array("../ab".utf8))
        #expect(TransferWire.decode(evil) == .failure(.badName))
    }
}
