import Foundation
import Logging
import Synchronization

/// `[log] format`: how a node writes its log to standard error.
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's readable lines (the default).
    case text
    /// One JSON object a line, for journald's JSON fields and log shippers (Docs/operations.md).
    case json
}

/// The log level every handler of the process reads at each message, so a SIGHUP that changes
/// `[log] level` reaches loggers already handed out (the runtime's, the beacon's, the seeds').
public final class SharedLogLevel: Sendable {
    private let raw: Atomic<Int>

    public init(_ level: Logger.Level) { raw = Atomic(Self.index(level)) }

    public var level: Logger.Level {
        get { Logger.Level.allCases[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.index(newValue), ordering: .relaxed) }
    }

    private static func index(_ l: Logger.Level) -> Int { Logger.Level.allCases.firstIndex(of: l) ?? 2 }
}

/// The node's log handler: text through swift-log's `StreamLogHandler`, or a JSON line; its level
/// is the shared one. `LoggingSystem.bootstrap { NodeLogHandler(label: $0, format: f, level: l) }`.
public struct NodeLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let format: LogFormat
    let shared: SharedLogLevel
    private var text: StreamLogHandler

    public init(label: String, format: LogFormat, level: SharedLogLevel) {
        self.label = label
        self.format = format
        shared = level
        text = StreamLogHandler.standardError(label: label)
        text.logLevel = .trace  // the Logger filters by `logLevel` below before calling `log`
    }

    public var logLevel: Logger.Level {
        get { shared.level }
        set { shared.level = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        switch format {
        case .text:
            var t = text
            t.metadata = metadata
            t.log(event: event)
        case .json:
            var all = metadata
            if let p = metadataProvider { all.merge(p.get()) { $1 } }
            if let m = event.metadata { all.merge(m) { $1 } }
            let line = Self.jsonLine(time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: all,
                                     source: event.source, file: event.file, line: event.line, error: event.error.map { "\($0)" })
            // One write(2) per line: lines from several threads do not interleave.
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// Keys a line always has; metadata with one of these names is written as `meta_NAME`.
    static let reserved: Set<String> = ["time", "level", "label", "message", "source", "file", "line", "error"]

    /// One JSON object and a newline: time (RFC 3339, UTC, milliseconds), level, label, message,
    /// source, file, line, then every metadata key (nested dictionaries and arrays kept as JSON).
    public static func jsonLine(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata,
                                source: String, file: String, line: UInt, error: String? = nil) -> String {
        var object: [String: Any] = [:]
        for (k, v) in metadata { object[reserved.contains(k) ? "meta_\(k)" : k] = json(v) }
        object["time"] = rfc3339(time)
        object["level"] = level.rawValue
        object["label"] = label
        object["message"] = message
        object["source"] = source
        object["file"] = (file as NSString).lastPathComponent
        object["line"] = Int(line)
        if let error { object["error"] = error }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data(#"{"message":"log line could not be encoded"}"#.utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func json(_ v: Logger.Metadata.Value) -> Any {
        switch v {
        case let .string(s): return s
        case let .stringConvertible(c): return "\(c)"
        case let .array(a): return a.map(json)
        case let .dictionary(d): return d.mapValues(json)
        }
    }

    static func rfc3339(_ d: Date) -> String {
        let ms = Int64((d.timeIntervalSince1970 * 1000).rounded(.down))
        var t = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ms % 1000))
    }
}
