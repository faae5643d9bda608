import MeshCore
import Sodium

/// A command to a device behind a meter (an HVAC interruption, a relay opening), signed by an
/// operator key, addressed to one meter and numbered: a meter acts only on a valid signature by a
/// key it trusts and a nonce above the last it acted on from that key (replay protection that
/// survives restarts: the last nonce is persisted before the acknowledgement leaves).
public struct OperatorCommand: Hashable, Sendable {
    public static let version: UInt8 = 1
    public static let domain = Array("iotaf/meter/command/v1".utf8)
    public static let maxActionBytes = 64

    public let meter: PublicKey
    public let operatorKey: PublicKey
    public let nonce: UInt64
    /// Unix seconds when the operator signed it.
    public let issuedAt: UInt64
    public let action: String
    public let signature: [UInt8]

    public init(meter: PublicKey, operator op: NodeIdentity, nonce: UInt64, issuedAt: UInt64, action: String) throws(MeterError) {
        let a = Array(action.utf8)
        guard (1...Self.maxActionBytes).contains(a.count) else { throw .badAction }
        self.meter = meter
        operatorKey = op.publicKey
        self.nonce = nonce
        self.issuedAt = issuedAt
        self.action = action
        signature = op.sign(Self.domain + Self.body(meter: meter, operatorKey: op.publicKey, nonce: nonce, issuedAt: issuedAt, action: a))
    }

    private init(meter: PublicKey, operatorKey: PublicKey, nonce: UInt64, issuedAt: UInt64, action: String, signature: [UInt8]) {
        self.meter = meter
        self.operatorKey = operatorKey
        self.nonce = nonce
        self.issuedAt = issuedAt
        self.action = action
        self.signature = signature
    }

    static func body(meter: PublicKey, operatorKey: PublicKey, nonce: UInt64, issuedAt: UInt64, action: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: 100 + action.count)
        w.u8(version)
        w.raw(meter.bytes)
        w.raw(operatorKey.bytes)
        w.u64(nonce)
        w.u64(issuedAt)
        w.u8(UInt8(action.count))
        w.raw(action)
        return w.bytes
    }

    /// version · meter key (32) · operator key (32) · nonce (u64) · issued at (u64) · action
    /// length (u8, 1-64) · action (UTF-8) · Ed25519 signature (64) over the domain and the rest.
    public func encode() -> [UInt8] {
        Self.body(meter: meter, operatorKey: operatorKey, nonce: nonce, issuedAt: issuedAt, action: Array(action.utf8)) + signature
    }

    /// BLAKE2b-256 of the encoding: what the acknowledgement names.
    public var hash: [UInt8] { Blake2b.hash(encode(), outputLength: 32) }

    /// Decodes a command and checks its signature (by the key it names; whether that key is an
    /// operator the meter trusts is the meter's question).
    public static func decode(from r: inout ByteReader) throws(MeterError) -> OperatorCommand {
        do {
            guard try r.u8() == version else { throw MeterError.badVersion }
            guard let meter = PublicKey(try r.raw(32)), let op = PublicKey(try r.raw(32)) else { throw MeterError.nonCanonicalKey }
            let nonce = try r.u64()
            let issuedAt = try r.u64()
            let n = Int(try r.u8())
            guard (1...maxActionBytes).contains(n) else { throw MeterError.badAction }
            let a = try r.raw(n)
            guard let action = String(validating: a, as: UTF8.self) else { throw MeterError.badAction }
            let signature = try r.raw(64)
            guard IdentityKey.verify(signature, message: domain + body(meter: meter, operatorKey: op, nonce: nonce, issuedAt: issuedAt, action: a),
                                     publicKey: op.bytes) else { throw MeterError.badSignature }
            return OperatorCommand(meter: meter, operatorKey: op, nonce: nonce, issuedAt: issuedAt, action: action, signature: signature)
        } catch let e as MeterError {
            throw e
        } catch {
            throw .truncated
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(MeterError) -> OperatorCommand {
        var r = ByteReader(bytes)
        let c = try decode(from: &r)
        guard r.remaining == 0 else { throw .trailingBytes }
        return c
    }
}

/// The meter's answer to a command, signed by the meter, travelling back the way the command came.
public struct CommandAck: Hashable, Sendable {
    public static let domain = Array("iotaf/meter/command-ack/v1".utf8)

    public enum Status: UInt8, Sendable {
        case done = 0
        /// The nonce was not above the last one acted on from that operator.
        case replayed = 1
        /// The operator key is not one this meter trusts.
        case untrustedOperator = 2
        /// Addressed to another meter.
        case wrongMeter = 3
    }

    public let meter: PublicKey
    public let commandHash: [UInt8]
    public let status: Status
    public let signature: [UInt8]

    public init(meter: NodeIdentity, commandHash: [UInt8], status: Status) {
        self.meter = meter.publicKey
        self.commandHash = commandHash
        self.status = status
        signature = meter.sign(Self.domain + Self.body(meter.publicKey, commandHash, status))
    }

    private init(meter: PublicKey, commandHash: [UInt8], status: Status, signature: [UInt8]) {
        self.meter = meter
        self.commandHash = commandHash
        self.status = status
        self.signature = signature
    }

    static func body(_ meter: PublicKey, _ hash: [UInt8], _ status: Status) -> [UInt8] { meter.bytes + hash + [status.rawValue] }

    /// meter key (32) · command hash (32) · status (u8) · signature (64).
    public func encode() -> [UInt8] { Self.body(meter, commandHash, status) + signature }
    static let encodedLength = 32 + 32 + 1 + 64

    public static func decode(from r: inout ByteReader) throws(MeterError) -> CommandAck {
        do {
            guard let meter = PublicKey(try r.raw(32)) else { throw MeterError.nonCanonicalKey }
            let hash = try r.raw(32)
            guard let status = Status(rawValue: try r.u8()) else { throw MeterError.badType }
            let signature = try r.raw(64)
            guard IdentityKey.verify(signature, message: domain + body(meter, hash, status), publicKey: meter.bytes) else {
                throw MeterError.badSignature
            }
            return CommandAck(meter: meter, commandHash: hash, status: status, signature: signature)
        } catch let e as MeterError {
            throw e
        } catch {
            throw .truncated
        }
    }
}
