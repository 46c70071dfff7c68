import EPPEventLoop
import EPPRedis
import Logging

/// `precise-prefix-cache-scorer` (alias `kvcache-aware-scorer`) in precise mode: scores each candidate by the
/// longest prefix of the request's KV blocks it really holds, as reported by an external llm-d KV-events
/// indexer into Redis (kv-index.md §2–3). Per request, on the request's loop and never blocking it:
///  1. tokens: POST the prompt/messages to the vLLM-compatible render endpoint (`renderURL` +
///     `/v1/completions/render` or `/v1/chat/completions/render`), unless the loop's token cache knows this
///     exact render request;
///  2. request keys: FNV-1a64 chain over canonical CBOR of each full block (`KVBlockKeys`, seeded with
///     `hashSeed` and the target model);
///  3. one Redis round trip (`PreciseLookupScript`) returns the candidates holding each key up to the first
///     key none holds; `LongestPrefixScore` turns that into `min(1, Σ tier weight / totalBlocks)`.
/// Steps 1 and 3 run as an `AsyncDataProducer`: the scheduler parks the request meanwhile.
///
/// **Failures** (render timeout/error/bad response, Redis down/slow/error): every candidate scores 0 for this
/// request and the reason is counted in `epp_precise_prefix_requests_total{outcome}`; the other scorers of the
/// profile decide. Not falling back to the approximate index is deliberate: its guesses would outweigh real
/// cache state exactly when that state is unknown, and it would cost a second index per request. The wait is
/// bounded by `renderTimeout` + `lookupBudget` (defaults 50 ms + 2 ms).
///
/// Parameters (llm-d spelling; strict): `tokenProcessorConfig{blockSizeTokens|blockSize 16, hashSeed ""}`,
/// `indexerConfig{kvBlockIndexConfig{redisConfig|valkeyConfig{address, backendType, enableRDMA}, enableMetrics,
/// metricsLoggingInterval}, kvCacheBackendConfigs: [{name, weight}] (tier weights, default gpu 1.0 / cpu 0.8)}`,
/// `kvEventsConfig` (accepted, unused: the external indexer consumes the events), `speculativeIndexing`,
/// `speculativeTTL` (accepted, not implemented). Ours: `renderURL` (base URL, required for precise mode),
/// `renderTimeout` 50ms, `lookupBudget` 2ms, `maxPrefixBlocksToMatch` 1024 (keys per lookup).
/// Without `renderURL` the type loads as the approximate scorer (`PrefixCacheScorer`), as before.
///
/// Pod identity: an entry's `PodIdentifier` is matched against each candidate's `ip:port`.
public final class PrecisePrefixCacheScorer: SchedulingScorer, DataProducer, AsyncDataProducer {
    public let typeName: String
    public let name: String
    public let blockSizeTokens: Int
    public let hashSeed: String
    public let redisURL: RedisURL
    public let renderURL: String
    public let renderTimeoutNanos: UInt64
    public let lookupBudgetNanos: UInt64
    public let maxBlocks: Int
    public let tierWeights: TierWeights
    let resources: PrecisePrefixResources
    private var metrics: PrecisePrefixMetrics { resources.metrics }
    private let logger = Logger(label: "epp.precise-prefix")

    /// True when `params` ask for precise mode (`renderURL` given).
    static func wantsPreciseMode(_ params: ConfigReader?) -> Bool { params?.has("renderURL") ?? false }

    public init(name: String, typeName: String = "precise-prefix-cache-scorer", params: ConfigReader,
                resources: PrecisePrefixResources) throws(PickerConfigError) {
        self.name = name
        self.typeName = typeName
        self.resources = resources
        func fail(_ line: Int?, _ message: String) -> PickerConfigError { PickerConfigError(line: line, "\(name): \(message)") }

        guard let url = try params.string("renderURL"), url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw fail(params.lineOf("renderURL"), "renderURL must be an http:// or https:// base URL of a vLLM-compatible render endpoint")
        }
        renderURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        let renderTimeout = try params.duration("renderTimeout") ?? 0.05
        let budget = try params.duration("lookupBudget") ?? 0.002
        guard renderTimeout > 0, renderTimeout <= 60 else { throw fail(params.lineOf("renderTimeout"), "renderTimeout must be in (0, 60s]") }
        guard budget > 0, budget <= 10 else { throw fail(params.lineOf("lookupBudget"), "lookupBudget must be in (0, 10s]") }
        renderTimeoutNanos = UInt64(renderTimeout * 1e9)
        lookupBudgetNanos = UInt64(budget * 1e9)
        maxBlocks = try params.int("maxPrefixBlocksToMatch") ?? 1024
        guard maxBlocks > 0, maxBlocks <= 65_536 else {
            throw fail(params.lineOf("maxPrefixBlocksToMatch"), "maxPrefixBlocksToMatch must be in 1…65536")
        }

        var bs = 16
        var seed = ""
        if let tp = try params.object("tokenProcessorConfig") {
            let alias = try tp.int("blockSize")   // (`??` would make the autoclosure's error untyped)
            bs = try tp.int("blockSizeTokens") ?? alias ?? 16
            seed = try tp.string("hashSeed") ?? ""
            try tp.finish()
        }
        guard bs > 0, bs <= 4096 else { throw fail(params.lineOf("tokenProcessorConfig"), "tokenProcessorConfig block size must be in 1…4096") }
        blockSizeTokens = bs
        hashSeed = seed

        var address: String? = nil
        var weights = TierWeights.standard
        if let ic = try params.object("indexerConfig") {
            if let kv = try ic.object("kvBlockIndexConfig") {
                // llm-d precedence: costAwareMemoryConfig > valkeyConfig > redisConfig > inMemoryConfig.
                for key in ["costAwareMemoryConfig", "inMemoryConfig"] {
                    if let o = try kv.object(key) { o.ignoreAll(); try o.finish() }
                }
                if kv.has("costAwareMemoryConfig") {
                    throw fail(kv.lineOf("costAwareMemoryConfig"), "costAwareMemoryConfig (in-process index) is not available here; use redisConfig with an external KV-events indexer")
                }
                for key in ["valkeyConfig", "redisConfig"] where address == nil {
                    guard let rc = try kv.object(key) else { continue }
                    address = try rc.string("address") ?? "redis://127.0.0.1:6379"
                    if let bt = try rc.string("backendType"), bt != "redis", bt != "valkey" {
                        throw fail(rc.lineOf("backendType"), "backendType must be redis or valkey")
                    }
                    if try rc.bool("enableRDMA") == true { throw fail(rc.lineOf("enableRDMA"), "enableRDMA is not supported") }
                    try rc.finish()
                }
                kv.ignore("enableMetrics", "metricsLoggingInterval")
                try kv.finish()
            }
            if let tiers = try ic.sequence("kvCacheBackendConfigs") {
                var w: [String: Double] = [:]
                for n in tiers {
                    let r = try ConfigReader(n, context: "\(name) kvCacheBackendConfigs[]")
                    guard let tier = try r.string("name"), !tier.isEmpty else { throw fail(r.line, "kvCacheBackendConfigs entry needs a 'name'") }
                    let weight = try r.double("weight") ?? 1
                    guard weight >= 0, weight.isFinite else { throw fail(r.lineOf("weight"), "tier weight must be ≥ 0") }
                    try r.finish()
                    w[tier.lowercased()] = weight
                }
                weights = TierWeights(weights: w)
            }
            ic.ignore("tokenizersPoolConfig", "tokenizersCacheDir")
            try ic.finish()
        }
        guard let address else {
            throw fail(params.lineOf("indexerConfig"),
                       "precise mode (renderURL) needs the llm-d Redis index: indexerConfig.kvBlockIndexConfig.redisConfig.address")
        }
        do { redisURL = try RedisURL(parsing: PrecisePrefixCacheScorer.normalizeAddress(address)) } catch {
            throw fail(params.lineOf("indexerConfig"), "redisConfig.address: \(error)")
        }
        tierWeights = weights
        if let ev = try params.object("kvEventsConfig") { ev.ignoreAll(); try ev.finish() }
        params.ignore("speculativeIndexing", "speculativeTTL")
        try params.finish()
    }

    /// llm-d address forms: `redis://`, `unix://`, `valkey://` (⇒ redis://), plain `host:port` (⇒ redis://).
    static func normalizeAddress(_ a: String) -> String {
        if a.hasPrefix("valkey://") { return "redis://" + a.dropFirst("valkey://".count) }
        if a.hasPrefix("valkeys://") { return "rediss://" + a.dropFirst("valkeys://".count) }
        if a.contains("://") { return a }
        return "redis://" + a
    }

    // MARK: DataProducer

    public func produce(_ ctx: SchedulingContext) {
        let req = PrecisePrefixRequest(scorer: self, candidates: ctx.endpoints.count)
        ctx.precisePrefixRequests.append(req)
        guard ctx.eventLoop != nil, let parsed = ctx.parsed,
              let (path, body) = RenderRequest.body(parsed: parsed, body: ctx.body, model: ctx.targetModel) else {
            metrics.count(.unsupported)
            return
        }
        req.url = renderURL + path
        req.renderBody = body
        req.cacheKey = PrecisePrefixCacheScorer.cacheKey(url: req.url, body: body, keep: tokensKept)
        req.model = ctx.targetModel
        req.candidateIDs = ctx.endpoints.map(\.hostPort)
        ctx.pendingAsync.append(self)
    }

    /// Tokens a lookup can use: the cache keeps only these (other scorers sharing the cache use another key).
    var tokensKept: Int { maxBlocks * blockSizeTokens }

    /// Token-cache key of one render request: xxh64(url ‖ 0 ‖ LE64(keep) ‖ body).
    static func cacheKey(url: String, body: [UInt8], keep: Int) -> UInt64 {
        var key = Array(url.utf8)
        key.append(0)
        withUnsafeBytes(of: UInt64(keep).littleEndian) { key.append(contentsOf: $0) }
        key.append(contentsOf: body)
        return key.withUnsafeBytes { XXHash64.hash($0) }
    }

    public func afterPick(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?) {}

    // MARK: AsyncDataProducer

    func startAsync(_ ctx: SchedulingContext, _ done: @escaping () -> Void) -> Bool {
        guard let req = request(in: ctx), let loop = ctx.eventLoop else { return false }
        let lane = resources.lane(for: loop)
        _ = lane.redis(redisURL)   // connects now (first use), while the render call runs
        if let tokens = lane.tokenCache.get(req.cacheKey) {
            metrics.cacheHits.increment()
            return lookup(req, tokens, loop, lane, done)
        }
        metrics.cacheMisses.increment()
        let start = EventLoop.now()
        let started = lane.http.post(url: req.url, body: req.renderBody, timeoutNanos: renderTimeoutNanos) { [self] result in
            metrics.renderDuration.observe(nanoseconds: EventLoop.now() &- start)
            req.renderBody = []
            let outcome: Result<[UInt32], RenderFailure>
            switch result {
            case .success(let r) where r.status == 200:
                outcome = RenderRequest.tokenIDs(r.body).mapError { .error($0.description) }
            case .success(let r):
                outcome = .failure(.error("HTTP status \(r.status): \(String(decoding: r.body.prefix(200), as: UTF8.self))"))
            case .failure(.timeout):
                outcome = .failure(.timeout)
            case .failure(let e):
                outcome = .failure(.error("\(e)"))
            }
            renderFinished(lane, req.url, outcome)
            switch outcome {
            case .success(let tokens):
                lane.tokenCache.put(req.cacheKey, tokens.count > tokensKept ? Array(tokens.prefix(tokensKept)) : tokens)
                if !lookup(req, tokens, loop, lane, done) { done() }
            case .failure(.timeout):
                metrics.count(.renderTimeout)
                done()
            case .failure(.error):
                metrics.count(.renderError)
                done()
            }
        }
        if !started { metrics.count(.renderError) }
        return started
    }

    enum RenderFailure: Error { case timeout, error(String) }

    /// Logs only when a loop's render calls start or stop failing (per request it is a metric).
    private func renderFinished(_ lane: PrecisePrefixLane, _ url: String, _ outcome: Result<[UInt32], RenderFailure>) {
        switch outcome {
        case .success:
            if lane.renderFailing {
                lane.renderFailing = false
                logger.info("render endpoint answers again", metadata: ["url": "\(url)"])
            }
        case .failure(let f):
            if !lane.renderFailing {
                lane.renderFailing = true
                let why: String
                switch f {
                case .timeout: why = "no answer within renderTimeout \(renderTimeoutNanos / 1_000_000) ms"
                case .error(let e): why = e
                }
                logger.warning("render endpoint failing; precise prefix scores are 0 meanwhile", metadata: ["url": "\(url)", "error": "\(why)"])
            }
        }
    }

    /// Sends the Redis lookup; true when `done` will run later. False: the request's scores are final (0) now.
    /// A connection still opening (the loop's first requests) is waited for within the same `lookupBudget`.
    private func lookup(_ req: PrecisePrefixRequest, _ tokens: [UInt32], _ loop: EventLoop, _ lane: PrecisePrefixLane,
                        _ done: @escaping () -> Void) -> Bool {
        let root = KVBlockKeys.root(seed: hashSeed, model: req.model)
        let keys = KVBlockKeys.keys(tokens: tokens, blockSize: blockSizeTokens, root: root, maxBlocks: maxBlocks)
        req.totalBlocks = keys.count
        guard !keys.isEmpty, !req.candidateIDs.isEmpty else { metrics.count(.noBlocks); return false }
        let redis = lane.redis(redisURL)
        guard redis.isReady || redis.state == .connecting else { metrics.count(.redisUnavailable); return false }
        var finished = false
        let start = EventLoop.now()
        let timer = loop.schedule(afterNanoseconds: lookupBudgetNanos) { [self] in
            guard !finished else { return }
            finished = true
            metrics.count(redis.isReady ? .redisBudget : .redisUnavailable)
            done()
        }
        /// False when the client refused the command (nothing sent).
        func send() -> Bool {
            var synchronous = true
            var refused = false
            let keyArgs = keys.map { Array(String($0).utf8) }
            let podArgs = req.candidateIDs.map { Array($0.utf8) }
            redis.evalScript(PreciseLookupScript.script, keys: keyArgs, arguments: podArgs) { [self] result in
                if synchronous { refused = true; return }
                metrics.lookupDuration.observe(nanoseconds: EventLoop.now() &- start)
                guard !finished else { metrics.lateReplies.increment(); return }
                finished = true
                loop.cancelTimer(timer)
                if case .success(let reply) = result, let holders = PreciseLookupScript.holders(from: reply, candidateIDs: req.candidateIDs) {
                    req.scores = LongestPrefixScore.scores(holders: holders, candidates: req.candidateIDs.count,
                                                           totalBlocks: keys.count, weights: tierWeights)
                    metrics.hitRatio.observe(req.scores.max() ?? 0)
                    metrics.count(.scored)
                } else {
                    metrics.count(.redisError)
                }
                done()
            }
            synchronous = false
            return !refused
        }
        if redis.isReady {
            if send() { return true }
            loop.cancelTimer(timer)
            metrics.count(.redisUnavailable)
            return false
        }
        lane.whenConnectAttemptEnds(redisURL) { [self] in
            guard !finished else { return }
            if redis.isReady && send() { return }
            finished = true
            loop.cancelTimer(timer)
            metrics.count(.redisUnavailable)
            done()
        }
        return true
    }

    private func request(in ctx: SchedulingContext) -> PrecisePrefixRequest? {
        ctx.precisePrefixRequests.first { $0.scorer === self }
    }

    // MARK: SchedulingScorer

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        guard let req = request(in: ctx) else { return }
        for (k, c) in candidates.enumerated() where c < req.scores.count { scores[k] = req.scores[c] }
    }
}

/// One request's precise-prefix state (inside its `SchedulingContext`, so it is parked and resumed with it).
final class PrecisePrefixRequest {
    unowned let scorer: PrecisePrefixCacheScorer
    var url = ""
    var renderBody: [UInt8] = []
    var cacheKey: UInt64 = 0
    var model = ""
    /// `ip:port` of each candidate (indices as in `SchedulingContext.endpoints`).
    var candidateIDs: [String] = []
    var totalBlocks = 0
    /// Per candidate; stays 0 unless the lookup succeeded.
    var scores: [Double]

    init(scorer: PrecisePrefixCacheScorer, candidates: Int) {
        self.scorer = scorer
        scores = [Double](repeating: 0, count: candidates)
    }
}
