import EPPEventLoop

/// The Redis backend of `approx-prefix-cache-producer` (`RedisPrefixIndex`). With it, `produce` only computes
/// the hashes and marks the request (`ctx.pendingAsync`); the scheduler parks it and calls
/// `startRedisLookup`. Whenever Redis can't answer within `lookupBudget` (not connected, slow, error) the
/// in-process index answers instead — it is recorded on every pick too, so it is warm — and the fallback is
/// counted. Records go to both: the local index synchronously, Redis as one fire-and-forget command (`Lane.record`).
extension ApproxPrefixCacheProducer {
    static func redisParameters(_ name: String, _ params: ConfigReader?, _ redis: RedisPrefixIndex?)
        throws(PickerConfigError) -> (RedisPrefixIndex?, String, UInt64) {
        let backend = try params?.string("indexBackend") ?? (redis != nil ? "redis" : "local")
        let prefix = try params?.string("redisKeyPrefix") ?? "epp-prefix:"
        let budget = try params?.duration("lookupBudget") ?? 0.002
        switch backend {
        case "local":
            return (nil, prefix, UInt64(budget * 1e9))
        case "redis":
            guard let redis else {
                throw PickerConfigError(line: params?.lineOf("indexBackend"),
                                        "\(name): indexBackend redis needs epp --redis-url")
            }
            guard budget > 0, budget <= 10 else {
                throw PickerConfigError(line: params?.lineOf("lookupBudget"), "\(name): lookupBudget must be in (0, 10s]")
            }
            guard !prefix.contains("{") && !prefix.contains("}") else {
                throw PickerConfigError(line: params?.lineOf("redisKeyPrefix"),
                                        "\(name): redisKeyPrefix must not contain '{' or '}' (the key's hash tag is the model)")
            }
            return (redis, prefix, UInt64(budget * 1e9))
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

    /// Sends the parked request's lookup; `resume` runs on the loop once `ctx.prefixMatches` is filled (from
    /// Redis, or from the local index after the budget or an error). False: nothing was sent, `resume` never runs.
    func startRedisLookup(_ ctx: SchedulingContext, _ resume: @escaping () -> Void) -> Bool {
        guard let redis, let loop = ctx.eventLoop, let lane = redis.lane(for: loop) else { return false }
        return lane.lookup(keyPrefix: redisKeyPrefix, model: ctx.targetModel, hashes: ctx.prefixHashes,
                           candidates: ctx.endpoints, budgetNanos: lookupBudgetNanos) { [self] result in
            switch result {
            case .success(let matches) where matches.counts.count == ctx.endpoints.count:
                ctx.prefixMatches.removeAll(keepingCapacity: true)
                ctx.prefixMatches.append(contentsOf: matches.counts)
                ctx.prefixRedisValues = matches.values
            default:
                lookupLocally(ctx)
            }
            resume()
        }
    }

    func lookupLocally(_ ctx: SchedulingContext) {
        index.lookup(ctx.prefixHashes, candidates: ctx.endpoints, into: &ctx.prefixMatches)
    }

    func recordInRedis(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?) {
        guard let redis, let loop = ctx.eventLoop, let lane = redis.lane(for: loop) else { return }
        // How many leading blocks Redis just said the pod holds (0 when the local index answered).
        func known(_ e: Endpoint) -> Int {
            guard ctx.prefixRedisValues != nil, let i = ctx.endpoints.firstIndex(where: { $0 === e }) else { return 0 }
            return ctx.prefixMatches[i]
        }
        var pods: [(endpoint: Endpoint, capacity: Int, known: Int)] = [(primary, capacity(primary), known(primary))]
        if let prefill, prefill !== primary { pods.append((prefill, capacity(prefill), known(prefill))) }
        lane.record(keyPrefix: redisKeyPrefix, model: ctx.targetModel, hashes: ctx.prefixHashes, pods: pods,
                    lookup: ctx.prefixRedisValues)
    }

    /// Discovery changed: drop the endpoints that left, locally and (once per change for all loops) in Redis.
    public func prune(keeping keep: Set<String>, _ ctx: SchedulingContext) {
        index.prune(keeping: keep)
        guard let redis, let loop = ctx.eventLoop, let lane = redis.lane(for: loop), redis.claimPrune(keep) else { return }
        lane.prune(keyPrefix: redisKeyPrefix, keep: keep)
    }
}
