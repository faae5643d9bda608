import Lacero

/// What Lacero's operations need from the machine they run on: files and the requester's key.
/// The service never calls it itself: every call happens inside an `.offload` job, which the
/// runtime runs on libuv's thread pool against the real file system and the node's identity key
/// (`PosixLacero`, Sources/Runtime), and a simulator would run inline against its virtual disk.
public protocol LaceroHost: Sendable {
    /// The whole file at `path` (an object to put, or a sealed metadata file); a file larger than
    /// `limit` bytes is refused.
    func read(_ path: String, limit: UInt64) -> Result<[UInt8], LaceroHostError>
    /// Writes `bytes` to `path` so that it is either the whole new file or untouched (a temporary
    /// file beside it, fsync, rename).
    func write(_ path: String, _ bytes: [UInt8]) -> LaceroHostError?
    /// A fresh object key and delete secret (32 bytes each, from a cryptographic generator).
    func freshSecrets() -> (key: [UInt8], deleteSecret: [UInt8])
    /// The metadata sealed to the requester (the node's own identity).
    func seal(_ metadata: LaceroMetadata) -> Result<[UInt8], LaceroHostError>
    /// Sealed metadata opened with the requester's key.
    func open(_ sealed: [UInt8]) -> Result<LaceroMetadata, LaceroHostError>
}

public struct LaceroHostError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
