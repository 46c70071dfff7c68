// swift-tools-version:6.0
// EndpointPicker: an Envoy ext_proc endpoint picker for LLM inference gateways.
// Layout mirrors the architecture, bottom to top:
//   C shims (CLinux, CNghttp2, COpenSSL, CHiredis, CCurl; CSanitizerHooks is compiled: TSan annotations)
//   EPPLock       – the package's mutex: Synchronization.Mutex that ThreadSanitizer can see
//   EPPEventLoop  – epoll reactor, timers, cross-thread wake-ups, sockets
//   EPPHTTP2      – HTTP/2 server connections on libnghttp2, TLS on OpenSSL
//   EPPGRPC       – gRPC framing, status, service routing on top of HTTP/2 streams
//   EPPRedis      – hiredis async client on our event loop (batched writes, timeouts, reconnect)
//   EPPProtobuf   – hand-written protobuf wire codec + ext_proc / grpc.health.v1 messages
//   EPPObservability – metrics registry (lock-free counters/histograms) and Prometheus text rendering
//   EPPPicker     – the picker domain: ext_proc stream state machine, request parsing, datastore, scheduling
//   EPPServer     – wiring: services, health, metrics endpoint, process lifecycle
//   executables   – epp (the picker), epp-sim (model-server simulator), epp-load (load generator)
import PackageDescription

let package = Package(
    name: "EndpointPicker",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "epp", targets: ["epp"]),
        .executable(name: "epp-sim", targets: ["epp-sim"]),
        .executable(name: "epp-load", targets: ["epp-load"]),
        // For the benchmark packages under benchmarks/.
        .library(name: "EPPPicker", targets: ["EPPPicker"]),
        .library(name: "EPPProtobuf", targets: ["EPPProtobuf"]),
        // For the fuzz targets under Tests/Fuzz.
        .library(name: "EPPGRPC", targets: ["EPPGRPC"]),
        .library(name: "EPPHTTP2", targets: ["EPPHTTP2"]),
        .library(name: "EPPEventLoop", targets: ["EPPEventLoop"]),
        .library(name: "EPPRedis", targets: ["EPPRedis"]),
        // For the Lock evidence under Tests/LockProof.
        .library(name: "EPPLock", targets: ["EPPLock"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
    ],
    targets: [
        // C libraries from Debian, imported through module maps and tiny inline shims.
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CNghttp2", path: "Sources/CNghttp2"),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL"),
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        // Compiled C: ThreadSanitizer annotations, live only in --sanitize=thread builds.
        .target(name: "CSanitizerHooks"),
        // Lock: the package's mutex (Synchronization.Mutex plus TSan annotations).
        .target(name: "EPPLock", dependencies: ["CSanitizerHooks"]),

        .target(name: "EPPEventLoop", dependencies: ["CLinux", "EPPLock", .product(name: "Atomics", package: "swift-atomics")]),
        .target(name: "EPPHTTP2", dependencies: ["EPPEventLoop", "CNghttp2", "COpenSSL", "CLinux"]),
        .target(name: "EPPProtobuf"),
        .target(name: "EPPObservability", dependencies: ["EPPLock", .product(name: "Atomics", package: "swift-atomics")]),
        .target(name: "EPPGRPC", dependencies: ["EPPHTTP2", "EPPEventLoop", "CNghttp2"]),
        .target(name: "EPPRedis", dependencies: ["EPPEventLoop", "CHiredis", "CLinux", "EPPObservability",
                                                 .product(name: "Logging", package: "swift-log")]),
        .target(name: "EPPPicker", dependencies: [
            "EPPProtobuf", "EPPEventLoop", "EPPObservability", "EPPRedis", "CLinux", "CCurl", "EPPLock",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Atomics", package: "swift-atomics"),
        ]),
        .target(name: "EPPServer", dependencies: [
            "EPPPicker", "EPPGRPC", "EPPHTTP2", "EPPEventLoop", "EPPProtobuf", "EPPObservability", "CLinux", "EPPLock",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Atomics", package: "swift-atomics"),
        ]),
        .target(name: "EPPApp", dependencies: [
            "EPPServer", "EPPPicker", "EPPEventLoop", "EPPObservability", "EPPRedis", "EPPLock",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "epp", dependencies: ["EPPApp"]),

        // Test tools: model-server simulator and load generator (HTTP/1.1, streaming).
        .target(name: "EPPSim", dependencies: [
            "EPPLock",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "epp-sim", dependencies: [
            "EPPSim", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "EPPLoad", dependencies: [
            "EPPLock",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ]),
        .executableTarget(name: "epp-load", dependencies: [
            "EPPLoad", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "EPPProtobufTests", dependencies: ["EPPProtobuf"]),
        .testTarget(name: "EPPRedisTests", dependencies: ["EPPRedis", "EPPEventLoop"]),
        .testTarget(name: "EPPCoreTests", dependencies: ["EPPEventLoop", "EPPHTTP2", "EPPGRPC", "EPPProtobuf"]),
        .testTarget(name: "EPPPickerTests", dependencies: ["EPPPicker", "EPPProtobuf"]),
        .testTarget(name: "EPPRedisIndexTests", dependencies: ["EPPPicker", "EPPRedis", "EPPEventLoop", "EPPObservability"]),
        .testTarget(name: "EPPServerTests", dependencies: ["EPPServer", "EPPPicker", "EPPProtobuf", "EPPApp", "EPPEventLoop"]),
        .testTarget(name: "EPPSimTests", dependencies: [
            "EPPSim", "EPPLoad",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ]),
    ]
)
