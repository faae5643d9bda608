import MeshCore

/// Why the core sent a message, finer than its wire type: a ping is a probe, a wide probe, a
/// helper's ping for someone's indirect probe, a dead-member retry or a distance measurement. The
/// node counts, per purpose, the messages that had to open a session (a handshake), which is how
/// the avoidable handshakes were found (Docs/gossip.md, "Handshakes").
public enum GossipSendPurpose: String, Sendable, CaseIterable {
    case probe, wideProbe = "wide_probe", relayedProbe = "relayed_probe", deadRetry = "dead_retry"
    case measure, ack, pingRequest = "ping_request", nack, gossip, join, joinReply = "join_reply"
    case forwardJoin = "forward_join", neighbour, neighbourHigh = "neighbour_high", neighbourNearer = "neighbour_nearer"
    case neighbourReply = "neighbour_reply", disconnect
    case shuffle, shuffleReply = "shuffle_reply", query, queryAnswer = "query_answer", digest
    case digestReply = "digest_reply", attributesRequest = "attributes_request", delta, attributes
    case other
}

extension GossipCore {
    /// The purpose of a message this core just emitted (its encoded bytes, as in `.send`).
    public func purpose(ofSent bytes: [UInt8]) -> GossipSendPurpose {
        guard bytes.count >= GossipWire.headerLength else { return .other }
        switch bytes[3] {
        case 1, 3:
            // A ping-req naming its receiver is a probe, a relayed probe or a measurement too
            // (`notePing`); one sent to helpers carries our probe's seq after its indirect stage.
            guard bytes.count >= GossipWire.headerLength + 4 else { return .other }
            var seq: UInt32 = 0
            for i in 4..<8 { seq = seq << 8 | UInt32(bytes[i]) }
            if let p = probe, p.seq == seq, bytes[3] == 1 || !p.indirectSent { return p.wide ? .wideProbe : .probe }
            if relays[seq] != nil { return .relayedProbe }
            if let s = sidePings[seq] { return s.deadRetry ? .deadRetry : .measure }
            return bytes[3] == 1 ? .other : .pingRequest
        case 2: return .ack
        case 4: return .nack
        case 5: return .gossip
        case 6: return .join
        case 7: return .joinReply
        case 8: return .forwardJoin
        case 9:
            guard bytes.count > GossipWire.headerLength else { return .other }
            switch NeighbourPriority(rawValue: bytes[4]) {
            case .low: return .neighbour
            case .high: return .neighbourHigh
            case .nearer: return .neighbourNearer
            case nil: return .other
            }
        case 10: return .neighbourReply
        case 11: return .disconnect
        case 12: return .shuffle
        case 13: return .shuffleReply
        case 14: return .query
        case 15: return .queryAnswer
        case 16: return .digest
        case 17: return .digestReply
        case 18: return .attributesRequest
        case 64: return .delta
        case 65: return .attributes
        default: return .other
        }
    }
}
