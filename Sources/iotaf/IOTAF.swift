import ArgumentParser

@main
struct IOTAF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iotaf",
        abstract: "A peer-to-peer mesh node for the Internet of Things.",
        subcommands: [KeygenCommand.self, NodeCommandGroup.self, UpCommand.self, DownCommand.self, StatusCommand.self, MetricsCommand.self, MembersCommand.self, JoinCommand.self, LeaveCommand.self,
                      AttributesCommand.self, QueryCommand.self, CullCommand.self, SendCommand.self,
                      MeshCommand.self, SimCommand.self, BenchCommand.self, NoiseCommand.self, NetworkCommand.self, LedgerCommand.self, ConsensusCommand.self, LaceroCommandGroup.self, MeterCommandGroup.self]
    )
}
