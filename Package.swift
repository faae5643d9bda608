// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "iotaf",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "iotaf", targets: ["iotaf"]),
        // For the contracts fuzz target (Fuzz/Contracts), a package of its own.
        .library(name: "Contracts", targets: ["Contracts"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swiftwasm/WasmKit", from: "0.4.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries, found by pkg-config.
        .systemLibrary(name: "CLibuv", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),

        // Safe Swift over libsodium.
        .target(name: "Sodium", dependencies: ["CSodium"]),
        // Identities, addresses, time, randomness, codecs: the vocabulary every core shares.
        .target(name: "MeshCore", dependencies: ["Sodium"]),
        // Noise Protocol Framework over libsodium.
        .target(name: "Noise", dependencies: ["Sodium", "MeshCore"]),
        // Encrypted, authenticated sessions between nodes over datagrams (sans-IO).
        .target(name: "Sessions", dependencies: ["Noise", "MeshCore", "Sodium"]),
        // Reliable, ordered, chunked messages over encrypted datagrams (sans-IO).
        .target(name: "Channels", dependencies: ["MeshCore", "SimulatorKit"],
                // The endpoint is generic over the peer type; without this its per-frame code runs
                // unspecialised in the node (generic metadata lookups, witness-table hashing).
                swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]),
        // Membership, failure detection, dissemination and discovery (sans-IO).
        .target(name: "Gossip", dependencies: ["MeshCore", "Sodium"]),
        // The contract every protocol of a node keeps (sans-IO services: inputs, outputs, one deadline).
        .target(name: "NodeService", dependencies: ["MeshCore"]),
        // The node state machine (sans-IO): a router around services.
        .target(name: "Node", dependencies: ["MeshCore", "NodeService", "Sessions", "Channels", "Gossip", "Consensus"]),
        // File transfer (`iotaf send`) as a node service (sans-IO; file access as offloaded jobs).
        .target(name: "FileTransfer", dependencies: ["Node", "NodeService", "Channels", "Sessions", "MeshCore"]),
        // The libuv driver, config, key files, control socket, on-disk stores.
        .target(name: "Runtime", dependencies: [
            "Node", "NodeService", "FileTransfer", "Gossip", "MeshCore", "Sodium", "Sessions", "Channels", "CLibuv", "CSodium", "Consensus",
            "Lacero", "LaceroService",
            "Ledger", "LedgerStore", "LedgerService",
            "Meters", "MeterService",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The simulation engine's protocol-free parts shared by the simulator and the tests' drivers.
        .target(name: "SimulatorKit", dependencies: ["MeshCore"]),
        // The deterministic driver: virtual clock, virtual network, scenarios, reports.
        .target(name: "Simulator", dependencies: [
            "SimulatorKit", "Node", "NodeService", "Gossip", "MeshCore", "Sessions", "Lacero", "LaceroService", "Consensus", "FileTransfer", "Sodium",
            "Ledger", "LedgerService", "Contracts",
            "Meters", "MeterService",
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        // Benchmarks that print our figure beside a physical baseline measured in the same run.
        .target(name: "Bench", dependencies: ["Runtime", "Node", "MeshCore", "Noise", "Sessions", "Sodium", "Channels", "CLibuv", "Simulator",
            "Lacero", "CISAL", "CLibcrypto", "Ledger", "LedgerStore", "LedgerService", "Consensus", "CSodium", "Contracts", "Meters", "MeterService",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRDBSQLite", package: "GRDB.swift")]),
        // Byzantine-fault-tolerant ordering of opaque payloads among validators (sans-IO).
        .target(name: "Consensus", dependencies: ["MeshCore", "Sodium"]),
        // Runs one WebAssembly contract call deterministically: deploy checks, metering, the host API (sans-IO).
        .target(name: "Contracts", dependencies: ["Sodium",
            .product(name: "WasmKit", package: "WasmKit"),
            .product(name: "WasmParser", package: "WasmKit"),
            .product(name: "WAT", package: "WasmKit")]),
        // The ledger: signed transactions, built-in chaincodes, the executor, state tree and proofs (sans-IO).
        .target(name: "Ledger", dependencies: ["Consensus", "MeshCore", "Sodium", "NodeService", "Contracts"]),
        // The ledger's SQLite store (GRDB): blocks, transactions and state; WAL, synchronous=FULL.
        .target(name: "LedgerStore", dependencies: ["Ledger", "NodeService", "MeshCore",
            .product(name: "GRDB", package: "GRDB.swift")]),
        .executableTarget(name: "iotaf", dependencies: [
            "Runtime", "Simulator", "Bench", "Node", "MeshCore", "Noise", "Sodium", "Ledger", "LedgerStore", "LedgerService", "Consensus", "FileTransfer", "Contracts",
            "Lacero", "LaceroService", "Meters", "MeterService", "Channels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ],
        // Release only (Docs/operations.md, "Footprint"; decision 0034): lld packs the PIE's 2.4 MB of
        // relative relocations into a few kB (DT_RELR, glibc 2.36+), which the loader otherwise reads
        // whole into every node's memory, and the executable exports no symbols (the static stdlib's
        // link arguments export all of ours: 1.3 MB of symbol tables nothing looks up).
        linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                                      .when(configuration: .release))]),

        .testTarget(name: "MeshCoreTests", dependencies: ["MeshCore", "Sodium"]),
        .testTarget(name: "GossipTests", dependencies: ["Gossip", "MeshCore", "Sodium", "SimulatorKit"]),
        .testTarget(name: "NodeTests", dependencies: ["Node", "MeshCore", "Sessions", "Channels", "Sodium", "SimulatorKit", "Meters", "MeterService", "Ledger", "LedgerService"]),
        .testTarget(name: "NoiseTests", dependencies: ["Noise", "Sodium"]),
        .testTarget(name: "ChannelsTests", dependencies: ["Channels", "MeshCore"]),
        .testTarget(name: "SessionsTests", dependencies: ["Sessions", "Noise", "MeshCore", "Sodium", "SimulatorKit"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "CLibuv", "Node", "MeshCore", "Sessions", "Channels", "Gossip", "Sodium", "Consensus", "MeterService", .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log")]),
        // testdata/: golden transcripts read by path (GoldenTranscriptTests), not bundled.
        .testTarget(name: "SimulatorTests", dependencies: ["Simulator", "SimulatorKit", "Node", "MeshCore"], exclude: ["testdata"]),
        .testTarget(name: "ConsensusTests", dependencies: ["Consensus", "MeshCore", "Sodium", "SimulatorKit"], exclude: ["testdata"]),
        .testTarget(name: "FileTransferTests", dependencies: ["FileTransfer", "Node", "Channels", "MeshCore", "Sodium"]),
        .testTarget(name: "IntegrationTests", dependencies: ["MeshCore", "Sodium"]),

        // Lacero: shredded, encrypted, erasure-coded objects (Docs/lacero.md).
        // Intel ISA-L's SIMD GF(2^8) coding and OpenSSL's hardware SHA-256, found by pkg-config.
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CLibcrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // Erasure coding (zfec-compatible Reed-Solomon), object sealing, fragments, metadata, wire (sans-IO).
        .target(name: "Lacero", dependencies: ["CISAL", "CLibcrypto", "CSodium", "Sodium", "MeshCore"]),
        // Lacero on the node service seam: the status-register relay, storage node, fetch by id (sans-IO).
        .target(name: "LaceroService", dependencies: ["Lacero", "Node", "NodeService", "MeshCore"]),
        .testTarget(name: "LaceroTests", dependencies: ["Lacero", "LaceroService", "Node", "NodeService", "MeshCore", "Sodium"]),
        .testTarget(name: "ContractsTests", dependencies: ["Contracts"]),
        // The ledger on the node service seam: executes commits, header votes and certificates, replicas' sync, submissions (sans-IO).
        .target(name: "LedgerService", dependencies: ["Ledger", "Contracts", "Consensus", "Node", "NodeService", "Sessions", "MeshCore", "Sodium"]),
        // Meter relays: signed interval reads, chains, Merkle trees over read hashes, proofs, the "iM" wire (sans-IO).
        .target(name: "Meters", dependencies: ["MeshCore", "Sodium"]),
        // Meter relays on the service seam: custody hop by hop, parent choice, anchoring, commands (sans-IO).
        .target(name: "MeterService", dependencies: ["Meters", "Node", "NodeService", "MeshCore", "Sodium", "Ledger", "LedgerService"]),
        .testTarget(name: "MetersTests", dependencies: ["Meters", "MeshCore", "Sodium", "Ledger"]),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger", "LedgerStore", "LedgerService", "Node", "Consensus", "MeshCore", "Sodium", "NodeService", "Contracts",
            .product(name: "GRDB", package: "GRDB.swift")]),
    ]
)
