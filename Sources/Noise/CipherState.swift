import Sodium

/// One AEAD key with its nonce counter (spec section 5.1). A reference type so that the key is
/// wiped exactly once, when the last owner lets go.
///
/// Like the other Noise states, its stored properties skip the runtime's dynamic exclusivity
/// checks (`@exclusivity(unchecked)`): a state is used from one thread and never accessed
/// overlappingly, and the checks cost more than the bookkeeping on the per-packet path.
public final class CipherState {
    public let cipher: NoiseCipher
    @exclusivity(unchecked) private var key: [UInt8]?
    /// The next implicit nonce. 2^64-1 is reserved for Rekey and never used for a message.
    @exclusivity(unchecked) public private(set) var nonce: UInt64 = 0
    /// False for the unused direction of a one-way pattern, so that it cannot send in the clear.
    private let usable: Bool

    public init(cipher: NoiseCipher, key: [UInt8]? = nil) {
        self.cipher = cipher
        self.key = nil
        self.usable = true
        if let key { initializeKey(key) }
    }

    private init(unusableFor cipher: NoiseCipher) {
        self.cipher = cipher
        self.key = nil
        self.usable = false
    }

    /// The direction a one-way pattern (N, K, X) never uses; every call on it throws.
    static func unusable(_ cipher: NoiseCipher) -> CipherState { CipherState(unusableFor: cipher) }

    deinit { wipeKey() }

    public var hasKey: Bool { key != nil }

    /// Sets a new key (the first 32 bytes of `newKey`) and restarts the nonce at zero.
    public func initializeKey(_ newKey: [UInt8]) {
        precondition(newKey.count >= NoiseCipher.keyLength, "cipher key too short")
        wipeKey()
        key = Array(newKey.prefix(NoiseCipher.keyLength))
        nonce = 0
    }

    /// For transports that resynchronise after loss (the spec's SetNonce).
    public func setNonce(_ n: UInt64) { nonce = n }

    /// EncryptWithAd: with no key yet, the plaintext goes out as it is (that is the spec, for the
    /// first handshake tokens). Increments the nonce only on success.
    public func encryptWithAd(_ ad: [UInt8], _ plaintext: [UInt8]) throws -> [UInt8] {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { return plaintext }
        guard nonce != UInt64.max else { throw NoiseError.nonceExhausted }
        let out = try cipher.encrypt(key: key, nonce: nonce, ad: ad, plaintext: plaintext)
        nonce += 1
        return out
    }

    /// DecryptWithAd: a failed authentication leaves the nonce where it was, so a forged packet
    /// cannot desynchronise the two sides.
    public func decryptWithAd(_ ad: [UInt8], _ ciphertext: [UInt8]) throws -> [UInt8] {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { return ciphertext }
        guard nonce != UInt64.max else { throw NoiseError.nonceExhausted }
        let out = try cipher.decrypt(key: key, nonce: nonce, ad: ad, ciphertext: ciphertext)
        nonce += 1
        return out
    }

    /// Encrypts with an explicit nonce and leaves the implicit counter alone: a transport on a
    /// lossy network carries the counter in each packet (as WireGuard does).
    public func encrypt(nonce n: UInt64, ad: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { throw NoiseError.missingKey("cipher key") }
        guard n != UInt64.max else { throw NoiseError.nonceExhausted }
        return try cipher.encrypt(key: key, nonce: n, ad: ad, plaintext: plaintext)
    }

    /// Decrypts with an explicit nonce. Check the counter against a ``ReplayWindow`` first and
    /// commit it only after this succeeds.
    public func decrypt(nonce n: UInt64, ad: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { throw NoiseError.missingKey("cipher key") }
        guard n != UInt64.max else { throw NoiseError.nonceExhausted }
        return try cipher.decrypt(key: key, nonce: n, ad: ad, ciphertext: ciphertext)
    }

    /// ``encrypt(nonce:ad:plaintext:)`` into a caller's buffer of `plaintext.count + 16` bytes,
    /// for per-packet paths that build the datagram in place.
    public func seal(nonce n: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { throw NoiseError.missingKey("cipher key") }
        guard n != UInt64.max else { throw NoiseError.nonceExhausted }
        try key.withUnsafeBytes { try cipher.seal(key: $0, nonce: n, ad: ad, plaintext: plaintext, into: output) }
    }

    /// ``decrypt(nonce:ad:ciphertext:)`` into a caller's buffer of `ciphertext.count - 16` bytes.
    public func open(nonce n: UInt64, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { throw NoiseError.missingKey("cipher key") }
        guard n != UInt64.max else { throw NoiseError.nonceExhausted }
        try key.withUnsafeBytes { try cipher.open(key: $0, nonce: n, ad: ad, ciphertext: ciphertext, into: output) }
    }

    /// Rekey (section 11.3): the new key is the first 32 bytes of encrypting 32 zero bytes under
    /// nonce 2^64-1. The nonce counter is kept, as the spec says.
    public func rekey() throws {
        guard usable else { throw NoiseError.wrongState("this direction of a one-way pattern carries no messages") }
        guard let key else { throw NoiseError.missingKey("cipher key") }
        var zeros = [UInt8](repeating: 0, count: NoiseCipher.keyLength)
        var out = try cipher.encrypt(key: key, nonce: UInt64.max, ad: [], plaintext: zeros)
        let keepNonce = nonce
        initializeKey(out)
        nonce = keepNonce
        Sodium.zero(&out)
        Sodium.zero(&zeros)
    }

    /// A copy with its own key buffer, so a failed handshake read can be rolled back.
    func copy() -> CipherState {
        let c = usable ? CipherState(cipher: cipher, key: key) : CipherState(unusableFor: cipher)
        c.nonce = nonce
        return c
    }

    private func wipeKey() {
        if key != nil { Sodium.zero(&key!) }
        key = nil
    }
}
