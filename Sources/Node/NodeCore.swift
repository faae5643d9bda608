import MeshCore

/// The node state machine. Sans-IO: it owns no socket and reads no clock; each call takes an
/// input and the current instant and returns what the driver must do, in order. The libuv
/// runtime and the simulator both drive exactly this type.
public struct NodeCore: Sendable {
    public let identity: PeerIdentity
    public let network: NetworkID
    public let timing: NodeTiming
    public private(set) var counters = NodeCounters()
    public private(set) var members: [NodeID: Member] = [:]
    /// Seeds not yet resolved to a member, with the next instant to try them.
    public private(set) var seeds: [UnderlayAddress: Instant] = [:]

    private var rng: SeededGenerator
    private var nextSeq: UInt64 = 1
    private var pending: [UInt64: PendingProbe] = [:]
    private var roundRobin: [NodeID] = []
    private var roundRobinIndex = 0
    private var nextTick: Instant?
    private var configuredSeeds: Set<UnderlayAddress> = []
    /// Node ids of keys seen recently: a node id costs a BLAKE2b, a lookup costs a SipHash.
    private var identityCache: [[UInt8]: PeerIdentity] = [:]

    struct PendingProbe: Sendable {
        var target: NodeID?
        var address: UnderlayAddress
        var sentAt: Instant
    }

    public init(identity: PeerIdentity, network: NetworkID, timing: NodeTiming = NodeTiming(), rng: SeededGenerator) {
        self.identity = identity
        self.network = network
        self.timing = timing
        self.rng = rng
    }

    public var overlayAddress: OverlayAddress { OverlayAddress(network: network, node: identity.nodeID) }
    public var pendingProbes: Int { pending.count }

    /// Members sorted by node id: the order tables and reports print in.
    public var sortedMembers: [Member] { members.values.sorted { $0.nodeID < $1.nodeID } }

    public mutating func handle(_ input: NodeInput, now: Instant) -> [NodeOutput] {
        var out: [NodeOutput] = []
        switch input {
        case .start:
            runRound(now: now, into: &out)
        case .timer:
            // Driver clocks may fire a little early: then ask again rather than stall.
            if let t = nextTick {
                if now >= t { runRound(now: now, into: &out) } else { out.append(.wake(at: t)) }
            }
        case let .datagram(from, bytes):
            receive(from: from, bytes: bytes, now: now, into: &out)
        case let .command(command):
            apply(command, now: now, into: &out)
        }
        return out
    }

    // MARK: - Commands

    private mutating func apply(_ command: NodeCommand, now: Instant, into out: inout [NodeOutput]) {
        switch command {
        case let .addSeed(address):
            configuredSeeds.insert(address)
            if let id = roundRobin.first(where: { members[$0]?.address == address }) {
                members[id]?.configured = true
            } else {
                seeds[address] = now
            }
        case let .rememberPeer(peer, address):
            if peer.nodeID != identity.nodeID, members[peer.nodeID] == nil {
                addMember(peer, address: address, now: now, into: &out)
            }
        case let .probe(id):
            if let m = members[id] { sendProbe(to: m.address, target: id, now: now, into: &out) }
        }
    }

    // MARK: - Rounds

    private mutating func runRound(now: Instant, into out: inout [NodeOutput]) {
        expireProbes(now: now, into: &out)
        advanceSuspicions(now: now, into: &out)

        // Dictionaries iterate in a per-instance order; anything that decides what is sent walks a
        // sorted or explicitly ordered collection instead, so simulator runs repeat.
        for (address, due) in seeds.sorted(by: { $0.key < $1.key }) where due <= now {
            seeds[address] = now + timing.seedRetryInterval
            sendProbe(to: address, target: nil, now: now, into: &out)
        }

        // Members heard of but not yet heard from: confirm them first.
        var unconfirmed = 0
        for id in roundRobin {
            guard unconfirmed < timing.unconfirmedProbesPerTick else { break }
            guard let m = members[id], m.state == .unknown, m.lastProbe == nil else { continue }
            sendProbe(to: m.address, target: m.nodeID, now: now, into: &out)
            unconfirmed += 1
        }

        // Suspects are probed every round, so a member that merely lost a few packets can answer
        // before its suspicion runs out.
        for id in roundRobin {
            guard let m = members[id], m.state == .suspect else { continue }
            if let last = m.lastProbe, now - last < timing.probeTimeout { continue }
            sendProbe(to: m.address, target: m.nodeID, now: now, into: &out)
        }

        probeRoundRobin(now: now, into: &out)

        nextTick = now + timing.tickInterval
        out.append(.wake(at: nextTick!))
    }

    private mutating func probeRoundRobin(now: Instant, into out: inout [NodeOutput]) {
        var sent = 0
        var examined = 0
        while sent < timing.probesPerTick, examined < roundRobin.count {
            if roundRobinIndex >= roundRobin.count {
                roundRobin.shuffle(using: &rng)
                roundRobinIndex = 0
            }
            let id = roundRobin[roundRobinIndex]
            roundRobinIndex += 1
            examined += 1
            guard let m = members[id] else { continue }
            if let last = m.lastProbe, now - last < timing.probeTimeout { continue }
            if m.state == .dead, let last = m.lastProbe, now - last < timing.deadRetryInterval { continue }
            sendProbe(to: m.address, target: id, now: now, into: &out)
            sent += 1
        }
    }

    private mutating func expireProbes(now: Instant, into out: inout [NodeOutput]) {
        let expired = pending.filter { now - $0.value.sentAt >= timing.probeTimeout }
        for (seq, probe) in expired.sorted(by: { $0.key < $1.key }) {
            pending.removeValue(forKey: seq)
            counters.probesMissed += 1
            guard let id = probe.target, var m = members[id] else { continue }
            m.missedProbes += 1
            members[id] = m
            if m.state == .alive, m.missedProbes >= timing.suspectAfterMisses {
                setState(id, .suspect, now: now, into: &out)
            } else if m.state == .unknown, m.missedProbes >= timing.suspectAfterMisses {
                setState(id, .suspect, now: now, into: &out)
            }
        }
    }

    private mutating func advanceSuspicions(now: Instant, into out: inout [NodeOutput]) {
        for id in roundRobin {
            guard let m = members[id] else { continue }
            switch m.state {
            case .suspect where now - m.stateSince >= timing.suspicionTimeout:
                setState(m.nodeID, .dead, now: now, into: &out)
            case .dead where !m.configured && now - m.stateSince >= timing.forgetDeadAfter:
                forget(m.nodeID, into: &out)
            default:
                break
            }
        }
    }

    private mutating func sendProbe(to address: UnderlayAddress, target: NodeID?, now: Instant, into out: inout [NodeOutput]) {
        let seq = nextSeq
        nextSeq &+= 1
        pending[seq] = PendingProbe(target: target, address: address, sentAt: now)
        if let target { members[target]?.lastProbe = now }
        counters.probesSent += 1
        send(PingWire.Message(kind: .ping, network: network, senderKey: identity.publicKey, seq: seq), to: address, into: &out)
    }

    private mutating func send(_ message: PingWire.Message, to address: UnderlayAddress, into out: inout [NodeOutput]) {
        let bytes = PingWire.encode(message)
        counters.datagramsOut += 1
        counters.bytesOut += UInt64(bytes.count)
        out.append(.send(to: address, bytes: bytes))
    }

    // MARK: - Receiving

    private mutating func receive(from: UnderlayAddress, bytes: [UInt8], now: Instant, into out: inout [NodeOutput]) {
        counters.datagramsIn += 1
        counters.bytesIn += UInt64(bytes.count)
        let message: PingWire.Message
        switch PingWire.decode(bytes) {
        case let .failure(reason): counters.drop(reason); return
        case let .success(m): message = m
        }
        guard message.network == network else { counters.drop(.wrongNetwork); return }
        guard let sender = cachedIdentity(message.senderKey) else { counters.drop(.badKey); return }
        if sender.nodeID == identity.nodeID {
            // A seed that points at ourselves: stop pinging it.
            counters.drop(.fromSelf)
            seeds.removeValue(forKey: from)
            return
        }

        switch message.kind {
        case .ping:
            heardFrom(sender, at: from, now: now, into: &out)
            let reply = PingWire.Message(kind: .pong, network: network, senderKey: identity.publicKey,
                                         seq: message.seq, sample: sample(excluding: sender.nodeID))
            send(reply, to: from, into: &out)
        case .pong:
            guard let probe = pending.removeValue(forKey: message.seq),
                  probe.target == nil || probe.target == sender.nodeID else {
                counters.drop(.unexpectedPong)
                return
            }
            counters.probesAnswered += 1
            if probe.target == nil { seeds.removeValue(forKey: probe.address) }
            heardFrom(sender, at: from, now: now, into: &out)
            if configuredSeeds.contains(probe.address) { members[sender.nodeID]?.configured = true }
            let sampleRTT = now - probe.sentAt
            if let i = members.index(forKey: sender.nodeID) {
                let old = members.values[i].rtt
                members.values[i].rtt = old.map { .nanoseconds(($0.nanoseconds * 7 + sampleRTT.nanoseconds) / 8) } ?? sampleRTT
            }
            out.append(.event(.probeAnswered(sender.nodeID, rtt: sampleRTT)))
            for entry in message.sample { learn(entry, now: now, into: &out) }
        }
    }

    private mutating func cachedIdentity(_ key: [UInt8]) -> PeerIdentity? {
        if let known = identityCache[key] { return known }
        guard let peer = PeerIdentity(publicKey: key) else { return nil }
        if identityCache.count >= 4 * timing.maxMembers + 64 { identityCache.removeAll(keepingCapacity: true) }
        identityCache[key] = peer
        return peer
    }

    private mutating func heardFrom(_ peer: PeerIdentity, at address: UnderlayAddress, now: Instant, into out: inout [NodeOutput]) {
        let id = peer.nodeID
        if members[id] == nil {
            guard addMember(peer, address: address, now: now, into: &out) else { return }
        }
        var moved = false
        var wasAlive = true
        if let i = members.index(forKey: id) {
            members.values[i].lastHeard = now
            members.values[i].missedProbes = 0
            if members.values[i].address != address {
                members.values[i].address = address
                moved = true
            }
            wasAlive = members.values[i].state == .alive
        }
        if moved { out.append(.event(.memberAddressChanged(id, address))) }
        if !wasAlive { setState(id, .alive, now: now, into: &out) }
    }

    private mutating func learn(_ entry: PingWire.SampleEntry, now: Instant, into out: inout [NodeOutput]) {
        guard let peer = PeerIdentity(publicKey: entry.publicKey), peer.nodeID != identity.nodeID,
              members[peer.nodeID] == nil, !entry.address.isUnspecified, entry.address.port != 0 else { return }
        _ = addMember(peer, address: entry.address, now: now, into: &out)
    }

    @discardableResult
    private mutating func addMember(_ peer: PeerIdentity, address: UnderlayAddress, now: Instant, into out: inout [NodeOutput]) -> Bool {
        guard members.count < timing.maxMembers else {
            counters.membersRefusedTableFull += 1
            return false
        }
        members[peer.nodeID] = Member(identity: peer, address: address, state: .unknown, rtt: nil, lastHeard: nil,
                                      stateSince: now, configured: configuredSeeds.contains(address))
        roundRobin.insert(peer.nodeID, at: Int(rng.next() % UInt64(roundRobin.count + 1)))
        out.append(.event(.memberAdded(peer.nodeID, address)))
        return true
    }

    private mutating func forget(_ id: NodeID, into out: inout [NodeOutput]) {
        members.removeValue(forKey: id)
        if let i = roundRobin.firstIndex(of: id) {
            roundRobin.remove(at: i)
            if i < roundRobinIndex { roundRobinIndex -= 1 }
        }
        out.append(.event(.memberForgotten(id)))
    }

    private mutating func setState(_ id: NodeID, _ state: MemberState, now: Instant, into out: inout [NodeOutput]) {
        guard var m = members[id], m.state != state else { return }
        let old = m.state
        m.state = state
        m.stateSince = now
        members[id] = m
        out.append(.event(.memberStateChanged(id, from: old, to: state)))
    }

    /// A random sample of alive members, so peers learn peers of peers: a random starting point
    /// in the (shuffled) round-robin order, then the next alive ones.
    private mutating func sample(excluding excluded: NodeID) -> [PingWire.SampleEntry] {
        let limit = min(timing.sampleSize, PingWire.maxSample)
        let n = roundRobin.count
        guard limit > 0, n > 0 else { return [] }
        var picked: [PingWire.SampleEntry] = []
        let start = Int(rng.next() % UInt64(n))
        // Look at a bounded window, so a table of mostly dead members costs no more than a few lookups.
        for k in 0..<min(n, limit * 4) {
            let id = roundRobin[(start + k) % n]
            guard id != excluded, let m = members[id], m.state == .alive else { continue }
            picked.append(PingWire.SampleEntry(publicKey: m.identity.publicKey, address: m.address))
            if picked.count == limit { break }
        }
        return picked
    }
}
