import FileTransfer
import Foundation
import Sodium

/// One simulated node's files: what a `FileStore` job reads and writes in the simulator, in
/// memory. It outlives the node's crashes (a disk does); a fixed capacity makes "no space" a
/// refusal the scenario can provoke. Jobs run on the driver's thread, one at a time; the lock
/// only keeps the type honest about `Sendable`.
final class VirtualFiles: FileStore, @unchecked Sendable {
    private let lock = NSLock()
    private var files: [String: [UInt8]] = [:]
    let capacity: UInt64
    private var used: UInt64 = 0

    init(capacity: UInt64) { self.capacity = capacity }

    /// Puts a whole file in place (a workload's file to send).
    func put(_ path: String, _ bytes: [UInt8]) {
        lock.withLock {
            used -= UInt64(files[path]?.count ?? 0)
            files[path] = bytes
            used += UInt64(bytes.count)
        }
    }

    func contents(_ path: String) -> [UInt8]? { lock.withLock { files[path] } }

    func size(of path: String) -> Result<UInt64, FileStoreError> {
        lock.withLock { files[path].map { .success(UInt64($0.count)) } ?? .failure(FileStoreError("no such file")) }
    }

    func hash(of path: String) -> Result<[UInt8], FileStoreError> {
        guard let b = contents(path) else { return .failure(FileStoreError("no such file")) }
        return .success(Blake2b.hash(b, outputLength: TransferWire.hashLength))
    }

    func read(_ path: String, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> FileStoreError? {
        lock.withLock {
            guard let b = files[path] else { return FileStoreError("no such file") }
            guard offset + UInt64(buffer.count) <= UInt64(b.count) else { return FileStoreError("the file shrank while being sent") }
            b.withUnsafeBytes { src in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<Int(offset) + buffer.count]))
            }
            return nil
        }
    }

    func create(_ path: String, reserving bytes: UInt64) -> FileStoreError? {
        lock.withLock {
            let free = capacity - min(capacity, used)
            guard free >= bytes else { return FileStoreError("no space: \(free) bytes free, the file needs \(bytes)", noSpace: true) }
            used -= UInt64(files[path]?.count ?? 0)
            files[path] = []
            return nil
        }
    }

    func append(_ path: String, _ chunks: [ArraySlice<UInt8>]) -> FileStoreError? {
        lock.withLock {
            guard files[path] != nil else { return FileStoreError("no such file") }
            let n = chunks.reduce(UInt64(0)) { $0 + UInt64($1.count) }
            guard used + n <= capacity else { return FileStoreError("no space left on the virtual disk", noSpace: true) }
            for c in chunks { files[path]!.append(contentsOf: c) }
            used += n
            return nil
        }
    }

    func sync(_ path: String) -> FileStoreError? {
        lock.withLock { files[path] == nil ? FileStoreError("no such file") : nil }
    }

    func place(_ part: String, at path: String) -> Result<String, FileStoreError> {
        lock.withLock {
            guard let b = files[part] else { return .failure(FileStoreError("no such file")) }
            for n in 1...InboxNames.maxTries {
                let target = InboxNames.candidate(path, n)
                guard files[target] == nil else { continue }
                files[target] = b
                files[part] = nil
                return .success(target)
            }
            return .failure(FileStoreError("\(InboxNames.maxTries) files named like \(path) already"))
        }
    }

    func remove(_ path: String) {
        lock.withLock {
            if let b = files.removeValue(forKey: path) { used -= UInt64(b.count) }
        }
    }
}
