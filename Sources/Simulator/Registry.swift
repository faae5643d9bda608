/// The kinds of checker and workload a scenario may name. Each protocol declares its own kinds in
/// its own file (`MembershipCheckers.kinds`, `MessageWorkload.kind`, …) and is listed once in
/// `standard`; neither the engine nor the scenario parser knows any kind by name.
public struct SimulationRegistry: Sendable {
    var checkers: [String: CheckerKind] = [:]
    var workloads: [String: WorkloadKind] = [:]
    /// The agents every run builds, in this order (`NodeAgent`).
    var agents: [AgentKind] = []
    /// Kinds in the order they were added, for error messages.
    private(set) var checkerNames: [String] = []
    private(set) var workloadNames: [String] = []

    init() {}

    mutating func add(_ kinds: [CheckerKind]) {
        for k in kinds {
            precondition(checkers[k.name] == nil, "checker kind \(k.name) registered twice")
            checkers[k.name] = k
            checkerNames.append(k.name)
        }
    }

    mutating func add(_ kinds: [WorkloadKind]) {
        for k in kinds {
            precondition(workloads[k.name] == nil, "workload kind \(k.name) registered twice")
            workloads[k.name] = k
            workloadNames.append(k.name)
        }
    }

    /// Every protocol's checkers and workloads. A new protocol adds one line here.
    public static let standard: SimulationRegistry = {
        var r = SimulationRegistry()
        r.add(MembershipCheckers.kinds)
        r.agents.append(LANBeacons.kind)
        r.add(MessageWorkload.checkerKinds)
        r.add([MessageWorkload.kind])
        r.add(LaceroWorkload.checkerKinds)
        r.add([LaceroWorkload.kind])
        r.add(ConsensusWorkload.checkerKinds); r.add([ConsensusWorkload.kind])
        r.add(LedgerWorkload.checkerKinds); r.add([LedgerWorkload.kind])
        r.add(FileWorkload.checkerKinds)
        r.add([FileWorkload.kind])
        r.add(MeterWorkload.checkerKinds); r.add([MeterWorkload.kind])
        return r
    }()

    /// Names of every checker kind, in registration order.
    public var checkKinds: [String] { checkerNames }
    /// Names of every workload kind, in registration order.
    public var workloadKinds: [String] { workloadNames }
}
