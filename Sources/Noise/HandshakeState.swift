import Sodium

/// The two transport keys a finished handshake yields, already assigned to this side's
/// directions, plus the handshake hash for channel binding.
public final class NoiseTransport {
    /// Encrypts what this side sends.
    public let sender: CipherState
    /// Decrypts what this side receives.
    public let receiver: CipherState
    public let handshakeHash: [UInt8]
    /// The peer's static public key, if the pattern gave one (sent, or known in advance).
    public let remoteStatic: [UInt8]?

    init(sender: CipherState, receiver: CipherState, handshakeHash: [UInt8], remoteStatic: [UInt8]?) {
        self.sender = sender
        self.receiver = receiver
        self.handshakeHash = handshakeHash
        self.remoteStatic = remoteStatic
    }
}

/// Runs one handshake (spec section 5.3) for a pattern parsed from the protocol name.
///
/// Sans-IO: it never reads a clock or a socket, and new ephemeral keys come from the injected
/// `ephemeralSource`, so test vectors can fix them. A message that fails to read (truncated,
/// garbled, wrong key or psk) throws and leaves the state as it was, so a forged datagram cannot
/// kill a handshake that the real peer may still complete.
public final class HandshakeState {
    public let protocolInfo: NoiseProtocol
    public let isInitiator: Bool
    @exclusivity(unchecked) private var symmetric: SymmetricState
    @exclusivity(unchecked) private var localStatic: DHKeyPair?
    @exclusivity(unchecked) private var localEphemeral: DHKeyPair?
    @exclusivity(unchecked) public private(set) var remoteStatic: [UInt8]?
    @exclusivity(unchecked) public private(set) var remoteEphemeral: [UInt8]?
    @exclusivity(unchecked) private var psks: [[UInt8]]
    @exclusivity(unchecked) private var pskIndex = 0
    @exclusivity(unchecked) private var messageIndex = 0
    private let ephemeralSource: () -> [UInt8]
    /// Where the `ss` result comes from when given (see ``StaticStaticCache``).
    private let staticStatic: StaticStaticCache?
    /// Set once the last handshake message has been written or read.
    @exclusivity(unchecked) public private(set) var transport: NoiseTransport?

    /// - Parameters:
    ///   - protocolName: for example `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b`.
    ///   - localStatic / remoteStatic: needed when the pattern uses them (pre-messages or `s` tokens).
    ///   - localEphemeral / remoteEphemeral: only for patterns with `e` in a pre-message.
    ///   - psks: one 32-byte key per psk modifier, in the order the tokens occur.
    ///   - ephemeralSource: returns the secret key for each new ephemeral key pair.
    ///   - staticStatic (designated initialiser): the `ss` results of earlier handshakes with the
    ///     same local key; ignored unless it was made for `localStatic`.
    public convenience init(protocolName: String, initiator: Bool, prologue: [UInt8] = [],
                            localStatic: DHKeyPair? = nil, localEphemeral: DHKeyPair? = nil,
                            remoteStatic: [UInt8]? = nil, remoteEphemeral: [UInt8]? = nil,
                            psks: [[UInt8]] = [],
                            ephemeralSource: @escaping () -> [UInt8] = { Sodium.randomBytes(32) }) throws {
        try self.init(protocol: try NoiseProtocol(name: protocolName), initiator: initiator, prologue: prologue,
                      localStatic: localStatic, localEphemeral: localEphemeral, remoteStatic: remoteStatic,
                      remoteEphemeral: remoteEphemeral, psks: psks, ephemeralSource: ephemeralSource)
    }

    /// As ``init(protocolName:initiator:prologue:localStatic:localEphemeral:remoteStatic:remoteEphemeral:psks:ephemeralSource:)``
    /// with the name already parsed, for callers that run many handshakes of one protocol.
    public init(protocol info: NoiseProtocol, initiator: Bool, prologue: [UInt8] = [],
                localStatic: DHKeyPair? = nil, localEphemeral: DHKeyPair? = nil,
                remoteStatic: [UInt8]? = nil, remoteEphemeral: [UInt8]? = nil,
                psks: [[UInt8]] = [],
                staticStatic: StaticStaticCache? = nil,
                ephemeralSource: @escaping () -> [UInt8] = { Sodium.randomBytes(32) }) throws {
        guard info.cipher.isAvailable else {
            throw NoiseError.unsupported("\(info.cipher.rawValue) is not available on this CPU")
        }
        let pattern = info.pattern
        guard psks.count == pattern.pskCount else {
            throw NoiseError.missingKey("\(pattern.name) needs \(pattern.pskCount) psk(s), got \(psks.count)")
        }
        for psk in psks where psk.count != 32 {
            throw NoiseError.invalidKey("a psk must be 32 bytes, got \(psk.count)")
        }
        for key in [remoteStatic, remoteEphemeral] {
            if let key, key.count != info.dh.dhLength {
                throw NoiseError.invalidKey("remote public key must be \(info.dh.dhLength) bytes, got \(key.count)")
            }
        }
        self.protocolInfo = info
        self.isInitiator = initiator
        self.localStatic = localStatic
        self.localEphemeral = localEphemeral
        self.remoteStatic = remoteStatic
        self.remoteEphemeral = remoteEphemeral
        self.psks = psks
        self.ephemeralSource = ephemeralSource
        // Only a cache made for this very local key may stand in for the DH.
        self.staticStatic = staticStatic.flatMap { $0.localStatic.publicKey == localStatic?.publicKey ? $0 : nil }
        self.symmetric = SymmetricState(protocolName: info.name, cipher: info.cipher, hash: info.hash)

        // Check up front that every key the pattern will use is here, so a missing key is a
        // configuration error at start rather than a failure halfway through.
        let localSends = pattern.messages.enumerated().filter { ($0.offset % 2 == 0) == initiator }.flatMap { $0.element }
        let localPre = initiator ? pattern.initiatorPreMessage : pattern.responderPreMessage
        let remotePre = initiator ? pattern.responderPreMessage : pattern.initiatorPreMessage
        let allTokens = pattern.messages.flatMap { $0 }
        let usesLocalStatic = localPre.contains(.s) || localSends.contains(.s) || allTokens.contains(.ss)
            || allTokens.contains(initiator ? .se : .es)
        if usesLocalStatic && localStatic == nil { throw NoiseError.missingKey("local static key for \(pattern.name)") }
        if localPre.contains(.e) && localEphemeral == nil { throw NoiseError.missingKey("local ephemeral key for \(pattern.name)") }
        if remotePre.contains(.s) && remoteStatic == nil { throw NoiseError.missingKey("remote static key for \(pattern.name)") }
        if remotePre.contains(.e) && remoteEphemeral == nil { throw NoiseError.missingKey("remote ephemeral key for \(pattern.name)") }

        symmetric.mixHash(prologue)
        // Pre-message keys: the initiator's first, then the responder's (section 7.1).
        for (tokens, isLocal) in [(pattern.initiatorPreMessage, initiator), (pattern.responderPreMessage, !initiator)] {
            for token in tokens {
                switch token {
                case .s:
                    symmetric.mixHash(isLocal ? localStatic!.publicKey : remoteStatic!)
                case .e:
                    let key = isLocal ? localEphemeral!.publicKey : remoteEphemeral!
                    symmetric.mixHash(key)
                    if pattern.hasPSK { symmetric.mixKey(key) }
                default:
                    throw NoiseError.unsupported("token \(token.rawValue) in a pre-message")
                }
            }
        }
    }

    deinit {
        for i in psks.indices { Sodium.zero(&psks[i]) }
    }

    public var pattern: HandshakePattern { protocolInfo.pattern }

    public var isFinished: Bool { messageIndex >= pattern.messages.count }

    /// True when the next handshake message is this side's to write.
    public var isMyTurnToWrite: Bool { !isFinished && ((messageIndex % 2 == 0) == isInitiator) }

    /// The handshake hash so far (final once ``isFinished``).
    public var handshakeHash: [UInt8] { transport?.handshakeHash ?? symmetric.handshakeHash }

    /// WriteMessage: the next handshake message carrying `payload` (encrypted once a key exists).
    public func writeMessage(payload: [UInt8] = []) throws -> [UInt8] {
        guard !isFinished else { throw NoiseError.wrongState("the handshake is already finished") }
        guard isMyTurnToWrite else { throw NoiseError.wrongState("it is the peer's turn to send") }
        let sym = symmetric.copy()
        var ephemeral = localEphemeral
        var nextPSK = pskIndex
        var out: [UInt8] = []
        for token in pattern.messages[messageIndex] {
            switch token {
            case .e:
                let pair = try DHKeyPair(secretKey: ephemeralSource())
                ephemeral = pair
                out += pair.publicKey
                sym.mixHash(pair.publicKey)
                if pattern.hasPSK { sym.mixKey(pair.publicKey) }
            case .s:
                guard let localStatic else { throw NoiseError.missingKey("local static key") }
                out += try sym.encryptAndHash(localStatic.publicKey)
            case .psk:
                sym.mixKeyAndHash(psks[nextPSK])
                nextPSK += 1
            case .ee, .es, .se, .ss:
                try mixDH(token, into: sym, ephemeral: ephemeral, remoteStatic: remoteStatic,
                          remoteEphemeral: remoteEphemeral)
            }
        }
        out += try sym.encryptAndHash(payload)
        guard out.count <= noiseMaxMessageLength else { throw NoiseError.messageTooLong(out.count) }
        symmetric = sym
        localEphemeral = ephemeral
        pskIndex = nextPSK
        advance()
        return out
    }

    /// ReadMessage: checks and consumes the peer's next handshake message, returning its payload.
    public func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        guard !isFinished else { throw NoiseError.wrongState("the handshake is already finished") }
        guard !isMyTurnToWrite else { throw NoiseError.wrongState("it is this side's turn to send") }
        guard message.count <= noiseMaxMessageLength else { throw NoiseError.messageTooLong(message.count) }
        let sym = symmetric.copy()
        var rs = remoteStatic
        var re = remoteEphemeral
        var nextPSK = pskIndex
        var offset = 0
        let dhLength = protocolInfo.dh.dhLength
        func take(_ n: Int, _ what: String) throws -> [UInt8] {
            guard message.count - offset >= n else {
                throw NoiseError.truncated("\(what) needs \(n) bytes, \(message.count - offset) left")
            }
            defer { offset += n }
            return Array(message[offset..<(offset + n)])
        }
        for token in pattern.messages[messageIndex] {
            switch token {
            case .e:
                let key = try take(dhLength, "ephemeral key")
                re = key
                sym.mixHash(key)
                if pattern.hasPSK { sym.mixKey(key) }
            case .s:
                let sealed = try take(dhLength + (sym.hasKey ? NoiseCipher.tagLength : 0), "static key")
                rs = try sym.decryptAndHash(sealed)
            case .psk:
                sym.mixKeyAndHash(psks[nextPSK])
                nextPSK += 1
            case .ee, .es, .se, .ss:
                try mixDH(token, into: sym, ephemeral: localEphemeral, remoteStatic: rs, remoteEphemeral: re)
            }
        }
        let rest = Array(message[offset...])
        if sym.hasKey && rest.count < NoiseCipher.tagLength {
            throw NoiseError.truncated("payload needs at least a 16-byte tag, \(rest.count) bytes left")
        }
        let payload = try sym.decryptAndHash(rest)
        symmetric = sym
        remoteStatic = rs
        remoteEphemeral = re
        pskIndex = nextPSK
        advance()
        return payload
    }

    /// The transport keys once the handshake is finished; throws before then.
    public func finish() throws -> NoiseTransport {
        guard let transport else { throw NoiseError.wrongState("the handshake is not finished") }
        return transport
    }

    /// ee, es, se, ss: the first letter names the initiator's key, the second the responder's.
    private func mixDH(_ token: NoiseToken, into sym: SymmetricState, ephemeral: DHKeyPair?,
                       remoteStatic rs: [UInt8]?, remoteEphemeral re: [UInt8]?) throws {
        let initiatorUsesStatic = token == .se || token == .ss
        let responderUsesStatic = token == .es || token == .ss
        let localIsStatic = isInitiator ? initiatorUsesStatic : responderUsesStatic
        let remoteIsStatic = isInitiator ? responderUsesStatic : initiatorUsesStatic
        guard let local = localIsStatic ? localStatic : ephemeral else {
            throw NoiseError.missingKey("local \(localIsStatic ? "static" : "ephemeral") key for \(token.rawValue)")
        }
        guard let remote = remoteIsStatic ? rs : re else {
            throw NoiseError.missingKey("remote \(remoteIsStatic ? "static" : "ephemeral") key for \(token.rawValue)")
        }
        if token == .ss, let staticStatic {
            // The cache owns (and wipes) its copy; this one shares its storage and is not wiped here.
            sym.mixKey(try staticStatic.sharedSecret(remoteStatic: remote, dh: protocolInfo.dh))
            return
        }
        var shared = try protocolInfo.dh.dh(secretKey: local.secretKey, publicKey: remote)
        sym.mixKey(shared)
        Sodium.zero(&shared)
    }

    private func advance() {
        messageIndex += 1
        guard isFinished else { return }
        let (c1, c2) = symmetric.split()
        symmetric.wipeChainingKey()
        let cipher = protocolInfo.cipher
        let (send, receive): (CipherState, CipherState)
        if pattern.isOneWay {
            send = isInitiator ? c1 : CipherState.unusable(cipher)
            receive = isInitiator ? CipherState.unusable(cipher) : c1
        } else {
            send = isInitiator ? c1 : c2
            receive = isInitiator ? c2 : c1
        }
        transport = NoiseTransport(sender: send, receiver: receive, handshakeHash: symmetric.handshakeHash,
                                   remoteStatic: remoteStatic)
        // The ephemeral secret and psks have done their job; wipe them now rather than at deinit.
        localEphemeral = nil
        for i in psks.indices { Sodium.zero(&psks[i]) }
    }
}
