import MeshCore
import Node

/// Something of the nodes' surroundings that the driver plays per node, besides the network,
/// the disks and the CPUs: it acts on timers of its own and may reach the nodes of a LAN with a
/// signal from outside their sessions, which each hearer is handed as a command (gossip's LAN
/// beacons of mode `nearest`, Membership/LANBeacons.swift). The engine queues its timers
/// (`SimEvent.agent`) and its signals (`SimEvent.signal`, node events run in windows) without
/// knowing what they are. Agents are built for every run, in the registry's order
/// (`SimulationRegistry.agents`), and act only when their scenario keys ask them to.
protocol NodeAgent: AnyObject {
    /// What a node that one of this agent's signals reaches is handed.
    var signal: AgentSignal { get }
    /// Node `i` booted (at the start or at a restart), in incarnation `sim.incarnationOf(i)`.
    func booted(_ i: Int, _ sim: Simulation)
    /// A timer this agent set for node `i` in incarnation `incarnation` is due (driver's thread).
    func fire(node i: Int, incarnation: UInt32, _ sim: Simulation)
    /// Its figures for the report; `heard` counts its signals handed to nodes.
    func metrics(into m: inout [String: Double], heard: UInt64, _ sim: Simulation)
}

/// The input a signal becomes at the node it reaches, made from the sender's address. Called on a
/// window's threads, so it reads nothing mutable.
struct AgentSignal: Sendable {
    /// For the trace: "<name> from node N".
    let name: String
    let command: @Sendable (UnderlayAddress) -> NodeCommand
}

/// A kind of agent: how the registry builds one for a run.
struct AgentKind: Sendable {
    let name: String
    let make: @Sendable (Scenario, SeededGenerator) -> any NodeAgent
}

/// What an agent may do to the run.
extension Simulation {
    /// Calls `agent.fire(node: i, incarnation:)` at `at` (nanoseconds of virtual time), unless node
    /// `i` has restarted or crashed by then (the agent checks the incarnation it is handed).
    func schedule(_ agent: any NodeAgent, node i: Int, at: Int64) {
        guard let slot = agents.firstIndex(where: { $0 === agent }) else { return }
        queue.push(max(at, now), .agent(slot: Int32(slot), node: Int32(i), incarnation: incarnation[i]))
    }

    /// Node `i` multicasts a signal of `bytes` bytes on its LAN (the network's LANs: the
    /// scenario's `lan_size` or regions): counted as sent traffic; each other up node of the LAN
    /// gets its own copy, with its own latency and loss (a partition stops it like any
    /// datagram), handed to it as the agent's `signal`.
    func multicast(_ agent: any NodeAgent, from i: Int, bytes: Int) {
        guard let slot = agents.firstIndex(where: { $0 === agent }) else { return }
        c.sent += 1
        c.bytesSent += UInt64(bytes)
        nodeBytes[i] &+= UInt64(bytes)
        intervalBytes[i] &+= UInt32(truncatingIfNeeded: bytes)
        intervalBytesTotal += UInt64(bytes)
        intervalMsgs += 1
        for j in lanMembers[Int(lanOf[i])] where j != i && life[j] == .up {
            if case let .arrives(delay, _) = net.fate(from: i, to: j, bytes: bytes, now: now) {
                pushNodeEvent(now + delay, .signal(to: Int32(j), from: Int32(i), agent: Int32(slot)))
            }
        }
    }

    /// A signal reached node `j` (sequential loop and global events; windows do the same in
    /// `WindowWork.run`).
    func hear(_ j: Int, from: Int, agent a: Int) {
        guard life[j] == .up, !leaving[j] else { return }
        signalsHeard[a] += 1
        let s = agents[a].signal
        if trace != nil { log(j, "\(s.name) from node \(from)") }
        apply(j, nodes[j].handle(.command(s.command(addresses[from])), now: Instant(nanoseconds: now)))
    }
}
