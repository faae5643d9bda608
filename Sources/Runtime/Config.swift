import Foundation
import Logging
import MeshCore
import Node
import TOMLKit

/// Everything a node needs to run. Comes from a TOML file, then command-line flags override it.
public struct NodeSettings: Sendable {
    public var keyPath: String?
    public var listen = UnderlayAddress(ip: [UInt8](repeating: 0, count: 16), port: 7400)
    public var peers: [UnderlayAddress] = []
    public var controlPath: String?
    public var dataDir = "iotaf-data"
    public var network = NetworkID.defaultNetwork
    /// The private mesh's key file (`--network-key`); without one the node is in the open default network.
    public var networkKeyPath: String?
    public var logLevel: Logger.Level = .info
    public var attributes: [String: String] = [:]
    public var timing = NodeTiming()
    /// The `[gossip]` section: discovery modes, masters, master flag, admin keys.
    public var discovery = Discovery()
    /// `[gossip] beacon_*`: the LAN beacon of mode `nearest` (unused in the other modes).
    public var beacon = BeaconSettings()

    public init() {}

    /// The key file: `--key`, or `identity.key` in the data directory.
    public var resolvedKeyPath: String { keyPath ?? (dataDir as NSString).appendingPathComponent("identity.key") }
    /// The mesh this node joins: the key file's id and key, or the open default network.
    /// A `network_id` that contradicts the key file is refused.
    public func resolvedNetworkKey() throws -> NetworkKey {
        guard let networkKeyPath else {
            return network == .defaultNetwork ? .defaultNetwork : NetworkKey(id: network, key: NetworkKey.defaultNetwork.key)
        }
        let k = try NetworkKey.read(networkKeyPath)
        if network != .defaultNetwork && network != k.id {
            throw RuntimeError("network_id \(network) contradicts the network key file \(networkKeyPath) (id \(k.id)); drop network_id or use the right key file")
        }
        return k
    }

    /// The control socket: `--control`, or `control.sock` in the data directory.
    public var resolvedControlPath: String { controlPath ?? (dataDir as NSString).appendingPathComponent("control.sock") }
}

/// A refused config, naming the key, the line when known, and what to do.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String?
    public let line: Int?
    public let message: String

    public var description: String {
        var where_ = file
        if let line { where_ += ":\(line)" }
        if let key { return "\(where_): \(key): \(message)" }
        return "\(where_): \(message)"
    }
}

public enum ConfigLoader {
    /// The keys each section accepts, with what the value must be.
    static let schema: [String: [String: String]] = [
        "node": ["key": "a file path string", "listen": "an address string like \"[::]:7400\"",
                 "peers": "an array of address strings like [\"[::1]:7401\"]", "control": "a socket path string",
                 "data": "a directory path string", "network_id": "32 hex digits (from `iotaf network init`)",
                 "network_key": "a path string to the mesh's network.key (from `iotaf network init`)"],
        "log": ["level": "one of trace, debug, info, notice, warning, error, critical"],
        "timing": ["probe_interval_ms": "a positive integer", "probe_timeout_ms": "a positive integer",
                   "gossip_interval_ms": "a positive integer", "suspicion_min_ms": "a positive integer",
                   "suspicion_max_ms": "a positive integer", "dead_retry_ms": "a positive integer",
                   "join_retry_ms": "a positive integer", "forget_dead_after_s": "a positive integer",
                   "max_members": "a positive integer"],
        "gossip": ["modes": "an array of mode strings: \"master\", \"walk\", \"nearest\"",
                   "masters": "an array of address strings like [\"[::1]:7401\"]",
                   "is_master": "true or false",
                   "uplink_kbps": "a positive integer: the node's uplink in kbit/s (membership keeps to a quarter of it)",
                   "admin_keys": "an array of 64-hex-digit Ed25519 public keys (culls they sign are obeyed)",
                   "beacon_port": "a UDP port 1...65535, the same on every node of the LAN (mode nearest)",
                   "beacon_interval_ms": "an integer 100...3600000 (mode nearest)",
                   "beacon_interfaces": "an array of interface names like [\"eth0\", \"wlan0\"] (mode nearest)"],
        "attributes": [:],
    ]

    public static func load(path: String, into settings: inout NodeSettings) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, key: nil, line: nil, message: "cannot read the config file; check the path (or run with flags only, no --config)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, key: nil, line: nil, message: "the config file is not UTF-8 text")
        }
        try parse(text, file: path, baseDirectory: (path as NSString).deletingLastPathComponent, into: &settings)
    }

    public static func parse(_ text: String, file: String, baseDirectory: String = ".", into settings: inout NodeSettings) throws {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(file: file, key: nil, line: e.source.begin.line, message: "not valid TOML: \(e.description)")
        }
        let lines = LineFinder(text: text)
        func fail(_ section: String, _ key: String?, _ message: String) -> ConfigError {
            ConfigError(file: file, key: key.map { "\(section).\($0)" } ?? section, line: lines.line(section: section, key: key), message: message)
        }

        for section in table.keys.sorted() {
            guard let allowed = schema[section] else {
                throw fail(section, nil, "unknown section; allowed sections are \(schema.keys.sorted().joined(separator: ", "))")
            }
            guard let sub = table[section]?.table else {
                throw fail(section, nil, "must be a table ([\(section)])")
            }
            for key in sub.keys.sorted() where section != "attributes" && allowed[key] == nil {
                throw fail(section, key, "unknown key; allowed keys in [\(section)] are \(allowed.keys.sorted().joined(separator: ", "))")
            }
        }

        func path(_ v: String) -> String { v.hasPrefix("/") ? v : (baseDirectory as NSString).appendingPathComponent(v) }
        func string(_ s: String, _ k: String) throws -> String? {
            guard let v = table[s]?.table?[k] else { return nil }
            guard let str = v.string else { throw fail(s, k, "wrong type: must be \(schema[s]![k]!)") }
            return str
        }
        func positive(_ s: String, _ k: String, allowZero: Bool = false) throws -> Int? {
            guard let v = table[s]?.table?[k] else { return nil }
            guard let i = v.int, allowZero ? i >= 0 : i > 0 else { throw fail(s, k, "wrong type or value: must be \(schema[s]![k]!)") }
            return i
        }

        if let v = try string("node", "key") { settings.keyPath = path(v) }
        if let v = try string("node", "control") { settings.controlPath = path(v) }
        if let v = try string("node", "data") { settings.dataDir = path(v) }
        if let v = try string("node", "listen") {
            guard let a = UnderlayAddress(parsing: v) else { throw fail("node", "listen", "bad address \"\(v)\": use [IPv6]:port or IPv4:port, e.g. \"[::]:7400\"") }
            settings.listen = a
        }
        if let v = table["node"]?.table?["peers"] {
            guard let arr = v.array else { throw fail("node", "peers", "wrong type: must be \(schema["node"]!["peers"]!)") }
            settings.peers = try arr.map { item in
                guard let s = item.string else { throw fail("node", "peers", "wrong type: every peer must be an address string") }
                guard let a = UnderlayAddress(parsing: s) else { throw fail("node", "peers", "bad address \"\(s)\": use [IPv6]:port or IPv4:port") }
                return a
            }
        }
        if let v = try string("node", "network_key") { settings.networkKeyPath = path(v) }
        if let v = try string("node", "network_id") {
            guard let n = NetworkID(hex: v) else { throw fail("node", "network_id", "must be 32 hex digits, got \"\(v)\"") }
            settings.network = n
        }
        if let v = try string("log", "level") {
            guard let l = Logger.Level(rawValue: v) else { throw fail("log", "level", "unknown level \"\(v)\"; use \(schema["log"]!["level"]!)") }
            settings.logLevel = l
        }
        if let attrs = table["attributes"]?.table {
            var total = 0
            for key in attrs.keys.sorted() {
                guard let v = attrs[key]?.string else { throw fail("attributes", key, "wrong type: attribute values are strings") }
                total += key.utf8.count + v.utf8.count
                settings.attributes[key] = v
            }
            if total > 4096 { throw fail("attributes", nil, "attributes total \(total) bytes; the limit is 4096") }
        }
        let ms = { (k: String) throws -> Duration? in try positive("timing", k).map { .milliseconds($0) } }
        if let v = try ms("probe_interval_ms") { settings.timing.probeInterval = v }
        if let v = try ms("probe_timeout_ms") { settings.timing.probeTimeout = v }
        if let v = try ms("gossip_interval_ms") { settings.timing.gossipInterval = v }
        if let v = try ms("suspicion_min_ms") { settings.timing.suspicionMin = v }
        if let v = try ms("suspicion_max_ms") { settings.timing.suspicionMax = v }
        if let v = try ms("dead_retry_ms") { settings.timing.deadRetryInterval = v }
        if let v = try ms("join_retry_ms") { settings.timing.joinRetryInterval = v }
        if let v = try positive("timing", "forget_dead_after_s") { settings.timing.forgetDeadAfter = .seconds(v) }
        if let v = try positive("timing", "max_members") { settings.timing.maxMembers = v }

        func strings(_ s: String, _ k: String) throws -> [String]? {
            guard let v = table[s]?.table?[k] else { return nil }
            guard let arr = v.array else { throw fail(s, k, "wrong type: must be \(schema[s]![k]!)") }
            return try arr.map { item in
                guard let str = item.string else { throw fail(s, k, "wrong type: must be \(schema[s]![k]!)") }
                return str
            }
        }
        if let v = try strings("gossip", "modes") {
            settings.discovery.modes = try v.map { name in
                guard let m = DiscoveryMode(name: name) else { throw fail("gossip", "modes", "unknown mode \"\(name)\"; use master, walk or nearest") }
                return m
            }
            if settings.discovery.modes.isEmpty { throw fail("gossip", "modes", "needs at least one mode") }
        }
        if let v = try strings("gossip", "masters") {
            settings.discovery.masters = try v.map { text in
                guard let a = UnderlayAddress(parsing: text) else { throw fail("gossip", "masters", "bad address \"\(text)\": use [IPv6]:port or IPv4:port") }
                return a
            }
        }
        if let v = table["gossip"]?.table?["is_master"] {
            guard let b = v.bool else { throw fail("gossip", "is_master", "wrong type: must be true or false") }
            settings.discovery.isMaster = b
        }
        if let v = try positive("gossip", "uplink_kbps") { settings.discovery.uplinkKbps = v }
        if let v = try positive("gossip", "beacon_port") {
            guard v <= 65535 else { throw fail("gossip", "beacon_port", "\(v) is not a port; must be \(schema["gossip"]!["beacon_port"]!)") }
            settings.beacon.port = UInt16(v)
        }
        if let v = try positive("gossip", "beacon_interval_ms") {
            guard let d = BeaconSettings.interval(milliseconds: v) else {
                throw fail("gossip", "beacon_interval_ms", "\(v) is out of range; must be \(schema["gossip"]!["beacon_interval_ms"]!)")
            }
            settings.beacon.interval = d
        }
        if let v = try strings("gossip", "beacon_interfaces") {
            for name in v where !BeaconSettings.isInterfaceName(name) {
                throw fail("gossip", "beacon_interfaces", "bad interface name \"\(name)\": 1 to 15 characters, no spaces, '/' or '%'")
            }
            settings.beacon.interfaces = v
        }
        let beaconKeys = ["beacon_port", "beacon_interval_ms", "beacon_interfaces"].filter { table["gossip"]?.table?[$0] != nil }
        if let k = beaconKeys.first, !settings.discovery.modes.contains(.nearest) {
            throw fail("gossip", k, "only mode nearest beacons; add \"nearest\" to [gossip] modes or remove \(k)")
        }
        if let v = try strings("gossip", "admin_keys") {
            settings.discovery.adminKeys = try v.map { text in
                guard let key = AdminKey.parse(text) else { throw fail("gossip", "admin_keys", "bad key \"\(text)\": must be 64 hex digits (an Ed25519 public key)") }
                return key
            }
        }
    }
}

/// Finds the line of `[section]` / `key =` in the source, since TOML parsers forget positions.
struct LineFinder {
    let lines: [Substring]

    init(text: String) { lines = text.split(separator: "\n", omittingEmptySubsequences: false) }

    func line(section: String, key: String?) -> Int? {
        var current = ""
        var sectionLine: Int?
        for (i, raw) in lines.enumerated() {
            let l = raw.trimmingCharacters(in: .whitespaces)
            if l.hasPrefix("[") {
                current = l.trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
                if current == section { sectionLine = i + 1 }
                continue
            }
            if let key, current == section, let eq = l.firstIndex(of: "=") {
                let k = l[..<eq].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                if k == key { return i + 1 }
            }
        }
        return sectionLine
    }
}

extension DiscoveryMode {
    /// The config's and the CLI's name for the mode.
    public init?(name: String) {
        switch name {
        case "master": self = .master
        case "walk": self = .walk
        case "nearest": self = .nearest
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .master: "master"
        case .walk: "walk"
        case .nearest: "nearest"
        }
    }
}

/// An admin's Ed25519 public key as the config and CLI write it: 64 hex digits.
public enum AdminKey {
    public static func parse(_ text: String) -> [UInt8]? {
        let digits = Array(text.lowercased().utf8)
        guard digits.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = hexValue(digits[i]), let lo = hexValue(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
