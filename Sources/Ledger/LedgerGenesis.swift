import Foundation
import Consensus
import MeshCore
import Sodium

/// What a ledger starts from: the consensus genesis (validator set, chain id) and the admin keys
/// (who may cull, change validators and update others' registrations). Its hash is the "previous
/// header hash" of height 1, and the admins are rows of the initial state, so both are under the
/// state root and the chain of headers.
public struct LedgerGenesis: Sendable, Equatable {
    public let consensus: Genesis
    public let admins: [[UInt8]]

    public init(consensus: Genesis, admins: [[UInt8]]) {
        self.consensus = consensus
        self.admins = admins
    }

    public var chainID: [UInt8] { consensus.chainID }

    /// `BLAKE2b-256("iotaf/ledger/genesis/v1" || chain_id || u16 n || admin_0 || …)`.
    public var hash: [UInt8] {
        var w = ByteWriter()
        w.raw(Array("iotaf/ledger/genesis/v1".utf8))
        w.raw(chainID)
        w.u16(UInt16(admins.count))
        for a in admins { w.raw(a) }
        return Blake2b.hash(w.bytes, outputLength: 32)
    }

    /// Text form: the consensus genesis (one validator key a line), then `admin HEX` lines.
    public var text: String {
        consensus.text + admins.map { "admin " + Hex.encode($0) + "\n" }.joined()
    }

    public static func parse(_ text: String) throws -> LedgerGenesis {
        var validatorLines: [String] = []
        var admins: [[UInt8]] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("admin ") {
                let hex = String(line.dropFirst(6)).trimmingCharacters(in: .whitespaces)
                guard let k = Hex.decode(hex), k.count == 32, IdentityKey.isCanonical(k) else {
                    throw LedgerError("genesis line \(n + 1): expected `admin` and a 64-hex-digit canonical Ed25519 public key")
                }
                admins.append(k)
                validatorLines.append("")
            } else {
                validatorLines.append(String(raw))
            }
        }
        let consensus: Genesis
        do { consensus = try Genesis.parse(validatorLines.joined(separator: "\n")) } catch { throw LedgerError("\(error)") }
        return LedgerGenesis(consensus: consensus, admins: admins)
    }
}

/// An error with a sentence that says what is wrong and where.
public struct LedgerError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
