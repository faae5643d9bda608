import MeshCore
import Sodium

/// The three kinds of transaction of Hyperledger's Open Blockchain: deploy installs a chaincode,
/// invoke runs one of its functions (and may write state), query reads state without a block.
public enum TransactionKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case deploy = 1
    case invoke = 2
    case query = 3

    public var description: String {
        switch self {
        case .deploy: "deploy"
        case .invoke: "invoke"
        case .query: "query"
        }
    }
}

/// A signed transaction: one consensus payload. The signer's Ed25519 key is the caller's identity a
/// chaincode sees; the nonce, strictly above the signer's last one, makes a replay refused.
/// Encoding and what is signed: Docs/ledger.md, "Encodings".
public struct Transaction: Sendable, Equatable {
    public static let maxEncodedBytes = 16 * 1024
    public static let maxArguments = 64
    public static let maxNameBytes = 64

    public let kind: TransactionKind
    public let chaincode: String
    public let function: String
    public let args: [[UInt8]]
    public let signer: [UInt8]
    public let nonce: UInt64
    public let signature: [UInt8]

    /// The exact bytes this transaction travels and is stored as (its canonical encoding).
    public let encoded: [UInt8]
    /// BLAKE2b-256 of `encoded`: the transaction id.
    public let id: [UInt8]

    /// Signs a new transaction with `secretKey` (64-byte libsodium Ed25519 secret key) for `chainID`.
    public static func signed(kind: TransactionKind, chaincode: String, function: String, args: [[UInt8]],
                              nonce: UInt64, publicKey: [UInt8], secretKey: [UInt8], chainID: [UInt8]) throws -> Transaction {
        guard args.count <= maxArguments, chaincode.utf8.count <= maxNameBytes, function.utf8.count <= maxNameBytes else {
            throw Refusal(.malformed, "at most \(maxArguments) arguments and names of at most \(maxNameBytes) bytes")
        }
        let body = encodeBody(kind: kind, chaincode: chaincode, function: function, args: args, signer: publicKey, nonce: nonce)
        guard body.count + Ed25519.signatureLength <= maxEncodedBytes else {
            throw Refusal(.oversized, "transaction would be \(body.count + Ed25519.signatureLength) bytes; at most \(maxEncodedBytes)")
        }
        let sig = try Ed25519.sign(signingMessage(chainID: chainID, body: body), secretKey: secretKey)
        return Transaction(kind: kind, chaincode: chaincode, function: function, args: args, signer: publicKey,
                           nonce: nonce, signature: sig, encoded: body + sig)
    }

    /// Signs a new transaction with a signing function (a node's identity, whose secret key never
    /// leaves it): `sign` gets the signing message and returns the 64-byte signature.
    public static func signed(kind: TransactionKind, chaincode: String, function: String, args: [[UInt8]], nonce: UInt64,
                              publicKey: [UInt8], chainID: [UInt8], sign: ([UInt8]) -> [UInt8]) throws(Refusal) -> Transaction {
        guard args.count <= maxArguments, chaincode.utf8.count <= maxNameBytes, function.utf8.count <= maxNameBytes else {
            throw Refusal(.malformed, "at most \(maxArguments) arguments and names of at most \(maxNameBytes) bytes")
        }
        let body = encodeBody(kind: kind, chaincode: chaincode, function: function, args: args, signer: publicKey, nonce: nonce)
        guard body.count + Ed25519.signatureLength <= maxEncodedBytes else {
            throw Refusal(.oversized, "transaction would be \(body.count + Ed25519.signatureLength) bytes; at most \(maxEncodedBytes)")
        }
        let sig = sign(signingMessage(chainID: chainID, body: body))
        return Transaction(kind: kind, chaincode: chaincode, function: function, args: args, signer: publicKey,
                           nonce: nonce, signature: sig, encoded: body + sig)
    }

    private init(kind: TransactionKind, chaincode: String, function: String, args: [[UInt8]], signer: [UInt8],
                 nonce: UInt64, signature: [UInt8], encoded: [UInt8]) {
        self.kind = kind
        self.chaincode = chaincode
        self.function = function
        self.args = args
        self.signer = signer
        self.nonce = nonce
        self.signature = signature
        self.encoded = encoded
        id = Blake2b.hash(encoded, outputLength: 32)
    }

    /// The signed part: everything before the signature.
    public var body: [UInt8] { Array(encoded.dropLast(Ed25519.signatureLength)) }

    /// Whether the signature is the signer's over this chain's signing message.
    public func signatureIsValid(chainID: [UInt8]) -> Bool {
        Ed25519.verify(signature, message: Transaction.signingMessage(chainID: chainID, body: body), publicKey: signer)
    }

    /// The bytes the signature covers: `"iotaf/ledger/tx/v1" || chain_id || body`.
    public func signingMessage(chainID: [UInt8]) -> [UInt8] { Transaction.signingMessage(chainID: chainID, body: body) }

    static func signingMessage(chainID: [UInt8], body: [UInt8]) -> [UInt8] {
        Array("iotaf/ledger/tx/v1".utf8) + chainID + body
    }

    static func encodeBody(kind: TransactionKind, chaincode: String, function: String, args: [[UInt8]],
                           signer: [UInt8], nonce: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 128 + args.reduce(0) { $0 + $1.count + 4 })
        w.u8(1)  // version
        w.u8(kind.rawValue)
        LedgerCodec.string(chaincode, into: &w)
        LedgerCodec.string(function, into: &w)
        w.u8(UInt8(truncatingIfNeeded: args.count))
        for a in args {
            w.u32(UInt32(a.count))
            w.raw(a)
        }
        w.raw(signer)
        w.u64(nonce)
        return w.bytes
    }

    /// Decodes one transaction; every way it can be wrong is a `Refusal` with a reason, never a trap.
    /// (The signature is not checked here: `signatureIsValid`.)
    public static func decode(_ bytes: [UInt8]) throws(Refusal) -> Transaction {
        guard bytes.count <= maxEncodedBytes else {
            throw Refusal(.oversized, "transaction is \(bytes.count) bytes; at most \(maxEncodedBytes)")
        }
        var r = ByteReader(bytes)
        do {
            guard try r.u8() == 1 else { throw Refusal(.malformed, "unknown transaction version") }
            guard let kind = TransactionKind(rawValue: try r.u8()) else { throw Refusal(.malformed, "unknown transaction kind") }
            let chaincode = try LedgerCodec.readString(&r, max: maxNameBytes)
            let function = try LedgerCodec.readString(&r, max: maxNameBytes)
            let count = Int(try r.u8())
            guard count <= maxArguments else { throw Refusal(.malformed, "\(count) arguments; at most \(maxArguments)") }
            var args: [[UInt8]] = []
            for _ in 0..<count { args.append(try r.raw(Int(try r.u32()))) }
            let signer = try r.raw(Ed25519.publicKeyLength)
            let nonce = try r.u64()
            let signature = try r.raw(Ed25519.signatureLength)
            guard r.remaining == 0 else { throw Refusal(.malformed, "\(r.remaining) bytes after the signature") }
            guard IdentityKey.isCanonical(signer) else {
                throw Refusal(.badSignature, "signer key is not a canonical Ed25519 identity key")
            }
            return Transaction(kind: kind, chaincode: chaincode, function: function, args: args, signer: signer,
                               nonce: nonce, signature: signature, encoded: bytes)
        } catch let refusal as Refusal {
            throw refusal
        } catch {
            throw Refusal(.malformed, "transaction is truncated")
        }
    }
}

/// Length-prefixed fields shared by the ledger's encodings.
enum LedgerCodec {
    struct BadString: Error {}

    static func string(_ s: String, into w: inout ByteWriter) {
        let b = Array(s.utf8)
        w.u16(UInt16(truncatingIfNeeded: b.count))
        w.raw(b)
    }

    static func readString(_ r: inout ByteReader, max: Int) throws -> String {
        let n = Int(try r.u16())
        guard n <= max else { throw Refusal(.malformed, "a name of \(n) bytes; at most \(max)") }
        let b = try r.raw(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw Refusal(.malformed, "a name that is not UTF-8") }
        return s
    }

    static func bytes(_ b: [UInt8], into w: inout ByteWriter) {
        w.u32(UInt32(b.count))
        w.raw(b)
    }

    static func readBytes(_ r: inout ByteReader, max: Int = 1 << 24) throws -> [UInt8] {
        let n = Int(try r.u32())
        guard n <= max else { throw ByteReader.Failure.truncated }
        return try r.raw(n)
    }
}
