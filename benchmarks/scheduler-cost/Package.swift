// swift-tools-version:6.0
// Cost per routing decision vs number of endpoints and prompt size (release build):
//   cd benchmarks/scheduler-cost && swift run -c release scheduler-cost [--quick]
import PackageDescription

let package = Package(
    name: "SchedulerCost",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "EndpointPicker", path: "../..")],
    targets: [
        .executableTarget(name: "scheduler-cost", dependencies: [
            .product(name: "EPPPicker", package: "EndpointPicker"),
            .product(name: "EPPProtobuf", package: "EndpointPicker"),
        ], path: "Sources"),
    ]
)
