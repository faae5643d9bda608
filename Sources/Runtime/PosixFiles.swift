import CSodium
import FileTransfer
import Foundation
import Sodium
#if canImport(Glibc)
import Glibc
#endif

/// The file-transfer service's `FileStore` on the real file system. Every call blocks: the
/// service only calls it from `.offload` jobs, which the runtime runs on libuv's thread pool.
struct PosixFiles: FileStore {
    private static func errorText() -> String { String(cString: strerror(errno)) }

    func size(of path: String) -> Result<UInt64, FileStoreError> {
        var st = stat()
        guard stat(path, &st) == 0 else { return .failure(FileStoreError(Self.errorText())) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(FileStoreError("not a regular file")) }
        return .success(UInt64(st.st_size))
    }

    /// BLAKE2b-256, read in chunks.
    func hash(of path: String) -> Result<[UInt8], FileStoreError> {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(FileStoreError(Self.errorText())) }
        defer { Glibc.close(fd) }
        Sodium.ensureInitialised()
        let state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        defer { state.deallocate() }
        crypto_generichash_init(OpaquePointer(state), nil, 0, TransferWire.hashLength)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: TransferWire.chunkSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = Glibc.read(fd, buf.baseAddress, buf.count)
            if n < 0 { if errno == EINTR { continue }; return .failure(FileStoreError(Self.errorText())) }
            if n == 0 { break }
            crypto_generichash_update(OpaquePointer(state), buf.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(n))
        }
        var out = [UInt8](repeating: 0, count: TransferWire.hashLength)
        crypto_generichash_final(OpaquePointer(state), &out, out.count)
        return .success(out)
    }

    func read(_ path: String, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> FileStoreError? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return FileStoreError(Self.errorText()) }
        defer { Glibc.close(fd) }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let why = n == 0 ? "the file shrank while being sent" : Self.errorText()
                memset(buffer.baseAddress! + done, 0, buffer.count - done)
                return FileStoreError(why)
            }
            done += n
        }
        return nil
    }

    func create(_ path: String, reserving bytes: UInt64) -> FileStoreError? {
        let dir = (path as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            return FileStoreError("cannot create \(dir): \(error.localizedDescription)")
        }
        var vfs = statvfs()
        if statvfs(dir, &vfs) == 0 {
            let free = UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize)
            if free < bytes {
                return FileStoreError("no space: \(free) bytes free in \(dir), the file needs \(bytes)", noSpace: true)
            }
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd < 0 { return FileStoreError("cannot create \(path): \(Self.errorText())") }
        Glibc.close(fd)
        return nil
    }

    func append(_ path: String, _ chunks: [ArraySlice<UInt8>]) -> FileStoreError? {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { return FileStoreError("cannot open \(path): \(Self.errorText())") }
        defer { Glibc.close(fd) }
        for c in chunks {
            let err: FileStoreError? = c.withUnsafeBytes { p in
                var done = 0
                while done < p.count {
                    let n = Glibc.write(fd, p.baseAddress! + done, p.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return FileStoreError("write to \(path) failed: \(Self.errorText())", noSpace: errno == ENOSPC)
                    }
                    done += n
                }
                return nil
            }
            if let err { return err }
        }
        return nil
    }

    func sync(_ path: String) -> FileStoreError? {
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return FileStoreError("cannot open \(path): \(Self.errorText())") }
        defer { Glibc.close(fd) }
        return fsync(fd) == 0 ? nil : FileStoreError("fsync \(path): \(Self.errorText())")
    }

    func place(_ part: String, at path: String) -> Result<String, FileStoreError> {
        InboxName.place(part, at: path).mapError { FileStoreError($0.description) }
    }

    func remove(_ path: String) { unlink(path) }
}
