// swift-tools-version:6.0
// libFuzzer targets, one per input surface (issue 7). Each target exports
// LLVMFuzzerTestOneInput; its @main hands that to LLVMFuzzerRunDriver (SwiftPM
// renames executables' `main`, so libFuzzer's own main cannot be used).
// Build and run all of them with ./run.sh [seconds]; build only:
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing
// (-enable-testing: fuzz-redis-reply calls internal consumers of replies through @testable import.)
import PackageDescription

let picker: Target.Dependency = .product(name: "EPPPicker", package: "EndpointPicker")
let fuzzTargets: [(name: String, deps: [Target.Dependency])] = [
    ("fuzz-processing-request", [.product(name: "EPPProtobuf", package: "EndpointPicker")]),
    ("fuzz-request-body", [picker]),
    ("fuzz-usage-scanner", [picker]),
    ("fuzz-prometheus-text", [picker]),
    ("fuzz-picker-config", [picker]),
    ("fuzz-endpoints-file", [picker]),
    ("fuzz-usage-expression", [picker]),
    ("fuzz-grpc-framing", [.product(name: "EPPGRPC", package: "EndpointPicker")]),
    ("fuzz-http2-server", [picker, .product(name: "EPPGRPC", package: "EndpointPicker"),
                           .product(name: "EPPHTTP2", package: "EndpointPicker"),
                           .product(name: "EPPEventLoop", package: "EndpointPicker")]),
    ("fuzz-extproc-stream", [picker, .product(name: "EPPProtobuf", package: "EndpointPicker")]),
    ("fuzz-redis-reply", [picker, .product(name: "EPPRedis", package: "EndpointPicker")]),
]

let package = Package(
    name: "EPPFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "EndpointPicker", path: "../..")],
    targets: [
        .target(name: "CFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzer"]),
    ] + fuzzTargets.map { t in
        .executableTarget(name: t.name, dependencies: ["FuzzSupport"] + t.deps)
    }
)
