import CLinux
import EPPEventLoop
import EPPGRPC
import EPPHTTP2
import EPPObservability
import EPPPicker
import Glibc
import Synchronization

public struct PickerServerOptions: Sendable {
    public var bindAddress = "0.0.0.0"
    public var grpcPort = 9002
    public var grpcHealthPort = 9003
    public var metricsPort = 9090
    public var secureServing = true
    public var certPath: String?
    /// PEM CA bundle: when set, ext_proc clients must present a certificate issued by it (mTLS).
    public var clientCAFile: String?
    public var workers = EventLoopGroup.coreCount
    public var extProcLimits = ExtProcLimits()
    public var maxReceiveMessageBytes = 4 << 20
    /// Request messages per ext_proc stream (`--max-messages-per-stream`).
    public var maxMessagesPerStream = 1_000_000
    /// Open connections on the ext_proc port over all loops (`--max-connections`); more are closed at accept.
    public var maxConnections = 10_000
    public var http2 = HTTP2Settings()
    /// Endpoints scraped longer ago than this are left out of the pool average gauges.
    public var metricsStalenessNanos: UInt64 = 2_000_000_000

    public init() {}
}

/// Everything one event loop owns: its listeners, connections, scheduler and observers.
/// Touched only on its loop; other threads merely hand it to `loop.execute` (hence @unchecked Sendable).
final class LoopContext: @unchecked Sendable {
    let loop: EventLoop
    let scheduler: RequestScheduler
    let observer: LoopObserver
    let watchers = HealthWatchers()
    var listeners: [TCPListener] = []
    /// TLS context for new ext_proc accepts; replaced (on this loop) by a certificate reload.
    var tls: TLSContext?
    var connections: [Int32: HTTP2Connection] = [:]

    init(loop: EventLoop, scheduler: RequestScheduler, observer: LoopObserver) {
        self.loop = loop
        self.scheduler = scheduler
        self.observer = observer
    }
}

/// The picker process: N loops each accepting ext_proc (+ health) on its own SO_REUSEPORT socket, the
/// dedicated gRPC health port, and `/metrics` + probes on loop 0.
public final class PickerServer: @unchecked Sendable {
    public let options: PickerServerOptions
    public let datastore: Datastore
    public let health: HealthState
    public let metrics: PickerMetrics
    public private(set) var grpcPort = 0
    public private(set) var healthPort = 0
    public private(set) var metricsPort = 0
    private let group: EventLoopGroup
    private var contexts: [LoopContext] = []
    private var metricsServer: PlainHTTPServer?
    /// The context built at start (later rotations live in the loops' `LoopContext.tls`).
    public let initialTLS: TLSContext?
    /// Open ext_proc connections over all loops, against `options.maxConnections`.
    private let extProcConnections: ConnectionBudget
    private var limitCounters: [ClientLimit: Counter] = [:]
    private let descriptorExhaustion: DescriptorExhaustionReporter

    /// Binds every socket (so port conflicts fail here, before anything runs).
    public init(options: PickerServerOptions, datastore: Datastore, health: HealthState = HealthState(),
                metrics: PickerMetrics = PickerMetrics(), config: ConfigHolder? = nil,
                makeScheduler: (EventLoop) -> RequestScheduler) throws {
        self.options = options
        self.datastore = datastore
        self.health = health
        self.metrics = metrics
        let tls = options.secureServing ? try TLSContext(certDirectory: options.certPath, clientCAFile: options.clientCAFile) : nil
        initialTLS = tls
        extProcConnections = ConnectionBudget(limit: options.maxConnections, gauge: metrics.openConnections.labels())
        descriptorExhaustion = DescriptorExhaustionReporter(counter: metrics.acceptPaused.labels())
        group = EventLoopGroup(count: max(1, options.workers))
        for loop in group.loops {
            let ctx = LoopContext(loop: loop, scheduler: makeScheduler(loop), observer: LoopObserver(metrics: metrics))
            (ctx.scheduler as? FrameworkScheduler)?.metricsSink = ctx.observer
            ctx.tls = tls
            contexts.append(ctx)
        }

        let limitCounters = Dictionary(uniqueKeysWithValues: ClientLimit.allCases.map { ($0, metrics.limitExceeded.labels($0.rawValue)) })
        self.limitCounters = limitCounters
        let grpcLimitSink: @Sendable (GRPCLimit) -> Void = { limit in
            switch limit {
            case .messageSize: limitCounters[.grpcMessageSize]?.increment()
            case .messagesPerStream: limitCounters[.messagesPerStream]?.increment()
            case .headerList: limitCounters[.headerList]?.increment()
            case .connectionBufferedBytes: limitCounters[.connectionBufferedBytes]?.increment()
            }
        }
        let extProcServer = { (ctx: LoopContext) -> GRPCServer in
            let limits = options.extProcLimits
            return GRPCServer(routes: [
                GRPCPaths.extProcProcess: { call in
                    ctx.observer.streamOpened()
                    return ExtProcCall(call: call, scheduler: ctx.scheduler, limits: limits, observer: ctx.observer)
                },
                GRPCPaths.healthCheck: { _ in HealthCheckCall(health: health) },
                GRPCPaths.healthWatch: { _ in HealthWatchCall(health: health, watchers: ctx.watchers) },
            ], maxReceiveMessageSize: max(options.maxReceiveMessageBytes, options.extProcLimits.bodyChunkBytes + 4096),
               maxMessagesPerStream: options.maxMessagesPerStream, onLimitExceeded: grpcLimitSink)
        }
        let healthOnlyServer = { (ctx: LoopContext) -> GRPCServer in
            GRPCServer(routes: [
                GRPCPaths.healthCheck: { _ in HealthCheckCall(health: health) },
                GRPCPaths.healthWatch: { _ in HealthWatchCall(health: health, watchers: ctx.watchers) },
            ], maxReceiveMessageSize: 4 << 20, maxMessagesPerStream: options.maxMessagesPerStream, onLimitExceeded: grpcLimitSink)
        }

        grpcPort = try bindEverywhere(port: options.grpcPort, secure: true, budget: extProcConnections, makeService: extProcServer)
        healthPort = try bindEverywhere(port: options.grpcHealthPort, secure: false, budget: nil, makeService: healthOnlyServer)

        let ready = health
        let registry = metrics.registry
        let exhaustion = descriptorExhaustion
        metricsServer = try PlainHTTPServer(loop: group.loops[0], host: options.bindAddress, port: options.metricsPort,
                                            onDescriptorsExhausted: { port, e in exhaustion.listenerPaused(port: port, errno: e) }) { _, path in
            switch path {
            case "/metrics":
                return .init(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: registry.render())
            case "/healthz":
                return .init(status: 200, body: "ok\n")
            case "/readyz":
                return ready.isReady ? .init(status: 200, body: "ready\n") : .init(status: 503, body: "not ready\n")
            default:
                return .init(status: 404, body: "not found\n")
            }
        }
        metricsPort = metricsServer!.port

        let ctxs = contexts
        health.addChangeListener {
            for c in ctxs { c.loop.execute { c.watchers.notifyAll() } }
        }
        metrics.collectLoopQueueSizes(loops: group.loops)
        metrics.collectPoolGauges(datastore: datastore, config: config, stalenessNanos: options.metricsStalenessNanos)
    }

    /// One listening socket per loop on the same port (SO_REUSEPORT: the kernel spreads connections).
    /// `secure`: accepts use the loop's current TLS context (if TLS is on at all).
    /// `budget`: connections over its limit are closed right after accept (so the backlog keeps draining).
    private func bindEverywhere(port: Int, secure: Bool, budget: ConnectionBudget?, makeService: (LoopContext) -> GRPCServer) throws -> Int {
        var actual = port
        let counters = limitCounters
        for ctx in contexts {
            let fd = try Socket.listen(host: options.bindAddress, port: actual, reusePort: true)
            if actual == 0 { actual = Socket.localPort(fd) }
            let service = makeService(ctx)
            let settings = options.http2
            let listener = TCPListener(loop: ctx.loop, fd: fd) { [unowned ctx] cfd in
                if let budget, !budget.acquire() {
                    counters[.maxConnections]?.increment()
                    Glibc.close(cfd)
                    return
                }
                let conn = HTTP2Connection(loop: ctx.loop, fd: cfd, service: service, settings: settings, tls: secure ? ctx.tls : nil) { [unowned ctx] c in
                    ctx.connections[c.fd] = nil
                    budget?.release()
                }
                conn.onAbort = { reason in
                    switch reason {
                    case .handshakeTimeout: counters[.handshakeTimeout]?.increment()
                    case .rapidReset: counters[.rapidReset]?.increment()
                    case .outputStalled: counters[.outputStalled]?.increment()
                    case .protocolError: counters[.http2ProtocolError]?.increment()
                    }
                }
                ctx.connections[cfd] = conn
            }
            let exhaustion = descriptorExhaustion, listenPort = actual
            listener.onDescriptorsExhausted = { e in exhaustion.listenerPaused(port: listenPort, errno: e) }
            ctx.listeners.append(listener)
        }
        return actual
    }

    public func start() { group.start() }

    /// Certificate rotation: new handshakes on every loop use `context`; established connections keep the
    /// SSL (and the old context it references) they were accepted with. Any thread; no-op without TLS.
    public func replaceTLSContext(_ context: TLSContext) {
        guard options.secureServing else { return }
        for ctx in contexts { ctx.loop.execute { ctx.tls = context } }
    }

    /// Graceful drain: not ready, stop accepting, GOAWAY everywhere; returns when every connection is gone
    /// or `timeoutSeconds` passed (then remaining connections are closed).
    public func drain(timeoutSeconds: Double) {
        health.setDraining(true)
        for ctx in contexts {
            ctx.loop.execute {
                for l in ctx.listeners { l.close() }
                for c in ctx.connections.values { c.startDrain() }
            }
        }
        let deadline = EventLoop.now() + UInt64(timeoutSeconds * 1e9)
        while EventLoop.now() < deadline && openConnectionCount() > 0 {
            usleep(20_000)
        }
        for ctx in contexts {
            ctx.loop.execute { for c in Array(ctx.connections.values) { c.close() } }
        }
    }

    /// Open HTTP/2 connections over all loops (asks each loop; blocks briefly).
    public func openConnectionCount() -> Int {
        var total = 0
        for ctx in contexts {
            let box = CountBox()
            let sem = Semaphore()
            ctx.loop.execute { box.value = ctx.connections.count; sem.signal() }
            sem.wait()
            total += box.value
        }
        return total
    }

    public func stop() {
        group.stop()
        group.join()
        // The loop threads are gone; drop the cycles they kept alive so everything deinitialises before exit:
        // loop → handlers/timers → contexts → loop, and context → listener/connection → service → route → context.
        for loop in group.loops { loop.releaseAfterStop() }
        for ctx in contexts {
            ctx.listeners.removeAll()
            ctx.connections.removeAll()
        }
    }
}

private final class CountBox: @unchecked Sendable { var value = 0 }

/// Open connections of one port over all loops (each loop accepts on its own socket, so the count is shared).
final class ConnectionBudget: Sendable {
    private let open = Atomic<Int>(0)
    let limit: Int
    private let gauge: Gauge

    init(limit: Int, gauge: Gauge) {
        self.limit = limit
        self.gauge = gauge
    }

    /// Takes a slot; false (nothing taken) when `limit` connections are open.
    func acquire() -> Bool {
        if open.add(1, ordering: .relaxed).newValue > limit {
            open.subtract(1, ordering: .relaxed)
            return false
        }
        gauge.add(1)
        return true
    }

    func release() {
        open.subtract(1, ordering: .relaxed)
        gauge.add(-1)
    }
}

/// A tiny POSIX semaphore wrapper for the control thread (never used on loops).
final class Semaphore: @unchecked Sendable {
    private var sem = sem_t()
    init() { sem_init(&sem, 0, 0) }
    deinit { sem_destroy(&sem) }
    func signal() { sem_post(&sem) }
    func wait() { while sem_wait(&sem) != 0 {} }
}
