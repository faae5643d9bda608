import FileTransfer
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Received files never replace an earlier one of the same name: `report.pdf` that exists makes
/// the next one `report-2.pdf`, then `report-3.pdf`, ... The claim is atomic (`link` fails
/// when the name is taken), so two transfers finishing at once cannot pick the same name.
enum InboxName {
    static let maxTries = 10_000

    /// The path `n` (1: the name itself); one rule for both drivers (`InboxNames`).
    static func candidate(_ path: String, _ n: Int) -> String { InboxNames.candidate(path, n) }

    /// Moves `part` to the first free name from `path`; returns it, or why it could not.
    static func place(_ part: String, at path: String) -> Result<String, RuntimeError> {
        for n in 1...maxTries {
            let target = candidate(path, n)
            if link(part, target) == 0 { unlink(part); return .success(target) }
            switch errno {
            case EEXIST: continue
            case EPERM, ENOTSUP, EOPNOTSUPP, EXDEV, EMLINK:
                // A file system without hard links: check, then rename (not atomic, still no overwrite seen).
                var st = stat()
                if lstat(target, &st) == 0 { continue }
                if rename(part, target) == 0 { return .success(target) }
                return .failure(RuntimeError("rename to \(target): \(String(cString: strerror(errno)))"))
            default:
                return .failure(RuntimeError("link to \(target): \(String(cString: strerror(errno)))"))
            }
        }
        return .failure(RuntimeError("\(maxTries) files named like \(path) already in the inbox; move some away"))
    }
}
