import ArgumentParser
import EPPEventLoop
import EPPPicker
import EPPRedis
import EPPServer
import Glibc
import Logging
import EPPObservability

/// Command-line front of `epp`. Flag names follow the reference EPP (`pkg/epp/server/options.go`).
public struct EPPCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "epp",
        abstract: "EndpointPicker: an Envoy ext_proc endpoint picker for LLM inference gateways.")

    @Option(help: "ext_proc gRPC port.") var grpcPort: Int = 9002
    @Option(help: "gRPC health port (grpc.health.v1).") var grpcHealthPort: Int = 9003
    @Option(help: "Prometheus /metrics, /healthz and /readyz port.") var metricsPort: Int = 9090
    @Option(help: "Address to listen on.") var bindAddress: String = "0.0.0.0"
    @Option(help: "Serve ext_proc over TLS (ALPN h2); --secure-serving=false for h2c.") var secureServing: Bool = true
    @Option(help: "Directory with tls.crt and tls.key (default: a self-signed certificate made at start).") var certPath: String?
    @Option(help: "Watch tls.crt/tls.key in --cert-path and serve rotated certificates to new connections (open ones keep theirs).")
    var enableCertReload: Bool = false
    @Option(name: .customLong("client-ca"), help: "PEM CA bundle: require ext_proc clients to present a certificate it issued (mTLS).")
    var clientCA: String?
    @Option(help: "Endpoints file (YAML or JSON: endpoints: [{name, address, port, labels}]).") var endpointsFile: String?
    @Option(help: "InferencePool (inference.networking.k8s.io/v1) whose selector and targetPorts pick the pods (Kubernetes discovery).")
    var poolName: String?
    @Option(help: "Namespace of the pool and its pods (default: env NAMESPACE, else the kubeconfig/service-account namespace, else default).")
    var poolNamespace: String?
    @Option(help: "Pods to route to without an InferencePool: label selector k=v[,k=v…] (needs --endpoint-target-ports).")
    var endpointSelector: String?
    @Option(help: "Model-server ports of each selected pod, e.g. 8000 or 8000,8001 (1-8 ports; with --endpoint-selector).")
    var endpointTargetPorts: String?
    @Option(help: "kubeconfig for the API server (default: in-cluster service account, else env KUBECONFIG).")
    var kubeconfig: String?

    var kubernetesFlags: KubernetesDiscoveryFlags {
        KubernetesDiscoveryFlags(poolName: poolName, poolNamespace: poolNamespace, endpointSelector: endpointSelector,
                                 endpointTargetPorts: endpointTargetPorts, kubeconfig: kubeconfig)
    }
    @Option(help: "EndpointPickerConfig YAML file; reloaded on change and on SIGHUP (an invalid new file keeps the old config).") var configFile: String?
    @Option(help: "EndpointPickerConfig as inline YAML (instead of --config-file).") var configText: String?
    @Option(help: "Interval between metrics scrapes of each endpoint (e.g. 50ms).") var refreshMetricsInterval: String = "50ms"
    @Option(help: "Endpoints whose last successful scrape is older than this are treated as unhealthy (e.g. 2s).") var metricsStalenessThreshold: String = "2s"
    @Option(help: "Event loops (threads); default: number of cores.") var workers: Int = EventLoopGroup.coreCount
    @Option(help: "Largest request body accepted (bytes); larger ⇒ 413.") var maxRequestBodyBytes: Int = 8 << 20
    @Option(help: "Largest gRPC message accepted (bytes); larger ⇒ RESOURCE_EXHAUSTED.") var maxReceiveMessageBytes: Int = 4 << 20
    @Option(help: "Request header fields per HTTP/2 stream; more ⇒ the stream ends with RESOURCE_EXHAUSTED.") var maxHeaderCount: Int = 100
    @Option(help: "Request header list size per HTTP/2 stream (name + value + 32 per field; SETTINGS_MAX_HEADER_LIST_SIZE); larger ⇒ RESOURCE_EXHAUSTED.")
    var maxHeaderListBytes: Int = 64 << 10
    @Option(help: "Concurrent streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused (REFUSED_STREAM).")
    var maxConcurrentStreams: Int = 4096
    @Option(help: "Open connections on the ext_proc port; more are closed at accept.") var maxConnections: Int = 10_000
    @Option(help: "Request messages per ext_proc stream; more ⇒ RESOURCE_EXHAUSTED.") var maxMessagesPerStream: Int = 1_000_000
    @Option(help: "Nesting depth (objects/arrays) of a request body; deeper ⇒ 400.") var maxJsonDepth: Int = 128
    @Option(help: "Prompt bytes hashed for prefix matching at most (caps maxPrefixBlocksToMatch × block size); the rest is not matched.")
    var maxPrefixHashBytes: Int = 256 << 10
    @Option(help: "Seconds from accept to a complete TLS handshake and HTTP/2 preface; slower connections are closed.")
    var handshakeTimeout: Double = 10
    @Option(help: "Streams a client may reset before they delivered a request message (per connection, refilled per 10 s); more ⇒ GOAWAY ENHANCE_YOUR_CALM. 0 = off.")
    var maxEarlyResets: Int = 1000
    @Option(help: "Response bytes queued for a connection that is not reading (zero window / full socket); more ⇒ the connection is closed.")
    var maxQueuedOutputBytes: Int = 64 << 20
    @Option(help: "Unfinished request input buffered per connection (partial gRPC messages + request bodies awaiting the decision); a stream that would exceed it ends with RESOURCE_EXHAUSTED.")
    var maxConnectionBufferedBytes: Int = 256 << 20
    @Option(help: "Seconds in-flight streams get to finish after SIGTERM.") var drainTimeout: Double = 30
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String = "info"
    @Option(name: .customLong("redis-url"),
            help: "Share the approximate prefix index between replicas through Redis: redis://[[user]:password@]host:port[/db] or unix:///path[?db=N] (default: $EPP_REDIS_URL, else in-process index only). Prefer EPP_REDIS_URL for a URL with a password: the command line is readable by every local user in /proc/PID/cmdline.")
    var redisURL: String?

    /// Environment variable read when `--redis-url` is absent (keeps a password out of /proc/PID/cmdline).
    static let redisURLEnvironmentVariable = "EPP_REDIS_URL"

    /// `--redis-url`, else a non-empty `$EPP_REDIS_URL`, with where it came from (for error messages).
    var resolvedRedisURL: (url: String, source: String)? {
        if let redisURL { return (redisURL, "--redis-url") }
        let name = Self.redisURLEnvironmentVariable
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : (value, name)
    }
    @Option(help: "Log lines on stderr: text, or json (one object per line: ts, level, logger, message, metadata fields).")
    var logFormat: String = "text"

    public init() {}

    public func validate() throws {
        for (name, port) in [("--grpc-port", grpcPort), ("--grpc-health-port", grpcHealthPort), ("--metrics-port", metricsPort)] {
            guard (0...65535).contains(port) else { throw ValidationError("\(name) must be 0..65535, got \(port)") }
        }
        guard workers >= 1 && workers <= 256 else { throw ValidationError("--workers must be 1..256, got \(workers)") }
        guard maxRequestBodyBytes > 0 else { throw ValidationError("--max-request-body-bytes must be positive") }
        guard maxReceiveMessageBytes >= 1024 else { throw ValidationError("--max-receive-message-bytes must be ≥ 1024") }
        guard (8...100_000).contains(maxHeaderCount) else { throw ValidationError("--max-header-count must be 8..100000, got \(maxHeaderCount)") }
        guard (1024...(16 << 20)).contains(maxHeaderListBytes) else {
            throw ValidationError("--max-header-list-bytes must be 1024..16777216, got \(maxHeaderListBytes)")
        }
        guard (1...100_000).contains(maxConcurrentStreams) else {
            throw ValidationError("--max-concurrent-streams must be 1..100000, got \(maxConcurrentStreams)")
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be ≥ 1, got \(maxConnections)") }
        guard maxMessagesPerStream >= 1 else { throw ValidationError("--max-messages-per-stream must be ≥ 1, got \(maxMessagesPerStream)") }
        guard (1...512).contains(maxJsonDepth) else { throw ValidationError("--max-json-depth must be 1..512, got \(maxJsonDepth)") }
        guard maxPrefixHashBytes >= 0 else { throw ValidationError("--max-prefix-hash-bytes must be ≥ 0, got \(maxPrefixHashBytes)") }
        guard handshakeTimeout > 0 && handshakeTimeout <= 3600 else {
            throw ValidationError("--handshake-timeout must be > 0 and ≤ 3600 seconds, got \(handshakeTimeout)")
        }
        guard maxEarlyResets >= 0 else { throw ValidationError("--max-early-resets must be ≥ 0, got \(maxEarlyResets)") }
        guard maxQueuedOutputBytes >= 1 << 20 else {
            throw ValidationError("--max-queued-output-bytes must be ≥ 1048576, got \(maxQueuedOutputBytes)")
        }
        guard maxConnectionBufferedBytes >= 1 << 20 else {
            throw ValidationError("--max-connection-buffered-bytes must be ≥ 1048576, got \(maxConnectionBufferedBytes)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(logLevel)'")
        }
        guard LogFormat(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be text or json; got '\(logFormat)'")
        }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be ≥ 0") }
        if let (u, source) = resolvedRedisURL {
            do { _ = try RedisURL(parsing: u) } catch { throw ValidationError("\(source): \(error)") }
        }
        guard !enableCertReload || certPath != nil else {
            throw ValidationError("--enable-cert-reload needs --cert-path (a self-signed certificate cannot be rotated)")
        }
        guard clientCA == nil || secureServing else { throw ValidationError("--client-ca needs --secure-serving=true") }
        guard configFile == nil || configText == nil else { throw ValidationError("--config-file and --config-text are mutually exclusive") }
        do { _ = try kubernetesFlags.validate(endpointsFile: endpointsFile) } catch { throw ValidationError("\(error)") }
        guard let r = ConfigReader.parseDuration(refreshMetricsInterval), r > 0 else {
            throw ValidationError("--refresh-metrics-interval must be a positive duration like 50ms, got '\(refreshMetricsInterval)'")
        }
        guard let st = ConfigReader.parseDuration(metricsStalenessThreshold), st > 0 else {
            throw ValidationError("--metrics-staleness-threshold must be a positive duration like 2s, got '\(metricsStalenessThreshold)'")
        }
    }

    public func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let format = LogFormat(rawValue: logFormat) ?? .text
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: level) }
        let log = Logger(label: "epp")

        let datastore = Datastore()
        let metrics = PickerMetrics(poolName: poolName ?? "")
        let health = HealthState()
        if let path = endpointsFile {
            do {
                datastore.replace(with: try EndpointsFile.load(path: path))   // strict at start: all errors at once
            } catch {
                throw StartupError("endpoints file \(path): \(error)")
            }
        }
        // Kubernetes discovery: the kubeconfig / service account is read now so a bad one fails the start (exit 2).
        var kubeDiscovery: KubernetesDiscovery? = nil
        if let source = try? kubernetesFlags.validate(endpointsFile: endpointsFile) {
            let kc: KubernetesClientConfig
            do { kc = try kubernetesFlags.clientConfig() } catch { throw StartupError("\(error)") }
            kubeDiscovery = KubernetesDiscovery(config: kc, source: source, namespace: kubernetesFlags.namespace(config: kc),
                                                datastore: datastore, registry: metrics.registry) { snapshot in
                health.setEndpointsLoaded(!snapshot.isEmpty)
            }
        }
        // Shared prefix index: one Redis connection per event loop, attached as the loops are made.
        let redisIndex = try resolvedRedisURL.map { RedisPrefixIndex(url: try RedisURL(parsing: $0.url), registry: metrics.registry) }
        // Per-loop render clients / Redis connections of precise-prefix-cache-scorer, kept across config reloads.
        let pluginEnvironment = PluginEnvironment(redisIndex: redisIndex, precise: PrecisePrefixResources(registry: metrics.registry))
        let config: PickerConfig
        // The config file's state before it is read: the watcher reloads on anything newer (a change made while
        // epp starts is not lost).
        let configBaseline = configFile.map { FileWatcher.Fingerprint.of(path: $0) }
        do {
            if let path = configFile { config = try PickerConfig.load(path: path, environment: pluginEnvironment) }
            else if let text = configText { config = try PickerConfig.parse(text: text, environment: pluginEnvironment) }
            else { config = PickerConfig.defaultConfig(environment: pluginEnvironment) }
        } catch {
            throw StartupError("config: \(error)")
        }
        for w in config.warnings { log.warning("config", metadata: ["warning": "\(w)"]) }
        let configHolder = ConfigHolder(config)

        var options = PickerServerOptions()
        options.bindAddress = bindAddress
        options.grpcPort = grpcPort
        options.grpcHealthPort = grpcHealthPort
        options.metricsPort = metricsPort
        options.secureServing = secureServing
        options.certPath = certPath
        options.clientCAFile = clientCA
        options.workers = workers
        options.extProcLimits.maxRequestBodyBytes = maxRequestBodyBytes
        options.maxReceiveMessageBytes = maxReceiveMessageBytes
        options.maxMessagesPerStream = maxMessagesPerStream
        options.maxConnections = maxConnections
        options.http2.maxHeaderCount = maxHeaderCount
        options.http2.maxHeaderListSize = UInt32(maxHeaderListBytes)
        options.http2.maxConcurrentStreams = UInt32(maxConcurrentStreams)
        options.http2.handshakeTimeoutNanos = UInt64(handshakeTimeout * 1e9)
        options.http2.earlyResetBudget = maxEarlyResets
        options.http2.maxQueuedOutputBytes = maxQueuedOutputBytes
        options.http2.maxBufferedInputBytes = maxConnectionBufferedBytes
        options.metricsStalenessNanos = UInt64((ConfigReader.parseDuration(metricsStalenessThreshold) ?? 2) * 1e9)

        // Signals are taken synchronously by this (control) thread; loops never see them.
        signal(SIGPIPE, SIG_IGN)
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&mask, s) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)

        let staleness = ConfigReader.parseDuration(metricsStalenessThreshold) ?? 2
        var schedulerOptions = FrameworkScheduler.Options()
        schedulerOptions.metricsStalenessNanos = UInt64(staleness * 1e9)
        schedulerOptions.maxJSONDepth = maxJsonDepth
        schedulerOptions.maxPrefixHashBytes = maxPrefixHashBytes
        let schedulerLog = Logger(label: "epp.scheduler")
        let server: PickerServer
        do {
            server = try PickerServer(options: options, datastore: datastore, health: health, metrics: metrics,
                                  config: configHolder) { loop in
                let scheduler = FrameworkScheduler(datastore: datastore, config: configHolder, logger: schedulerLog, options: schedulerOptions)
                scheduler.eventLoop = loop
                redisIndex?.attach(loop)
                return scheduler
            }
        } catch {
            throw StartupError("\(error)")
        }
        health.setEndpointsLoaded(!datastore.snapshot().isEmpty)

        // Background work on the scraper's own loop: metrics scrapes, endpoints/config file watching.
        var scraperOptions = MetricsScraper.Options()
        scraperOptions.interval = .nanoseconds(Int64((ConfigReader.parseDuration(refreshMetricsInterval) ?? 0.05) * 1e9))
        scraperOptions.stalenessThreshold = .nanoseconds(Int64(staleness * 1e9))
        let scraper = MetricsScraper(datastore: datastore, options: scraperOptions, registry: metrics.registry)
        scraper.start()
        let endpointsReloader = endpointsFile.map { path in
            EndpointsReloader(path: path, datastore: datastore, registry: metrics.registry) { snapshot in
                health.setEndpointsLoaded(!snapshot.isEmpty)
            }
        }
        _ = endpointsReloader?.watch(on: scraper.eventLoop)
        kubeDiscovery?.start()
        let configReloader = configFile.map { ConfigReloader(path: $0, holder: configHolder, registry: metrics.registry, logger: log,
                                                              environment: pluginEnvironment) }
        let configWatcher = configReloader.map { r in FileWatcher(path: r.path, loop: scraper.eventLoop) { r.reload(reason: "file changed") } }
        configWatcher?.start(baseline: configBaseline)
        let certReloader = (enableCertReload && secureServing) ? certPath.map {
            CertReloader(certPath: $0, clientCAFile: clientCA, server: server, registry: metrics.registry, logger: log)
        } : nil
        let certWatchers = certReloader.map { r in
            r.watchedPaths.map { p in FileWatcher(path: p, loop: scraper.eventLoop) { r.reload(reason: "file changed") } }
        } ?? []
        for w in certWatchers { w.start() }

        server.start()
        log.info("epp listening", metadata: [
            "ext_proc": "\(bindAddress):\(server.grpcPort) (\(secureServing ? "TLS" : "h2c"))",
            "health": "\(server.healthPort)", "metrics": "\(server.metricsPort)",
            "workers": "\(workers)", "endpoints": "\(datastore.snapshot().endpoints.count)",
            "config": "\(configFile ?? (configText != nil ? "inline" : "default"))",
        ])

        while true {
            var sig: Int32 = 0
            sigwait(&mask, &sig)
            if sig == SIGHUP {
                endpointsReloader?.reload(reason: "SIGHUP")
                configReloader?.reload(reason: "SIGHUP")
                certReloader?.reload(reason: "SIGHUP")
                continue
            }
            log.info("draining", metadata: ["signal": "\(sig)", "timeout_s": "\(drainTimeout)"])
            server.drain(timeoutSeconds: drainTimeout)
            configWatcher?.stop()
            for w in certWatchers { w.stop() }
            endpointsReloader?.stopWatching()
            kubeDiscovery?.stop()
            scraper.stop()
            server.stop()
            redisIndex?.close()
            pluginEnvironment.precise.close()
            metrics.registry.removeCollectors()   // they hold PickerMetrics, which holds the registry
            log.info("stopped")
            return
        }
    }
}

struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

public enum EPPApp {
    /// Parses flags (Go-style `--flag=false` booleans accepted), runs, and exits 2 with one line on bad
    /// flags or files.
    public static func main(_ argv: [String]) -> Never {
        let bareBools: Set = ["--secure-serving", "--enable-cert-reload"]
        let args = Array(argv.dropFirst()).map { bareBools.contains($0) ? $0 + "=true" : $0 }
        do {
            var command = try EPPCommand.parseAsRoot(args)
            try command.run()
            exit(0)
        } catch {
            if EPPCommand.exitCode(for: error) == .success {
                print(EPPCommand.fullMessage(for: error))
                exit(0)
            }
            let message: String
            if let e = error as? StartupError { message = e.description } else { message = EPPCommand.message(for: error) }
            let line = "epp: error: \(message.split(separator: "\n").joined(separator: "; "))\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
    }
}
