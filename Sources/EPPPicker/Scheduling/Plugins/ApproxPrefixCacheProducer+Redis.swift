import EPPEventLoop

/// The Redis backend of `approx-prefix-cache-producer` (`RedisPrefixIndex`). With it, `produce` only computes
/// the hashes and marks the request (`ctx.pendingAsync`); the scheduler parks it and calls
/// `startRedisLookup`. Whenever Redis can't answer within `lookupBudget` (not connected, slow, error) the
/// in-process index answers instead — it is recorded on every pick too, so it is warm — and the fallback is
/// counted. Records go to both: the local index synchronously, Redis as one fire-and-forget command (`Lane.record`).
extension ApproxPrefixCacheProducer {
    struct RedisSettings {
        var index: RedisPrefixIndex?
        var keyPrefix: String
        var lookupBudgetNanos: UInt64
        var blockStride: Int
    }

    static func redisParameters(_ name: String, _ params: ConfigReader?, _ redis: RedisPrefixIndex?)
        throws(PickerConfigError) -> RedisSettings {
        let backend = try params?.string("indexBackend") ?? (redis != nil ? "redis" : "local")
        let prefix = try params?.string("redisKeyPrefix") ?? "epp-prefix:"
        let budget = try params?.duration("lookupBudget") ?? 0.002
        let stride = try params?.int("redisBlockStride") ?? 4
        guard (1...64).contains(stride) else {
            throw PickerConfigError(line: params?.lineOf("redisBlockStride"), "\(name): redisBlockStride must be in 1...64, got \(stride)")
        }
        switch backend {
        case "local":
            return RedisSettings(index: nil, keyPrefix: prefix, lookupBudgetNanos: UInt64(budget * 1e9), blockStride: stride)
        case "redis":
            guard let redis else {
                throw PickerConfigError(line: params?.lineOf("indexBackend"),
                                        "\(name): indexBackend redis needs epp --redis-url (or EPP_REDIS_URL)")
            }
            guard budget > 0, budget <= 10 else {
                throw PickerConfigError(line: params?.lineOf("lookupBudget"), "\(name): lookupBudget must be in (0, 10s]")
            }
            guard !prefix.contains("{") && !prefix.contains("}") else {
                throw PickerConfigError(line: params?.lineOf("redisKeyPrefix"),
                                        "\(name): redisKeyPrefix must not contain '{' or '}' (the key's hash tag is the model)")
            }
            return RedisSettings(index: redis, keyPrefix: prefix, lookupBudgetNanos: UInt64(budget * 1e9), blockStride: stride)
        default:
            throw PickerConfigError(line: params?.lineOf("indexBackend"), "\(name): indexBackend must be local or redis, got '\(backend)'")
        }
    }

    /// In `produce`, hashes computed: true when the lookup goes to Redis (the scheduler parks the request).
    func deferToRedis(_ ctx: SchedulingContext) -> Bool {
        guard let redis else { return false }
        guard !ctx.pendingAsync.contains(where: { $0 === self }), let loop = ctx.eventLoop, let lane = redis.lane(for: loop),
              lane.canLookup else {
            if ctx.eventLoop.flatMap({ redis.lane(for: $0) })?.isReady == true {
                redis.metrics.fallbackOverload.increment()
            } else {
                redis.metrics.fallbackUnavailable.increment()
            }
            return false
        }
        ctx.pendingAsync.append(self)
        return true
    }

    /// The block hashes that go to Redis: with `redisBlockStride` k, blocks k, 2k, 3k, … and the last one. A
    /// block hash commits to the whole chain before it, so a pod recorded for block 2k was recorded for blocks
    /// 1…2k: matching only every k-th block finds each pod's run to within k − 1 blocks (exactly for the
    /// request's full length) at 1/k of the keys read and written.
    static func strided(_ hashes: [UInt64], stride: Int, into out: inout [UInt64]) {
        out.removeAll(keepingCapacity: true)
        guard stride > 1 else { out.append(contentsOf: hashes); return }
        var i = stride - 1
        while i < hashes.count { out.append(hashes[i]); i += stride }
        if hashes.count % stride != 0, let last = hashes.last { out.append(last) }
    }

    /// Blocks covered by a run of `run` strided keys over a chain of `blocks` blocks.
    static func blocksCovered(run: Int, stride: Int, blocks: Int) -> Int { min(run * stride, blocks) }

    /// Sends the parked request's lookup; `resume` runs on the loop once `ctx.prefixMatches` is filled (from
    /// Redis, or from the local index after the budget or an error). False: nothing was sent, `resume` never runs.
    func startRedisLookup(_ ctx: SchedulingContext, _ resume: @escaping () -> Void) -> Bool {
        guard let redis, let loop = ctx.eventLoop, let lane = redis.lane(for: loop) else { return false }
        Self.strided(ctx.prefixHashes, stride: redisBlockStride, into: &ctx.redisHashes)
        let sent = lane.lookup(keyPrefix: redisKeyPrefix, model: ctx.targetModel, hashes: ctx.redisHashes,
                               candidates: ctx.endpoints, budgetNanos: lookupBudgetNanos) { [self] result in
            switch result {
            case .success(let matches) where matches.counts.count == ctx.endpoints.count:
                ctx.prefixMatches.removeAll(keepingCapacity: true)
                for run in matches.counts {
                    ctx.prefixMatches.append(Self.blocksCovered(run: run, stride: redisBlockStride, blocks: ctx.prefixHashes.count))
                }
                ctx.redisRuns.removeAll(keepingCapacity: true)
                ctx.redisRuns.append(contentsOf: matches.counts)
                ctx.prefixRedisValues = matches.values
            default:
                lookupLocally(ctx)
            }
            resume()
        }
        if sent { ctx.redisLookupSeq = lane.lastLookupSeq }
        return sent
    }

    func lookupLocally(_ ctx: SchedulingContext) {
        index.lookup(ctx.prefixHashes, candidates: ctx.endpoints, into: &ctx.prefixMatches)
    }

    func recordInRedis(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?) {
        guard let redis, let loop = ctx.eventLoop, let lane = redis.lane(for: loop) else { return }
        if ctx.prefixRedisValues == nil {   // the local index answered: no strided hashes computed yet
            Self.strided(ctx.prefixHashes, stride: redisBlockStride, into: &ctx.redisHashes)
        }
        // How many leading strided keys Redis just said the pod holds (0 when the local index answered).
        func known(_ e: Endpoint) -> Int {
            guard ctx.prefixRedisValues != nil, let i = ctx.endpoints.firstIndex(where: { $0 === e }), i < ctx.redisRuns.count else { return 0 }
            return ctx.redisRuns[i]
        }
        // Capacity is in blocks; Redis holds one key per `redisBlockStride` blocks.
        func keys(_ capacity: Int) -> Int { max(1, capacity / redisBlockStride) }
        var pods: [(endpoint: Endpoint, capacity: Int, known: Int)] = [(primary, keys(capacity(primary)), known(primary))]
        if let prefill, prefill !== primary { pods.append((prefill, keys(capacity(prefill)), known(prefill))) }
        lane.record(keyPrefix: redisKeyPrefix, model: ctx.targetModel, hashes: ctx.redisHashes, pods: pods,
                    lookup: ctx.prefixRedisValues, lateLookup: ctx.prefixRedisValues == nil ? ctx.redisLookupSeq : 0)
    }

    /// Discovery changed: drop the endpoints that left, locally and (once per change for all loops) in Redis.
    public func prune(keeping keep: Set<String>, _ ctx: SchedulingContext) {
        index.prune(keeping: keep)
        guard let redis, let loop = ctx.eventLoop, let lane = redis.lane(for: loop), redis.claimPrune(keep) else { return }
        lane.prune(keyPrefix: redisKeyPrefix, keep: keep)
    }
}
