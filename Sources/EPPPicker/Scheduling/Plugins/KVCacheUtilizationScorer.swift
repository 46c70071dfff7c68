/// `kv-cache-utilization-scorer` (old alias `kv-cache-scorer`) — `score = 1 − kv`, kv = KV-cache usage in
/// [0, 1] (`vllm:kv_cache_usage_perc`, …). No metrics ⇒ kv = 0 (score 1, like the reference's zero
/// metrics; stale/unhealthy endpoints are dropped before scoring). No parameters.
public final class KVCacheUtilizationScorer: SchedulingScorer {
    public let typeName: String
    public let name: String

    public init(name: String = "kv-cache-utilization-scorer", typeName: String = "kv-cache-utilization-scorer",
                params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        self.typeName = typeName
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        for (k, c) in candidates.enumerated() {
            scores[k] = 1 - min(1, max(0, ctx.kvCacheUsage[c]))
        }
    }
}
