import Foundation

/// Where a laptop user's node keeps its state when started by `iotaf up`: the identity, peer
/// store and log under the user's data directory (`$XDG_DATA_HOME/iotaf`, else
/// `~/.local/share/iotaf`), the control socket and the process id under the user's runtime
/// directory (`$XDG_RUNTIME_DIR/iotaf`, which the session manager empties at logout; else the data
/// directory). `iotaf status`, `down` and the other control commands look there without flags.
public struct UserDirectories: Sendable, Equatable {
    public let data: String
    public let runtime: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let dataHome = environment["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "\(home)/.local/share"
        data = "\(dataHome)/iotaf"
        runtime = environment["XDG_RUNTIME_DIR"].flatMap { $0.hasPrefix("/") ? "\($0)/iotaf" : nil } ?? data
    }

    public var identity: String { "\(data)/identity.key" }
    public var log: String { "\(data)/node.log" }
    public var control: String { "\(runtime)/control.sock" }
    /// The background node's process id, written by `up`, read by `down`.
    public var pidFile: String { "\(runtime)/node.pid" }
}
