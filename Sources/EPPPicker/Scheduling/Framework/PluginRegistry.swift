import EPPLock

/// Process-wide resources plugins are built with. The prefix index outlives config reloads: reloading
/// a config with the same environment keeps what the index learned.
public final class PluginEnvironment: Sendable {
    public let prefixIndex: PrefixIndex
    /// The shared Redis prefix index (`--redis-url`); producers default to it when present.
    public let redisIndex: RedisPrefixIndex?
    /// Per-loop render clients, Redis connections and token caches of `precise-prefix-cache-scorer`.
    public let precise: PrecisePrefixResources

    public init(prefixIndex: PrefixIndex = LocalPrefixIndex(), redisIndex: RedisPrefixIndex? = nil,
                precise: PrecisePrefixResources = PrecisePrefixResources()) {
        self.prefixIndex = prefixIndex
        self.redisIndex = redisIndex
        self.precise = precise
    }

    /// The environment used when none is given.
    public static let shared = PluginEnvironment()
}

/// Builds one plugin instance from its instance name and (strict) parameters.
public typealias PluginFactory = @Sendable (_ name: String, _ params: ConfigReader?, _ env: PluginEnvironment) throws(PickerConfigError) -> any SchedulingPlugin

/// Plugin factories keyed by the reference's type names (scheduling.md §2).
public final class PluginRegistry: Sendable {
    private let factories: Lock<[String: PluginFactory]>

    public init() { factories = Lock([:]) }

    public func register(_ type: String, _ factory: @escaping PluginFactory) {
        factories.withLock { $0[type] = factory }
    }

    public func factory(for type: String) -> PluginFactory? { factories.withLock { $0[type] } }

    public var typeNames: [String] { factories.withLock { Array($0.keys) }.sorted() }

    /// Types that load (so reference configs load unchanged) but have no scheduling behaviour here: data
    /// sources, parsers, discovery, flow-control policies, request-control plugins. Their parameters are
    /// accepted without checking. They cannot be referenced from a scheduling profile.
    public static let inertTypes: [String] = [
        "metrics-data-source", "core-metrics-extractor", "endpoint-notification-source", "k8s-notification-source",
        "models-data-source", "file-discovery", "multicluster-file-discovery",
        "openai-parser", "passthrough-parser", "vllmgrpc-parser", "vllmhttp-parser",
        "inflight-load-producer", "token-producer", "predicted-latency-producer",
        "latency-slo-admitter", "probabilistic-admitter",
        "prefill-header-handler", "disagg-headers-handler",
        "global-strict-fairness-policy", "round-robin-fairness-policy", "fcfs-ordering-policy", "edf-ordering-policy",
        "slo-deadline-ordering-policy", "static-usage-limit-policy", "eviction-sheddable-filter",
        "eviction-priority-then-time-ordering",
    ]

    /// Every built-in plugin.
    public static let standard: PluginRegistry = {
        let r = PluginRegistry()
        // scorers
        r.register("queue-scorer") { n, p, _ throws(PickerConfigError) in try QueueScorer(name: n, params: p) }
        r.register("running-requests-size-scorer") { n, p, _ throws(PickerConfigError) in try RunningRequestsSizeScorer(name: n, params: p) }
        for t in ["kv-cache-utilization-scorer", "kv-cache-scorer"] {
            r.register(t) { n, p, _ throws(PickerConfigError) in try KVCacheUtilizationScorer(name: n, typeName: t, params: p) }
        }
        r.register("prefix-cache-scorer") { n, p, _ throws(PickerConfigError) in try PrefixCacheScorer(name: n, params: p) }
        // Precise with `renderURL` (tokens + llm-d Redis index); otherwise llm-d's configs load as the approximate scorer.
        for t in ["precise-prefix-cache-scorer", "kvcache-aware-scorer"] {
            r.register(t) { n, p, env throws(PickerConfigError) in
                if let p, PrecisePrefixCacheScorer.wantsPreciseMode(p) {
                    return try PrecisePrefixCacheScorer(name: n, typeName: t, params: p, resources: env.precise)
                }
                return try PrefixCacheScorer(name: n, typeName: t, params: p)
            }
        }
        r.register("load-aware-scorer") { n, p, _ throws(PickerConfigError) in try LoadAwareScorer(name: n, params: p) }
        r.register("active-request-scorer") { n, p, _ throws(PickerConfigError) in try ActiveRequestScorer(name: n, params: p) }
        r.register("token-load-scorer") { n, p, _ throws(PickerConfigError) in try TokenLoadScorer(name: n, params: p) }
        r.register("session-affinity-scorer") { n, p, _ throws(PickerConfigError) in try SessionAffinityScorer(name: n, params: p) }
        r.register("no-hit-lru-scorer") { n, p, _ throws(PickerConfigError) in try NoHitLRUScorer(name: n, params: p) }
        r.register("lora-affinity-scorer") { n, p, _ throws(PickerConfigError) in try LoRAAffinityScorer(name: n, params: p) }
        // filters
        r.register("decode-filter") { n, p, _ throws(PickerConfigError) in try DecodeFilter(name: n, params: p) }
        r.register("prefill-filter") { n, p, _ throws(PickerConfigError) in try PrefillFilter(name: n, params: p) }
        r.register("encode-filter") { n, p, _ throws(PickerConfigError) in try EncodeFilter(name: n, params: p) }
        for t in ["label-selector-filter", "by-label-selector", "by-label"] {
            r.register(t) { n, p, _ throws(PickerConfigError) in try LabelSelectorFilter(name: n, typeName: t, params: p) }
        }
        r.register("header-based-testing-filter") { n, p, _ throws(PickerConfigError) in try HeaderBasedTestingFilter(name: n, params: p) }
        r.register("prefix-cache-affinity-filter") { n, p, _ throws(PickerConfigError) in try PrefixCacheAffinityFilter(name: n, params: p) }
        r.register("utilization-detector") { n, p, _ throws(PickerConfigError) in try UtilizationDetector(name: n, params: p) }
        r.register("concurrency-detector") { n, p, _ throws(PickerConfigError) in try ConcurrencyDetector(name: n, params: p) }
        // pickers
        r.register("max-score-picker") { n, p, _ throws(PickerConfigError) in try MaxScorePicker(name: n, params: p) }
        r.register("random-picker") { n, p, _ throws(PickerConfigError) in try RandomPicker(name: n, params: p) }
        r.register("weighted-random-picker") { n, p, _ throws(PickerConfigError) in try WeightedRandomPicker(name: n, params: p) }
        // profile handlers and deciders
        r.register("single-profile-handler") { n, p, _ throws(PickerConfigError) in try SingleProfileHandler(name: n, params: p) }
        r.register("disagg-profile-handler") { n, p, _ throws(PickerConfigError) in try DisaggProfileHandler(name: n, params: p) }
        r.register("pd-profile-handler") { n, p, _ throws(PickerConfigError) in try PDProfileHandler(name: n, params: p) }
        r.register("prefix-based-pd-decider") { n, p, _ throws(PickerConfigError) in try PrefixBasedPDDecider(name: n, params: p) }
        for t in ["always-disagg-pd-decider", "always-disagg-multimodal-decider"] {
            r.register(t) { n, p, _ throws(PickerConfigError) in try AlwaysDisaggDecider(name: n, typeName: t, params: p) }
        }
        // data producers
        r.register("approx-prefix-cache-producer") { n, p, env throws(PickerConfigError) in
            try ApproxPrefixCacheProducer(name: n, params: p, index: env.prefixIndex, redis: env.redisIndex)
        }
        // request control
        r.register("request-attribute-reporter") { n, p, _ throws(PickerConfigError) in try RequestAttributeReporter(name: n, params: p) }
        for t in inertTypes {
            r.register(t) { n, p, _ throws(PickerConfigError) in p?.ignoreAll(); return InertPlugin(name: n, typeName: t) }
        }
        return r
    }()
}

/// A plugin of a known type without scheduling behaviour in this picker (see `PluginRegistry.inertTypes`).
public final class InertPlugin: SchedulingPlugin {
    public let typeName: String
    public let name: String
    public init(name: String, typeName: String) { self.name = name; self.typeName = typeName }
}
