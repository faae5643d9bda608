import Sodium

/// The chaining key and handshake hash of a handshake (spec section 5.2).
public final class SymmetricState {
    public let cipher: NoiseCipher
    public let hash: NoiseHash
    let cipherState: CipherState
    @exclusivity(unchecked) private var chainingKey: [UInt8]
    /// The handshake hash h: after the handshake, a channel binding both sides agree on.
    @exclusivity(unchecked) public private(set) var handshakeHash: [UInt8]

    /// InitializeSymmetric: a name no longer than HASHLEN is padded with zeros, a longer one hashed.
    public init(protocolName: String, cipher: NoiseCipher, hash: NoiseHash) {
        self.cipher = cipher
        self.hash = hash
        let name = Array(protocolName.utf8)
        if name.count <= hash.hashLength {
            handshakeHash = name + [UInt8](repeating: 0, count: hash.hashLength - name.count)
        } else {
            handshakeHash = hash.hash(name)
        }
        chainingKey = handshakeHash
        cipherState = CipherState(cipher: cipher)
    }

    private init(copying other: SymmetricState) {
        cipher = other.cipher
        hash = other.hash
        cipherState = other.cipherState.copy()
        chainingKey = other.chainingKey
        handshakeHash = other.handshakeHash
    }

    deinit {
        Sodium.zero(&chainingKey)
        Sodium.zero(&handshakeHash)
    }

    func copy() -> SymmetricState { SymmetricState(copying: self) }

    public var hasKey: Bool { cipherState.hasKey }

    public func mixKey(_ inputKeyMaterial: [UInt8]) {
        var out = hash.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        Sodium.zero(&chainingKey)
        chainingKey = out[0]
        cipherState.initializeKey(out[1])  // truncated to 32 bytes when HASHLEN is 64
        Sodium.zero(&out[0])
        Sodium.zero(&out[1])
    }

    public func mixHash(_ data: [UInt8]) {
        handshakeHash = hash.hash(handshakeHash, data)
    }

    /// For psk tokens: the psk goes into both the chaining key and the handshake hash.
    public func mixKeyAndHash(_ inputKeyMaterial: [UInt8]) {
        var out = hash.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 3)
        Sodium.zero(&chainingKey)
        chainingKey = out[0]
        mixHash(out[1])
        cipherState.initializeKey(out[2])
        for i in out.indices { Sodium.zero(&out[i]) }
    }

    public func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
        let ciphertext = try cipherState.encryptWithAd(handshakeHash, plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    public func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
        let plaintext = try cipherState.decryptWithAd(handshakeHash, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// Split: the initiator-to-responder and responder-to-initiator transport keys.
    public func split() -> (CipherState, CipherState) {
        var out = hash.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
        let c1 = CipherState(cipher: cipher, key: out[0])
        let c2 = CipherState(cipher: cipher, key: out[1])
        Sodium.zero(&out[0])
        Sodium.zero(&out[1])
        return (c1, c2)
    }

    /// After Split the chaining key is no longer needed; wiping it early narrows the window in
    /// which a memory disclosure could reveal session keys.
    func wipeChainingKey() {
        Sodium.zero(&chainingKey)
    }
}
