/// Why the ledger refused a transaction: recorded as its result, so the submitter sees it.
/// The codes are part of the stored result encoding (Docs/ledger.md): never renumber.
public enum RefusalReason: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case malformed = 1
    case oversized = 2
    case badSignature = 3
    case replayedNonce = 4
    case unknownChaincode = 5
    case unknownFunction = 6
    case culledSigner = 7
    case badArguments = 8
    case notOwner = 9
    case notAdmin = 10
    case notFound = 11
    case alreadyExists = 12
    /// A query travels no block: it is answered from the replica.
    case queryInBlock = 13
    /// A deploy that names a built-in chaincode.
    case deployUnsupported = 14
    /// A deploy whose module breaks a contract rule (Docs/chaincode.md).
    case invalidContract = 15
    /// A contract call that ran out of fuel, hit a limit, trapped or aborted (the detail says which).
    case contractFailed = 16

    public var description: String {
        switch self {
        case .malformed: "malformed"
        case .oversized: "oversized"
        case .badSignature: "bad_signature"
        case .replayedNonce: "replayed_nonce"
        case .unknownChaincode: "unknown_chaincode"
        case .unknownFunction: "unknown_function"
        case .culledSigner: "culled_signer"
        case .badArguments: "bad_arguments"
        case .notOwner: "not_owner"
        case .notAdmin: "not_admin"
        case .notFound: "not_found"
        case .alreadyExists: "already_exists"
        case .queryInBlock: "query_in_block"
        case .deployUnsupported: "deploy_unsupported"
        case .invalidContract: "invalid_contract"
        case .contractFailed: "contract_failed"
        }
    }
}

/// A refusal and the sentence that explains it.
public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: RefusalReason
    public let detail: String

    public init(_ reason: RefusalReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason): \(detail)" }
}
