import EPPEventLoop
import EPPObservability
import EPPPicker
import Glibc
import EPPLock

/// The picker's metric families: the reference's (`inference_objective_*`, `inference_pool_*`,
/// `inference_extension_*`; names, labels and buckets as the reference's metrics package) and our own `epp_*`.
/// Request-path families are fed by each loop's `LoopObserver`; pool gauges are computed at scrape time.
public final class PickerMetrics: Sendable {
    public let registry: MetricsRegistry
    /// The `name` label of the pool families (`--pool-name`, empty for file discovery without it).
    public let poolName: String

    // ours
    public let streams: Family<Counter>
    public let streamsFailed: Family<Counter>
    public let decisions: Family<Counter>
    public let picks: Family<Counter>
    public let processing: Family<Histogram>
    /// Clients that broke a limit, by limit (see RELIABILITY.md "Limits"); one child per `ClientLimit`.
    public let limitExceeded: Family<Counter>
    public let openConnections: Family<Gauge>
    public let loopQueueSize: Family<Gauge>
    /// Listener pauses after accept failed with EMFILE/ENFILE (out of file descriptors).
    public let acceptPaused: Family<Counter>

    // inference_objective_*
    public let requestTotal: Family<Counter>
    public let requestErrors: Family<Counter>
    public let requestDuration: Family<Histogram>
    public let requestSizes: Family<Histogram>
    public let responseSizes: Family<Histogram>
    public let inputTokens: Family<Histogram>
    public let outputTokens: Family<Histogram>
    public let promptCachedTokens: Family<Histogram>
    public let runningRequests: Family<Gauge>
    public let ntpot: Family<Histogram>

    // inference_pool_*
    public let readyPods: Family<Gauge>
    public let poolAverageKVCache: Family<Gauge>
    public let poolAverageQueue: Family<Gauge>
    public let poolAverageRunning: Family<Gauge>
    public let perPodQueue: Family<Gauge>

    // inference_extension_*
    public let schedulerE2E: Family<Histogram>
    public let schedulerAttempts: Family<Counter>
    public let pluginDuration: Family<Histogram>
    public let prefixIndexerSize: Family<Gauge>
    public let prefixHitRatio: Family<Histogram>
    public let prefixHitBytes: Family<Histogram>
    public let info: Family<Gauge>
    public let modelRewriteDecisions: Family<Counter>

    /// Build identity for `inference_extension_info`: env `EPP_COMMIT` / `EPP_BUILD_REF` at start
    /// (set by the image build or the deployment), "unknown" when unset.
    public static func buildInfoFromEnvironment() -> (commit: String, buildRef: String) {
        func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
        return (env("EPP_COMMIT") ?? "unknown", env("EPP_BUILD_REF") ?? "unknown")
    }

    static let latencyBuckets: [Double] = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6,
                                           8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                                           1800, 2700, 3600]
    static let requestSizeBuckets: [Double] = (6...30).map { Double(1 << $0) }   // 64 B … 1 GiB
    // 32778 (not 32768) is the reference's own bucket; kept so dashboards' `le` values match.
    static let responseSizeBuckets: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536]
    static let tokenBuckets: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536,
                                         131072, 262144, 524288, 1048576]
    static let outputTokenBuckets: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    static let ntpotBuckets: [Double] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    static let schedulerBuckets: [Double] = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]
    static let hitRatioBuckets: [Double] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    static let hitBytesBuckets: [Double] = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]

    public init(registry: MetricsRegistry = MetricsRegistry(), poolName: String = "",
                buildInfo: (commit: String, buildRef: String) = PickerMetrics.buildInfoFromEnvironment()) {
        self.registry = registry
        self.poolName = poolName
        let r = registry
        let model = ["model_name", "target_model_name"]

        requestTotal = r.counter("inference_objective_request_total",
                                 "Requests routed, by model, target model and objective priority (counted at the decision).",
                                 labels: model + ["priority"])
        requestErrors = r.counter("inference_objective_request_error_total",
                                  "Requests answered with an error by the picker, by model, target model and error code.",
                                  labels: model + ["error_code"])
        requestDuration = r.histogram("inference_objective_request_duration_seconds",
                                      "Request headers received to response complete, in seconds.", labels: model,
                                      bounds: PickerMetrics.latencyBuckets)
        requestSizes = r.histogram("inference_objective_request_sizes", "Request body size in bytes.", labels: model,
                                   bounds: PickerMetrics.requestSizeBuckets)
        responseSizes = r.histogram("inference_objective_response_sizes",
                                    "Response body size in bytes (responses whose body passed through the picker).",
                                    labels: model, bounds: PickerMetrics.responseSizeBuckets)
        inputTokens = r.histogram("inference_objective_input_tokens", "Prompt tokens from the response's usage.",
                                  labels: model, bounds: PickerMetrics.tokenBuckets)
        outputTokens = r.histogram("inference_objective_output_tokens", "Completion tokens from the response's usage.",
                                   labels: model, bounds: PickerMetrics.outputTokenBuckets)
        promptCachedTokens = r.histogram("inference_objective_prompt_cached_tokens",
                                         "Cached prompt tokens from the response's usage (prompt_tokens_details.cached_tokens).",
                                         labels: model, bounds: PickerMetrics.tokenBuckets)
        runningRequests = r.gauge("inference_objective_running_requests",
                                  "Requests routed whose ext_proc stream is still open, by model.", labels: ["model_name"])
        ntpot = r.histogram("inference_objective_normalized_time_per_output_token_seconds",
                            "Request duration divided by completion tokens, in seconds.", labels: model,
                            bounds: PickerMetrics.ntpotBuckets)

        readyPods = r.gauge("inference_pool_ready_pods", "Endpoints currently known to the picker.", labels: ["name"])
        poolAverageKVCache = r.gauge("inference_pool_average_kv_cache_utilization",
                                     "Mean KV-cache utilization (0-1) over endpoints with fresh metrics.", labels: ["name"])
        poolAverageQueue = r.gauge("inference_pool_average_queue_size",
                                   "Mean waiting-queue length over endpoints with fresh metrics.", labels: ["name"])
        poolAverageRunning = r.gauge("inference_pool_average_running_requests",
                                     "Mean running requests over endpoints with fresh metrics.", labels: ["name"])
        perPodQueue = r.gauge("inference_pool_per_pod_queue_size", "Waiting-queue length of each endpoint (last scrape).",
                              labels: ["model_server_pod", "name"])

        schedulerE2E = r.histogram("inference_extension_scheduler_e2e_duration_seconds",
                                   "Scheduling time per request (candidates, producers, profiles, decision), in seconds.",
                                   bounds: PickerMetrics.schedulerBuckets)
        schedulerAttempts = r.counter("inference_extension_scheduler_attempts_total",
                                      "Scheduling attempts by status (success, failure) and chosen endpoint.",
                                      labels: ["status", "target_model_name", "pod_name", "namespace", "port"])
        pluginDuration = r.histogram("inference_extension_plugin_duration_seconds",
                                     "Plugin call duration in seconds, sampled on 1 in \(FrameworkScheduler.pluginTimingEvery) requests per loop (ProfileHandler covers its filters, scorers and picker).",
                                     labels: ["extension_point", "plugin_type", "plugin_name"],
                                     bounds: PickerMetrics.schedulerBuckets)
        prefixIndexerSize = r.gauge("inference_extension_prefix_indexer_size",
                                    "Entries (block hash, endpoint) in the local prefix index.")
        prefixHitRatio = r.histogram("inference_extension_prefix_indexer_hit_ratio",
                                     "Matched prefix blocks / request blocks of the chosen endpoint.",
                                     bounds: PickerMetrics.hitRatioBuckets)
        prefixHitBytes = r.histogram("inference_extension_prefix_indexer_hit_bytes",
                                     "Matched prefix length of the chosen endpoint in bytes (blocks x block size x 4).",
                                     bounds: PickerMetrics.hitBytesBuckets)
        info = r.gauge("inference_extension_info", "Build of this picker (commit, build_ref from EPP_COMMIT / EPP_BUILD_REF).",
                       labels: ["commit", "build_ref"])
        modelRewriteDecisions = r.counter("inference_extension_model_rewrite_decisions_total",
                                          "modelRewrites rule applications, by rule (its incoming model), model and chosen target.",
                                          labels: ["model_rewrite_name", "model_name", "target_model"])

        streams = r.counter("epp_extproc_streams_total", "ext_proc streams opened by Envoy.")
        streamsFailed = r.counter("epp_extproc_streams_failed_total",
                                  "ext_proc streams ended by the picker with a gRPC error (malformed or spurious messages).")
        limitExceeded = r.counter("epp_limit_exceeded_total",
                                  "Client-controlled limits hit: connections refused, connections or streams ended (label: limit).",
                                  labels: ["limit"])
        for l in ClientLimit.allCases { _ = limitExceeded.labels(l.rawValue) }
        openConnections = r.gauge("epp_extproc_connections", "Open connections on the ext_proc port (bounded by --max-connections).")
        _ = openConnections.labels()
        acceptPaused = r.counter("epp_accept_paused_total",
                                 "Times a listener stopped accepting for 100 ms because accept failed with EMFILE/ENFILE (out of file descriptors).")
        _ = acceptPaused.labels()
        decisions = r.counter("epp_decisions_total", "Routing decisions, by result (routed, rejected).", labels: ["result"])
        picks = r.counter("epp_endpoint_picks_total", "Requests routed to each endpoint.", labels: ["endpoint"])
        // Request-path latency inside the picker: from request headers (or from the last body byte) to the decision.
        processing = r.histogram("epp_request_processing_seconds",
                                 "Time from the phase's start to the routing decision leaving the picker (phase=headers: request headers received; phase=body_end: last body chunk received).",
                                 labels: ["phase"],
                                 bounds: [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                                          0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])

        loopQueueSize = r.gauge("epp_event_loop_queue_size",
                                "Per event loop, as of its last iteration: registered fds, live timers, timer-heap entries (cancelled ones included), cross-thread tasks at the last wake-up, open HTTP/2 streams.",
                                labels: ["loop", "queue"])

        info.labels(buildInfo.commit, buildInfo.buildRef).set(1)
        _ = schedulerE2E.labels()   // zero-valued before the first request, like the reference
        _ = streams.labels()
    }

    /// `epp_event_loop_queue_size`: copies each loop's published sizes into the gauges at each scrape.
    public func collectLoopQueueSizes(loops: [EventLoop]) {
        let family = loopQueueSize
        let series = loops.map { loop -> (LoopQueueSizes, [Gauge]) in
            let i = String(loop.index)
            return (loop.queueSizes, ["fds", "timers", "timer_heap", "inbox", "streams"].map { family.labels(i, $0) })
        }
        registry.addCollector {
            for (q, g) in series {
                g[0].set(Double(q.fds.load(ordering: .relaxed)))
                g[1].set(Double(q.timers.load(ordering: .relaxed)))
                g[2].set(Double(q.timerHeap.load(ordering: .relaxed)))
                g[3].set(Double(q.inbox.load(ordering: .relaxed)))
                g[4].set(Double(q.streams.load(ordering: .relaxed)))
            }
        }
    }

    /// Pool gauges and the prefix index size, computed from the datastore and config at each scrape (never on
    /// the request path). `stalenessNanos`: endpoints scraped longer ago are left out of the averages.
    public func collectPoolGauges(datastore: Datastore, config: ConfigHolder?, stalenessNanos: UInt64) {
        let collector = PoolGaugeCollector(metrics: self, datastore: datastore, config: config, stalenessNanos: stalenessNanos)
        registry.addCollector { collector.collect() }
    }
}

/// Refreshes the pool gauges before a scrape; remembers which per-endpoint children exist so departed
/// endpoints' series go away. Runs on whichever thread renders `/metrics` (state behind a mutex).
private final class PoolGaugeCollector: Sendable {
    let metrics: PickerMetrics
    let datastore: Datastore
    let config: ConfigHolder?
    let stalenessNanos: UInt64
    private let perPodNames = Lock<Set<String>>([])

    init(metrics: PickerMetrics, datastore: Datastore, config: ConfigHolder?, stalenessNanos: UInt64) {
        self.metrics = metrics
        self.datastore = datastore
        self.config = config
        self.stalenessNanos = stalenessNanos
    }

    func collect() {
        let m = metrics, pool = m.poolName
        let endpoints = datastore.snapshot().endpoints
        let now = EventLoop.now()
        var fresh = 0, kv = 0.0, queue = 0.0, running = 0.0
        var names = Set<String>()
        for e in endpoints {
            guard let s = e.metrics else { continue }
            m.perPodQueue.labels(e.name, pool).set(Double(s.waitingQueueSize))
            names.insert(e.name)
            guard s.healthy, now <= s.scrapedAt || now - s.scrapedAt <= stalenessNanos else { continue }
            fresh += 1
            kv += s.kvCacheUsage
            queue += Double(s.waitingQueueSize)
            running += Double(s.runningRequests)
        }
        let n = Double(max(fresh, 1))
        m.readyPods.labels(pool).set(Double(endpoints.count))
        m.poolAverageKVCache.labels(pool).set(kv / n)
        m.poolAverageQueue.labels(pool).set(queue / n)
        m.poolAverageRunning.labels(pool).set(running / n)
        perPodNames.withLock { old in
            for gone in old.subtracting(names) { m.perPodQueue.remove([gone, pool]) }
            old = names
        }
        if let config {
            var seen = Set<ObjectIdentifier>(), size = 0
            for p in config.config.producers {
                guard let approx = p as? ApproxPrefixCacheProducer, seen.insert(ObjectIdentifier(approx.index)).inserted else { continue }
                size += approx.index.entryCount
            }
            m.prefixIndexerSize.labels().set(Double(size))
        }
    }
}

/// The metric children of one (model, target model, priority): looked up once per request, then the
/// stream keeps a reference. Owned by one loop's `LoopObserver` (children are shared atomics).
final class ObjectiveSeries {
    let model: String
    let target: String
    let requests: Counter
    let duration: Histogram
    let requestSizes: Histogram
    let responseSizes: Histogram
    let inputTokens: Histogram
    let outputTokens: Histogram
    let cachedTokens: Histogram
    let ntpot: Histogram
    let running: Gauge
    private let metrics: PickerMetrics
    private var errors: [String: Counter] = [:]

    init(metrics: PickerMetrics, model: String, target: String, priority: Int) {
        self.metrics = metrics
        self.model = model
        self.target = target
        requests = metrics.requestTotal.labels(model, target, String(priority))
        duration = metrics.requestDuration.labels(model, target)
        requestSizes = metrics.requestSizes.labels(model, target)
        responseSizes = metrics.responseSizes.labels(model, target)
        inputTokens = metrics.inputTokens.labels(model, target)
        outputTokens = metrics.outputTokens.labels(model, target)
        cachedTokens = metrics.promptCachedTokens.labels(model, target)
        ntpot = metrics.ntpot.labels(model, target)
        running = metrics.runningRequests.labels(model)
    }

    func error(_ code: String) -> Counter {
        if let c = errors[code] { return c }
        let c = metrics.requestErrors.labels(model, target, code)
        errors[code] = c
        return c
    }
}

/// Per-loop observer of ext_proc streams and of the loop's scheduler: request ids and metrics. Owned by its
/// loop. The scheduler reports a request's result (`scheduled`) just before the stream hears the outcome;
/// the two are paired by request id, and the stream then carries its `ObjectiveSeries` to the response.
final class LoopObserver: ExtProcObserver, SchedulingMetricsSink {
    private struct SeriesKey: Hashable {
        var model: String
        var target: String
        var priority: Int
    }
    private struct AttemptKey: Hashable {
        var endpoint: ObjectIdentifier
        var target: String
    }

    /// Distinct (model, target, priority) kept per loop; beyond it, new combinations share one overflow
    /// series (model names come from clients: this bounds memory against arbitrary names).
    static let maxSeries = 4096

    private let metrics: PickerMetrics
    private var random = FastRandom()
    private let headersPhase: Histogram
    private let bodyPhase: Histogram
    private let routed: Counter
    private let rejectedDecisions: Counter
    private let failed: Counter
    private let opened: Counter
    private let e2e: Histogram
    private let hitRatio: Histogram
    private let hitBytes: Histogram
    private var pickCounters: [String: Counter] = [:]
    private var series: [SeriesKey: ObjectiveSeries] = [:]
    private var attempts: [AttemptKey: (Endpoint, Counter)] = [:]
    private var failures: [String: Counter] = [:]
    private var rewrites: [SeriesKey: Counter] = [:]
    private var plugins: [ObjectIdentifier: (any SchedulingPlugin, Histogram)] = [:]
    // The last scheduling result, waiting for its stream's decided/rejected.
    private var pendingID = ""
    private var pendingSeries: ObjectiveSeries?
    private var pendingBodyBytes = 0

    init(metrics: PickerMetrics) {
        self.metrics = metrics
        headersPhase = metrics.processing.labels("headers")
        bodyPhase = metrics.processing.labels("body_end")
        routed = metrics.decisions.labels("routed")
        rejectedDecisions = metrics.decisions.labels("rejected")
        failed = metrics.streamsFailed.labels()
        opened = metrics.streams.labels()
        e2e = metrics.schedulerE2E.labels()
        hitRatio = metrics.prefixHitRatio.labels()
        hitBytes = metrics.prefixHitBytes.labels()
    }

    func streamOpened() { opened.increment() }

    private func objectiveSeries(_ model: String, _ target: String, _ priority: Int) -> ObjectiveSeries {
        let key = SeriesKey(model: model, target: target, priority: priority)
        if let s = series[key] { return s }
        let s: ObjectiveSeries
        if series.count >= LoopObserver.maxSeries {
            let overflow = SeriesKey(model: "__overflow__", target: "__overflow__", priority: 0)
            if let o = series[overflow] { return o }
            s = ObjectiveSeries(metrics: metrics, model: overflow.model, target: overflow.target, priority: 0)
            series[overflow] = s
        } else {
            s = ObjectiveSeries(metrics: metrics, model: model, target: target, priority: priority)
            series[key] = s
        }
        return s
    }

    /// The series of the scheduling result paired with this stream (the unlabelled one when the stream
    /// itself refused the request before scheduling).
    private func takeSeries(_ stream: ExtProcStream) -> (ObjectiveSeries, bodyBytes: Int) {
        defer { pendingSeries = nil }
        if let s = pendingSeries, pendingID == stream.currentRequestID { return (s, pendingBodyBytes) }
        return (objectiveSeries("", "", 0), 0)
    }

    // MARK: SchedulingMetricsSink

    func scheduled(_ ctx: SchedulingContext, requestID: String, primary: Int?, attempted: Bool, elapsedNanos: UInt64) {
        let series = objectiveSeries(ctx.incomingModel, ctx.targetModel, ctx.priority)
        pendingID = requestID
        pendingSeries = series
        pendingBodyBytes = ctx.bodyBytes
        guard attempted else { return }
        e2e.observe(nanoseconds: elapsedNanos)
        // the series' target: "__overflow__" once the series cap is hit, so these children stay bounded too
        let target = series.target
        guard let i = primary else {
            if let c = failures[target] { c.increment() } else {
                let c = metrics.schedulerAttempts.labels("failure", target, "", "", "")
                failures[target] = c
                c.increment()
            }
            return
        }
        let endpoint = ctx.endpoints[i]
        let key = AttemptKey(endpoint: ObjectIdentifier(endpoint), target: target)
        if let (_, c) = attempts[key] { c.increment() } else {
            let spec = endpoint.spec
            let c = metrics.schedulerAttempts.labels("success", target, spec.name, spec.namespace, String(spec.port))
            if attempts.count >= LoopObserver.maxSeries { attempts.removeAll() }   // holds endpoints: keep it bounded
            attempts[key] = (endpoint, c)
            c.increment()
        }
        let total = ctx.prefixTotalBlocks
        if ctx.hasPrefixInfo, total > 0, i < ctx.prefixMatches.count {
            let matched = ctx.prefixMatches[i]
            hitRatio.observe(Double(matched) / Double(total))
            hitBytes.observe(Double(matched * ctx.blockSizeTokens * 4))
        }
    }

    func modelRewritten(rule: String, model: String, target: String) {
        // priority slot unused here: the key is (rule, model) → target
        let key = SeriesKey(model: rule + "\u{0}" + model, target: target, priority: 0)
        if let c = rewrites[key] { return c.increment() }
        let c = metrics.modelRewriteDecisions.labels(rule, model, target)
        if rewrites.count < LoopObserver.maxSeries { rewrites[key] = c }
        c.increment()
    }

    func pluginRan(_ plugin: any SchedulingPlugin, extensionPoint: StaticString, nanos: UInt64) {
        let id = ObjectIdentifier(plugin)
        if let (_, h) = plugins[id] { return h.observe(nanoseconds: nanos) }
        let h = metrics.pluginDuration.labels(extensionPoint.description, plugin.typeName, plugin.name)
        if plugins.count >= 1024 { plugins.removeAll() }   // config reloads make new instances
        plugins[id] = (plugin, h)   // holding the plugin keeps its identifier from being reused
        h.observe(nanoseconds: nanos)
    }

    // MARK: ExtProcObserver

    func now() -> UInt64 { EventLoop.now() }
    func newRequestID() -> String { random.uuidV4() }

    func decided(_ stream: ExtProcStream, headersAt: UInt64, bodyAt: UInt64) {
        let t = EventLoop.now()
        if headersAt != 0 { headersPhase.observe(nanoseconds: t &- headersAt) }
        if bodyAt != 0 { bodyPhase.observe(nanoseconds: t &- bodyAt) }
        routed.increment()
        let (s, bodyBytes) = takeSeries(stream)
        s.requests.increment()
        if bodyBytes > 0 { s.requestSizes.observe(Double(bodyBytes)) }
        s.running.add(1)
        stream.observerTag = s
        if let dest = stream.chosenDestination {
            if let c = pickCounters[dest] { c.increment() } else {
                let c = metrics.picks.labels(dest)
                if pickCounters.count < LoopObserver.maxSeries { pickCounters[dest] = c }
                c.increment()
            }
        }
    }

    func rejected(_ stream: ExtProcStream, _ error: RequestError) {
        rejectedDecisions.increment()
        takeSeries(stream).0.error(error.code).increment()
    }

    func streamFailed(_ stream: ExtProcStream, _ message: String) { failed.increment() }

    func responseStarted(_ stream: ExtProcStream, status: Int) {
        // 5xx from the model server: the reference's ModelServerError (4xx are the client's)
        guard status >= 500, let s = stream.observerTag as? ObjectiveSeries else { return }
        s.error("ModelServerError").increment()
    }

    func responseCompleted(_ stream: ExtProcStream, usage: Usage?) {
        guard let s = stream.observerTag as? ObjectiveSeries else { return }
        let start = stream.requestStartedAt
        let elapsed = start == 0 ? 0 : Double(EventLoop.now() &- start) / 1e9
        if start != 0 { s.duration.observe(elapsed) }
        s.responseSizes.observe(Double(stream.responseBodyBytes))
        guard let u = usage else { return }
        if u.promptTokens > 0 { s.inputTokens.observe(Double(u.promptTokens)) }
        if u.completionTokens > 0 {
            s.outputTokens.observe(Double(u.completionTokens))
            if start != 0 { s.ntpot.observe(elapsed / Double(u.completionTokens)) }
        }
        if let cached = u.cachedTokens { s.cachedTokens.observe(Double(cached)) }
    }

    func streamClosed(_ stream: ExtProcStream) {
        guard let s = stream.observerTag as? ObjectiveSeries else { return }
        s.running.add(-1)
        stream.observerTag = nil
    }
}

/// Every label value of `epp_limit_exceeded_total`.
public enum ClientLimit: String, Sendable, CaseIterable {
    case maxConnections = "max_connections"
    case handshakeTimeout = "handshake_timeout"
    case rapidReset = "rapid_reset"
    case outputStalled = "output_stalled"
    case http2ProtocolError = "http2_protocol_error"
    case headerList = "header_list"
    case messagesPerStream = "messages_per_stream"
    case grpcMessageSize = "grpc_message_size"
    case connectionBufferedBytes = "connection_buffered_bytes"
}
