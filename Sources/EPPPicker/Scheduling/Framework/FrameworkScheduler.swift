import EPPEventLoop
import EPPProtobuf
import Logging

/// The scheduler of the framework (scheduling.md §1, epp-protocol.md §8), one instance per event loop.
/// Reads the shared config (`ConfigHolder`, swapped atomically on reload) and the datastore snapshot once
/// per request; keeps per-loop mutable state (random source, scratch buffers) in its `SchedulingContext`.
///
/// Per request (synchronous, on the loop):
///  1. body parsed once (`ParsedRequest`; 400s per epp-protocol.md §7), or the parser's own check
///     (passthrough: none; vLLM gRPC: path + frame);
///  2. target model = `x-gateway-model-name-rewrite` ?? body model, then a `modelRewrites` rule; the body is
///     changed only by splicing the model value;
///  3. priority from `x-gateway-inference-objective` via the config's objectives (default 0);
///  4. candidates = datastore ∩ subset hint ∩ `test-epp-endpoint-selection`, minus unhealthy/stale endpoints
///     (if **all** are unhealthy, all are kept: scoring on old data beats failing) ⇒ none: 503 (header-only
///     request with an empty datastore: 500);
///  5. admission: priority < 0 and saturation ≥ 1 ⇒ 429;
///  6. data producers (prefix match info), profile handler (filters → scorers → picker per profile);
///     failure ⇒ 429 `failed to find target endpoint: …`;
///  7. decision: destination, `x-prefiller-host-port` (P/D), control headers removed upstream, in-flight
///     requests and prompt tokens charged (released at stream end), prefix index updated synchronously for
///     the decode and prefill endpoints, optional explanation.
/// Header-only requests go through the same candidates, admission and profiles (without a body).
public final class FrameworkScheduler: RequestScheduler {
    public struct Options: Sendable {
        /// Endpoints whose last scrape is older than this are treated as unhealthy (besides the scraper's
        /// own `healthy` flag). Default 2 s.
        public var metricsStalenessNanos: UInt64 = 2_000_000_000
        /// Monotonic clock (ns), the same clock as `ScrapedMetrics.scrapedAt`.
        public var clock: @Sendable () -> UInt64 = { EventLoop.now() }
        /// Request bodies nested deeper than this (objects/arrays) are rejected with 400 (`--max-json-depth`).
        public var maxJSONDepth = 128
        /// Prompt bytes fed to the prefix hash at most, whatever the plugin config asks (`--max-prefix-hash-bytes`):
        /// the rest of a longer prompt does not take part in prefix matching.
        public var maxPrefixHashBytes = 256 << 10
        public init() {}
    }

    public static let debugHeader = "x-epp-debug"
    public static let explainHeader = "x-epp-decision"
    public static let encoderHostsPortsHeader = "x-encoder-hosts-ports"

    private let datastore: Datastore
    private let holder: ConfigHolder
    private let options: Options
    private var logger: Logger
    /// The current request's context; swapped for a spare while a request waits for Redis
    /// (`FrameworkScheduler+AsyncPrefix.swift`).
    var ctx = SchedulingContext()
    var spareContexts: [SchedulingContext] = []
    private var lastSnapshotVersion = -1
    /// The whole pool's candidates and metrics as last read on this loop.
    private var poolView = PoolMetricsView()
    /// This scheduler's loop: enables per-loop resources (the Redis prefix index lane).
    public var eventLoop: EventLoop? { didSet { ctx.eventLoop = eventLoop } }
    /// Receives every scheduling result for the reference metrics; owned by the same loop.
    public var metricsSink: SchedulingMetricsSink?
    /// Requests since the last timed one: plugin durations are measured on 1 in `pluginTimingEvery`.
    private var untimedRequests = 0
    private var timePlugins = false
    public static let pluginTimingEvery = 16

    public init(datastore: Datastore, config: ConfigHolder, logger: Logger = Logger(label: "epp.scheduler"),
                options: Options = Options()) {
        self.datastore = datastore
        self.holder = config
        self.logger = logger
        self.options = options
    }

    /// The context of the last decision (tests, benchmarks).
    public var lastContext: SchedulingContext { ctx }

    public func schedule(_ request: SchedulingRequest, waiter: SchedulingWaiter) -> SchedulingOutcome? {
        let config = holder.config
        let snapshot = datastore.snapshot()
        if snapshot.version != lastSnapshotVersion { snapshotChanged(snapshot, config) }
        ctx.reset(now: options.clock())
        ctx.headers = request.headers
        ctx.explain = config.explainDecisions || request.header(FrameworkScheduler.debugHeader) == "1"

        // 1–2. body and model
        var rewrittenBody: [UInt8]? = nil
        if !request.headerOnly {
            if let error = understandBody(request, config, &rewrittenBody) {
                metricsSink?.scheduled(ctx, requestID: request.requestID, primary: nil, attempted: false, elapsedNanos: 0)
                return .rejected(error)
            }
        }
        // 3. priority
        if let objective = request.header(EPPHeaders.objective) { ctx.priority = config.objectives[objective] ?? 0 }

        // 4. candidates
        if snapshot.isEmpty { return reportRejection(request, request.headerOnly ? .noPodsInDatastore : .serviceUnavailable) }
        buildCandidates(snapshot, request)
        if ctx.endpoints.isEmpty { return reportRejection(request, .serviceUnavailable) }

        // 5. admission (legacy: sheddable requests when saturated)
        if ctx.priority < 0 && config.saturationDetector.saturation(ctx, ctx.allCandidates) >= 1 {
            return reportRejection(request, .shed)
        }

        // 6. producers and profiles
        timePlugins = metricsSink != nil && untimedRequests == 0
        untimedRequests = untimedRequests + 1 == FrameworkScheduler.pluginTimingEvery ? 0 : untimedRequests + 1
        for p in config.producers { timed(p, "DataProducer") { p.produce(ctx) } }
        if !ctx.pendingAsync.isEmpty { return suspendForAsyncProducers(request, config, rewrittenBody, waiter) }
        return finishSchedule(request, config, rewrittenBody)
    }

    /// Steps 6 (profiles) and 7 (decision), after the producers have filled `ctx`.
    func finishSchedule(_ request: SchedulingRequest, _ config: PickerConfig, _ rewrittenBody: [UInt8]?) -> SchedulingOutcome {
        let result: ProfileHandlerResult
        switch timed(config.profileHandler, "ProfileHandler", { config.profileHandler.run(ctx, config) }) {
        case .success(let r): result = r
        case .failure(let f): return reportRejection(request, .schedulerFailed(f.message))
        }

        // 7. decision
        let d = makeDecision(request, config, result, rewrittenBody)
        metricsSink?.scheduled(ctx, requestID: request.requestID, primary: result.primary.targets[0], attempted: true,
                               elapsedNanos: options.clock() &- ctx.now)
        return .decided(d)
    }

    /// A scheduling attempt that ended in a rejection (reported before the stream sees it).
    private func reportRejection(_ request: SchedulingRequest, _ error: RequestError) -> SchedulingOutcome {
        metricsSink?.scheduled(ctx, requestID: request.requestID, primary: nil, attempted: true,
                               elapsedNanos: options.clock() &- ctx.now)
        return .rejected(error)
    }

    /// Runs `f`; on sampled requests also reports its duration as the plugin's.
    @inline(__always)
    private func timed<R>(_ plugin: any SchedulingPlugin, _ extensionPoint: StaticString, _ f: () -> R) -> R {
        guard timePlugins, let sink = metricsSink else { return f() }
        let t0 = options.clock()
        let r = f()
        sink.pluginRan(plugin, extensionPoint: extensionPoint, nanos: options.clock() &- t0)
        return r
    }

    // MARK: steps

    /// Parses the body per the config's parser; sets model fields; returns an error to answer.
    private func understandBody(_ request: SchedulingRequest, _ config: PickerConfig, _ rewritten: inout [UInt8]?) -> RequestError? {
        ctx.body = request.body
        ctx.bodyBytes = request.body.count
        let isGRPC = config.parser == .vllmGRPC
            || (config.parser == .openai && (request.header("content-type")?.hasPrefix("application/grpc") ?? false))
        if isGRPC { return checkGRPCFrame(request) }
        if config.parser == .passthrough { return nil }

        let path = APIKind.requestPath { request.header($0) }
        let kind = APIKind.from(path: path)
        let parsed: ParsedRequest
        ctx.maxPrefixHashBytes = options.maxPrefixHashBytes
        switch ParsedRequest.parse(body: request.body, kind: kind, maxDepth: options.maxJSONDepth) {
        case .success(let p): parsed = p
        case .failure(let e): return e
        }
        ctx.parsed = parsed
        ctx.incomingModel = parsed.model
        var target = request.header(EPPHeaders.modelNameRewrite).flatMap { $0.isEmpty ? nil : $0 } ?? parsed.model
        if let rule = config.modelRewrites[target] {
            let rewritten = chooseRewrite(rule)
            metricsSink?.modelRewritten(rule: target, model: parsed.model, target: rewritten)
            target = rewritten
        }
        ctx.targetModel = target
        if parsed.needsModelRewrite(to: target) { rewritten = parsed.bodyWithModel(target, body: request.body) }
        switch kind {
        case .completions: ctx.promptChars = parsed.promptRange?.count ?? 0
        case .chatCompletions: ctx.promptChars = parsed.messagesRange?.count ?? 0
        case .responses: ctx.promptChars = (parsed.inputRange?.count ?? 0) + (parsed.instructionsRange?.count ?? 0)
        case .conversations: ctx.promptChars = parsed.itemsRange?.count ?? 0
        case .embeddings: ctx.promptChars = parsed.inputRange?.count ?? 0
        }
        return nil
    }

    /// vLLM gRPC (`vllmgrpc-parser`): `:path` must be `/vllm.grpc.engine.VllmEngine/Generate` or `/Embed`;
    /// the body must be exactly one gRPC frame `[flag 0|1][u32 BE length][message]`. The message itself is
    /// forwarded unchanged (not decoded: no model, no prefix hashing).
    private func checkGRPCFrame(_ request: SchedulingRequest) -> RequestError? {
        let path = request.path
        let prefix = "/vllm.grpc.engine.VllmEngine/"
        let method: String
        if path == prefix + "Generate" { method = "Generate" } else if path == prefix + "Embed" { method = "Embed" } else {
            return .unsupportedGRPCPath(path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path)
        }
        let b = request.body
        guard b.count >= 5, b[0] <= 1 else { return .grpcPayloadParse(method: method) }
        let len = Int(b[1]) << 24 | Int(b[2]) << 16 | Int(b[3]) << 8 | Int(b[4])
        guard len == b.count - 5 else { return .grpcPayloadParse(method: method) }
        return nil
    }

    private func chooseRewrite(_ targets: [(model: String, weight: Double)]) -> String {
        let total = targets.reduce(0) { $0 + $1.weight }
        if total <= 0 { return targets[Int(ctx.random.next() % UInt64(targets.count))].model }
        var u = Double(ctx.random.next() >> 11) / Double(1 << 53) * total
        for t in targets {
            if u < t.weight { return t.model }
            u -= t.weight
        }
        return targets[targets.count - 1].model
    }

    /// Datastore ∩ subset hint ∩ conformance selection, then health.
    private func buildCandidates(_ snapshot: EndpointSnapshot, _ request: SchedulingRequest) {
        if request.subsetHint == nil && request.header(HeaderBasedTestingFilter.header) == nil {
            return adoptWholePool(snapshot)
        }
        ctx.clearCandidates()
        if let hint = request.subsetHint {
            var eps: [Endpoint] = []
            swap(&eps, &ctx.endpoints)
            for e in snapshot.endpoints where hint.allows(address: e.spec.address, port: e.spec.port, hostPort: e.hostPort) {
                eps.append(e)
            }
            swap(&eps, &ctx.endpoints)
        } else {
            ctx.endpoints.append(contentsOf: snapshot.endpoints)
        }
        if let selection = request.header(HeaderBasedTestingFilter.header) {
            let all = ctx.endpoints
            let picked = HeaderBasedTestingFilter.select(selection, Array(all.indices)) { all[$0] }
            ctx.endpoints.removeAll(keepingCapacity: true)
            for i in picked { ctx.endpoints.append(all[i]) }
        }
        // Read each candidate's metrics once (one lock each), unpacked for the scorers.
        let healthy = ctx.loadMetrics { isHealthy($0) }
        if healthy > 0 && healthy < ctx.endpoints.count {
            let metrics = ctx.metrics
            ctx.retainCandidates { isHealthy(metrics[$0]) }
        }
    }

    /// Every endpoint is a candidate (no subset hint, no conformance selection — the common case): the
    /// candidates and their unpacked metrics are the per-loop `poolView`, rebuilt only when the endpoint
    /// set or some endpoint's metrics changed since, and shared with the context without copying.
    private func adoptWholePool(_ snapshot: EndpointSnapshot) {
        let generation = datastore.metricsGeneration
        if poolView.snapshotVersion != snapshot.version || poolView.generation != generation {
            poolView.rebuild(snapshot, generation: generation, staleness: options.metricsStalenessNanos)
        }
        ctx.adopt(poolView)
        if ctx.now <= poolView.allHealthyUntil { return }
        var healthy = 0
        for m in ctx.metrics where isHealthy(m) { healthy += 1 }
        if healthy > 0 && healthy < ctx.endpoints.count {
            let metrics = ctx.metrics
            ctx.retainCandidates { isHealthy(metrics[$0]) }
        }
    }

    @inline(__always)
    private func isHealthy(_ m: ScrapedMetrics?) -> Bool {
        guard let m, m.healthy else { return false }
        return ctx.now <= m.scrapedAt || ctx.now - m.scrapedAt <= options.metricsStalenessNanos
    }

    private func makeDecision(_ request: SchedulingRequest, _ config: PickerConfig, _ result: ProfileHandlerResult,
                              _ rewrittenBody: [UInt8]?) -> SchedulingDecision {
        let targets = result.primary.targets
        let primary = ctx.endpoints[targets[0]]
        var destination = primary.hostPort
        if targets.count > 1 { destination = targets.map { ctx.endpoints[$0].hostPort }.joined(separator: ",") }
        var d = SchedulingDecision(endpoint: primary, destination: destination)
        d.rewrittenBody = rewrittenBody
        if rewrittenBody != nil {
            d.responseModelRewrite = ResponseModelRewriter(target: ctx.targetModel, incoming: ctx.incomingModel)
        }

        var prefill: Endpoint? = nil
        if let p = result.prefill?.targets.first {
            let pe = ctx.endpoints[p]
            prefill = pe
            d.setHeaders.append(HeaderValueOption(key: EPPHeaders.prefillerHostPort, rawValue: pe.hostPort))
            d.alsoCharged.append(pe)
        }
        if let enc = result.encode, !enc.targets.isEmpty {
            d.setHeaders.append(HeaderValueOption(key: FrameworkScheduler.encoderHostsPortsHeader,
                                                  rawValue: enc.targets.map { ctx.endpoints[$0].hostPort }.joined(separator: ",")))
        }
        // control headers never reach the model server (§13.2)
        for h in request.headers {
            switch h.name {
            case EPPHeaders.objective, EPPHeaders.modelNameRewrite, EPPHeaders.fairnessID:
                if !d.removeHeaders.contains(h.name) { d.removeHeaders.append(h.name) }
            case EPPHeaders.prefillerHostPort where prefill == nil:
                if !d.removeHeaders.contains(h.name) { d.removeHeaders.append(h.name) }
            case FrameworkScheduler.encoderHostsPortsHeader where result.encode == nil:
                if !d.removeHeaders.contains(h.name) { d.removeHeaders.append(h.name) }
            default:
                break
            }
        }

        // in-flight accounting (released by `release` at stream end)
        let tokens = (ctx.parsed != nil ? ctx.promptChars : ctx.bodyBytes) / 4
        d.chargedPromptTokens = tokens
        primary.inFlightRequests.wrappingIncrement(ordering: .relaxed)
        primary.inFlightPromptTokens.wrappingIncrement(by: tokens, ordering: .relaxed)
        for e in d.alsoCharged {
            e.inFlightRequests.wrappingIncrement(ordering: .relaxed)
            e.inFlightPromptTokens.wrappingIncrement(by: tokens, ordering: .relaxed)
        }

        // after-pick hooks, synchronously on this loop (the next request already sees the new prefix)
        for p in config.producers { p.afterPick(ctx, primary: primary, prefill: prefill) }
        for p in config.preRequestPlugins { timed(p, "PreRequest") { p.preRequest(ctx, primary: primary, prefill: prefill) } }

        d.attributeReporters = config.attributeReporters
        if config.setsSessionToken {
            d.responseHeaders.append(HeaderValueOption(key: SessionAffinityScorer.header, rawValue: SessionAffinityScorer.token(for: primary)))
        }
        if ctx.explain {
            let text = DecisionExplanation.render(ctx, result)
            d.responseHeaders.append(HeaderValueOption(key: FrameworkScheduler.explainHeader, rawValue: text))
            logger.debug("decision", metadata: ["request_id": "\(request.requestID)", "decision": "\(text)"])
        }
        return d
    }

    private func snapshotChanged(_ snapshot: EndpointSnapshot, _ config: PickerConfig) {
        let first = lastSnapshotVersion < 0
        lastSnapshotVersion = snapshot.version
        if first { return }
        let keep = Set(snapshot.endpoints.map { $0.spec.namespacedName })
        for p in config.producers {
            if let approx = p as? ApproxPrefixCacheProducer { approx.prune(keeping: keep, ctx) }
        }
    }
}

/// Scheduling results for metrics, called synchronously on the scheduler's loop before the outcome reaches
/// the ext_proc stream (so the stream's observer can pair them by request id). Owned by that loop.
public protocol SchedulingMetricsSink: AnyObject {
    /// One request's scheduling ended. `ctx` still holds its fields (models, priority, body size, prefix
    /// matches); `primary` is the chosen candidate's index in `ctx.endpoints` (nil: rejected); `attempted`
    /// is false when the body was refused before any scheduling.
    func scheduled(_ ctx: SchedulingContext, requestID: String, primary: Int?, attempted: Bool, elapsedNanos: UInt64)
    /// A `modelRewrites` rule (keyed by `rule`) mapped `model` to `target`.
    func modelRewritten(rule: String, model: String, target: String)
    /// A plugin call took `nanos` (sampled requests only).
    func pluginRan(_ plugin: any SchedulingPlugin, extensionPoint: StaticString, nanos: UInt64)
}
