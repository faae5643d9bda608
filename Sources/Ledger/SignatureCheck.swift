/// Transaction signature checks done apart from execution, so a node can run them on libuv's
/// thread pool (an `.offload` job) while its loop goes on, and hand the answers to
/// `Ledger.apply(_:signatureChecked:)`. A signature check is a pure function of the payload bytes
/// and the chain id: checking it early, on another thread, gives the same result as in `apply`.
public enum SignatureCheck {
    /// Ed25519 verification is by far the costliest step of executing a `kv put` (about 50-70 µs
    /// against a few µs for the rest): a block's payloads are checked in slices of this many, one
    /// job each, so the thread pool's threads share one big block.
    public static let slice = 128

    /// The simulator's virtual CPU charge for checking one signature.
    public static let costPerSignature: Duration = .microseconds(60)

    /// One byte per payload: 1 when it decodes and its signature is the signer's over this
    /// chain's signing message, else 0 (the executor then checks it again and refuses it with
    /// the reason). `skip[i] == true`: already known good (checked at submission), not checked.
    public static func run(_ payloads: ArraySlice<[UInt8]>, skip: ArraySlice<Bool>, chainID: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: payloads.count)
        for (k, (payload, known)) in zip(payloads, skip).enumerated() {
            if known { out[k] = 1; continue }
            guard let tx = try? Transaction.decode(payload) else { continue }
            if tx.signatureIsValid(chainID: chainID) { out[k] = 1 }
        }
        return out
    }
}
