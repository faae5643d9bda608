import Foundation
import LedgerService
import Logging
import MeshCore
import MeterService
import Node
import Sodium
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
    /// `[log] format`: readable text (the default) or one JSON object a line (`LogFormat`).
    public var logFormat = LogFormat.text
    /// `[metrics] listen`: where to serve `GET /metrics` (Prometheus text); nil serves nothing.
    public var metricsListen: UnderlayAddress?
    public var attributes: [String: String] = [:]
    public var timing = NodeTiming()
    /// The `[gossip]` section: discovery modes, masters, master flag, admin keys.
    public var discovery = Discovery()
    /// `[gossip] beacon_*`: the LAN beacon of mode `nearest` (unused in the other modes).
    public var beacon = BeaconSettings()
    /// `[consensus]`: set when this node runs as a validator (role = "validator").
    public var consensus: ConsensusSettings?
    /// `[lacero]`: whether and how much this node stores of others' fragments.
    public var lacero = LaceroSettings()
    /// `[ledger]`: set when this node keeps a ledger replica (role "validator" or "replica").
    public var ledger: LedgerSettings?
    /// `[meter]`: set when this node is a meter, relay or collector (Docs/meters.md).
    public var meter: MeterSettings?

    /// Where the config set keys whose checks wait for the flags (`validate`).
    var beaconKeyInConfig: ConfigError?
    var networkIDInConfig: ConfigError?

    public init() {}

    /// Checks across keys that flags may still change, run once the config and the flags are
    /// both applied: beacon keys need mode nearest; a network id needs its network key.
    public func validate() throws {
        if let e = beaconKeyInConfig, !discovery.modes.contains(.nearest) { throw e }
        if network != .defaultNetwork && networkKeyPath == nil {
            let what = "names the private mesh \(network) but no network key, so no handshake with its members could complete"
                + " (and the node would not be private); add network_key = \"PATH/network.key\" (or --network-key PATH) with the mesh's"
                + " network.key from `iotaf network init`, or remove the network id"
            if let e = networkIDInConfig { throw ConfigError(file: e.file, key: e.key, line: e.line, message: what) }
            throw RuntimeError("--network-id \(what)")
        }
    }

    /// The key file: `--key`, or `identity.key` in the data directory.
    public var resolvedKeyPath: String { keyPath ?? (dataDir as NSString).appendingPathComponent("identity.key") }
    /// The mesh this node joins: the key file's id and key, or the open default network.
    /// A `network_id` that contradicts the key file is refused.
    public func resolvedNetworkKey() throws -> NetworkKey {
        guard let networkKeyPath else {
            if network != .defaultNetwork { try validate() }  // throws: an id without its key is never the open network
            return .defaultNetwork
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
        "log": ["level": "one of trace, debug, info, notice, warning, error, critical",
                "format": "\"text\" (readable, the default) or \"json\" (one JSON object a line)"],
        "metrics": ["listen": "a TCP address string like \"[::1]:9464\" where GET /metrics answers (Prometheus text)"],
        "timing": Dictionary(uniqueKeysWithValues: timingBounds.map { ($0.key, "an integer \($0.range.lowerBound)...\($0.range.upperBound)") }),
        "gossip": ["modes": "an array of mode strings: \"master\", \"walk\", \"nearest\"",
                   "masters": "an array of address strings like [\"[::1]:7401\"]",
                   "is_master": "true or false",
                   "uplink_kbps": "a positive integer: the node's uplink in kbit/s (membership keeps to a quarter of it)",
                   "admin_keys": "an array of 64-hex-digit Ed25519 public keys (culls they sign are obeyed)",
                   "beacon_port": "a UDP port 1...65535, the same on every node of the LAN (mode nearest)",
                   "beacon_interval_ms": "an integer 100...3600000 (mode nearest)",
                   "beacon_interfaces": "an array of interface names like [\"eth0\", \"wlan0\"] (mode nearest)"],
        "attributes": [:],
        "consensus": ["role": "\"validator\" (this node votes; its key must be in the genesis file)",
                      "genesis": "a path string to the genesis file (from `iotaf network init --validators`; default: genesis beside the network key)",
                      "round_timeout_ms": "an integer 50...600000"],
        "lacero": ["store": "true or false (keep other nodes' fragments)",
                   "quota_bytes": "an integer 0...1099511627776 (most fragment bytes kept)",
                   "keep_probability": "a number 0...1 (chance of keeping a fragment offered)"],
        "ledger": ["role": "\"validator\" (executes what this node's consensus commits; implies [consensus] role = \"validator\") or \"replica\" (a verified copy fetched from validators)",
                   "genesis": "a path string to the genesis file (default: [consensus] genesis, else genesis beside the network key)",
                   "data": "a directory path string for ledger.sqlite (default: the node's data directory)"],
        "meter": ["role": "\"meter\", \"relay\" or \"collector\"",
                  "collectors": "an array of the collectors' node ids (64 hex digits each, `iotaf status` prints them)",
                  "operator_keys": "an array of 64-hex-digit Ed25519 public keys whose commands this node's meters obey",
                  "interval_s": "an integer 1...86400: the read interval (900: 15 minutes)",
                  "anchor_grace_s": "an integer 0...86400: how long a collector waits after an interval's end before anchoring it"],
    ]

    /// `[timing]` keys and the values they accept: wide enough for a radio mesh and a LAN, narrow
    /// enough that a typo (seconds written as milliseconds, a stray zero) is caught at load.
    static let timingBounds: [(key: String, range: ClosedRange<Int>)] = [
        ("probe_interval_ms", 50...600_000), ("probe_timeout_ms", 10...60_000), ("gossip_interval_ms", 10...600_000),
        ("suspicion_min_ms", 100...3_600_000), ("suspicion_max_ms", 100...3_600_000), ("dead_retry_ms", 100...86_400_000),
        ("join_retry_ms", 100...3_600_000), ("forget_dead_after_s", 1...31_536_000), ("max_members", 1...1_048_576),
    ]

    /// The control socket a config file puts its node's at, read leniently (only `[node] control`
    /// and `[node] data`): the CLI looks there even when the rest of the file would be refused.
    public static func controlPath(ofConfig path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
              let table = try? TOMLTable(string: text) else { return nil }
        let base = (path as NSString).deletingLastPathComponent
        func resolve(_ v: String) -> String { v.hasPrefix("/") ? v : (base as NSString).appendingPathComponent(v) }
        var s = NodeSettings()
        if let c = table["node"]?.table?["control"]?.string { s.controlPath = resolve(c) }
        if let d = table["node"]?.table?["data"]?.string { s.dataDir = resolve(d) }
        return s.resolvedControlPath
    }

    /// A value that starts with this is a placeholder in a shipped config: refused until replaced.
    public static let placeholderPrefix = "CHANGE-ME"

    /// Loads a config file. With `finalChecks` false the cross-key checks that flags may still
    /// satisfy (`NodeSettings.validate`) are left to the caller, who runs them after the flags.
    public static func load(path: String, into settings: inout NodeSettings, finalChecks: Bool = true) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, key: nil, line: nil, message: "cannot read the config file; check the path (or run with flags only, no --config)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, key: nil, line: nil, message: "the config file is not UTF-8 text")
        }
        try parse(text, file: path, baseDirectory: (path as NSString).deletingLastPathComponent, into: &settings, finalChecks: finalChecks)
    }

    public static func parse(_ text: String, file: String, baseDirectory: String = ".", into settings: inout NodeSettings,
                             finalChecks: Bool = true) throws {
        try parseKeys(text, file: file, baseDirectory: baseDirectory, into: &settings)
        if finalChecks { try settings.validate() }
    }

    static func parseKeys(_ text: String, file: String, baseDirectory: String, into settings: inout NodeSettings) throws {
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
            if let value = table[section], value.table == nil {
                // `key = value` above the first [section]: TOML puts it at the top level.
                throw ConfigError(file: file, key: section, line: lines.line(section: "", key: section),
                                  message: "key outside any section; move it under its section ([node], [log], [metrics], [gossip], [timing], [attributes], [consensus] or [lacero])")
            }
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

        // A shipped config's placeholder must be replaced (or its line commented out) before use.
        for section in table.keys.sorted() {
            guard let sub = table[section]?.table else { continue }
            for key in sub.keys.sorted() {
                let values = sub[key]?.array.map { a in (0..<a.count).compactMap { a[$0].string } } ?? [sub[key]?.string].compactMap { $0 }
                if let v = values.first(where: { $0.hasPrefix(placeholderPrefix) }) {
                    throw fail(section, key, "still holds the placeholder \"\(v)\"; replace it with a real value (the comment above it says how) or comment the line out")
                }
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
        func bounded(_ k: String) throws -> Int? {
            guard let v = table["timing"]?.table?[k] else { return nil }
            let range = timingBounds.first { $0.key == k }!.range
            guard let i = v.int else { throw fail("timing", k, "wrong type: must be \(schema["timing"]![k]!)") }
            guard range.contains(i) else { throw fail("timing", k, "\(i) is out of range; must be \(schema["timing"]![k]!)") }
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
        if let v = try string("log", "format") {
            guard let f = LogFormat(rawValue: v) else { throw fail("log", "format", "unknown format \"\(v)\"; use \(schema["log"]!["format"]!)") }
            settings.logFormat = f
        }
        if let v = try string("metrics", "listen") {
            guard let a = UnderlayAddress(parsing: v) else { throw fail("metrics", "listen", "bad address \"\(v)\": use [IPv6]:port or IPv4:port, e.g. \"[::1]:9464\"") }
            settings.metricsListen = a
        }
        if let attrs = table["attributes"]?.table {
            var pairs: [(String, String)] = []
            for key in attrs.keys.sorted() {
                guard let v = attrs[key]?.string else { throw fail("attributes", key, "wrong type: attribute values are strings") }
                if let problem = AttributeLimits.problem(key: key, value: v) { throw fail("attributes", key, problem) }
                pairs.append((key, v))
            }
            if let problem = AttributeLimits.problem(pairs) { throw fail("attributes", nil, problem) }
            for (k, v) in pairs { settings.attributes[k] = v }
        }
        let ms = { (k: String) throws -> Duration? in try bounded(k).map { .milliseconds($0) } }
        if let v = try ms("probe_interval_ms") { settings.timing.probeInterval = v }
        if let v = try ms("probe_timeout_ms") { settings.timing.probeTimeout = v }
        if let v = try ms("gossip_interval_ms") { settings.timing.gossipInterval = v }
        if let v = try ms("suspicion_min_ms") { settings.timing.suspicionMin = v }
        if let v = try ms("suspicion_max_ms") { settings.timing.suspicionMax = v }
        if let v = try ms("dead_retry_ms") { settings.timing.deadRetryInterval = v }
        if let v = try ms("join_retry_ms") { settings.timing.joinRetryInterval = v }
        if let v = try bounded("forget_dead_after_s") { settings.timing.forgetDeadAfter = .seconds(v) }
        if let v = try bounded("max_members") { settings.timing.maxMembers = v }
        // Cross-checks: a pair that contradicts itself is refused, never silently clamped.
        if settings.timing.suspicionMin > settings.timing.suspicionMax {
            let k = table["timing"]?.table?["suspicion_min_ms"] != nil ? "suspicion_min_ms" : "suspicion_max_ms"
            throw fail("timing", k, "suspicion_min_ms (\(Int(settings.timing.suspicionMin.milliseconds)) ms) is above suspicion_max_ms (\(Int(settings.timing.suspicionMax.milliseconds)) ms); the minimum must not exceed the maximum")
        }
        // (A probe timeout at or above the probe interval is not refused: gossip stretches a probe
        // round to twice the timeout, Probing.swift.)

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
        // Beacon keys need mode nearest, which a `--mode` flag may still add: checked in `validate`.
        if let k = ["beacon_port", "beacon_interval_ms", "beacon_interfaces"].first(where: { table["gossip"]?.table?[$0] != nil }) {
            settings.beaconKeyInConfig = fail("gossip", k, "only mode nearest beacons; add \"nearest\" to [gossip] modes (or --mode nearest) or remove \(k)")
        }
        if table["node"]?.table?["network_id"] != nil {
            settings.networkIDInConfig = fail("node", "network_id", "")
        }
        if let v = try strings("gossip", "admin_keys") {
            settings.discovery.adminKeys = try v.map { text in
                guard let key = AdminKey.parse(text) else { throw fail("gossip", "admin_keys", "bad key \"\(text)\": must be 64 hex digits (an Ed25519 public key)") }
                if let why = AdminKey.problem(key) { throw fail("gossip", "admin_keys", "bad key \"\(text)\": \(why)") }
                return key
            }
        }
        if let role = try string("meter", "role") {
            guard let r = MeterRole(rawValue: role) else { throw fail("meter", "role", "unknown role \"\(role)\"; use \(schema["meter"]!["role"]!)") }
            settings.meter = MeterSettings(role: r)
        }
        for k in ["collectors", "operator_keys", "interval_s", "anchor_grace_s"] where table["meter"]?.table?[k] != nil && settings.meter == nil {
            throw fail("meter", k, "needs role in [meter] (meter, relay or collector)")
        }
        if let v = try strings("meter", "collectors") {
            settings.meter?.collectors = try v.map { text in
                guard let id = NodeID(hex: text.lowercased()) else { throw fail("meter", "collectors", "bad node id \"\(text)\": must be 64 hex digits") }
                return id
            }
        }
        if let v = try strings("meter", "operator_keys") {
            settings.meter?.operatorKeys = try v.map { text in
                guard let key = AdminKey.parse(text) else { throw fail("meter", "operator_keys", "bad key \"\(text)\": must be 64 hex digits (an Ed25519 public key)") }
                if let why = AdminKey.problem(key) { throw fail("meter", "operator_keys", "bad key \"\(text)\": \(why)") }
                return key
            }
        }
        if let v = try positive("meter", "interval_s") {
            guard v <= 86_400 else { throw fail("meter", "interval_s", "\(v) is out of range; must be \(schema["meter"]!["interval_s"]!)") }
            settings.meter?.intervalSeconds = UInt32(v)
        }
        if let v = try positive("meter", "anchor_grace_s", allowZero: true) {
            guard v <= 86_400 else { throw fail("meter", "anchor_grace_s", "\(v) is out of range; must be \(schema["meter"]!["anchor_grace_s"]!)") }
            settings.meter?.anchorGraceSeconds = v
        }
        if let role = try string("consensus", "role") {
            guard role == "validator" else { throw fail("consensus", "role", "unknown role \"\(role)\"; the only role is \"validator\" (leave [consensus] out on other nodes)") }
            settings.consensus = settings.consensus ?? ConsensusSettings()
        }
        if let v = try string("consensus", "genesis") {
            guard settings.consensus != nil else { throw fail("consensus", "genesis", "needs role = \"validator\" in [consensus]") }
            settings.consensus?.genesisPath = path(v)
        }
        if let v = try positive("consensus", "round_timeout_ms") {
            guard settings.consensus != nil else { throw fail("consensus", "round_timeout_ms", "needs role = \"validator\" in [consensus]") }
            guard (50...600_000).contains(v) else { throw fail("consensus", "round_timeout_ms", "\(v) is out of range; must be \(schema["consensus"]!["round_timeout_ms"]!)") }
            settings.consensus?.roundTimeout = .milliseconds(v)
        }
        if let v = table["lacero"]?.table?["store"] {
            guard let b = v.bool else { throw fail("lacero", "store", "wrong type: must be true or false") }
            settings.lacero.store = b
        }
        if let v = try positive("lacero", "quota_bytes", allowZero: true) {
            guard v <= 1 << 40 else { throw fail("lacero", "quota_bytes", "\(v) is out of range; must be \(schema["lacero"]!["quota_bytes"]!)") }
            settings.lacero.quotaBytes = v
        }
        if let v = table["lacero"]?.table?["keep_probability"] {
            guard let d = v.double ?? v.int.map(Double.init), (0...1).contains(d) else {
                throw fail("lacero", "keep_probability", "must be \(schema["lacero"]!["keep_probability"]!)")
            }
            settings.lacero.keepProbability = d
        }
        if let role = try string("ledger", "role") {
            guard let r = LedgerRole(rawValue: role) else { throw fail("ledger", "role", "unknown role \"\(role)\"; use \"validator\" or \"replica\" (leave [ledger] out on nodes without a ledger)") }
            settings.ledger = LedgerSettings(role: r)
            // A validating ledger executes what this node's consensus commits: it is a consensus validator too.
            if r == .validator { settings.consensus = settings.consensus ?? ConsensusSettings() }
        }
        if let v = try string("ledger", "genesis") {
            guard settings.ledger != nil else { throw fail("ledger", "genesis", "needs role = \"validator\" or \"replica\" in [ledger]") }
            settings.ledger?.genesisPath = path(v)
        }
        if let v = try string("ledger", "data") {
            guard settings.ledger != nil else { throw fail("ledger", "data", "needs role = \"validator\" or \"replica\" in [ledger]") }
            settings.ledger?.dataDir = path(v)
        }
    }
}

/// The attribute limits of the gossip wire (`GossipWire`), as config and flag checks.
public enum AttributeLimits {
    /// What is wrong with one pair, or nil.
    public static func problem(key: String, value: String) -> String? {
        if key.isEmpty { return "an attribute key is empty" }
        if key.utf8.count > GossipWire.maxKeyLength { return "key is \(key.utf8.count) bytes; the limit is \(GossipWire.maxKeyLength)" }
        if value.utf8.count > GossipWire.maxValueLength { return "value is \(value.utf8.count) bytes; the limit is \(GossipWire.maxValueLength)" }
        return nil
    }

    /// What is wrong with the whole set (count, encoded size), or nil.
    public static func problem(_ pairs: [(String, String)]) -> String? {
        do { _ = try Attributes(pairs); return nil } catch { return "\(error)" }
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
    /// Why 32 well-formed bytes still cannot be an admin key, or nil: a key whose sign bit is set
    /// is the negated twin of an identity key and verifies nothing (`IdentityKey.verify`); one that
    /// is no point of the prime-order group would verify nothing either.
    public static func problem(_ key: PublicKey) -> String? {
        if !key.isCanonical {
            return "not a canonical Ed25519 key (its sign bit, the top bit of the last byte, is set: the negated twin "
                + "of an identity key, which signs nothing); use the public key `iotaf keygen` printed"
        }
        if !Ed25519Arithmetic.isValidPoint(key.bytes) {
            return "not a point of Ed25519's prime-order group, so no signature verifies with it; use the public key `iotaf keygen` printed"
        }
        return nil
    }

    public static func parse(_ text: String) -> PublicKey? {
        let digits = Array(text.lowercased().utf8)
        guard digits.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = hexValue(digits[i]), let lo = hexValue(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return PublicKey(raw: out)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
