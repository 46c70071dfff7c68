/// `utilization-detector` — the default saturation detector, also usable as a filter.
///
/// Filter: keeps endpoints with fresh metrics (age ≤ `metricsStalenessThreshold`) and
/// `q < queueDepthThreshold·(1+headroom)` and `kv < kvCacheUtilThreshold·(1+headroom)`; none ⇒ all
/// (fail-open).
/// Saturation = mean over candidates of `max(q/queueDepthThreshold, kv/kvCacheUtilThreshold)`; an endpoint
/// with missing or stale metrics counts 1.0; no candidates ⇒ 1.0. Saturation ≥ 1 sheds priority < 0.
/// Parameters: `queueDepthThreshold` 5, `kvCacheUtilThreshold` 0.8, `metricsStalenessThreshold` 200ms,
/// `headroom` 0.0.
public final class UtilizationDetector: SchedulingFilter, SaturationDetector {
    public let typeName = "utilization-detector"
    public let name: String
    public let queueDepthThreshold: Double
    public let kvCacheUtilThreshold: Double
    public let stalenessNanos: UInt64
    public let headroom: Double

    public init(name: String = "utilization-detector", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        let q = try params?.double("queueDepthThreshold") ?? 5
        let kv = try params?.double("kvCacheUtilThreshold") ?? 0.8
        let stale = try params?.duration("metricsStalenessThreshold") ?? 0.2
        let h = try params?.double("headroom") ?? 0
        guard q > 0, kv > 0, stale > 0, h >= 0 else {
            throw PickerConfigError(line: params?.line, "\(name): thresholds must be > 0 and headroom ≥ 0")
        }
        queueDepthThreshold = q
        kvCacheUtilThreshold = kv
        stalenessNanos = UInt64(stale * 1e9)
        headroom = h
        try params?.finish()
    }

    @inline(__always)
    func fresh(_ m: ScrapedMetrics?, now: UInt64) -> EndpointMetrics? {
        guard let m, m.healthy, now < m.scrapedAt || now - m.scrapedAt <= stalenessNanos else { return nil }
        return m.metrics
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        let qMax = queueDepthThreshold * (1 + headroom), kvMax = kvCacheUtilThreshold * (1 + headroom)
        let kept = candidates.filter { c in
            guard let m = fresh(ctx.metrics[c], now: ctx.now) else { return false }
            return Double(m.waitingQueueSize) < qMax && m.kvCacheUsage < kvMax
        }
        return kept.isEmpty ? candidates : kept
    }

    public func saturation(_ ctx: SchedulingContext, _ candidates: [Int]) -> Double {
        guard !candidates.isEmpty else { return 1 }
        var sum = 0.0
        for c in candidates {
            guard let m = fresh(ctx.metrics[c], now: ctx.now) else { sum += 1; continue }
            sum += max(Double(m.waitingQueueSize) / queueDepthThreshold, m.kvCacheUsage / kvCacheUtilThreshold)
        }
        return sum / Double(candidates.count)
    }
}

/// `concurrency-detector` — saturation = total in-flight / (candidates × `maxConcurrency`) in `requests`
/// mode, or in-flight prompt tokens / (candidates × `maxTokenConcurrency`) in `tokens` mode. As a filter it
/// keeps endpoints below `max·(1+headroom)` (none ⇒ all).
/// Parameters: `concurrencyMode` requests|tokens, `maxConcurrency` 100, `maxTokenConcurrency` 1 000 000,
/// `headroom` 0.
public final class ConcurrencyDetector: SchedulingFilter, SaturationDetector {
    public let typeName = "concurrency-detector"
    public let name: String
    public let tokensMode: Bool
    public let limit: Double
    public let headroom: Double

    public init(name: String = "concurrency-detector", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        let mode = try params?.string("concurrencyMode") ?? "requests"
        guard mode == "requests" || mode == "tokens" else {
            throw PickerConfigError(line: params?.lineOf("concurrencyMode"), "\(name): concurrencyMode must be requests or tokens")
        }
        tokensMode = mode == "tokens"
        let mc = try params?.double("maxConcurrency") ?? 100
        let mt = try params?.double("maxTokenConcurrency") ?? 1_000_000
        limit = tokensMode ? mt : mc
        headroom = try params?.double("headroom") ?? 0
        guard limit > 0 else { throw PickerConfigError(line: params?.line, "\(name): limits must be > 0") }
        try params?.finish()
    }

    private func load(_ e: Endpoint) -> Double {
        Double(tokensMode ? e.inFlightPromptTokens.load(ordering: .relaxed) : e.inFlightRequests.load(ordering: .relaxed))
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        let kept = candidates.filter { load(ctx.endpoints[$0]) < limit * (1 + headroom) }
        return kept.isEmpty ? candidates : kept
    }

    public func saturation(_ ctx: SchedulingContext, _ candidates: [Int]) -> Double {
        guard !candidates.isEmpty else { return 1 }
        var total = 0.0
        for c in candidates { total += load(ctx.endpoints[c]) }
        return total / (limit * Double(candidates.count))
    }
}
