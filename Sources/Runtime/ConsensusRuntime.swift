import Consensus
import Foundation
import MeshCore
import Node

/// The runtime's side of consensus: building the validator's service from `[consensus]` and the
/// genesis file, and the control socket's `consensus_status` / `consensus_submit`.
extension NodeRuntime {
    /// The validator's service, or nil when `[consensus]` is absent. Throws, with a message saying
    /// what to fix, when the genesis file is missing or bad or this node's key is not a validator.
    /// `unixMillisAtZero`: the wall clock at the loop's `Instant.zero`, so leaders stamp blocks
    /// with the consensus time contracts read (`ConsensusConfig.unixMillisAtZero`).
    static func consensusService(settings: NodeSettings, identity: NodeIdentity, seed: UInt64, unixMillisAtZero: UInt64? = nil) throws -> ConsensusService? {
        guard let c = settings.consensus else { return nil }
        guard let path = c.genesisPath ?? settings.ledger?.genesisPath ?? settings.networkKeyPath.map({ (($0 as NSString).deletingLastPathComponent as NSString).appendingPathComponent(GenesisFile.fileName) }) else {
            throw RuntimeError("[consensus] role = \"validator\" needs a genesis file: set [consensus] genesis = PATH (or --genesis), or a network key with the genesis beside it (`iotaf network init --validators`)")
        }
        let file = try GenesisFile.read(path)
        var config = ConsensusConfig(genesis: file.genesis)
        config.roundTimeout = c.roundTimeout
        config.unixMillisAtZero = unixMillisAtZero
        do {
            return try ConsensusService(config: config, identity: identity, rng: SeededGenerator(seed: seed ^ 0xc045_e115))
        } catch let e as ConsensusServiceError {
            throw RuntimeError("\(path): \(e)")
        }
    }

    /// The consensus service as it is now, if this node runs one.
    public var consensus: ConsensusService? { core.service(ConsensusService.self) }

    func answerConsensus(_ command: String, _ parsed: [String: Any]) -> [UInt8] {
        guard let service = consensus else {
            return Array(ControlJSON.error("this node is not a validator (no [consensus] role = \"validator\" in its config)"))
        }
        switch command {
        case "consensus_submit":
            guard let hex = parsed["payload"] as? String, let bytes = Hex.decode(hex.lowercased()), !bytes.isEmpty else {
                return Array(ControlJSON.error("consensus_submit needs \"payload\": the payload's bytes as hex (1 byte or more)"))
            }
            guard bytes.count <= service.config.limits.maxPayloadBytes else {
                return Array(ControlJSON.error("payload of \(bytes.count) bytes exceeds the limit of \(service.config.limits.maxPayloadBytes)"))
            }
            guard service.halted == nil, service.core != nil else {
                return Array(ControlJSON.error("the validator is not running: \(service.halted ?? "not started")"))
            }
            feed(.command(.service(ConsensusService.protocolID, ServicePayload(ConsensusRequest.submit(bytes)))))
            return Array(ControlJSON.encode(["submitted": bytes.count]))
        default:
            var report = ConsensusReport(service.status)
            if let h = parsed["height"] as? String {
                guard let height = UInt64(h) else { return Array(ControlJSON.error("height must be a number")) }
                report.block = service.recentCommits[height].map { ConsensusReport.Block(height: height, hash: Hex.encode($0.bytes)) }
            }
            report.payloads_committed = service.payloadsCommitted
            return Array(ControlJSON.encode(report))
        }
    }
}

/// `iotaf consensus status --json`.
public struct ConsensusReport: Codable, Sendable {
    public struct Block: Codable, Sendable {
        public var height: UInt64
        public var hash: String
    }
    public var validators: Int
    public var quorum: Int
    public var index: Int
    public var halted: String?
    public var height: UInt64
    public var round: UInt64
    public var leader: Int
    public var last_voted_round: UInt64
    public var high_qc_round: UInt64
    public var mempool: Int
    public var payloads_committed = 0
    /// The block at the height asked for (`--height`), when this life committed it and still remembers it.
    public var block: Block?
    public var counters: [String: Int]
    public var drops: [String: Int]

    init(_ s: ConsensusStatus) {
        validators = s.validators; quorum = s.quorum; index = s.index; halted = s.halted
        height = s.height; round = s.round; leader = s.leader
        last_voted_round = s.lastVotedRound; high_qc_round = s.highQCRound; mempool = s.mempool
        let v = s.service
        var c: [String: Int] = ["submitted": v.submitted, "submits_refused": v.submitsRefused, "datagrams_sent": v.datagramsSent,
                                "reliable_sent": v.reliableSent, "unreachable": v.unreachable, "persist_failures": v.persistFailures,
                                "not_validator": v.notValidator, "malformed": v.malformed,
                                "torn_safety_rows_skipped": v.tornSafetyRowsSkipped]
        var d: [String: Int] = [:]
        if let k = s.core {
            c["proposals_sent"] = k.proposalsSent; c["votes_sent"] = k.votesSent; c["timeouts_sent"] = k.timeoutsSent; c["resends"] = k.resends
            c["certificates_formed"] = k.certificatesFormed; c["timeout_certificates_formed"] = k.timeoutCertificatesFormed
            c["blocks_committed"] = k.blocksCommitted; c["payloads_committed"] = k.payloadsCommitted
            c["block_requests_sent"] = k.blockRequestsSent; c["payloads_forwarded"] = k.payloadsForwarded
            c["conflicting_chains"] = k.conflictingChains
            for (r, n) in k.drops { d[r.rawValue] = n }
        }
        counters = c
        drops = d
    }
}
