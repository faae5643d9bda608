import Gossip
import Logging
import MeshCore
import Node

/// What a config reload (SIGHUP) did: the keys that took effect, and the keys that changed in the
/// file but cannot change while the node runs (kept as they were until a restart).
public struct ReloadOutcome: Sendable, Equatable {
    public var applied: [String] = []
    public var kept: [String] = []
}

/// SIGHUP: the runtime re-reads its settings (the command line's `reloadSettings`: the config file
/// again, then the same flags) and applies what may change live: `[log] level`, `[attributes]`,
/// `[node] peers` and `[gossip] masters` added. Every other key is reported as kept.
extension NodeRuntime {
    /// Applies `new` as far as a running node can, and logs one line for each key.
    @discardableResult
    public func reload(_ new: NodeSettings) -> ReloadOutcome {
        var outcome = ReloadOutcome()
        let old = settings
        var next = old

        if new.logLevel != old.logLevel {
            // The node's handler (`NodeLogHandler`) shares its level with every logger of the process.
            logger.logLevel = new.logLevel
            next.logLevel = new.logLevel
            outcome.applied.append("log.level = \(new.logLevel)")
        }
        if new.attributes != old.attributes {
            do {
                let attributes = try Attributes(new.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
                feed(.command(.membership(.setAttributes(attributes))))
                next.attributes = new.attributes
                outcome.applied.append("attributes (\(new.attributes.count) keys)")
            } catch {
                outcome.kept.append("attributes: refused (\(error))")
            }
        }
        let oldSeeds = Set(old.peers + old.discovery.masters)
        let newSeeds = new.peers + new.discovery.masters
        var added: [UnderlayAddress] = []
        for a in newSeeds where !oldSeeds.contains(a) && !added.contains(a) && a != boundAddress { added.append(a) }
        for a in added {
            feed(.command(.addSeed(a)))
            seeds.watchSeed(a)
        }
        if !added.isEmpty { outcome.applied.append("seeds added: \(added.map(\.description).joined(separator: ", "))") }
        next.peers = new.peers
        next.discovery.masters = new.discovery.masters
        let removed = oldSeeds.subtracting(newSeeds).sorted()
        if !removed.isEmpty {
            outcome.kept.append("seeds removed from the config (\(removed.map(\.description).joined(separator: ", "))) stay known to the running node until a restart")
        }

        // Keys a running node cannot change: its socket, identity, files, mesh and protocol setup.
        var liveDiscovery = new.discovery
        liveDiscovery.masters = old.discovery.masters
        let fixed: [(String, Bool)] = [
            ("node.key", new.keyPath != old.keyPath), ("node.listen", new.listen != old.listen),
            ("node.control", new.controlPath != old.controlPath), ("node.data", new.dataDir != old.dataDir),
            ("node.network_id", new.network != old.network), ("node.network_key", new.networkKeyPath != old.networkKeyPath),
            ("log.format", new.logFormat != old.logFormat), ("metrics.listen", new.metricsListen != old.metricsListen),
            ("timing", new.timing != old.timing), ("gossip (modes, is_master, uplink_kbps, admin_keys)", liveDiscovery != old.discovery),
            ("gossip beacon_*", new.beacon != old.beacon), ("consensus", new.consensus != old.consensus),
        ]
        for (key, changed) in fixed where changed { outcome.kept.append("\(key) cannot change while the node runs; kept until a restart") }
        settings = next

        for a in outcome.applied { logger.notice("config reload: \(a)") }
        for k in outcome.kept { logger.warning("config reload: \(k)") }
        if outcome.applied.isEmpty && outcome.kept.isEmpty { logger.notice("config reload: nothing changed") }
        return outcome
    }
}
