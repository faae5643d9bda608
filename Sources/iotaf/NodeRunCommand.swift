import ArgumentParser
import Foundation
import LedgerService
import Logging
import MeshCore
import Node
import MeterService
import Runtime

struct NodeCommandGroup: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "node", abstract: "Run a node.",
                                                    subcommands: [NodeRunCommand.self])
}

/// Flags that override config keys, shared by `node run`.
struct NodeFlags: ParsableArguments {
    @Option(help: "Config file (TOML). Every key but the [timing] ones can also be given as a flag.")
    var config: String?
    @Option(help: "Identity key file (from `iotaf keygen`). Default: DATA/identity.key.")
    var key: String?
    @Option(help: "UDP address to listen on, [ADDR]:PORT. Default: [::]:7400 (dual-stack).")
    var listen: String?
    @Option(name: .customLong("peer"), help: "A peer to contact, [ADDR]:PORT (repeatable).")
    var peers: [String] = []
    @Option(help: "Control socket path. Default: DATA/control.sock.")
    var control: String?
    @Option(help: "Data directory (peer store, defaults for key and control socket).")
    var data: String?
    @Option(name: .customLong("network-id"), help: "Network id, 32 hex digits.")
    var networkID: String?
    @Option(name: .customLong("network-key"), help: "The private mesh's network.key (from `iotaf network init`).")
    var networkKey: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "[log] format: text (default) or json (one JSON object a line).")
    var logFormat: String?
    @Option(name: .customLong("metrics-listen"), help: "[metrics] listen: serve GET /metrics (Prometheus text) on this TCP address, e.g. [::1]:9464.")
    var metricsListen: String?
    @Option(name: .customLong("mode"), help: "[gossip] modes: master, walk or nearest (repeatable).")
    var modes: [String] = []
    @Option(name: .customLong("master"), help: "[gossip] masters: a master (introducer) address, [ADDR]:PORT (repeatable).")
    var masters: [String] = []
    @Flag(name: .customLong("is-master"), help: "[gossip] is_master: others join through this node.")
    var isMaster = false
    @Option(name: .customLong("admin-key"), help: "[gossip] admin_keys: an admin's Ed25519 public key, 64 hex digits (repeatable).")
    var adminKeys: [String] = []
    @Option(name: .customLong("beacon-port"), help: "[gossip] beacon_port: UDP port of the LAN beacon (mode nearest). Default: 7399.")
    var beaconPort: UInt16?
    @Option(name: .customLong("beacon-interval-ms"), help: "[gossip] beacon_interval_ms: mean time between beacons, 100...3600000 (mode nearest). Default: 2000.")
    var beaconIntervalMs: Int?
    @Option(name: .customLong("beacon-interface"), help: "[gossip] beacon_interfaces: beacon on this interface only (repeatable; default: every multicast-capable one).")
    var beaconInterfaces: [String] = []
    @Option(name: .customLong("uplink-kbps"), help: "[gossip] uplink_kbps: the node's uplink in kbit/s; membership keeps within a quarter of it. Default: no pacing.")
    var uplinkKbps: Int?
    @Option(name: .customLong("attribute"), help: "[attributes]: key=value (repeatable).")
    var attributes: [String] = []
    @Flag(name: .customLong("validator"), help: "[consensus] role = \"validator\": order payloads with the validators of the genesis file (this node's key must be one).")
    var validator = false
    @Option(name: .customLong("genesis"), help: "[consensus] genesis: the genesis file (from `iotaf network init --validators`). Default: genesis beside the network key.")
    var genesis: String?
    @Option(name: .customLong("ledger-role"), help: "[ledger] role: \"validator\" (execute what this node's consensus commits; implies --validator) or \"replica\" (a verified copy fetched from validators).")
    var ledgerRole: String?
    @Option(name: .customLong("ledger-data"), help: "[ledger] data: the directory for ledger.sqlite (default: the node's data directory).")
    var ledgerData: String?
    @Option(name: .customLong("round-timeout-ms"), help: "[consensus] round_timeout_ms: how long a consensus round lasts before this validator times it out (50–600000; default 1000).")
    var roundTimeoutMs: Int?
    @Flag(name: .customLong("lacero-store"), help: "[lacero] store = true: keep other nodes' Lacero fragments (in the data directory's store).")
    var laceroStore = false
    @Option(name: .customLong("lacero-quota-bytes"), help: "[lacero] quota_bytes: most fragment bytes kept (default 268435456).")
    var laceroQuotaBytes: Int?
    @Option(name: .customLong("lacero-keep-probability"), help: "[lacero] keep_probability: chance of keeping a fragment offered, 0...1 (default 0.5).")
    var laceroKeepProbability: Double?
    @Option(name: .customLong("meter-role"), help: "[meter] role: meter, relay or collector (Docs/meters.md). Default: none.")
    var meterRole: String?
    @Option(name: .customLong("meter-collector"), help: "[meter] collectors: a collector's node id, 64 hex digits (repeatable).")
    var meterCollectors: [String] = []
    @Option(name: .customLong("operator-key"), help: "[meter] operator_keys: an operator's public key whose commands the meters obey (repeatable).")
    var operatorKeys: [String] = []
    @Option(name: .customLong("meter-interval-s"), help: "[meter] interval_s: the read interval, 1...86400 (default 900).")
    var meterIntervalS: Int?
    @Option(name: .customLong("anchor-grace-s"), help: "[meter] anchor_grace_s: a collector anchors an interval this long after it ends, 0...86400 (default 60).")
    var anchorGraceS: Int?

    /// The settings: defaults, then the config file, then flags.
    func settings() throws -> NodeSettings {
        var s = NodeSettings()
        if let config {
            do { try ConfigLoader.load(path: config, into: &s, finalChecks: false) } catch { throw CLIError("config error: \(error)") }
        }
        if let key { s.keyPath = key }
        if let data { s.dataDir = data }
        if let control { s.controlPath = control }
        if let listen {
            guard let a = UnderlayAddress(parsing: listen) else { throw CLIError("--listen: bad address \"\(listen)\"; use [IPv6]:port or IPv4:port, e.g. [::]:7400") }
            s.listen = a
        }
        if !peers.isEmpty {
            s.peers = try peers.map { p in
                guard let a = UnderlayAddress(parsing: p) else { throw CLIError("--peer: bad address \"\(p)\"; use [IPv6]:port or IPv4:port") }
                return a
            }
        }
        if let networkID {
            guard let n = NetworkID(hex: networkID) else { throw CLIError("--network-id must be 32 hex digits") }
            s.network = n
        }
        if let networkKey { s.networkKeyPath = networkKey }
        if let logLevel {
            guard let l = Logger.Level(rawValue: logLevel) else { throw CLIError("--log-level: unknown level \"\(logLevel)\"") }
            s.logLevel = l
        }
        if let logFormat {
            guard let f = LogFormat(rawValue: logFormat) else { throw CLIError("--log-format: unknown format \"\(logFormat)\"; use text or json") }
            s.logFormat = f
        }
        if let metricsListen {
            guard let a = UnderlayAddress(parsing: metricsListen) else { throw CLIError("--metrics-listen: bad address \"\(metricsListen)\"; use [IPv6]:port or IPv4:port, e.g. [::1]:9464") }
            s.metricsListen = a
        }
        if !modes.isEmpty {
            s.discovery.modes = try modes.map { m in
                guard let mode = DiscoveryMode(name: m) else { throw CLIError("--mode: unknown mode \"\(m)\"; use master, walk or nearest") }
                return mode
            }
        }
        if !masters.isEmpty {
            s.discovery.masters = try masters.map { p in
                guard let a = UnderlayAddress(parsing: p) else { throw CLIError("--master: bad address \"\(p)\"; use [IPv6]:port or IPv4:port") }
                return a
            }
        }
        if isMaster { s.discovery.isMaster = true }
        if let uplinkKbps {
            guard uplinkKbps > 0 else { throw CLIError("--uplink-kbps must be a positive integer (kbit/s), got \(uplinkKbps)") }
            s.discovery.uplinkKbps = uplinkKbps
        }
        if !adminKeys.isEmpty {
            s.discovery.adminKeys = try adminKeys.map { k in
                guard let key = AdminKey.parse(k) else { throw CLIError("--admin-key: \"\(k)\" is not 64 hex digits") }
                if let why = AdminKey.problem(key) { throw CLIError("--admin-key: \"\(k)\": \(why)") }
                return key
            }
        }
        if let beaconPort {
            guard beaconPort > 0 else { throw CLIError("--beacon-port must be 1...65535") }
            s.beacon.port = beaconPort
        }
        if let beaconIntervalMs {
            guard let d = BeaconSettings.interval(milliseconds: beaconIntervalMs) else { throw CLIError("--beacon-interval-ms must be 100...3600000") }
            s.beacon.interval = d
        }
        if !beaconInterfaces.isEmpty {
            for name in beaconInterfaces where !BeaconSettings.isInterfaceName(name) {
                throw CLIError("--beacon-interface: bad interface name \"\(name)\": 1 to 15 characters, no spaces, '/' or '%'")
            }
            s.beacon.interfaces = beaconInterfaces
        }
        if (beaconPort != nil || beaconIntervalMs != nil || !beaconInterfaces.isEmpty) && !s.discovery.modes.contains(.nearest) {
            throw CLIError("--beacon-*: only mode nearest beacons; add --mode nearest")
        }
        for a in attributes {
            guard let eq = a.firstIndex(of: "=") else { throw CLIError("--attribute: \"\(a)\" must be key=value") }
            let (k, v) = (String(a[..<eq]), String(a[a.index(after: eq)...]))
            if let problem = AttributeLimits.problem(key: k, value: v) { throw CLIError("--attribute \(k.prefix(40)): \(problem)") }
            s.attributes[k] = v
        }
        if let problem = AttributeLimits.problem(s.attributes.map { ($0.key, $0.value) }) { throw CLIError("attributes (config and --attribute): \(problem)") }
        if validator { s.consensus = s.consensus ?? ConsensusSettings() }
        if let ledgerRole {
            guard let r = LedgerRole(rawValue: ledgerRole) else { throw CLIError("--ledger-role \(ledgerRole): use validator or replica") }
            s.ledger = LedgerSettings(role: r, genesisPath: s.ledger?.genesisPath, dataDir: s.ledger?.dataDir)
            if r == .validator { s.consensus = s.consensus ?? ConsensusSettings() }
        }
        if let ledgerData {
            guard s.ledger != nil else { throw CLIError("--ledger-data needs --ledger-role (or [ledger] role)") }
            s.ledger?.dataDir = ledgerData
        }
        if let genesis {
            guard s.consensus != nil || s.ledger != nil else { throw CLIError("--genesis needs --validator or --ledger-role (or [consensus] / [ledger] role)") }
            s.consensus?.genesisPath = genesis
            s.ledger?.genesisPath = genesis
        }
        if let roundTimeoutMs {
            guard s.consensus != nil else { throw CLIError("--round-timeout-ms needs --validator (or [consensus] role = \"validator\")") }
            guard (50...600_000).contains(roundTimeoutMs) else { throw CLIError("--round-timeout-ms \(roundTimeoutMs) is out of range; must be 50–600000") }
            s.consensus?.roundTimeout = .milliseconds(roundTimeoutMs)
        }
        if laceroStore { s.lacero.store = true }
        if let laceroQuotaBytes {
            guard (0...(1 << 40)).contains(laceroQuotaBytes) else { throw CLIError("--lacero-quota-bytes \(laceroQuotaBytes) is out of range; must be 0...1099511627776") }
            s.lacero.quotaBytes = laceroQuotaBytes
        }
        if let laceroKeepProbability {
            guard (0...1).contains(laceroKeepProbability) else { throw CLIError("--lacero-keep-probability \(laceroKeepProbability) must be 0...1") }
            s.lacero.keepProbability = laceroKeepProbability
        }
        if let meterRole {
            guard let r = MeterRole(rawValue: meterRole) else { throw CLIError("--meter-role \(meterRole): use meter, relay or collector") }
            s.meter = s.meter.map { var m = $0; m.role = r; return m } ?? MeterSettings(role: r)
        }
        if !meterCollectors.isEmpty || !operatorKeys.isEmpty || meterIntervalS != nil || anchorGraceS != nil {
            guard s.meter != nil else { throw CLIError("--meter-collector, --operator-key, --meter-interval-s and --anchor-grace-s need --meter-role (or [meter] role)") }
        }
        if !meterCollectors.isEmpty {
            s.meter?.collectors = try meterCollectors.map { t in
                guard let id = NodeID(hex: t.lowercased()) else { throw CLIError("--meter-collector \(t): must be a node id, 64 hex digits") }
                return id
            }
        }
        if !operatorKeys.isEmpty {
            s.meter?.operatorKeys = try operatorKeys.map { t in
                guard let k = AdminKey.parse(t) else { throw CLIError("--operator-key \(t): must be 64 hex digits (an Ed25519 public key)") }
                if let why = AdminKey.problem(k) { throw CLIError("--operator-key \(t): \(why)") }
                return k
            }
        }
        if let meterIntervalS {
            guard (1...86_400).contains(meterIntervalS) else { throw CLIError("--meter-interval-s \(meterIntervalS) is out of range; must be 1–86400") }
            s.meter?.intervalSeconds = UInt32(meterIntervalS)
        }
        if let anchorGraceS {
            guard (0...86_400).contains(anchorGraceS) else { throw CLIError("--anchor-grace-s \(anchorGraceS) is out of range; must be 0–86400") }
            s.meter?.anchorGraceSeconds = anchorGraceS
        }
        do { try s.validate() } catch let e as ConfigError { throw CLIError("config error: \(e)") } catch { throw CLIError("\(error)") }
        return s
    }
}

/// Exit statuses of `iotaf node run` that scripts and service units rely on (README, "Running as a service").
enum NodeExit {
    /// An admin culled this node: restarting with the same key is refused by the mesh.
    static let culled: Int32 = 10
}

struct NodeRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run one node in the foreground until SIGINT or SIGTERM.")

    @OptionGroup var flags: NodeFlags

    func run() throws {
        let settings = try flags.settings()
        // One level for every logger of the process, so a reload's `[log] level` reaches them all.
        let level = SharedLogLevel(settings.logLevel)
        let format = settings.logFormat
        LoggingSystem.bootstrap { label in NodeLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "iotaf.node")
        let identity: NodeIdentity
        do { identity = try KeyFile.read(settings.resolvedKeyPath) } catch { throw CLIError("\(error)") }
        let loop = try EventLoop()
        let node: NodeRuntime
        do {
            node = try NodeRuntime(settings: settings, identity: identity, loop: loop, logger: logger)
            // SIGHUP: the config file again, then the same flags (they still override it).
            if flags.config != nil { node.reloadSettings = { [flags] in try flags.settings() } }
            try node.start(handleSignals: true)
        } catch {
            throw CLIError("\(error)")
        }
        loop.run()
        if node.wasCulled {
            FileHandle.standardError.write(Data("Error: this node (\(identity.nodeID.hex)) was culled by an admin: the mesh refuses its key for good; exit status \(NodeExit.culled) (a service unit should not restart it: RestartPreventExitStatus=\(NodeExit.culled))\n".utf8))
            throw ExitCode(NodeExit.culled)
        }
    }
}
