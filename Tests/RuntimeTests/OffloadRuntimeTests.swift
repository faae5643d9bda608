import Foundation
import Logging
import MeshCore
import Node
import Runtime
import Testing

/// A service whose job reports the thread it ran on.
private struct ThreadReportingService: NodeService {
    static let id = ProtocolID(0x7c)
    struct Go: Sendable, Equatable {}
    struct Ran: Sendable, Equatable { var thread: UInt }

    var protocolIDs: [ProtocolID] { [Self.id] }
    var deadline: Instant? { nil }

    func takes(_ command: NodeCommand) -> Bool {
        if case .service(Self.id, _) = command { return true }
        return false
    }

    mutating func handle(_ input: ServiceInput<NodeCommand>, now: Instant, members: some MemberDirectory) -> [ServiceOutput<NodeCommand, NodeEvent>] {
        switch input {
        case .command(.service(_, _)):
            return [.offload(OffloadJob(ticket: JobTicket(service: Self.id, sequence: 1), cost: .zero) {
                var t = UInt(bitPattern: Int(bitPattern: UInt(pthread_self())))
                return .bytes(withUnsafeBytes(of: &t) { Array($0) })
            })]
        case let .offloaded(_, .bytes(b)):
            return [.event(.service(Self.id, ServicePayload(Ran(thread: b.withUnsafeBytes { $0.loadUnaligned(as: UInt.self) }))))]
        default:
            return []
        }
    }
}

@Suite struct OffloadRuntimeTests {
    /// The runtime carries an `.offload` out on libuv's thread pool, not on the loop's thread, and
    /// hands the result back to the service that asked.
    @Test func anOffloadRunsOnTheThreadPoolAndComesBack() throws {
        let loop = try EventLoop()
        var s = NodeSettings()
        s.listen = UnderlayAddress(parsing: "[::1]:0")!
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let node = try NodeRuntime(settings: s, identity: .generate(), loop: loop, logger: logger, withControlSocket: false, withPeerStore: false)
        try node.add(ThreadReportingService())
        var ran: UInt?
        node.onEvent = { e in
            if case let .service(ThreadReportingService.id, p) = e { ran = p.as(ThreadReportingService.Ran.self)?.thread }
        }
        try node.start()
        node.command(.service(ThreadReportingService.id, ServicePayload(ThreadReportingService.Go())))
        let deadline = Date().addingTimeInterval(5)
        while ran == nil && Date() < deadline { loop.runOnce() }
        let loopThread = UInt(bitPattern: Int(bitPattern: UInt(pthread_self())))
        #expect(ran != nil, "the result came back")
        #expect(ran != loopThread, "the job ran off the loop thread")
        node.stop()
        loop.run()
    }
}
