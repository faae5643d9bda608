import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The node's data directory, and file-system errors said in one line (Foundation's errors print
/// as multi-line `NSCocoaErrorDomain` dumps that name neither the cause nor the fix).
public enum DataDirectory {
    /// Creates `path` and its missing parents (mode 0700: the directory holds the node's state),
    /// or says in one line which component failed and why.
    public static func create(_ path: String) throws {
        var missing: [String] = []
        var p = path
        var st = stat()
        while !p.isEmpty && p != "/" && stat(p, &st) != 0 {
            missing.append(p)
            p = (p as NSString).deletingLastPathComponent
        }
        // The deepest part that exists must be a directory.
        let existing = missing.isEmpty ? path : p
        if !existing.isEmpty, stat(existing, &st) == 0, (st.st_mode & S_IFMT) != S_IFDIR {
            throw RuntimeError("cannot use data directory \(path): \(existing) is a file, not a directory; choose another --data / [node] data")
        }
        for dir in missing.reversed() where mkdir(dir, 0o700) != 0 && errno != EEXIST {
            let why = errno == EACCES || errno == EPERM
                ? "permission denied: \((dir as NSString).deletingLastPathComponent) is not writable by this user (uid \(getuid()))"
                : String(cString: strerror(errno))
            throw RuntimeError("cannot create data directory \(path): \(why); create it yourself or choose another --data / [node] data")
        }
    }

    /// A file-system error as one short reason.
    public static func reason(_ error: Error) -> String {
        if let e = error as? RuntimeError { return e.description }
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileWriteNoPermission, .fileReadNoPermission: return "permission denied"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or directory"
        case .fileWriteFileExists: return "a file of that name is in the way"
        case .fileWriteOutOfSpace: return "no space left on the device"
        default: return ns.localizedDescription.split(separator: "\n").first.map(String.init) ?? "\(ns.domain) \(ns.code)"
        }
    }
}
