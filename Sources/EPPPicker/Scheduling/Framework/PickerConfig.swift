#if canImport(Glibc)
import Glibc
#endif
import EPPLock
import Yams

/// A loaded, validated `EndpointPickerConfig` (scheduling.md §3): immutable, shared by every loop's
/// scheduler through a `ConfigHolder`. Build it with `PickerConfig.parse(text:)`, `load(path:)` or
/// `defaultConfig()`.
///
/// Extensions to the reference format (all optional, top level):
/// - `objectives: [{name: <objective>, priority: <int>}]` — the InferenceObjectives (`x-gateway-inference-objective`
///   ⇒ priority; unknown/missing ⇒ 0; < 0 is sheddable).
/// - `modelRewrites: [{model: <incoming>, targets: [{model: <target>, weight: <n>}]}]` — InferenceModelRewrite
///   rules (exact match, weighted random target; all-zero weights ⇒ uniform).
/// - `explainDecisions: true` — every response carries `x-epp-decision` (otherwise only requests with
///   `x-epp-debug: 1`).
public final class PickerConfig: Sendable {
    public enum Parser: String, Sendable {
        case openai = "openai-parser"
        case passthrough = "passthrough-parser"
        case vllmGRPC = "vllmgrpc-parser"
        case vllmHTTP = "vllmhttp-parser"
    }

    public let apiVersion: String
    public let featureGates: Set<String>
    /// Every plugin instance by name (configured and auto-created).
    public let plugins: [String: any SchedulingPlugin]
    public let profiles: [String: SchedulingProfile]
    /// Profiles in file order.
    public let orderedProfiles: [SchedulingProfile]
    public let profileHandler: any ProfileHandler
    public let saturationDetector: any SaturationDetector
    public let producers: [any DataProducer]
    public let preRequestPlugins: [any PreRequestPlugin]
    /// `request-attribute-reporter` instances (declared in `plugins`; they act on the response).
    public let attributeReporters: [RequestAttributeReporter]
    public let parser: Parser
    public let objectives: [String: Int]
    public let modelRewrites: [String: [(model: String, weight: Double)]]
    public let explainDecisions: Bool
    /// A session-affinity scorer is configured: responses carry `x-session-token`.
    public let setsSessionToken: Bool
    /// The config's `prefix-based-pd-decider` (used by `disagg-profile-handler` without an explicit decider).
    public let defaultPrefillDecider: (any PrefillDecider)?
    /// Things worth a log line at load (deprecated apiVersion, approximated plugins, …).
    public let warnings: [String]

    init(apiVersion: String, featureGates: Set<String>, plugins: [String: any SchedulingPlugin],
         orderedProfiles: [SchedulingProfile], profileHandler: any ProfileHandler, saturationDetector: any SaturationDetector,
         producers: [any DataProducer], preRequestPlugins: [any PreRequestPlugin], parser: Parser, objectives: [String: Int],
         modelRewrites: [String: [(model: String, weight: Double)]], explainDecisions: Bool, warnings: [String]) {
        self.apiVersion = apiVersion
        self.featureGates = featureGates
        self.plugins = plugins
        self.orderedProfiles = orderedProfiles
        var byName: [String: SchedulingProfile] = [:]
        for p in orderedProfiles { byName[p.name] = p }
        self.profiles = byName
        self.profileHandler = profileHandler
        self.saturationDetector = saturationDetector
        self.producers = producers
        self.preRequestPlugins = preRequestPlugins
        self.attributeReporters = plugins.values.compactMap { $0 as? RequestAttributeReporter }.sorted { $0.name < $1.name }
        self.parser = parser
        self.objectives = objectives
        self.modelRewrites = modelRewrites
        self.explainDecisions = explainDecisions
        self.setsSessionToken = orderedProfiles.contains { p in p.scorers.contains { $0.scorer is SessionAffinityScorer } }
        self.defaultPrefillDecider = plugins.values.compactMap { $0 as? PrefixBasedPDDecider }.sorted { $0.name < $1.name }.first
        self.warnings = warnings
    }

    public static let supportedAPIVersions = ["inference.networking.x-k8s.io/v1alpha1", "llm-d.ai/v1alpha1", "llm-d.ai/v1"]
    public static let knownFeatureGates: Set<String> = ["flowControl", "enableLegacyMetrics", "dataLayer"]

    /// The reference's default config (scheduling.md §3.2), used when no config is given.
    public static let defaultConfigText = """
        apiVersion: llm-d.ai/v1alpha1
        kind: EndpointPickerConfig
        plugins:
        - type: queue-scorer
        - type: kv-cache-utilization-scorer
        - type: prefix-cache-scorer
        - type: metrics-data-source
        - type: core-metrics-extractor
        schedulingProfiles:
        - name: default
          plugins:
          - {pluginRef: queue-scorer, weight: 2}
          - {pluginRef: kv-cache-utilization-scorer, weight: 2}
          - {pluginRef: prefix-cache-scorer, weight: 3}
        dataLayer:
          sources:
          - pluginRef: metrics-data-source
            extractors: [{pluginRef: core-metrics-extractor}]

        """

    public static func defaultConfig(environment: PluginEnvironment = .shared) -> PickerConfig {
        try! parse(text: defaultConfigText, environment: environment)
    }

    /// Reads and parses a config file (errors name the file and the line).
    public static func load(path: String, environment: PluginEnvironment = .shared,
                            registry: PluginRegistry = .standard) throws(PickerConfigError) -> PickerConfig {
        guard let text = readTextFile(path) else { throw PickerConfigError(line: nil, "cannot read config file \(path)") }
        do {
            return try parse(text: text, environment: environment, registry: registry)
        } catch {
            throw PickerConfigError(line: error.line, "\(path): \(error.message)")
        }
    }

    /// Parses and validates a config text (strict: unknown fields, plugin types and references are errors
    /// naming the line).
    public static func parse(text: String, environment: PluginEnvironment = .shared,
                             registry: PluginRegistry = .standard) throws(PickerConfigError) -> PickerConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            let e = YAMLErrorText.describe(error)
            throw PickerConfigError(line: e.line, "invalid YAML: \(e.message)")
        }
        guard let root else { throw PickerConfigError(line: nil, "empty config") }
        let top = try ConfigReader(root, context: "EndpointPickerConfig")
        var warnings: [String] = []

        let kind = try top.string("kind")
        guard kind == "EndpointPickerConfig" else {
            throw PickerConfigError(line: top.lineOf("kind"), "kind must be EndpointPickerConfig, got '\(kind ?? "")'")
        }
        let apiVersion = try top.string("apiVersion") ?? ""
        guard supportedAPIVersions.contains(apiVersion) else {
            throw PickerConfigError(line: top.lineOf("apiVersion"),
                                    "unsupported apiVersion '\(apiVersion)' (supported: \(supportedAPIVersions.joined(separator: ", ")))")
        }
        if apiVersion == "inference.networking.x-k8s.io/v1alpha1" {
            warnings.append("apiVersion inference.networking.x-k8s.io/v1alpha1 is deprecated; use llm-d.ai/v1alpha1")
        }

        var gates: Set<String> = []
        for n in try top.sequence("featureGates") ?? [] {
            guard let g = n.scalar?.string, knownFeatureGates.contains(g) else {
                throw PickerConfigError(line: n.mark?.line, "unknown feature gate '\(n.scalar?.string ?? "?")' (known: \(knownFeatureGates.sorted().joined(separator: ", ")))")
            }
            gates.insert(g)
        }
        if gates.contains("flowControl") { warnings.append("feature gate flowControl: flow control is not implemented; legacy admission is used") }

        // plugins
        var plugins: [String: any SchedulingPlugin] = [:]
        var order: [String] = []
        var pluginLines: [String: Int] = [:]
        for n in try top.sequence("plugins") ?? [] {
            let r = try ConfigReader(n, context: "plugins[]")
            guard let type = try r.string("type"), !type.isEmpty else {
                throw PickerConfigError(line: r.line, "plugin needs a 'type'")
            }
            let name = try r.string("name") ?? type
            guard let factory = registry.factory(for: type) else {
                throw PickerConfigError(line: r.lineOf("type"), "unknown plugin type '\(type)'")
            }
            guard plugins[name] == nil else { throw PickerConfigError(line: r.lineOf("name"), "duplicate plugin name '\(name)'") }
            var params: ConfigReader? = nil
            if let p = try r.object("parameters") { params = try ConfigReader(p.node, context: "plugin '\(name)' (\(type)) parameters") }
            try r.finish()
            let plugin = try factory(name, params, environment)
            plugins[name] = plugin
            order.append(name)
            pluginLines[name] = r.line
            if (type == "precise-prefix-cache-scorer" || type == "kvcache-aware-scorer") && plugin is PrefixCacheScorer {
                warnings.append("plugin '\(name)' (\(type)): no renderURL (render endpoint + llm-d Redis index, docs/precise-prefix.md); scoring with the approximate prefix index")
            }
        }

        // scheduling profiles
        struct ProfileSpec { var name: String; var filters: [any SchedulingFilter]; var scorers: [SchedulingProfile.WeightedScorer]; var picker: (any SchedulingPicker)?; var line: Int? }
        var specs: [ProfileSpec] = []
        for n in try top.sequence("schedulingProfiles") ?? [] {
            let r = try ConfigReader(n, context: "schedulingProfiles[]")
            guard let name = try r.string("name"), !name.isEmpty else { throw PickerConfigError(line: r.line, "scheduling profile needs a 'name'") }
            guard !specs.contains(where: { $0.name == name }) else { throw PickerConfigError(line: r.lineOf("name"), "duplicate scheduling profile '\(name)'") }
            var spec = ProfileSpec(name: name, filters: [], scorers: [], picker: nil, line: r.line)
            for pn in try r.sequence("plugins") ?? [] {
                let pr = try ConfigReader(pn, context: "profile '\(name)' plugins[]")
                guard let ref = try pr.string("pluginRef") else { throw PickerConfigError(line: pr.line, "profile '\(name)': entry needs 'pluginRef'") }
                guard let plugin = plugins[ref] else {
                    throw PickerConfigError(line: pr.lineOf("pluginRef"), "profile '\(name)': unknown plugin reference '\(ref)'")
                }
                let weight = try pr.double("weight")
                try pr.finish()
                if let f = plugin as? any SchedulingFilter {
                    spec.filters.append(f)
                } else if let s = plugin as? any SchedulingScorer {
                    spec.scorers.append(.init(scorer: s, weight: weight ?? 1))
                } else if let p = plugin as? any SchedulingPicker {
                    guard spec.picker == nil else {
                        throw PickerConfigError(line: pr.lineOf("pluginRef"), "profile '\(name)': more than one picker ('\(spec.picker!.name)', '\(ref)')")
                    }
                    spec.picker = p
                } else {
                    throw PickerConfigError(line: pr.lineOf("pluginRef"),
                                            "profile '\(name)': plugin '\(ref)' (\(plugin.typeName)) is not a filter, scorer or picker")
                }
            }
            try r.finish()
            specs.append(spec)
        }
        // defaults: no profiles ⇒ one `default` profile with every filter/scorer/picker instance
        if specs.isEmpty {
            var spec = ProfileSpec(name: "default", filters: [], scorers: [], picker: nil, line: nil)
            for name in order {
                let p = plugins[name]!
                if p is ProfileHandler || p is PrefillDecider { continue }
                if let f = p as? any SchedulingFilter {
                    if p is SaturationDetector && top.has("saturationDetector") { continue }
                    spec.filters.append(f)
                } else if let s = p as? any SchedulingScorer { spec.scorers.append(.init(scorer: s, weight: 1)) }
                else if let pk = p as? any SchedulingPicker, spec.picker == nil { spec.picker = pk }
            }
            specs.append(spec)
        }
        // a profile without picker ⇒ max-score-picker (created if absent)
        var profiles: [SchedulingProfile] = []
        for spec in specs {
            var picker = spec.picker
            if picker == nil {
                if let existing = plugins["max-score-picker"] as? MaxScorePicker { picker = existing } else {
                    let p = try MaxScorePicker()
                    plugins[p.name] = p
                    picker = p
                }
            }
            profiles.append(SchedulingProfile(name: spec.name, filters: spec.filters, scorers: spec.scorers, picker: picker!))
        }

        // profile handler
        let handlers = order.compactMap { plugins[$0] as? any ProfileHandler }
        let handler: any ProfileHandler
        if handlers.count > 1 {
            throw PickerConfigError(line: pluginLines[handlers[1].name], "more than one profile handler ('\(handlers[0].name)', '\(handlers[1].name)')")
        } else if let h = handlers.first {
            handler = h
        } else if profiles.count == 1 {
            let h = try SingleProfileHandler()
            plugins[h.name] = h
            handler = h
        } else {
            throw PickerConfigError(line: nil, "\(profiles.count) scheduling profiles need a profile handler (e.g. disagg-profile-handler)")
        }
        var byName: [String: SchedulingProfile] = [:]
        for p in profiles { byName[p.name] = p }
        do { try handler.validate(profiles: byName, plugins: plugins) } catch {
            throw PickerConfigError(line: error.line ?? pluginLines[handler.name], error.message)
        }

        // saturation detector
        let detector: any SaturationDetector
        if let sd = try top.object("saturationDetector") {
            let ref = try sd.string("pluginRef") ?? ""
            try sd.finish()
            guard let p = plugins[ref] else { throw PickerConfigError(line: sd.lineOf("pluginRef"), "saturationDetector: unknown plugin reference '\(ref)'") }
            guard let d = p as? any SaturationDetector else {
                throw PickerConfigError(line: sd.lineOf("pluginRef"), "saturationDetector: plugin '\(ref)' (\(p.typeName)) is not a saturation detector")
            }
            detector = d
        } else if let existing = order.compactMap({ plugins[$0] as? UtilizationDetector }).first {
            detector = existing
        } else {
            detector = try UtilizationDetector()
        }

        // parser
        var parser = Parser.openai
        func parserRef(_ r: ConfigReader) throws(PickerConfigError) {
            let ref = try r.string("pluginRef") ?? ""
            try r.finish()
            guard let p = plugins[ref] else { throw PickerConfigError(line: r.lineOf("pluginRef"), "parser: unknown plugin reference '\(ref)'") }
            guard let kind = Parser(rawValue: p.typeName) else {
                throw PickerConfigError(line: r.lineOf("pluginRef"), "parser: plugin '\(ref)' (\(p.typeName)) is not a parser")
            }
            parser = kind
        }
        if let pr = try top.object("parser") { try parserRef(pr) }
        if let rh = try top.object("requestHandler") {
            if let pr = try rh.object("parser") { try parserRef(pr) }
            try rh.finish()
        }

        // data layer, flow control: checked for shape and references, no behaviour here
        for key in ["dataLayer", "data"] {
            guard let dl = try top.object(key) else { continue }
            _ = try dl.bool("injectDefaults")
            for s in try dl.sequence("sources") ?? [] {
                let sr = try ConfigReader(s, context: "\(key).sources[]")
                try checkRef(sr, plugins)
                for e in try sr.sequence("extractors") ?? [] {
                    let er = try ConfigReader(e, context: "\(key).sources[].extractors[]")
                    try checkRef(er, plugins)
                    try er.finish()
                }
                try sr.finish()
            }
            if let d = try dl.object("discovery") {
                if d.has("endpoints"), let e = try d.object("endpoints") { try checkRef(e, plugins); try e.finish() } else { try checkRef(d, plugins) }
                try d.finish()
            }
            try dl.finish()
        }
        if let fc = try top.object("flowControl") {
            fc.ignore("maxBytes", "maxRequests", "defaultRequestTTL", "defaultPriorityBand", "usageLimitPolicyPluginRef")
            for b in try fc.sequence("priorityBands") ?? [] {
                let br = try ConfigReader(b, context: "flowControl.priorityBands[]")
                br.ignore("priority", "maxBytes", "maxRequests", "fairnessPolicyRef", "orderingPolicyRef")
                try br.finish()
            }
            try fc.finish()
        }

        // extensions
        var objectives: [String: Int] = [:]
        for n in try top.sequence("objectives") ?? [] {
            let r = try ConfigReader(n, context: "objectives[]")
            guard let name = try r.string("name") else { throw PickerConfigError(line: r.line, "objective needs a 'name'") }
            objectives[name] = try r.int("priority") ?? 0
            try r.finish()
        }
        var rewrites: [String: [(model: String, weight: Double)]] = [:]
        for n in try top.sequence("modelRewrites") ?? [] {
            let r = try ConfigReader(n, context: "modelRewrites[]")
            guard let model = try r.string("model") else { throw PickerConfigError(line: r.line, "model rewrite needs 'model'") }
            var targets: [(model: String, weight: Double)] = []
            for t in try r.sequence("targets") ?? [] {
                let tr = try ConfigReader(t, context: "modelRewrites[].targets[]")
                guard let tm = try tr.string("model") else { throw PickerConfigError(line: tr.line, "rewrite target needs 'model'") }
                let w = try tr.double("weight") ?? 1
                guard w >= 0 else { throw PickerConfigError(line: tr.lineOf("weight"), "rewrite weight must be ≥ 0") }
                try tr.finish()
                targets.append((tm, w))
            }
            try r.finish()
            guard !targets.isEmpty else { throw PickerConfigError(line: r.line, "model rewrite for '\(model)' has no targets") }
            if rewrites[model] == nil { rewrites[model] = targets }   // the first rule wins
        }
        let explain = try top.bool("explainDecisions") ?? false
        try top.finish()

        // producers: configured ones, or the approximate prefix producer when something consumes prefix info
        var producers = order.compactMap { plugins[$0] as? any DataProducer }
        let used: [any SchedulingPlugin] = profiles.flatMap { p -> [any SchedulingPlugin] in
            p.filters.map { $0 as any SchedulingPlugin } + p.scorers.map { $0.scorer as any SchedulingPlugin } + [p.picker]
        } + [handler as any SchedulingPlugin] + plugins.values.filter { $0 is PrefillDecider }
        // (a precise scorer is a producer too, but of its own data)
        if !producers.contains(where: { $0 is ApproxPrefixCacheProducer }) && used.contains(where: { $0 is ConsumesPrefixInfo }) {
            var hints: [String: Int] = [:]
            for s in used.compactMap({ $0 as? PrefixCacheScorer }) { hints.merge(s.producerHints) { a, _ in a } }
            let p = try ApproxPrefixCacheProducer(hints: hints, index: environment.prefixIndex, redis: environment.redisIndex)
            plugins[p.name] = p
            producers.append(p)
        }
        var seen = Set<ObjectIdentifier>()
        let preRequest = used.compactMap { $0 as? any PreRequestPlugin }.filter { seen.insert(ObjectIdentifier($0)).inserted }

        return PickerConfig(apiVersion: apiVersion, featureGates: gates, plugins: plugins, orderedProfiles: profiles,
                            profileHandler: handler, saturationDetector: detector, producers: producers,
                            preRequestPlugins: preRequest, parser: parser, objectives: objectives, modelRewrites: rewrites,
                            explainDecisions: explain, warnings: warnings)
    }

    private static func checkRef(_ r: ConfigReader, _ plugins: [String: any SchedulingPlugin]) throws(PickerConfigError) {
        let ref = try r.string("pluginRef") ?? ""
        guard plugins[ref] != nil else { throw PickerConfigError(line: r.lineOf("pluginRef"), "\(r.context): unknown plugin reference '\(ref)'") }
    }
}

/// The current config, swapped atomically between requests (hot reload). Schedulers read it once per
/// request.
public final class ConfigHolder: Sendable {
    private let current: Lock<PickerConfig>
    private let generationCounter = Lock(0)

    public init(_ config: PickerConfig) { current = Lock(config) }

    public var config: PickerConfig { current.withLock { $0 } }

    /// Replaces the config; requests already deciding finish with the old one.
    public func swap(_ newConfig: PickerConfig) {
        current.withLock { $0 = newConfig }
        generationCounter.withLock { $0 += 1 }
    }

    /// Number of swaps so far.
    public var generation: Int { generationCounter.withLock { $0 } }
}

/// Whole-file read without Foundation.
func readTextFile(_ path: String, limit: Int = 4 << 20) -> String? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n > 0 { out.append(contentsOf: buf[0..<n]) }
        if n < buf.count { break }
        if out.count > limit { return nil }
    }
    return String(decoding: out, as: UTF8.self)
}
