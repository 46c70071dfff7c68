import EPPEventLoop
@testable import EPPRedis
import Foundation
import Testing

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A real redis-server started by the test (fails — never skips — when redis-server is missing).
final class RedisServer: @unchecked Sendable {
    let port: Int
    let unixPath: String?
    let dir: String
    let extraArgs: [String]
    private var process: Process?

    static let binary: String? = {
        for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: p) { return p }
        return nil
    }()

    init(unixSocket: Bool = false, extraArgs: [String] = []) throws {
        guard RedisServer.binary != nil else { throw TestFailure("redis-server is not installed (CI installs it via .ci/run)") }
        dir = NSTemporaryDirectory() + "epp-redis-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if unixSocket {
            port = 0
            unixPath = dir + "/redis.sock"
        } else {
            port = try RedisServer.freePort()
            unixPath = nil
        }
        self.extraArgs = extraArgs
        try start()
    }

    static func freePort() throws -> Int {
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let p = Socket.localPort(fd)
        close(fd)
        return p
    }

    var url: String { unixPath.map { "unix://\($0)" } ?? "redis://127.0.0.1:\(port)" }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: RedisServer.binary!)
        var args = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", dir, "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
                    "--enable-debug-command", "yes"]
        if let unixPath { args += ["--unixsocket", unixPath, "--unixsocketperm", "700"] }
        p.arguments = args + extraArgs
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
    }

    /// SIGKILL, like a crash.
    func kill() {
        guard let p = process else { return }
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
        if let unixPath { unlink(unixPath) }
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }
}

/// One event loop on a background thread (EventLoopGroup(count: 1)) and helpers to run code on it.
final class LoopHarness: @unchecked Sendable {
    let group = EventLoopGroup(count: 1)
    var loop: EventLoop { group.loops[0] }

    init() { group.start() }

    func shutdown() {
        group.stop()
        group.join()
    }

    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { cont in loop.execute { cont.resume(returning: body()) } }
    }

    func makeClient(_ url: String, configure: @Sendable (inout RedisClient.Configuration) -> Void = { _ in },
                    metrics: RedisClientMetrics? = nil) async throws -> RedisClient {
        let parsed = try RedisURL(parsing: url)
        var config = RedisClient.Configuration()
        configure(&config)
        let c = config
        return await onLoop {
            let client = RedisClient(loop: self.loop, url: parsed, configuration: c, metrics: metrics)
            client.connect()
            return client
        }
    }

    func send(_ client: RedisClient, _ args: [String], timeoutNanos: UInt64? = nil) async -> Result<RedisReply, RedisClientError> {
        await withCheckedContinuation { cont in
            loop.execute { client.send(args, timeoutNanos: timeoutNanos) { cont.resume(returning: $0) } }
        }
    }

    func sendBytes(_ client: RedisClient, _ args: [[UInt8]]) async -> Result<RedisReply, RedisClientError> {
        await withCheckedContinuation { cont in
            loop.execute { client.send(args) { cont.resume(returning: $0) } }
        }
    }

    /// Polls until the client is ready (or the deadline passes).
    func waitReady(_ client: RedisClient, seconds: Double = 5) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await onLoop({ client.state == .ready }) { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return false
    }

    func waitState(_ client: RedisClient, seconds: Double = 5, _ pred: @escaping @Sendable (RedisClient.State) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await onLoop({ pred(client.state) }) { return true }
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
        return false
    }

    func close(_ client: RedisClient) async {
        await onLoop { client.close() }
    }
}
