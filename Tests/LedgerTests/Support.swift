import Consensus
import Ledger
import MeshCore

/// Four real validators (3 of 4 sign each block), one admin, two users, all with fixed keys.
struct Fixture {
    var chain: CertifiedChain
    var admin: TransactionSigner
    var alice: TransactionSigner
    var bob: TransactionSigner

    init() {
        admin = try! TransactionSigner(seed: TransactionSigner.testSeed(100))
        alice = try! TransactionSigner(seed: TransactionSigner.testSeed(101))
        bob = try! TransactionSigner(seed: TransactionSigner.testSeed(102))
        chain = try! CertifiedChain(validatorSeeds: (0..<4).map { TransactionSigner.testSeed(UInt64($0)) }, admins: [admin.publicKey])
    }

    var genesis: LedgerGenesis { chain.genesis }
    var chainID: [UInt8] { chain.genesis.chainID }

    static func b(_ s: String) -> [UInt8] { Array(s.utf8) }
}

extension TransactionSigner {
    /// Signs an invoke for the fixture's chain and returns its payload bytes.
    mutating func invoke(_ f: Fixture, _ chaincode: String, _ function: String, _ args: String...) -> [UInt8] {
        try! sign(.invoke, chaincode, function, args.map { Array($0.utf8) }, chainID: f.chainID).encoded
    }
    var hex: String { Hex.encode(publicKey) }
}

extension ExecutedBlock {
    var reasons: [RefusalReason?] {
        results.map { if case .refused(let r) = $0 { r.reason } else { nil } }
    }
}
