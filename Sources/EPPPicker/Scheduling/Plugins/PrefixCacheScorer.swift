/// `prefix-cache-scorer` (approximate) — `score = matchBlocks / totalBlocks` from the prefix match info of
/// `approx-prefix-cache-producer` (kv-index.md §1.4); 0 without info or when totalBlocks = 0 (prompt
/// shorter than one block). Parameters on the scorer are accepted and **ignored**, like the reference
/// (the P/D config puts `maxPrefixBlocksToMatch`/`lruCapacityPerServer` here; only the producer reads
/// them — when the producer is auto-created it takes them from here, see `PickerConfig`).
///
/// Also what `precise-prefix-cache-scorer` / `kvcache-aware-scorer` load as without `renderURL`, so llm-d's
/// precise config loads unchanged and scores with the approximate index (logged as a warning at load); with
/// it they are `PrecisePrefixCacheScorer`.
public final class PrefixCacheScorer: SchedulingScorer, ConsumesPrefixInfo {
    public let typeName: String
    public let name: String
    /// Parameters given on the scorer (forwarded to an auto-created producer).
    public let producerHints: [String: Int]

    public init(name: String = "prefix-cache-scorer", typeName: String = "prefix-cache-scorer",
                params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        self.typeName = typeName
        var hints: [String: Int] = [:]
        if let params {
            for k in ["blockSizeTokens", "maxPrefixBlocksToMatch", "maxPrefixTokensToMatch", "lruCapacityPerServer"] {
                if let v = try? params.int(k) { hints[k] = v }
            }
            if typeName != "prefix-cache-scorer", let tp = try? params.object("tokenProcessorConfig") {
                if let b = (try? tp.int("blockSizeTokens")) ?? (try? tp.int("blockSize")) { hints["blockSizeTokens"] = b }
                tp.ignoreAll()
            }
            params.ignoreAll()
        }
        producerHints = hints
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        for (k, c) in candidates.enumerated() { scores[k] = ctx.prefixRatio(c) }
    }
}
