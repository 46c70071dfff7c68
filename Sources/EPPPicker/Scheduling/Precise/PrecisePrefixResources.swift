import EPPEventLoop
import EPPObservability
import EPPRedis
import EPPLock

/// Process-wide home of the precise scorers' per-loop I/O (`PluginEnvironment.precise`), so connections and
/// the token cache outlive config reloads. Each request loop gets one `PrecisePrefixLane`, created on that
/// loop the first time a precise scorer runs there and used only by it.
public final class PrecisePrefixResources: Sendable {
    public let metrics: PrecisePrefixMetrics
    let redisClientMetrics: RedisClientMetrics
    private let lanes = Lock<[ObjectIdentifier: PrecisePrefixLane]>([:])

    public init(registry: MetricsRegistry = MetricsRegistry()) {
        metrics = PrecisePrefixMetrics(registry: registry)
        redisClientMetrics = RedisClientMetrics(registry: registry, prefix: "epp_precise_prefix_redis_client")
    }

    /// `loop`'s lane, created on first use. Call on `loop`'s thread.
    func lane(for loop: EventLoop) -> PrecisePrefixLane {
        lanes.withLock { l in
            if let existing = l[ObjectIdentifier(loop)] { return existing }
            let new = PrecisePrefixLane(loop: loop, resources: self)
            l[ObjectIdentifier(loop)] = new
            return new
        }
    }

    /// Closes every lane's connections, each on its loop. Any thread.
    public func close() {
        for lane in lanes.withLock({ Array($0.values) }) { lane.loop.execute { lane.close() } }
    }
}

/// One loop's render client, Redis connections (by address) and token cache. Loop thread only.
final class PrecisePrefixLane: @unchecked Sendable {
    let loop: EventLoop
    private unowned let resources: PrecisePrefixResources
    private var httpClient: LoopHTTPClient?
    private var redisClients: [String: RedisClient] = [:]
    /// Lookups waiting for a connection that is still opening (by address); run at its next state change.
    private var connectWaiters: [String: [() -> Void]] = [:]
    var tokenCache = TokenCache(capacity: 4096)
    /// The last render call on this loop failed (logged once per change).
    var renderFailing = false

    init(loop: EventLoop, resources: PrecisePrefixResources) {
        self.loop = loop
        self.resources = resources
    }

    var http: LoopHTTPClient {
        if let c = httpClient { return c }
        let c = LoopHTTPClient(loop: loop)
        httpClient = c
        return c
    }

    /// The connection to `url` (created and connecting on first use; reconnects by itself).
    func redis(_ url: RedisURL) -> RedisClient {
        let key = url.description
        if let c = redisClients[key] { return c }
        var config = RedisClient.Configuration()
        // A command past this resets the connection (a stalled Redis); requests stop waiting much earlier
        // (`lookupBudget`), and their late replies are dropped.
        config.defaultCommandTimeoutNanos = 250_000_000
        config.reconnectMaxDelayNanos = 1_000_000_000
        let c = RedisClient(loop: loop, url: url, configuration: config, metrics: resources.redisClientMetrics)
        c.preload(PreciseLookupScript.script)
        c.onStateChange = { [weak self] state in
            guard state != .connecting, let self, let waiters = self.connectWaiters.removeValue(forKey: key) else { return }
            for w in waiters { w() }
        }
        c.connect()
        redisClients[key] = c
        return c
    }

    /// Runs `f` on the next state change of `url`'s connection after `.connecting` (ready, or failed).
    func whenConnectAttemptEnds(_ url: RedisURL, _ f: @escaping () -> Void) {
        connectWaiters[url.description, default: []].append(f)
    }

    func close() {
        httpClient?.close()
        httpClient = nil
        for c in redisClients.values { c.close() }
        redisClients.removeAll()
    }
}

/// Token ids of recently rendered prompts, keyed by a 64-bit hash of the render request (and of how many
/// tokens the scorer keeps). Bounded by entries and by tokens held (4096 entries / 4 Mi tokens = 16 MiB per loop
/// by default), with two generations: lookups promote into the young one; when it is full the old one is
/// dropped — O(1), and what was used recently survives (an approximate LRU).
struct TokenCache {
    let capacity: Int
    let maxTokens: Int
    private var young: [UInt64: [UInt32]] = [:]
    private var old: [UInt64: [UInt32]] = [:]
    private var youngTokens = 0

    init(capacity: Int, maxTokens: Int = 4 << 20) {
        self.capacity = max(2, capacity)
        self.maxTokens = max(2, maxTokens)
    }

    var count: Int { young.count + old.count }

    mutating func get(_ key: UInt64) -> [UInt32]? {
        if let v = young[key] { return v }
        guard let v = old.removeValue(forKey: key) else { return nil }
        put(key, v)
        return v
    }

    mutating func put(_ key: UInt64, _ value: [UInt32]) {
        guard value.count <= maxTokens / 2 else { return }
        if young.count >= capacity / 2 || youngTokens + value.count > maxTokens / 2 {
            old = young
            young = [:]
            youngTokens = 0
        }
        if let previous = young.updateValue(value, forKey: key) { youngTokens -= previous.count }
        youngTokens += value.count
    }
}

/// One round trip for a whole chain: walks the request keys in order and stops at the first one no candidate
/// holds (kv-index.md §3.1 Lookup). Fields are decoded like Go's `json.Unmarshal` into `PodEntry`
/// (undecodable ones skipped, key names case-insensitive).
/// KEYS = request keys (decimal); ARGV = candidate pod identifiers (`ip:port`).
/// Reply: per key up to the break, `{pod, tier, pod, tier, …}` of the candidates holding it.
enum PreciseLookupScript {
    static let script = RedisScript("""
        local want = {}
        for i = 1, #ARGV do want[ARGV[i]] = true end
        local out = {}
        for k = 1, #KEYS do
          local hits = {}
          for _, f in ipairs(redis.call('HKEYS', KEYS[k])) do
            local ok, e = pcall(cjson.decode, f)
            if ok and type(e) == 'table' then
              local pod, tier = nil, ''
              for name, v in pairs(e) do
                local n = string.lower(tostring(name))
                if n == 'podidentifier' and type(v) == 'string' then pod = v
                elseif n == 'devicetier' and type(v) == 'string' then tier = v end
              end
              if pod and want[pod] then hits[#hits + 1] = pod; hits[#hits + 1] = tier end
            end
          end
          if #hits == 0 then break end
          out[#out + 1] = hits
        end
        return out
        """)

    /// Decodes the script's reply into per-key holders (index into `candidateIDs`, tier); pods that are
    /// not candidates are skipped. nil: malformed (not an array of arrays of string pairs).
    static func holders(from reply: RedisReply, candidateIDs: [String]) -> [[(candidate: Int, tier: String)]]? {
        guard case .array(let perKey) = reply else { return nil }
        var index: [String: Int] = [:]
        for (i, id) in candidateIDs.enumerated() where index[id] == nil { index[id] = i }
        var out: [[(candidate: Int, tier: String)]] = []
        out.reserveCapacity(perKey.count)
        for k in perKey {
            guard case .array(let items) = k, items.count % 2 == 0 else { return nil }
            var entries: [(candidate: Int, tier: String)] = []
            var i = 0
            while i < items.count {
                guard case .string(let pod) = items[i], case .string(let tier) = items[i + 1] else { return nil }
                if let c = index[String(decoding: pod, as: UTF8.self)] {
                    entries.append((c, String(decoding: tier, as: UTF8.self)))
                }
                i += 2
            }
            out.append(entries)
        }
        return out
    }
}

/// `epp_precise_prefix_*` metrics (shared by the lanes of all loops).
public final class PrecisePrefixMetrics: Sendable {
    let outcomes: [PrecisePrefixOutcome: Counter]
    let cacheHits: Counter
    let cacheMisses: Counter
    let renderDuration: Histogram
    let lookupDuration: Histogram
    let lateReplies: Counter
    let hitRatio: Histogram

    init(registry: MetricsRegistry) {
        let fam = registry.counter("epp_precise_prefix_requests_total",
                                   "Requests scored by precise-prefix-cache-scorer, by outcome; every outcome but 'scored' means all candidates got 0.",
                                   labels: ["outcome"])
        var m: [PrecisePrefixOutcome: Counter] = [:]
        for o in PrecisePrefixOutcome.allCases { m[o] = fam.labels(o.rawValue) }
        outcomes = m
        let cache = registry.counter("epp_precise_prefix_render_cache_total",
                                     "Per-loop token cache lookups before calling the render endpoint, by result.", labels: ["result"])
        cacheHits = cache.labels("hit")
        cacheMisses = cache.labels("miss")
        renderDuration = registry.histogram("epp_precise_prefix_render_duration_seconds",
                                            "Render endpoint calls (POST to response or failure), timeouts included.",
                                            bounds: Histogram.exponential(start: 0.0001, factor: 2, count: 14)).labels()
        lookupDuration = registry.histogram("epp_precise_prefix_lookup_duration_seconds",
                                            "Redis lookup round trips of the llm-d layout (EVALSHA sent to reply), late replies included.",
                                            bounds: Histogram.exponential(start: 0.000_025, factor: 2, count: 14)).labels()
        lateReplies = registry.counter("epp_precise_prefix_late_replies_total",
                                       "Redis lookup replies that came after the request's lookupBudget (it was scored 0).").labels()
        hitRatio = registry.histogram("epp_precise_prefix_hit_ratio",
                                      "Scored requests: best candidate's longest held prefix / request blocks.",
                                      bounds: [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]).labels()
    }

    func count(_ o: PrecisePrefixOutcome) { outcomes[o]?.increment() }
}

public enum PrecisePrefixOutcome: String, Sendable, CaseIterable {
    /// Keys looked up in Redis and scored (hits or not).
    case scored
    /// Fewer tokens than one block: nothing to look up.
    case noBlocks = "no_blocks"
    /// Not a completions/chat request with a prompt (or no loop to run I/O on).
    case unsupported
    case renderTimeout = "render_timeout"
    case renderError = "render_error"
    case redisUnavailable = "redis_unavailable"
    case redisBudget = "redis_budget"
    case redisError = "redis_error"
}
