import EPPObservability

/// Metrics of the Redis prefix index (shared by the lanes of all loops). Names start with
/// `epp_prefix_index_redis_`; the connection itself is described by `epp_prefix_index_redis_client_*`
/// (`RedisClientMetrics`).
public final class RedisPrefixIndexMetrics: Sendable {
    /// Lookup round trip (send to reply), including replies that came after the budget.
    let lookupLatency: Histogram
    let roundTripsLookup: Counter
    let roundTripsRecord: Counter
    let roundTripsTouch: Counter
    /// Requests recorded by record scripts (÷ record round trips = the mean batch).
    let recordsBatched: Counter
    let roundTripsPrune: Counter
    let errorsLookup: Counter
    let errorsRecord: Counter
    let errorsPrune: Counter
    /// Lookups answered by the local index instead, by reason.
    let fallbackUnavailable: Counter
    let fallbackBudget: Counter
    let fallbackError: Counter
    let fallbackOverload: Counter
    /// Replies that arrived after their request had already fallen back.
    let lateReplies: Counter
    /// Redis-answered lookups: best candidate's matched blocks / request blocks.
    let hitRatio: Histogram
    let lookupBlocks: Counter
    let matchedBlocks: Counter
    /// (block, pod) entries newly written and evicted by record scripts.
    let entriesWritten: Counter
    let entriesEvicted: Counter
    let entriesPruned: Counter

    public init(registry: MetricsRegistry) {
        lookupLatency = registry.histogram("epp_prefix_index_redis_lookup_duration_seconds",
                                           "Redis prefix lookup round trip (MGET sent to reply), late replies included.",
                                           bounds: Histogram.exponential(start: 0.000_025, factor: 2, count: 14)).labels()
        let trips = registry.counter("epp_prefix_index_redis_round_trips_total",
                                     "Redis prefix index round trips by operation: lookup (MGET), record (a pod's pipelined APPEND/SET/ZADD/HINCRBY after a lookup, or a batch EVALSHA after a fallback), touch (ZADD XX: recency only), prune (EVALSHA).", labels: ["op"])
        roundTripsLookup = trips.labels("lookup")
        roundTripsRecord = trips.labels("record")
        roundTripsTouch = trips.labels("touch")
        roundTripsPrune = trips.labels("prune")
        recordsBatched = registry.counter("epp_prefix_index_redis_records_batched_total",
                                          "Requests recorded in Redis through record scripts; one script call carries the records of up to 1 ms of one event loop.").labels()
        let errors = registry.counter("epp_prefix_index_redis_errors_total",
                                      "Redis prefix index operations without a usable reply (error reply, timeout, lost connection) by operation.",
                                      labels: ["op"])
        errorsLookup = errors.labels("lookup")
        errorsRecord = errors.labels("record")
        errorsPrune = errors.labels("prune")
        let fallbacks = registry.counter("epp_prefix_index_redis_fallbacks_total",
                                         "Prefix lookups answered by the in-process index instead of Redis, by reason (unavailable, budget, error, overload: too many replies overdue).",
                                         labels: ["reason"])
        fallbackUnavailable = fallbacks.labels("unavailable")
        fallbackBudget = fallbacks.labels("budget")
        fallbackError = fallbacks.labels("error")
        fallbackOverload = fallbacks.labels("overload")
        lateReplies = registry.counter("epp_prefix_index_redis_late_replies_total",
                                       "Redis lookup replies that arrived after the lookup budget (the request had used the local index).").labels()
        hitRatio = registry.histogram("epp_prefix_index_redis_hit_ratio",
                                      "Per Redis-answered lookup: the best candidate's matched blocks / the request's blocks.",
                                      bounds: [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1]).labels()
        lookupBlocks = registry.counter("epp_prefix_index_redis_lookup_blocks_total",
                                        "Blocks of Redis-answered lookups (denominator of the hit ratio).").labels()
        matchedBlocks = registry.counter("epp_prefix_index_redis_matched_blocks_total",
                                         "Blocks matched by the best candidate of Redis-answered lookups.").labels()
        let entries = registry.counter("epp_prefix_index_redis_entries_total",
                                       "(block, pod) entries changed in Redis by the index, by change (written, evicted, pruned).",
                                       labels: ["change"])
        entriesWritten = entries.labels("written")
        entriesEvicted = entries.labels("evicted")
        entriesPruned = entries.labels("pruned")
    }
}
