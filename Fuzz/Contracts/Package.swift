// swift-tools-version:6.0
// The libFuzzer target for contract modules (Fuzz/run-contracts.sh builds and runs it). A package of
// its own because WasmKit is built through SwiftPM; a static library, linked with libFuzzer's main
// by the runner (SwiftPM's executables bring a main of their own).
import PackageDescription

let package = Package(
    name: "ContractsFuzz",
    platforms: [.macOS(.v15)],
    products: [.library(name: "ContractsFuzz", type: .static, targets: ["ContractsFuzz"])],
    dependencies: [.package(name: "iotaf", path: "../..")],
    targets: [.target(name: "ContractsFuzz", dependencies: [.product(name: "Contracts", package: "iotaf")])]
)
