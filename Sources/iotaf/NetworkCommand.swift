import ArgumentParser
import Foundation
import Runtime

struct NetworkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "network", abstract: "Private meshes.",
                                                    subcommands: [NetworkInitCommand.self])
}

struct NetworkInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a private mesh: DIR/network.key with a new network id and 32-byte key (mode 0600).")

    @Option(help: "Directory to write network.key into (created if missing).")
    var out: String
    @Flag(help: "Replace an existing network.key.")
    var force = false
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let path = (out as NSString).appendingPathComponent("network.key")
        let key = NetworkKey.generate()
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try key.write(to: path, force: force)
        } catch {
            throw CLIError("\(error)")
        }
        if json {
            print(String(decoding: ControlJSON.encode(["network_key_file": path, "network_id": key.id.description]), as: UTF8.self))
        } else {
            print("wrote \(path)")
            print("network id: \(key.id)")
            print("give each node of the mesh this file: iotaf node run --network-key \(path) ...")
        }
    }
}
