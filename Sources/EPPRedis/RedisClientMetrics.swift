import EPPObservability

/// Client metrics, created once per registry and shared by the clients of all loops.
public final class RedisClientMetrics: Sendable {
    public let commandsOK: Counter
    public let commandsErrorReply: Counter
    public let commandsTimeout: Counter
    public let commandsUnavailable: Counter
    public let commandsDisconnected: Counter
    /// Round trip from issuing a command to its reply (seconds).
    public let latency: Histogram
    public let reconnects: Counter
    public let connectionsEstablished: Counter
    public let connectErrors: Counter
    public let authErrors: Counter
    public let ioErrors: Counter
    public let timeoutResets: Counter
    public let scriptFallbacks: Counter
    public let connected: Gauge

    public init(registry: MetricsRegistry, prefix: String = "epp_redis") {
        let commands = registry.counter("\(prefix)_commands_total", "Redis commands by result.", labels: ["result"])
        commandsOK = commands.labels("ok")
        commandsErrorReply = commands.labels("error_reply")
        commandsTimeout = commands.labels("timeout")
        commandsUnavailable = commands.labels("unavailable")
        commandsDisconnected = commands.labels("disconnected")
        latency = registry.histogram("\(prefix)_command_duration_seconds", "Redis command round-trip time.",
                                     bounds: Histogram.exponential(start: 0.000_025, factor: 2, count: 16)).labels()
        reconnects = registry.counter("\(prefix)_reconnects_total", "Redis reconnect attempts after a lost or failed connection.").labels()
        connectionsEstablished = registry.counter("\(prefix)_connections_total", "Redis connections established (handshake done).").labels()
        let errors = registry.counter("\(prefix)_errors_total", "Redis connection errors by kind.", labels: ["kind"])
        connectErrors = errors.labels("connect")
        authErrors = errors.labels("handshake")
        ioErrors = errors.labels("io")
        timeoutResets = errors.labels("timeout")
        scriptFallbacks = registry.counter("\(prefix)_script_fallbacks_total", "EVALSHA answered NOSCRIPT and was retried with EVAL.").labels()
        connected = registry.gauge("\(prefix)_connected", "Redis connections currently ready (one per event loop).").labels()
    }
}
