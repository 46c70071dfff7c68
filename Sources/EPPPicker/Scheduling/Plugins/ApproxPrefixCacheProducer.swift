/// `approx-prefix-cache-producer` — computes the request's prefix match info once per request
/// (kv-index.md §1): hash input per API kind (`ParsedRequest.prefixHashInput`), cut to
/// `maxBlocks × blockChars` bytes, block chars = tokens-per-block × 4; xxHash64 chain seeded by the target
/// model (+ `cache_salt`); lookup in the shared `PrefixIndex` ⇒ matchBlocks per candidate, totalBlocks.
/// After the pick, all hashes are recorded for the primary endpoint and the prefill endpoint, synchronously
/// (the reference does it asynchronously and for the primary only: §13.14).
///
/// Parameters: `autoTune` true (tokens per block from the first candidate's `cache_config_info` block size,
/// LRU capacity per endpoint from its `num_gpu_blocks`), `blockSizeTokens` 16, `maxPrefixBlocksToMatch` 256,
/// `maxPrefixTokensToMatch` 0 (> 0 overrides: blocks = tokens / block size), `lruCapacityPerServer` 31250.
/// The deprecated `blockSize` (characters) without `blockSizeTokens` is an error.
/// Shared index (`ApproxPrefixCacheProducer+Redis.swift`): `indexBackend` `local` | `redis` (default redis when
/// `epp --redis-url` is given, else local), `redisKeyPrefix` (namespace, default `epp-prefix:`), `lookupBudget`
/// (default 2ms: longer ⇒ the local index answers), `redisBlockStride` (default 4: Redis keeps every k-th block's
/// key and the last, matching to within k − 1 blocks at 1/k of the Redis work; 4 keeps Redis within ~20 µs per
/// pick at 64 blocks, docs/redis-index.md "Cost"; 1 = exact runs). The local index is always maintained as the
/// fallback.
/// Auto-created when a plugin needs prefix info and no producer is configured.
public final class ApproxPrefixCacheProducer: DataProducer {
    public let typeName = "approx-prefix-cache-producer"
    public let name: String
    public let autoTune: Bool
    public let blockSizeTokens: Int
    public let maxPrefixBlocksToMatch: Int
    public let maxPrefixTokensToMatch: Int
    public let lruCapacityPerServer: Int
    public let index: PrefixIndex
    /// Set when `indexBackend` is redis.
    public let redis: RedisPrefixIndex?
    public let redisKeyPrefix: String
    public let lookupBudgetNanos: UInt64
    /// Redis keeps one key per this many blocks (`strided`).
    public let redisBlockStride: Int

    public init(name: String = "approx-prefix-cache-producer", params: ConfigReader? = nil, hints: [String: Int] = [:],
                index: PrefixIndex, redis: RedisPrefixIndex? = nil) throws(PickerConfigError) {
        self.name = name
        self.index = index
        let settings = try ApproxPrefixCacheProducer.redisParameters(name, params, redis)
        (self.redis, redisKeyPrefix, lookupBudgetNanos, redisBlockStride) =
            (settings.index, settings.keyPrefix, settings.lookupBudgetNanos, settings.blockStride)
        autoTune = try params?.bool("autoTune") ?? true
        if let p = params, p.has("blockSize"), !p.has("blockSizeTokens") {
            throw PickerConfigError(line: p.lineOf("blockSize"),
                                    "\(name): 'blockSize' (characters) is no longer supported; use 'blockSizeTokens' (tokens per block, 1 token ≈ 4 characters)")
        }
        params?.ignore("blockSize")
        blockSizeTokens = try params?.int("blockSizeTokens") ?? hints["blockSizeTokens"] ?? 16
        maxPrefixBlocksToMatch = try params?.int("maxPrefixBlocksToMatch") ?? hints["maxPrefixBlocksToMatch"] ?? 256
        maxPrefixTokensToMatch = try params?.int("maxPrefixTokensToMatch") ?? hints["maxPrefixTokensToMatch"] ?? 0
        lruCapacityPerServer = try params?.int("lruCapacityPerServer") ?? hints["lruCapacityPerServer"] ?? 31_250
        guard blockSizeTokens > 0, maxPrefixBlocksToMatch >= 0, lruCapacityPerServer > 0 else {
            throw PickerConfigError(line: params?.line, "\(name): blockSizeTokens and lruCapacityPerServer must be > 0")
        }
        try params?.finish()
    }

    /// Tokens per block for this request.
    func effectiveBlockSize(_ ctx: SchedulingContext) -> Int {
        if autoTune, let first = ctx.metrics.first, let bs = first?.metrics.kvBlockSize, bs > 0 { return bs }
        return blockSizeTokens
    }

    public func produce(_ ctx: SchedulingContext) {
        ctx.hasPrefixInfo = true
        ctx.prefixHashes.removeAll(keepingCapacity: true)
        ctx.prefixMatches.removeAll(keepingCapacity: true)
        ctx.prefixMatches.append(contentsOf: repeatElement(0, count: ctx.endpoints.count))
        let bs = effectiveBlockSize(ctx)
        ctx.blockSizeTokens = bs
        guard let parsed = ctx.parsed else { return }
        let blockChars = bs * 4
        let configuredBlocks = maxPrefixTokensToMatch > 0 ? maxPrefixTokensToMatch / bs : maxPrefixBlocksToMatch
        let maxBlocks = min(configuredBlocks, ctx.maxPrefixHashBytes / blockChars)   // the process-wide cap wins
        guard maxBlocks > 0 else { return }
        if let plain = parsed.plainPromptBytes(body: ctx.body) {
            PrefixHashChain.compute(model: ctx.targetModel, cacheSalt: parsed.cacheSalt, input: plain, blockChars: blockChars,
                                    maxBlocks: maxBlocks, into: &ctx.prefixHashes, scratch: &ctx.hashScratch)
        } else {
            let input = parsed.prefixHashInput(body: ctx.body, maxBytes: maxBlocks * blockChars)
            input.withUnsafeBytes { bytes in
                PrefixHashChain.compute(model: ctx.targetModel, cacheSalt: parsed.cacheSalt, input: bytes, blockChars: blockChars,
                                        maxBlocks: maxBlocks, into: &ctx.prefixHashes, scratch: &ctx.hashScratch)
            }
        }
        guard !ctx.prefixHashes.isEmpty else { return }
        if redis != nil && deferToRedis(ctx) { return }
        index.lookup(ctx.prefixHashes, candidates: ctx.endpoints, into: &ctx.prefixMatches)
    }

    public func afterPick(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?) {
        guard !ctx.prefixHashes.isEmpty else { return }
        index.record(ctx.prefixHashes, endpoint: primary, capacity: capacity(primary))
        if let prefill, prefill !== primary {
            index.record(ctx.prefixHashes, endpoint: prefill, capacity: capacity(prefill))
        }
        if redis != nil { recordInRedis(ctx, primary: primary, prefill: prefill) }
    }

    func capacity(_ e: Endpoint) -> Int {
        if autoTune, let n = e.metrics?.metrics.kvNumBlocks, n > 0 { return n }
        return lruCapacityPerServer
    }
}
