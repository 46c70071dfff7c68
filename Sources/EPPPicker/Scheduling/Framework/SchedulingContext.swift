import EPPEventLoop
import EPPRedis
import EPPProtobuf

/// Everything the plugins see of one request. One instance per scheduler (= per event loop), reset and
/// reused for every request (no per-request allocation of the context itself). Not thread-safe.
public final class SchedulingContext {
    /// Per-loop random source (tie-breaks, exploration, weighted picks).
    public var random = FastRandom()
    /// Monotonic now (ns, `EventLoop.now()` clock) at the start of the decision.
    public var now: UInt64 = 0
    /// The request's candidate endpoints (after subset hint, conformance header and health).
    public internal(set) var endpoints: [Endpoint] = []
    /// Metrics of each candidate, read once per request (same order as `endpoints`).
    public internal(set) var metrics: [ScrapedMetrics?] = []
    /// The hot numbers of `metrics`, unpacked once per request so scorers read plain arrays instead of copying
    /// a `ScrapedMetrics` (with its reference-counted fields) per endpoint per scorer. Missing metrics ⇒ 0.
    public internal(set) var waitingQueue: [Int] = []
    public internal(set) var runningRequests: [Int] = []
    public internal(set) var kvCacheUsage: [Double] = []
    /// Request headers (lower-case names, as Envoy sends them).
    public internal(set) var headers: [HeaderField] = []
    /// Parsed body (nil: header-only request or a non-JSON parser).
    public internal(set) var parsed: ParsedRequest?
    /// The model the client asked for, and the model sent upstream (after rewrite).
    public internal(set) var incomingModel = ""
    public internal(set) var targetModel = ""
    /// Length of the prompt as the reference's P/D decider measures it (bytes of the prompt text or of the
    /// messages JSON; ≈ 4 × tokens).
    public internal(set) var promptChars = 0
    /// Request body size in bytes.
    public internal(set) var bodyBytes = 0
    /// Cap on the prompt bytes hashed for prefix matching (`FrameworkScheduler.Options.maxPrefixHashBytes`).
    public internal(set) var maxPrefixHashBytes = Int.max
    /// Priority from the objective (default 0; < 0 is sheddable).
    public internal(set) var priority = 0

    // Prefix match info (approx-prefix-cache-producer).
    /// True once the producer ran for this request.
    public internal(set) var hasPrefixInfo = false
    /// Block hashes of this request (kv-index.md §1.2).
    public internal(set) var prefixHashes: [UInt64] = []
    /// matchBlocks per candidate (same order as `endpoints`).
    public internal(set) var prefixMatches: [Int] = []
    /// Tokens per block used for this request (after autoTune).
    public internal(set) var blockSizeTokens = 16
    /// Scratch for hashing.
    var hashScratch: [UInt8] = []
    var inputScratch: [UInt8] = []

    /// The loop this context's scheduler runs on (set by the scheduler; for per-loop resources like Redis).
    public internal(set) var eventLoop: EventLoop?
    /// Producers waiting for I/O (`AsyncDataProducer`): the scheduler parks the request until all called back.
    var pendingAsync: [any AsyncDataProducer] = []
    /// Per-request state of the precise prefix scorers (`PrecisePrefixCacheScorer`), one per instance.
    var precisePrefixRequests: [PrecisePrefixRequest] = []
    /// The Redis lookup's block values when `prefixMatches` came from Redis (nil: the local index answered).
    var prefixRedisValues: [RedisReply]?
    /// The block hashes sent to Redis (every `redisBlockStride`-th) and, per candidate, the run of them Redis found.
    var redisHashes: [UInt64] = []
    var redisRuns: [Int] = []
    /// The Redis lookup this request sent (0: none); its reply may still come after the budget (`Lane.record`).
    var redisLookupSeq: UInt64 = 0

    /// The body bytes (valid only during `schedule`; empty in the steps after an asynchronous prefix lookup).
    public internal(set) var body = UnsafeRawBufferPointer(start: nil, count: 0)

    /// Set when the decision should be explained.
    public internal(set) var explain = false

    public init() {}

    /// `totalBlocks` of the prefix match info.
    public var prefixTotalBlocks: Int { prefixHashes.count }

    /// matchBlocks / totalBlocks for candidate `i` (0 without info or with no blocks).
    @inline(__always)
    public func prefixRatio(_ i: Int) -> Double {
        let total = prefixHashes.count
        guard hasPrefixInfo, total > 0, i < prefixMatches.count else { return 0 }
        return Double(prefixMatches[i]) / Double(total)
    }

    /// First header named `name`.
    public func header(_ name: String) -> String? {
        for h in headers where h.name == name { return h.value }
        return nil
    }

    /// Appends the metrics of the next candidate in `endpoints` (keeps the unpacked arrays in step).
    func appendMetrics(_ m: ScrapedMetrics?) {
        metrics.append(m)
        waitingQueue.append(m?.waitingQueueSize ?? 0)
        runningRequests.append(m?.runningRequests ?? 0)
        kvCacheUsage.append(m?.kvCacheUsage ?? 0)
    }

    /// Reads the metrics of every candidate in `endpoints` (one lock each) and unpacks the hot numbers.
    /// Works on local arrays (moved out and back) so the loop pays no exclusivity check per element.
    /// Returns how many candidates `healthy` accepts.
    func loadMetrics(healthy: (ScrapedMetrics?) -> Bool) -> Int {
        var ms: [ScrapedMetrics?] = [], wq: [Int] = [], rr: [Int] = [], kv: [Double] = []
        swap(&ms, &metrics); swap(&wq, &waitingQueue); swap(&rr, &runningRequests); swap(&kv, &kvCacheUsage)
        _ = PoolMetricsView.unpack(endpoints, staleness: 0, &ms, &wq, &rr, &kv)
        swap(&ms, &metrics); swap(&wq, &waitingQueue); swap(&rr, &runningRequests); swap(&kv, &kvCacheUsage)
        var healthyCount = 0
        for m in metrics where healthy(m) { healthyCount += 1 }
        return healthyCount
    }

    /// Empties the candidate arrays (keeping their storage when not shared).
    func clearCandidates() {
        endpoints.removeAll(keepingCapacity: true)
        metrics.removeAll(keepingCapacity: true)
        waitingQueue.removeAll(keepingCapacity: true)
        runningRequests.removeAll(keepingCapacity: true)
        kvCacheUsage.removeAll(keepingCapacity: true)
    }

    /// Takes the whole pool as candidates (shares the view's arrays; copy-on-write if filtered later).
    func adopt(_ view: PoolMetricsView) {
        endpoints = view.endpoints
        metrics = view.metrics
        waitingQueue = view.waitingQueue
        runningRequests = view.runningRequests
        kvCacheUsage = view.kvCacheUsage
    }

    /// Keeps only the candidates at `keep` (ascending indices), in order.
    func retainCandidates(where keep: (Int) -> Bool) {
        var k = 0
        for i in 0..<endpoints.count where keep(i) {
            endpoints[k] = endpoints[i]; metrics[k] = metrics[i]
            waitingQueue[k] = waitingQueue[i]; runningRequests[k] = runningRequests[i]; kvCacheUsage[k] = kvCacheUsage[i]
            k += 1
        }
        let drop = endpoints.count - k
        endpoints.removeLast(drop); metrics.removeLast(drop)
        waitingQueue.removeLast(drop); runningRequests.removeLast(drop); kvCacheUsage.removeLast(drop)
    }

    func reset(now: UInt64) {
        self.now = now
        // The candidate arrays are replaced or cleared by the candidates step (they may share storage with
        // the scheduler's pool view, so clearing them here could copy).
        headers = []
        parsed = nil
        incomingModel = ""
        targetModel = ""
        promptChars = 0
        bodyBytes = 0
        priority = 0
        hasPrefixInfo = false
        prefixHashes.removeAll(keepingCapacity: true)
        prefixMatches.removeAll(keepingCapacity: true)
        blockSizeTokens = 16
        pendingAsync.removeAll(keepingCapacity: true)
        precisePrefixRequests.removeAll(keepingCapacity: true)
        prefixRedisValues = nil
        redisHashes.removeAll(keepingCapacity: true)
        redisRuns.removeAll(keepingCapacity: true)
        redisLookupSeq = 0
        body = UnsafeRawBufferPointer(start: nil, count: 0)
        explain = false
    }

    /// All candidate indices `0..<endpoints.count`.
    public var allCandidates: [Int] { Array(0..<endpoints.count) }
}

/// The whole endpoint set with its metrics read once and the hot numbers unpacked; a scheduler keeps one per
/// loop and rebuilds it only when the snapshot version or `Datastore.metricsGeneration` changes.
struct PoolMetricsView {
    var snapshotVersion = -1
    var generation = -1
    var endpoints: [Endpoint] = []
    var metrics: [ScrapedMetrics?] = []
    var waitingQueue: [Int] = []
    var runningRequests: [Int] = []
    var kvCacheUsage: [Double] = []
    /// Every endpoint counts as healthy while now ≤ this (0 when some endpoint is unhealthy or unscraped:
    /// check each).
    var allHealthyUntil: UInt64 = 0

    mutating func rebuild(_ snapshot: EndpointSnapshot, generation: Int, staleness: UInt64) {
        snapshotVersion = snapshot.version
        self.generation = generation
        endpoints = snapshot.endpoints
        var ms: [ScrapedMetrics?] = [], wq: [Int] = [], rr: [Int] = [], kv: [Double] = []
        let until = PoolMetricsView.unpack(endpoints, staleness: staleness, &ms, &wq, &rr, &kv)
        metrics = ms; waitingQueue = wq; runningRequests = rr; kvCacheUsage = kv
        allHealthyUntil = endpoints.isEmpty ? 0 : until
    }

    /// Reads each endpoint's metrics once (one lock each) and appends them and their hot numbers (missing
    /// metrics ⇒ 0). Returns until when all of them count as healthy: min(scrapedAt + staleness), 0 when
    /// some endpoint is unhealthy or unscraped.
    static func unpack(_ endpoints: [Endpoint], staleness: UInt64, _ ms: inout [ScrapedMetrics?], _ wq: inout [Int],
                       _ rr: inout [Int], _ kv: inout [Double]) -> UInt64 {
        ms.reserveCapacity(ms.count + endpoints.count); wq.reserveCapacity(wq.count + endpoints.count)
        rr.reserveCapacity(rr.count + endpoints.count); kv.reserveCapacity(kv.count + endpoints.count)
        var until = UInt64.max
        for e in endpoints {
            let m = e.metrics
            ms.append(m)
            wq.append(m?.waitingQueueSize ?? 0)
            rr.append(m?.runningRequests ?? 0)
            kv.append(m?.kvCacheUsage ?? 0)
            if let m, m.healthy {
                let (sum, overflow) = m.scrapedAt.addingReportingOverflow(staleness)
                until = min(until, overflow ? .max : sum)
            } else {
                until = 0
            }
        }
        return until
    }
}

/// One scheduling profile: filters in order, weighted scorers, exactly one picker (scheduling.md §1).
public final class SchedulingProfile: Sendable {
    public struct WeightedScorer: Sendable {
        public let scorer: any SchedulingScorer
        public let weight: Double
    }

    public let name: String
    public let filters: [any SchedulingFilter]
    public let scorers: [WeightedScorer]
    public let picker: any SchedulingPicker

    public init(name: String, filters: [any SchedulingFilter], scorers: [WeightedScorer], picker: any SchedulingPicker) {
        self.name = name
        self.filters = filters
        self.scorers = scorers
        self.picker = picker
    }

    /// Filters ⇒ scorers (`total = Σ weight · clamp(score, 0, 1)`, weights not normalised) ⇒ picker.
    /// nil when the filters leave nothing (or the picker picks nothing).
    public func run(_ ctx: SchedulingContext, candidates: [Int]) -> ProfileResult? {
        var current = candidates
        for f in filters {
            current = f.filter(ctx, current)
            if current.isEmpty { return nil }
        }
        var totals = [Double](repeating: 0, count: current.count)
        var scratch = [Double](repeating: 0, count: current.count)
        var perScorer: [[Double]] = []
        for ws in scorers {
            for k in scratch.indices { scratch[k] = 0 }
            ws.scorer.score(ctx, current, into: &scratch)
            for k in scratch.indices {
                var s = scratch[k]
                if !(s >= 0) { s = 0 } else if s > 1 { s = 1 }   // NaN ⇒ 0
                scratch[k] = s
                totals[k] += ws.weight * s
            }
            if ctx.explain { perScorer.append(scratch) }
        }
        let picked = picker.pick(ctx, current, scores: totals)
        guard !picked.isEmpty else { return nil }
        var r = ProfileResult(profileName: name, targets: picked)
        if ctx.explain {
            r.scored = current
            r.totals = totals
            r.perScorer = perScorer
            r.scorerLabels = scorers.map { (DecisionExplanation.sanitize($0.scorer.name), $0.weight) }
        }
        return r
    }
}
