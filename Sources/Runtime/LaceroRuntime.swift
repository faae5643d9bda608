import Foundation
import Lacero
import LaceroService
import MeshCore
import Node
import NodeService
import Sodium
#if canImport(Glibc)
import Glibc
#endif

/// `[lacero]`: whether this node keeps other nodes' fragments, and how many bytes of them.
public struct LaceroSettings: Sendable, Equatable {
    /// `store`: keep fragments offered by the relay (false: this node only puts and gets).
    public var store = false
    /// `quota_bytes`: most fragment bytes kept (held in memory and in the node's SQLite store).
    public var quotaBytes = 256 << 20
    /// `keep_probability`: chance of keeping a fragment offered (0 ... 1), quota allowing.
    public var keepProbability = 0.5

    public init() {}

    var serviceConfig: LaceroService.Config {
        var c = LaceroService.Config()
        c.store = store
        c.quotaBytes = quotaBytes
        c.keepProbability = keepProbability
        return c
    }
}

/// Lacero's host on the real machine (runs only inside offloaded jobs, on libuv's thread pool):
/// files through POSIX calls, secrets from libsodium, metadata sealed to and opened with the
/// node's identity key (the requester is the node's operator).
struct PosixLacero: LaceroHost {
    let identity: NodeIdentity

    private static func errorText() -> String { String(cString: strerror(errno)) }

    func read(_ path: String, limit: UInt64) -> Result<[UInt8], LaceroHostError> {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(LaceroHostError(Self.errorText())) }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(LaceroHostError(Self.errorText())) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(LaceroHostError("not a regular file")) }
        guard UInt64(st.st_size) <= limit else { return .failure(LaceroHostError("\(st.st_size) bytes is more than the \(limit) this node reads into memory")) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        let failure: String? = bytes.withUnsafeMutableBytes { buf in
            while done < buf.count {
                let n = Glibc.read(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { return Self.errorText() }
                if n == 0 { return "the file shrank while it was read" }
                done += n
            }
            return nil
        }
        if let failure { return .failure(LaceroHostError(failure)) }
        return .success(bytes)
    }

    func write(_ path: String, _ bytes: [UInt8]) -> LaceroHostError? {
        let part = path + ".part-\(Hex.encode(Sodium.randomBytes(4)))"
        let fd = Glibc.open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return LaceroHostError(Self.errorText()) }
        var failure: String?
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { failure = Self.errorText(); return }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = Self.errorText() }
        Glibc.close(fd)
        if failure == nil, rename(part, path) != 0 { failure = Self.errorText() }
        if let failure {
            unlink(part)
            return LaceroHostError(failure)
        }
        // The rename itself outlives a crash once the directory is synced.
        let dir = Glibc.open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); Glibc.close(dir) }
        return nil
    }

    func freshSecrets() -> (key: [UInt8], deleteSecret: [UInt8]) { Shredder.freshSecrets() }

    func seal(_ metadata: LaceroMetadata) -> Result<[UInt8], LaceroHostError> {
        do { return .success(try metadata.seal(to: identity.publicKey.bytes)) } catch { return .failure(LaceroHostError("\(error)")) }
    }

    func open(_ sealed: [UInt8]) -> Result<LaceroMetadata, LaceroHostError> {
        guard var pair = try? Ed25519.keyPair(seed: identity.seed) else { return .failure(LaceroHostError("this node's identity key cannot be read")) }
        defer { Sodium.zero(&pair.secretKey) }
        do {
            return .success(try LaceroMetadata.open(sealed: sealed, ed25519SecretKey: pair.secretKey))
        } catch .notForThisKey {
            return .failure(LaceroHostError("not sealed to this node's identity (\(identity.nodeID.short)), or altered; give it to the node that put the object (its key file)"))
        } catch {
            return .failure(LaceroHostError("not a Lacero metadata file (\(error))"))
        }
    }
}

/// What `iotaf lacero stats` shows.
public struct LaceroStats: Codable, Sendable {
    public var store: Bool
    public var quota_bytes: Int
    public var keep_probability: Double
    public var bytes_held: Int
    public var fragments_held: Int
    public var operations_running: Int
    public var counters: [String: UInt64]
    public var drops: [String: UInt64]
}

extension NodeRuntime {
    /// The Lacero service as it is now.
    public var lacero: LaceroService? { core.service(LaceroService.self) }

    static func laceroService(settings: NodeSettings, identity: NodeIdentity, seed: UInt64) -> LaceroService {
        LaceroService(me: identity.nodeID, config: settings.lacero.serviceConfig, rng: SeededGenerator(seed: seed).derived(0x1ace),
                      host: PosixLacero(identity: identity))
    }

    /// The control socket's `lacero_*` requests. An operation starts and answers its number at
    /// once; `lacero_op` reports its progress and outcome (the CLI polls it).
    func answerLacero(_ command: String, _ p: [String: Any]) -> [UInt8] {
        guard let service = lacero else { return Array(ControlJSON.error("this node runs no Lacero service")) }
        switch command {
        case "lacero_stats":
            let c = service.counters
            return Array(ControlJSON.encode(LaceroStats(
                store: service.config.store, quota_bytes: service.config.quotaBytes, keep_probability: service.config.keepProbability,
                bytes_held: service.bytesHeld, fragments_held: service.fragmentsHeld, operations_running: service.runningOperations,
                counters: ["kept": c.kept, "passed_on": c.passedOn, "refused_same_segment": c.refusedSameSegment, "refused_quota": c.refusedQuota,
                           "served": c.served, "deleted": c.deleted, "expired": c.expired, "retries": c.retries, "renewed": c.renewed,
                           "paced": c.paced, "rerouted": c.rerouted],
                drops: c.drops)))
        case "lacero_op":
            guard let text = p["op"] as? String, let op = UInt64(text) else {
                return Array(ControlJSON.error("lacero_op needs \"op\": the number lacero_put/get/check/repair/delete answered"))
            }
            guard let r = service.report(op: op, now: loop.now) else {
                return Array(ControlJSON.error("no Lacero operation \(text) (the last \(LaceroService.keepFinished) finished ones are kept)"))
            }
            return Array(ControlJSON.encode(r))
        default:
            func file(_ key: String) -> Result<String, RuntimeError> {
                guard let v = p[key] as? String, v.hasPrefix("/") else {
                    return .failure(RuntimeError("\(command) needs \"\(key)\": an absolute path (the node process opens it)"))
                }
                return .success(v)
            }
            let kind: LaceroRequest.Kind
            do {
                switch command {
                case "lacero_put":
                    let k = Int((p["k"] as? String) ?? "10"), n = Int((p["n"] as? String) ?? "14")
                    guard let k, let n else { return Array(ControlJSON.error("lacero_put: k and n must be integers")) }
                    kind = .put(path: try file("path").get(), out: try file("out").get(), k: k, n: n)
                case "lacero_get": kind = .get(meta: try file("meta").get(), out: try file("out").get())
                case "lacero_check": kind = .check(meta: try file("meta").get())
                case "lacero_repair": kind = .repair(meta: try file("meta").get())
                case "lacero_delete": kind = .delete(meta: try file("meta").get())
                default: return Array(ControlJSON.error("unknown command \"\(command)\""))
                }
            } catch {
                return Array(ControlJSON.error("\(error)"))
            }
            laceroOperations += 1
            let op = laceroOperations
            feed(.command(.service(LaceroService.protocolID, ServicePayload(LaceroCommand.operation(LaceroRequest(op: op, kind: kind))))))
            return Array(ControlJSON.encode(["op": String(op)]))
        }
    }

    func logLacero(_ e: LaceroEvent) {
        guard case let .finished(r) = e else { logger.trace("lacero: \(e)"); return }
        if let error = r.error {
            logger.warning("lacero \(r.kind) \(r.path) failed: \(error)", metadata: ["op": "\(r.op)"])
        } else {
            logger.info("lacero \(r.kind) \(r.path) done", metadata: ["op": "\(r.op)", "elapsed_s": "\(r.elapsed_s)"])
        }
    }
}
