import ArgumentParser
import Foundation
import MeshCore
import Runtime

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new Ed25519 node identity and print its node id and overlay address.")

    @Option(help: "Where to write the key file (mode 0600).")
    var out: String

    @Flag(help: "Replace an existing key file (the old identity is lost).")
    var force = false

    @Option(name: .customLong("network-id"), help: "Network id (32 hex digits) for the overlay address; default: the default network.")
    var networkID: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var network = NetworkID.defaultNetwork
        if let networkID {
            guard let n = NetworkID(hex: networkID) else { throw ValidationError("--network-id must be 32 hex digits") }
            network = n
        }
        let identity = NodeIdentity.generate()
        do {
            try KeyFile.write(identity, to: out, force: force)
        } catch {
            throw CLIError("\(error)")
        }
        let overlay = identity.overlayAddress(in: network)
        if json {
            print(String(decoding: ControlJSON.encode(["key_file": out, "node_id": identity.nodeID.hex,
                                                       "overlay_address": overlay.description,
                                                       "public_key": Hex.encode(identity.publicKey)]), as: UTF8.self))
        } else {
            print("wrote \(out)")
            print("node id:         \(identity.nodeID.hex)")
            print("overlay address: \(overlay)")
            print("public key:      \(Hex.encode(identity.publicKey))  (as an admin key: [gossip] admin_keys / --admin-key)")
        }
    }
}

/// An error the CLI prints as is and exits 1 with; the message already says what to do.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
