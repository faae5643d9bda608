import MeshCore
import Sodium

/// The `ss` Diffie-Hellman result per remote static key, for one local static key: WireGuard's
/// `precomputed_static_static`. In a pattern with an `ss` token (IK) that result never changes
/// between handshakes with the same peer, so each repeated handshake skips one X25519 on each side.
///
/// The results are key material: an entry is wiped when it is evicted or forgotten, and every
/// entry when the cache goes. Bounded: beyond `capacity` the oldest entry goes. A low-order remote
/// key (libsodium refuses the all-zero result) is never stored; the handshake fails as before.
///
/// Not thread-safe: one cache belongs to one session manager, used from one thread.
public final class StaticStaticCache {
    /// The local static key every result here was computed with.
    public let localStatic: DHKeyPair
    public let capacity: Int
    @exclusivity(unchecked) private var results: [PublicKey: [UInt8]] = [:]
    /// Insertion order, for eviction (a ring once full).
    @exclusivity(unchecked) private var ring: [PublicKey] = []
    @exclusivity(unchecked) private var head = 0
    /// How many results were computed and how many were found (for tests and profiles).
    @exclusivity(unchecked) public private(set) var computed = 0
    @exclusivity(unchecked) public private(set) var reused = 0

    public init(localStatic: DHKeyPair, capacity: Int) {
        self.localStatic = localStatic
        self.capacity = max(1, capacity)
    }

    public var count: Int { results.count }

    /// DH(localStatic, remoteStatic), computed once per remote key while it stays in the cache.
    /// Returns a copy the caller may wipe.
    func sharedSecret(remoteStatic: [UInt8], dh: NoiseDH) throws -> [UInt8] {
        guard let key = PublicKey(raw: remoteStatic) else { throw NoiseError.invalidKey("remote static key must be \(PublicKey.length) bytes") }
        if let known = results[key] {
            reused += 1
            return known
        }
        let result = try dh.dh(secretKey: localStatic.secretKey, publicKey: remoteStatic)
        computed += 1
        if ring.count < capacity {
            ring.append(key)
        } else {
            let old = ring[head]
            wipe(old)
            ring[head] = key
            head = (head + 1) % capacity
        }
        results[key] = result
        return result
    }

    /// Wipes and drops the result for one remote static key (a peer that was forgotten). Its
    /// slot in the eviction ring stays until it comes round; evicting a missing key is a no-op.
    public func forget(remoteStatic: [UInt8]) {
        if let key = PublicKey(raw: remoteStatic) { wipe(key) }
    }

    private func wipe(_ key: PublicKey) {
        guard var r = results.removeValue(forKey: key) else { return }
        Sodium.zero(&r)
    }

    deinit {
        for key in Array(results.keys) { wipe(key) }
    }
}
