import Dispatch
import Foundation
import Hummingbird
import Logging

/// A set of simulated vLLM servers running in this process (one Hummingbird HTTP/1.1 server per
/// simulated endpoint, each with its own ``ServerState``).
///
/// ```swift
/// var cfg = SimulatorConfig(); cfg.port = 0; cfg.count = 3; cfg.timeScale = 0.01
/// let fleet = try await SimulatorFleet.start(config: cfg)   // returns once all are listening
/// … fleet.ports / fleet.baseURLs …
/// await fleet.stop()
/// ```
public final class SimulatorFleet: Sendable {
    public let config: SimulatorConfig
    public let servers: [ServerState]
    private let task: Task<Void, any Error>

    private init(config: SimulatorConfig, servers: [ServerState], task: Task<Void, any Error>) {
        self.config = config
        self.servers = servers
        self.task = task
    }

    /// Bound ports, in server order.
    public var ports: [Int] { servers.map(\.port) }
    /// `http://host:port` of each server.
    public var baseURLs: [String] { servers.map { "http://\(config.host):\($0.port)" } }

    enum StartEvent: Sendable {
        case running
        case failed(String)
    }

    /// Start all servers; returns once every one of them is listening. With `config.port == 0`
    /// each server binds a free port (see ``ports``); otherwise server *i* binds `port + i`.
    public static func start(config: SimulatorConfig, logger: Logger? = nil) async throws -> SimulatorFleet {
        try config.validate()
        // Hummingbird logs task cancellation at shutdown as errors; keep it quiet by default.
        var log = logger ?? Logger(label: "epp-sim")
        if logger == nil { log.logLevel = Logger.Level(rawValue: config.logLevel) ?? .critical }
        let servers = (0..<config.count).map {
            ServerState(index: $0, config: config, port: config.port == 0 ? 0 : config.port + $0)
        }
        let (events, eventSink) = AsyncStream<StartEvent>.makeStream()
        let appLogger = log
        let task = Task<Void, any Error> {
            defer { eventSink.finish() }
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for s in servers {
                        let app = Application(
                            router: OpenAIRoutes.router(state: s),
                            configuration: .init(address: .hostname(config.host, port: s.port), serverName: nil),
                            onServerRunning: { channel in
                                s.setPort(channel.localAddress?.port ?? s.port)
                                eventSink.yield(.running)
                            },
                            logger: appLogger)
                        group.addTask { try await app.run() }
                    }
                    try await group.waitForAll()
                }
            } catch {
                eventSink.yield(.failed("\(error)"))
                throw error
            }
        }
        var up = 0
        for await ev in events {
            switch ev {
            case .running:
                up += 1
            case .failed(let message):
                task.cancel()
                _ = await task.result
                throw SimulatorConfig.Invalid("cannot start simulator: \(message)")
            }
            if up == config.count { break }
        }
        if up < config.count {
            task.cancel()
            _ = await task.result
            throw SimulatorConfig.Invalid("cannot start simulator: servers exited before listening")
        }
        return SimulatorFleet(config: config, servers: servers, task: task)
    }

    /// Stop all servers and wait for them to exit.
    public func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// Wait until the servers exit (after ``stop()`` or a fatal error).
    public func wait() async throws {
        do {
            try await task.value
        } catch is CancellationError {
        }
    }

    /// Run a fleet until SIGINT/SIGTERM (the `epp-sim` entry point). Prints one line per server.
    public static func run(config: SimulatorConfig, logger: Logger? = nil) async throws {
        let fleet = try await start(config: config, logger: logger)
        for s in fleet.servers {
            print("epp-sim: \(s.podName) model=\(config.model) role=\(config.role.rawValue) listening on http://\(config.host):\(s.port)")
        }
        fflush(nil)
        let sources = [SIGINT, SIGTERM].map { sig -> any DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { fleet.task.cancel() }
            src.resume()
            return src
        }
        defer { sources.forEach { $0.cancel() } }
        try await fleet.wait()
        print("epp-sim: stopped")
    }
}

/// Run a simulator fleet until SIGINT/SIGTERM (same as ``SimulatorFleet/run(config:logger:)``).
public func run(config: SimulatorConfig) async throws {
    try await SimulatorFleet.run(config: config)
}
