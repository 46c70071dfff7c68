// swift-tools-version:6.0
// Evidence for EPPLock.Lock (RELIABILITY.md "Soak", finding 2). Run ./run.sh, or:
//   swift build -c debug --sanitize=thread --product lock-race-proof   # then run it with `mutex` and with `lock`
//   swift build -c release --product lock-cost && .build/release/lock-cost
import PackageDescription

let package = Package(
    name: "EPPLockProof",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "EndpointPicker", path: "../..")],
    targets: [
        // Two threads update one dictionary under Synchronization.Mutex or under Lock; ThreadSanitizer should
        // report the first (it cannot see Mutex's futex) and not the second. Both must print 60000.
        .executableTarget(name: "lock-race-proof", dependencies: [.product(name: "EPPLock", package: "EndpointPicker")]),
        // Uncontended withLock cost, Mutex against Lock, in a release build.
        .executableTarget(name: "lock-cost", dependencies: [.product(name: "EPPLock", package: "EndpointPicker")]),
    ]
)
