import ArgumentParser
import Foundation
import Consensus
import MeshCore
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
    @Option(help: "Validators' Ed25519 public keys, comma-separated, in order (as `iotaf keygen` prints them): also writes DIR/genesis.")
    var validators: String?
    @Option(help: "Admins' Ed25519 public keys, comma-separated: written to DIR/genesis (needs --validators).")
    var admins: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let path = (out as NSString).appendingPathComponent("network.key")
        let genesisPath = (out as NSString).appendingPathComponent(GenesisFile.fileName)
        var genesis: GenesisFile?
        do {
            if let validators {
                let keys = try GenesisFile.keys(validators, flag: "--validators").compactMap { ValidatorKey($0) }
                guard Set(keys).count == keys.count else { throw CLIError("--validators: a key is listed twice") }
                let adminKeys = try admins.map { try GenesisFile.keys($0, flag: "--admins") } ?? []
                genesis = GenesisFile(validators: keys, admins: adminKeys)
                // Round-trip through the parser: what is written is what nodes will read.
                genesis = try GenesisFile.parse(genesis!.text)
            } else if admins != nil {
                throw CLIError("--admins needs --validators (both go into the genesis file)")
            }
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
        let key = NetworkKey.generate()
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            if genesis != nil, !force, FileManager.default.fileExists(atPath: genesisPath) {
                throw CLIError("\(genesisPath) exists; pass --force to replace it (every validator must then get the new one)")
            }
            try key.write(to: path, force: force)
            if let genesis { try Data(genesis.text.utf8).write(to: URL(fileURLWithPath: genesisPath)) }
        } catch let e as CLIError { throw e } catch {
            throw CLIError("\(error)")
        }
        if json {
            var fields = ["network_key_file": path, "network_id": key.id.description]
            if let genesis {
                fields["genesis_file"] = genesisPath
                fields["chain_id"] = Hex.encode(genesis.genesis.chainID)
            }
            print(String(decoding: ControlJSON.encode(fields), as: UTF8.self))
        } else {
            print("wrote \(path)")
            print("network id: \(key.id)")
            if let genesis {
                print("wrote \(genesisPath): \(genesis.validators.count) validators (quorum \(genesis.genesis.validators.quorum)), \(genesis.admins.count) admins")
                print("chain id: \(Hex.encode(genesis.genesis.chainID))")
            }
            print("give each node of the mesh this file: iotaf node run --network-key \(path) ..." + (genesis == nil ? "" : " (validators add --validator)"))
        }
    }
}
