import MeshCore
import NodeService

/// Where a node's files live, as the file-transfer service's offloaded jobs see them. The service
/// never calls it itself: every call happens inside an `OffloadJob`, which the runtime runs on
/// libuv's thread pool against the real file system (`PosixFiles`, Sources/Runtime) and the
/// simulator runs inline against a node's virtual disk, charging the job's `cost` to the node's
/// virtual CPU. Calls for one transfer never overlap (one job per transfer at a time).
public protocol FileStore: Sendable {
    /// The size of a file to send.
    func size(of path: String) -> Result<UInt64, FileStoreError>
    /// BLAKE2b-256 of a whole file (`TransferWire.hashLength` bytes).
    func hash(of path: String) -> Result<[UInt8], FileStoreError>
    /// Fills `buffer` with the bytes at `offset`; a file shorter than that is an error.
    func read(_ path: String, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> FileStoreError?
    /// Creates an empty file (and its directory), refusing with `noSpace` when fewer than `bytes`
    /// are free where it would grow.
    func create(_ path: String, reserving bytes: UInt64) -> FileStoreError?
    /// Appends the chunks, in order.
    func append(_ path: String, _ chunks: [ArraySlice<UInt8>]) -> FileStoreError?
    /// Makes the file's bytes durable (fsync).
    func sync(_ path: String) -> FileStoreError?
    /// Moves `part` to `path`, or, when a file of that name exists, to the first free name of
    /// `InboxNames.candidate` (never replacing an earlier file); returns where it went.
    func place(_ part: String, at path: String) -> Result<String, FileStoreError>
    /// Removes a file; a missing one is fine.
    func remove(_ path: String)
}

public struct FileStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Too little free space for the file: the receiver refuses the offer (`refused`).
    public var noSpace: Bool
    public var message: String

    public init(_ message: String, noSpace: Bool = false) {
        self.message = message
        self.noSpace = noSpace
    }

    public var description: String { message }

    /// How a job hands the error back through `JobOutcome.failed` (a string) and the service reads it.
    var encoded: String { (noSpace ? "S" : "E") + message }
    static func decode(_ s: String) -> FileStoreError {
        FileStoreError(String(s.dropFirst()), noSpace: s.first == "S")
    }
}

/// Received files never replace an earlier one of the same name: `report.pdf` that exists makes
/// the next one `report-2.pdf`, then `report-3.pdf`, ...
public enum InboxNames {
    public static let maxTries = 10_000

    /// The path `n` (1: the name itself).
    public static func candidate(_ path: String, _ n: Int) -> String {
        guard n > 1 else { return path }
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        // A leading dot is a hidden name, not an extension.
        let body = name.hasPrefix(".") ? String(name.dropFirst()) : name
        guard let dot = body.lastIndex(of: "."), dot != body.startIndex else { return "\(dir)\(name)-\(n)" }
        let lead = name.hasPrefix(".") ? "." : ""
        return "\(dir)\(lead)\(body[..<dot])-\(n)\(body[dot...])"
    }
}

/// What the simulator charges its virtual CPU for each kind of file job: rough figures for one
/// core of a small board (BLAKE2b near 500 MB/s, copies near 2 GB/s, a syscall or fsync fixed).
public enum FileCosts {
    static let fixed: Duration = .microseconds(20)
    static func hash(_ bytes: UInt64) -> Duration { fixed + .nanoseconds(Int64(bytes) * 2) }
    static func copy(_ bytes: UInt64) -> Duration { fixed + .nanoseconds(Int64(bytes) / 2) }
    static let sync: Duration = .milliseconds(2)
}
