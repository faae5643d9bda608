import Foundation
import Node

/// The control socket's `attributes` request: with no change asked it reads the node's
/// attributes; `clear`, `set` (replace all: `K=V` lines), `put` (`K=V` lines, added or changed)
/// and `unset` (key lines) change them, in that order, as one new version.
enum AttributeEdit {
    /// The new attributes, or nil when the request only reads them; a reason when it is refused.
    static func apply(_ request: [String: Any], to current: Attributes) -> Result<Attributes?, RuntimeError> {
        let clear = (request["clear"] as? String) == "true"
        let set = request["set"] as? String
        let put = request["put"] as? String
        let unset = request["unset"] as? String
        guard clear || set != nil || put != nil || unset != nil else { return .success(nil) }
        var pairs: [(String, String)] = clear || set != nil ? [] : current.pairs.map { ($0.key, $0.value) }
        for text in [set, put].compactMap({ $0 }) {
            for part in text.split(separator: "\n") {
                guard let eq = part.firstIndex(of: "=") else { return .failure(RuntimeError("attribute \"\(part)\" must be key=value")) }
                let (k, v) = (String(part[..<eq]), String(part[part.index(after: eq)...]))
                pairs.removeAll { $0.0 == k }
                pairs.append((k, v))
            }
        }
        for key in (unset ?? "").split(separator: "\n").map(String.init) {
            guard pairs.contains(where: { $0.0 == key }) else { return .failure(RuntimeError("no attribute \"\(key)\" to unset; the node has \(pairs.map(\.0).sorted().joined(separator: ", "))")) }
            pairs.removeAll { $0.0 == key }
        }
        do { return .success(try Attributes(pairs)) } catch { return .failure(RuntimeError("attributes: \(error)")) }
    }
}

/// What the control socket answers to `attributes`.
struct AttributesReply: Encodable {
    var attributes: [String: String]
    var version: UInt32

    init(_ a: Attributes, version: UInt32) {
        attributes = Dictionary(a.pairs.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        self.version = version
    }
}
