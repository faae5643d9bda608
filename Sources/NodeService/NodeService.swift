import MeshCore

/// The contract every protocol of a node keeps (gossip, ping, users' channels; the ledger, Lacero
/// and meter relays after them). A service is a sans-IO state machine: each call takes one input
/// and the current instant and returns what must be done, in order; it never touches a socket, a
/// clock, a disk or a thread, and its randomness comes from a generator it was given.
///
/// The node (`NodeCore`, Sources/Node) is a router around services: it decrypts a datagram, reads
/// the first plaintext bytes (`protocolIDs`) and hands the plaintext to the service that owns
/// them as `.message`; it carries `.send` out through the Noise sessions, `.sendReliable` over its
/// reliable channel stream, and hands `.persist` and `.offload` to its driver. It wakes a service
/// with `.timer` once its `deadline` has come, and keeps one wake for the whole node: the earliest
/// deadline of all services and the sessions. Services hold no references to one another; they
/// talk through typed commands (`.command` outputs the node hands to the service that takes them).
///
/// `Command` and `Event` are the node's command and event types: one vocabulary for the whole node,
/// so a service added later brings its cases and touches no other service.
public protocol NodeService<Command, Event> {
    associatedtype Command: Sendable
    associatedtype Event: Sendable

    /// The first plaintext bytes of this service's messages (Docs/encoding.md). Two services never
    /// share a prefix, and no prefix is a prefix of another's.
    var protocolIDs: [ProtocolID] { get }
    /// When this service next needs `.timer`; nil when it waits for nothing. Read after every call.
    var deadline: Instant? { get }
    /// Whether `command` is this service's to carry out (the node hands each command to the first
    /// service that takes it).
    func takes(_ command: Command) -> Bool
    /// The one entry point. `members` is the node's membership directory (read-only): where a
    /// member is, whether it is alive.
    mutating func handle(_ input: ServiceInput<Command>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<Command, Event>]
    /// What a message this service sent is for, when a send of it opens a Noise session (the node
    /// counts handshakes by purpose); nil: not counted.
    func purpose(ofSent bytes: [UInt8]) -> String?
}

extension NodeService {
    public func purpose(ofSent bytes: [UInt8]) -> String? { nil }
}

/// The first plaintext bytes that name a protocol: one or two bytes.
public struct ProtocolID: Hashable, Sendable, CustomStringConvertible {
    public let first: UInt8
    /// The second byte, when the prefix has two.
    public let second: UInt8?

    public init(_ first: UInt8, _ second: UInt8? = nil) {
        self.first = first
        self.second = second
    }

    /// Whether `bytes` begins with this prefix.
    @inline(__always)
    public func matches(_ bytes: [UInt8]) -> Bool {
        guard let b0 = bytes.first, b0 == first else { return false }
        guard let second else { return true }
        return bytes.count >= 2 && bytes[1] == second
    }

    public var description: String {
        second.map { String(format2: first, $0) } ?? "0x" + Hex.encode([first])
    }
}

extension String {
    fileprivate init(format2 a: UInt8, _ b: UInt8) {
        let printable = { (c: UInt8) in c >= 0x21 && c < 0x7f }
        self = printable(a) && printable(b) ? String(decoding: [a, b], as: UTF8.self) : "0x" + Hex.encode([a, b])
    }
}

/// A peer whose key a session proved: the verified identity and the address it spoke from.
public struct ProvenPeer: Sendable, Hashable {
    public var identity: PeerIdentity
    public var address: UnderlayAddress

    public init(identity: PeerIdentity, address: UnderlayAddress) {
        self.identity = identity
        self.address = address
    }

    public var nodeID: NodeID { identity.nodeID }
}

/// What the node tells a service, with `now`.
public enum ServiceInput<Command: Sendable>: Sendable {
    /// The driver is ready: schedule the first round.
    case start
    /// The service's `deadline` has come (a driver may call a little early; check `now`).
    case timer
    /// Authenticated plaintext that begins with one of the service's `protocolIDs`: one datagram,
    /// or one whole message from the node's reliable stream (an answer to `.sendReliable`).
    case message(from: ProvenPeer, bytes: [UInt8], reliable: Bool)
    case command(Command)
    /// A member came up, went down (dead or left) or was culled: told to every service but the
    /// membership service that reported it.
    case membership(MembershipChange)
    /// A `.persist` this service asked for is durable (or failed); its `then` sends have left.
    case persisted(PersistTicket, PersistOutcome)
    /// An `.offload` this service asked for has finished.
    case offloaded(JobTicket, JobOutcome)
    /// What this service persisted in an earlier life, as the driver read it at start (before
    /// `.start`): every row of every table the service wrote, by table then key.
    case restored([StoredRow])
    /// The driver is about to stop: persist what should outlive this life. The driver carries out
    /// the persists this returns before it exits.
    case stop
}

/// What a service asks the node to do, in order.
public enum ServiceOutput<Command: Sendable, Event: Sendable>: Sendable {
    /// One datagram's plaintext (it begins with the service's protocol id), through a Noise session.
    case send(Destination, bytes: [UInt8])
    /// One message of any size (up to the node's reliable maximum) on the node's reliable stream;
    /// it arrives as `.message(reliable: true)` at the service that owns its first bytes.
    case sendReliable(to: ProvenPeer, bytes: [UInt8])
    /// Make `batch` durable, then carry out `then` (sends), then answer `.persisted`. Nothing in
    /// `then` leaves before the batch is durable (etcd's rule: a state never announced before it is kept).
    indirect case persist(PersistBatch, then: [ServiceOutput])
    /// Run heavy work off the loop (hashing a file, erasure coding, a batch of signatures);
    /// answered with `.offloaded`.
    case offload(OffloadJob)
    case event(Event)
    /// A typed command for whichever service takes it (never the sender itself).
    case command(Command)
    /// Only from the membership service: a member came up, went down or was culled. The node
    /// closes its sessions and reliable connection on down and culled, then tells every other service.
    case membership(MembershipChange)
}

/// Where a datagram goes.
public enum Destination: Sendable, Hashable {
    /// A proven peer at an address: Noise IK with its key.
    case peer(ProvenPeer)
    /// A member, wherever the membership directory says it is now (dropped and counted if unknown).
    case member(NodeID)
    /// A bare address (a seed, a beacon): Noise XX, the handshake tells who answers.
    case address(UnderlayAddress)
}

/// A change of membership, told to every service.
public enum MembershipChange: Sendable, Equatable {
    /// The member is alive (new, or back from dead), at this address.
    case up(ProvenPeer)
    /// The member is dead or left: its sessions and reliable connection are gone.
    case down(PeerIdentity)
    /// An admin culled the member: it is refused for good.
    case culled(PeerIdentity)
}

/// The node's membership table, as the other services read it.
public protocol MemberDirectory {
    /// Where member `id` is reached now and its proven key; nil for a non-member.
    func peer(_ id: NodeID) -> ProvenPeer?
    /// Whether the member may be sent to (alive or suspect); false for non-members.
    func isReachable(_ id: NodeID) -> Bool
    /// Whether the key was culled: its plaintext is refused.
    func isCulled(_ id: NodeID) -> Bool
    /// Whether the membership keeps a standing connection to this member (a neighbour): the node
    /// closes idle reliable connections to anyone else.
    func isNeighbour(_ id: NodeID) -> Bool
}

/// A directory that knows no one: for services tested on their own.
public struct NoMembers: MemberDirectory {
    public init() {}
    public func peer(_ id: NodeID) -> ProvenPeer? { nil }
    public func isReachable(_ id: NodeID) -> Bool { false }
    public func isCulled(_ id: NodeID) -> Bool { false }
    public func isNeighbour(_ id: NodeID) -> Bool { false }
}

/// A command or event value of a service the node's own enums do not name: a new service brings
/// its own typed values and travels in `NodeCommand.service` / `NodeEvent.service` without a
/// change to any other service or to the node.
public struct ServicePayload: Sendable, Equatable, CustomStringConvertible {
    public let value: any Sendable
    private let equals: @Sendable (any Sendable) -> Bool

    public init<T: Sendable & Equatable>(_ value: T) {
        self.value = value
        equals = { ($0 as? T) == value }
    }

    /// The value, if it is a `T`.
    public func `as`<T>(_ type: T.Type) -> T? { value as? T }

    public static func == (a: ServicePayload, b: ServicePayload) -> Bool { a.equals(b.value) }

    public var description: String { "\(value)" }
}
