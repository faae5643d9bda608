import MeshCore
import Sodium

/// A COSEM object identifier (IEC 62056-61 OBIS code): six value groups A.B.C.D.E.F, e.g.
/// 1.0.1.8.0.255 for imported active energy (total).
public struct ObisCode: Hashable, Sendable, CustomStringConvertible {
    public let groups: [UInt8]   // always 6

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8) {
        groups = [a, b, c, d, e, f]
    }

    /// Parses "A.B.C.D.E.F" (each 0...255); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var g: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0 >= "0" && $0 <= "9" }), let v = UInt8(p) else { return nil }
            g.append(v)
        }
        groups = g
    }

    init(unchecked groups: [UInt8]) { self.groups = groups }

    public var description: String { groups.map(String.init).joined(separator: ".") }

    /// Imported active energy, total (Wh): what a residential meter's load profile carries.
    public static let importedActiveEnergy = ObisCode(1, 0, 1, 8, 0, 255)
    /// Exported active energy, total (Wh).
    public static let exportedActiveEnergy = ObisCode(1, 0, 2, 8, 0, 255)
    /// Instantaneous active power import (W).
    public static let activePowerImport = ObisCode(1, 0, 1, 7, 0, 255)
    /// Voltage, phase L1 (V).
    public static let voltageL1 = ObisCode(1, 0, 32, 7, 0, 255)
}

/// Units as DLMS/COSEM enumerates them (IEC 62056-62, the `unit` of a scaler_unit); the codes
/// named here are the ones the CLI spells out, any other code is carried as it is.
public enum MeterUnit {
    public static let watt: UInt8 = 27
    public static let voltAmpere: UInt8 = 28
    public static let var_: UInt8 = 29
    public static let wattHour: UInt8 = 30
    public static let voltAmpereHour: UInt8 = 31
    public static let varHour: UInt8 = 32
    public static let ampere: UInt8 = 33
    public static let volt: UInt8 = 35
    public static let hertz: UInt8 = 44

    static let names: [(UInt8, String)] = [
        (watt, "W"), (voltAmpere, "VA"), (var_, "var"), (wattHour, "Wh"), (voltAmpereHour, "VAh"),
        (varHour, "varh"), (ampere, "A"), (volt, "V"), (hertz, "Hz"),
    ]

    /// "Wh" for 30; "unit-N" for a code without a name here.
    public static func name(_ code: UInt8) -> String { names.first { $0.0 == code }?.1 ?? "unit-\(code)" }
    /// 30 for "Wh"; a decimal code is taken as it is.
    public static func code(_ name: String) -> UInt8? { names.first { $0.1 == name }?.0 ?? UInt8(name) }
}

/// One register of a read: value × 10^scaler in `unit` (DLMS scaler_unit), as a COSEM register
/// reports it.
public struct RegisterValue: Hashable, Sendable {
    public var obis: ObisCode
    public var unit: UInt8
    public var scaler: Int8
    public var value: Int64

    public init(obis: ObisCode, unit: UInt8, scaler: Int8 = 0, value: Int64) {
        self.obis = obis
        self.unit = unit
        self.scaler = scaler
        self.value = value
    }
}

/// An interval read: what a meter measured over [intervalStart, intervalStart + duration),
/// numbered and chained to the meter's previous read, signed by the meter's identity key.
/// One canonical encoding (Docs/meters.md, "Read format"); its hash is the read's identity in
/// chains, custody, Merkle trees and proofs.
public struct MeterRead: Hashable, Sendable {
    public static let version: UInt8 = 1
    /// Signed and hashed with this label in front, so a read's bytes never pass for another
    /// structure's.
    public static let domain = Array("iotaf/meter/read/v1".utf8)
    public static let maxRegisters = 32
    public static let hashLength = 32
    /// The `previous` of a meter's first read.
    public static let noPrevious = [UInt8](repeating: 0, count: 32)
    /// Body without registers, plus the signature.
    static let fixedLength = 1 + 32 + 8 + 8 + 4 + 32 + 1 + 64
    static let registerLength = 6 + 1 + 1 + 8
    public static let maxEncodedLength = fixedLength + maxRegisters * registerLength

    /// The meter's Ed25519 identity key (canonical).
    public let meter: PublicKey
    public let sequence: UInt64
    /// Unix seconds.
    public let intervalStart: UInt64
    public let durationSeconds: UInt32
    /// The hash of the meter's read `sequence - 1`; 32 zero bytes for sequence 0.
    public let previous: [UInt8]
    public let registers: [RegisterValue]
    public let signature: [UInt8]
    /// BLAKE2b-256 of the domain and the body: what the signature covers.
    public let hash: [UInt8]

    /// Signs a new read with the meter's identity.
    public init(meter: NodeIdentity, sequence: UInt64, intervalStart: UInt64, durationSeconds: UInt32,
                previous: [UInt8], registers: [RegisterValue]) throws(MeterError) {
        try Self.checkFields(durationSeconds: durationSeconds, previous: previous, registers: registers, sequence: sequence)
        let body = Self.body(meter: meter.publicKey, sequence: sequence, intervalStart: intervalStart,
                             durationSeconds: durationSeconds, previous: previous, registers: registers)
        let message = Self.domain + body
        self.meter = meter.publicKey
        self.sequence = sequence
        self.intervalStart = intervalStart
        self.durationSeconds = durationSeconds
        self.previous = previous
        self.registers = registers
        signature = meter.sign(message)
        hash = Blake2b.hash(message, outputLength: Self.hashLength)
    }

    private init(meter: PublicKey, sequence: UInt64, intervalStart: UInt64, durationSeconds: UInt32, previous: [UInt8],
                 registers: [RegisterValue], signature: [UInt8], hash: [UInt8]) {
        self.meter = meter
        self.sequence = sequence
        self.intervalStart = intervalStart
        self.durationSeconds = durationSeconds
        self.previous = previous
        self.registers = registers
        self.signature = signature
        self.hash = hash
    }

    /// The read after this one: next sequence number, chained to this read.
    public func next(by meter: NodeIdentity, intervalStart: UInt64, durationSeconds: UInt32,
                     registers: [RegisterValue]) throws(MeterError) -> MeterRead {
        try MeterRead(meter: meter, sequence: sequence + 1, intervalStart: intervalStart, durationSeconds: durationSeconds,
                      previous: hash, registers: registers)
    }

    private static func checkFields(durationSeconds: UInt32, previous: [UInt8], registers: [RegisterValue], sequence: UInt64) throws(MeterError) {
        guard durationSeconds > 0 else { throw .zeroDuration }
        guard (1...maxRegisters).contains(registers.count) else { throw .badRegisterCount }
        guard previous.count == hashLength else { throw .truncated }
        // The first read has no predecessor, and only the first.
        guard (sequence == 0) == (previous == noPrevious) else { throw .badPrevious }
    }

    static func body(meter: PublicKey, sequence: UInt64, intervalStart: UInt64, durationSeconds: UInt32,
                     previous: [UInt8], registers: [RegisterValue]) -> [UInt8] {
        var w = ByteWriter(capacity: fixedLength + registers.count * registerLength)
        w.u8(version)
        w.raw(meter.bytes)
        w.u64(sequence)
        w.u64(intervalStart)
        w.u32(durationSeconds)
        w.raw(previous)
        w.u8(UInt8(registers.count))
        for r in registers {
            w.raw(r.obis.groups)
            w.u8(r.unit)
            w.u8(UInt8(bitPattern: r.scaler))
            w.u64(UInt64(bitPattern: r.value))
        }
        return w.bytes
    }

    /// The canonical bytes: body then signature.
    public func encode() -> [UInt8] {
        Self.body(meter: meter, sequence: sequence, intervalStart: intervalStart, durationSeconds: durationSeconds,
                  previous: previous, registers: registers) + signature
    }

    public var encodedLength: Int { Self.fixedLength + registers.count * Self.registerLength }

    /// Decodes one read and checks its signature. Refuses (with the reason) anything that is not
    /// exactly one well-formed read signed by the canonical key it names.
    public static func decode(_ bytes: [UInt8]) throws(MeterError) -> MeterRead {
        var r = ByteReader(bytes)
        let read = try decode(from: &r)
        guard r.remaining == 0 else { throw .trailingBytes }
        return read
    }

    /// Decodes one read from a reader (a read inside a larger message) and checks its signature.
    public static func decode(from r: inout ByteReader) throws(MeterError) -> MeterRead {
        do {
            let v = try r.u8()
            guard v == version else { throw MeterError.badVersion }
            guard let meter = PublicKey(try r.raw(32)) else { throw MeterError.nonCanonicalKey }
            let sequence = try r.u64()
            let intervalStart = try r.u64()
            let duration = try r.u32()
            let previous = try r.raw(32)
            let n = Int(try r.u8())
            var registers: [RegisterValue] = []
            registers.reserveCapacity(n)
            guard (1...maxRegisters).contains(n) else { throw MeterError.badRegisterCount }
            for _ in 0..<n {
                let obis = ObisCode(unchecked: try r.raw(6))
                let unit = try r.u8()
                let scaler = Int8(bitPattern: try r.u8())
                let value = Int64(bitPattern: try r.u64())
                registers.append(RegisterValue(obis: obis, unit: unit, scaler: scaler, value: value))
            }
            try checkFields(durationSeconds: duration, previous: previous, registers: registers, sequence: sequence)
            let signature = try r.raw(64)
            // The fields decoded are the fields encoded (every value has one spelling), so the
            // body rebuilt from them is the bytes just read.
            let message = domain + body(meter: meter, sequence: sequence, intervalStart: intervalStart,
                                        durationSeconds: duration, previous: previous, registers: registers)
            guard IdentityKey.verify(signature, message: message, publicKey: meter.bytes) else { throw MeterError.badSignature }
            return MeterRead(meter: meter, sequence: sequence, intervalStart: intervalStart, durationSeconds: duration,
                             previous: previous, registers: registers, signature: signature,
                             hash: Blake2b.hash(message, outputLength: hashLength))
        } catch let e as MeterError {
            throw e
        } catch {
            throw .truncated
        }
    }

    /// The meter's node id (what relays and the collector index reads by).
    public var meterID: NodeID { NodeID(publicKey: meter) }
}

/// Why bytes are not a read, a proof, a command or a meter message. The raw value is the counted
/// drop reason (`iotaf meter status` → `drops`).
public enum MeterError: String, Error, Sendable, CustomStringConvertible {
    case truncated
    case trailingBytes = "trailing_bytes"
    case badVersion = "bad_version"
    case badType = "bad_type"
    case nonCanonicalKey = "non_canonical_key"
    case badRegisterCount = "bad_register_count"
    case zeroDuration = "zero_duration"
    /// Sequence 0 with a predecessor, or a later read without one.
    case badPrevious = "bad_previous"
    case badSignature = "bad_signature"
    case oversized
    case badProof = "bad_proof"
    case badAction = "bad_action"

    public var description: String {
        switch self {
        case .truncated: "shorter than its fields"
        case .trailingBytes: "bytes after the last field"
        case .badVersion: "unknown version"
        case .badType: "unknown message type"
        case .nonCanonicalKey: "the key is not a canonical Ed25519 identity key"
        case .badRegisterCount: "a read carries 1 to \(MeterRead.maxRegisters) registers"
        case .zeroDuration: "an interval of zero seconds"
        case .badPrevious: "sequence 0 has no previous read (32 zero bytes), every later read names one"
        case .badSignature: "the signature does not verify against the key it names"
        case .oversized: "larger than the message limit"
        case .badProof: "a Merkle path longer than 64 steps or an index outside the tree"
        case .badAction: "an action is 1 to 64 bytes of UTF-8"
        }
    }
}
