import ArgumentParser
import Foundation
import MeshCore
import Runtime

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new Ed25519 node identity and print its node id and overlay address.")

    @Option(help: "Where to write the key file (mode 0600; its directory is created, mode 0700, if missing).")
    var out: String

    @Flag(help: "Replace an existing key file (the old identity is lost).")
    var force = false

    @Option(name: .customLong("network-id"), help: "Network id (32 hex digits) for the overlay address; default: the default network.")
    var networkID: String?

    @Option(name: .customLong("network-key"), help: "The private mesh's network.key: the overlay address printed is the one the node has in that mesh.")
    var networkKey: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var network = NetworkID.defaultNetwork
        if let networkID {
            guard let n = NetworkID(hex: networkID) else { throw ValidationError("--network-id must be 32 hex digits") }
            network = n
        }
        if let networkKey {
            let k: NetworkKey
            do { k = try NetworkKey.read(networkKey) } catch { throw CLIError("\(error)") }
            if networkID != nil && k.id != network {
                throw CLIError("--network-id \(network) contradicts --network-key \(networkKey) (id \(k.id)); give only --network-key")
            }
            network = k.id
        }
        let identity = NodeIdentity.generate()
        do {
            try KeyFile.makeDirectory(of: out)
            try KeyFile.write(identity, to: out, force: force)
        } catch {
            throw CLIError("\(error)")
        }
        let overlay = identity.overlayAddress(in: network)
        if json {
            print(String(decoding: ControlJSON.encode(["key_file": out, "network_id": network.description, "node_id": identity.nodeID.hex,
                                                       "overlay_address": overlay.description,
                                                       "public_key": identity.publicKey.hex]), as: UTF8.self))
        } else {
            print("wrote \(out)")
            print("node id:         \(identity.nodeID.hex)")
            print("overlay address: \(overlay)" + (network == .defaultNetwork ? "  (in the open default network; pass --network-key for a private mesh's)" : "  (in network \(network))"))
            print("public key:      \(identity.publicKey.hex)  (as an admin key: [gossip] admin_keys / --admin-key)")
        }
    }
}

/// An error the CLI prints as is and exits 1 with; the message already says what to do.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
