import EPPEventLoop
// Model-server metrics contract (scheduling.md §8).

/// Model-server engine, from endpoint label `inference.networking.k8s.io/engine-type`.
public enum EngineType: String, Sendable, Hashable, CaseIterable {
    case vllm
    case sglang
    case trtllmServe = "trtllm-serve"
    case tritonTensorRTLLM = "triton-tensorrt-llm"

    public static let labelKey = "inference.networking.k8s.io/engine-type"

    /// Exact label value; unknown ⇒ nil.
    public init?(labelValue: String) {
        self.init(rawValue: labelValue)
    }

    /// Engine from endpoint labels; absent or unknown ⇒ `.vllm` (the default).
    public static func from(labels: [String: String]) -> EngineType {
        labels[labelKey].flatMap(EngineType.init(labelValue:)) ?? .vllm
    }

    /// Built-in metric-name mapping (scheduling.md §8 table).
    public var mapping: EngineMetricMapping {
        switch self {
        case .vllm:
            return EngineMetricMapping(
                waiting: [MetricSpec("vllm:num_requests_waiting")],
                running: [MetricSpec("vllm:num_requests_running")],
                kvUsage: [MetricSpec("vllm:kv_cache_usage_perc"), MetricSpec("vllm:gpu_cache_usage_perc")],
                loraInfo: MetricSpec("vllm:lora_requests_info"),
                cacheInfo: .infoLabels(MetricSpec("vllm:cache_config_info"), blockSize: "block_size", numBlocks: "num_gpu_blocks"))
        case .sglang:
            return EngineMetricMapping(
                waiting: [MetricSpec("sglang:num_queue_reqs")],
                running: [MetricSpec("sglang:num_running_reqs")],
                kvUsage: [MetricSpec("sglang:token_usage")],
                loraInfo: nil,
                cacheInfo: .infoLabels(MetricSpec("sglang:cache_config_info"), blockSize: "page_size", numBlocks: "num_pages"))
        case .trtllmServe:
            return EngineMetricMapping(
                waiting: [MetricSpec("trtllm_num_requests_waiting")],
                running: [MetricSpec("trtllm_num_requests_running")],
                kvUsage: [MetricSpec("trtllm_kv_cache_utilization")],
                loraInfo: nil,
                cacheInfo: .gauges(blockSize: MetricSpec("trtllm_kv_cache_tokens_per_block"),
                                   numBlocks: MetricSpec("trtllm_kv_cache_max_blocks")))
        case .tritonTensorRTLLM:
            return EngineMetricMapping(
                waiting: [MetricSpec("nv_trt_llm_request_metrics", label: "request_type", value: "waiting")],
                running: [MetricSpec("nv_trt_llm_request_metrics", label: "request_type", value: "scheduled")],
                kvUsage: [MetricSpec("nv_trt_llm_kv_cache_block_metrics", label: "kv_cache_block_type", value: "fraction")],
                loraInfo: nil,
                cacheInfo: .gauges(
                    blockSize: MetricSpec("nv_trt_llm_kv_cache_block_metrics", label: "kv_cache_block_type", value: "tokens_per"),
                    numBlocks: MetricSpec("nv_trt_llm_kv_cache_block_metrics", label: "kv_cache_block_type", value: "max")))
        }
    }
}

extension EndpointSpec {
    /// Engine type from the endpoint's labels (default vLLM).
    public var engineType: EngineType { EngineType.from(labels: labels) }
}

/// A metric family with an optional single label matcher, written PromQL-like
/// as `family` or `family{label="value"}`.
public struct MetricSpec: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var labelName: String?
    public var labelValue: String?

    public init(_ name: String, label: String? = nil, value: String? = nil) {
        self.name = name
        self.labelName = label
        self.labelValue = value
    }

    /// Parses `family` or `family{label="value"}`; nil for anything else
    /// (an empty string — "metric disabled" in config — gives nil too).
    public static func parse(_ text: String) -> MetricSpec? {
        let s = text.trimmingSpaces()
        guard !s.isEmpty else { return nil }
        guard let brace = s.firstIndex(of: "{") else {
            return s.utf8.allSatisfy({ PrometheusText.isNameStart($0) || PrometheusText.isDigitByte($0) }) ? MetricSpec(s) : nil
        }
        let name = String(s[s.startIndex..<brace])
        guard !name.isEmpty, s.hasSuffix("}") else { return nil }
        let inner = s[s.index(after: brace)..<s.index(before: s.endIndex)]
        guard let eq = inner.firstIndex(of: "=") else { return nil }
        let label = String(inner[inner.startIndex..<eq]).trimmingSpaces()
        var value = String(inner[inner.index(after: eq)...]).trimmingSpaces()
        guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\""), !label.isEmpty else { return nil }
        value = String(value.dropFirst().dropLast())
        return MetricSpec(name, label: label, value: value)
    }

    public var description: String {
        if let l = labelName, let v = labelValue { return "\(name){\(l)=\"\(v)\"}" }
        return name
    }

    func matches(_ s: PrometheusSample) -> Bool {
        guard s.name == name else { return false }
        if let l = labelName { return s.label(l) == labelValue }
        return true
    }
}

/// Where block size / block count come from.
public enum CacheInfoSource: Sendable, Hashable {
    /// Info gauge whose labels carry integers (vLLM, SGLang).
    case infoLabels(MetricSpec, blockSize: String, numBlocks: String)
    /// Two plain gauges (TRT-LLM).
    case gauges(blockSize: MetricSpec, numBlocks: MetricSpec)
}

/// Metric names for one engine. Lists are fallbacks in order (first one
/// present wins), e.g. vLLM's `kv_cache_usage_perc` then the older
/// `gpu_cache_usage_perc`.
public struct EngineMetricMapping: Sendable, Hashable {
    public var waiting: [MetricSpec]
    public var running: [MetricSpec]
    public var kvUsage: [MetricSpec]
    public var loraInfo: MetricSpec?
    public var cacheInfo: CacheInfoSource?

    public init(waiting: [MetricSpec], running: [MetricSpec], kvUsage: [MetricSpec], loraInfo: MetricSpec?,
                cacheInfo: CacheInfoSource?) {
        self.waiting = waiting
        self.running = running
        self.kvUsage = kvUsage
        self.loraInfo = loraInfo
        self.cacheInfo = cacheInfo
    }

    var allNames: [String] {
        var names = waiting.map(\.name) + running.map(\.name) + kvUsage.map(\.name)
        if let l = loraInfo { names.append(l.name) }
        switch cacheInfo {
        case .infoLabels(let s, _, _): names.append(s.name)
        case .gauges(let a, let b): names += [a.name, b.name]
        case nil: break
        }
        return Array(Set(names))
    }
}

/// One scrape of a model server's state, as used by scorers and filters.
public struct EndpointMetrics: Sendable, Equatable {
    public var waitingQueueSize: Int
    public var runningRequests: Int
    /// KV-cache utilisation, clamped to 0…1.
    public var kvCacheUsage: Double
    /// Tokens per KV block (vLLM `block_size`, SGLang `page_size`, …).
    public var kvBlockSize: Int?
    /// Number of KV blocks (vLLM `num_gpu_blocks`, …).
    public var kvNumBlocks: Int?
    public var activeLoRAs: Set<String>
    public var waitingLoRAs: Set<String>
    public var maxLoRA: Int?
    /// Monotonic nanoseconds (EventLoop.now()); a plain integer keeps this struct's copies cheap on the request
    /// path (a resilient ContinuousClock.Instant field forced every copy through runtime value witnesses).
    public var updatedAt: UInt64
    /// Core signals not found in the scrape: any of `waitingQueueSize`,
    /// `runningRequests`, `kvCacheUsage` (their values are then 0).
    public var missing: [String]

    public init(waitingQueueSize: Int = 0, runningRequests: Int = 0, kvCacheUsage: Double = 0, kvBlockSize: Int? = nil,
                kvNumBlocks: Int? = nil, activeLoRAs: Set<String> = [], waitingLoRAs: Set<String> = [], maxLoRA: Int? = nil,
                updatedAt: UInt64 = EventLoop.now(), missing: [String] = []) {
        self.waitingQueueSize = waitingQueueSize
        self.runningRequests = runningRequests
        self.kvCacheUsage = kvCacheUsage
        self.kvBlockSize = kvBlockSize
        self.kvNumBlocks = kvNumBlocks
        self.activeLoRAs = activeLoRAs
        self.waitingLoRAs = waitingLoRAs
        self.maxLoRA = maxLoRA
        self.updatedAt = updatedAt
        self.missing = missing
    }

    /// Extracts the metrics of `engine` from a Prometheus text exposition.
    /// With several series of one gauge, the sample with the newest timestamp
    /// wins (the first one when there are no timestamps); for
    /// `vllm:lora_requests_info` the series with the largest **value** (a
    /// timestamp) wins. Throws on malformed or oversized text.
    public static func extract(from text: String, engine: EngineType, now: UInt64 = EventLoop.now(),
                               limits: PrometheusText.Limits = .default) throws(PrometheusParseError) -> EndpointMetrics {
        try extract(from: text, mapping: engine.mapping, now: now, limits: limits)
    }

    public static func extract(from text: String, mapping: EngineMetricMapping, now: UInt64 = EventLoop.now(),
                               limits: PrometheusText.Limits = .default) throws(PrometheusParseError) -> EndpointMetrics {
        var copy = text
        let r = copy.withUTF8 { buf in
            Result { () throws(PrometheusParseError) -> EndpointMetrics in
                try extract(from: UnsafeRawBufferPointer(buf), mapping: mapping, now: now, limits: limits)
            }
        }
        return try r.get()
    }

    public static func extract(from bytes: UnsafeRawBufferPointer, mapping: EngineMetricMapping,
                               now: UInt64 = EventLoop.now(),
                               limits: PrometheusText.Limits = .default) throws(PrometheusParseError) -> EndpointMetrics {
        let wanted = mapping.allNames.map { Array($0.utf8) }
        var samples: [PrometheusSample] = []
        try PrometheusText.forEachSample(in: bytes, limits: limits, include: { name in
            for w in wanted where w.count == name.count && w.elementsEqual(name) { return true }
            return false
        }) { samples.append($0) }

        var m = EndpointMetrics(updatedAt: now)
        if let v = pick(mapping.waiting, samples), v.isFinite {
            m.waitingQueueSize = max(0, Int(v.rounded()))
        } else {
            m.missing.append("waitingQueueSize")
        }
        if let v = pick(mapping.running, samples), v.isFinite {
            m.runningRequests = max(0, Int(v.rounded()))
        } else {
            m.missing.append("runningRequests")
        }
        if let v = pick(mapping.kvUsage, samples), !v.isNaN {
            m.kvCacheUsage = min(1, max(0, v))
        } else {
            m.missing.append("kvCacheUsage")
        }
        if let spec = mapping.loraInfo {
            var best: PrometheusSample? = nil
            for s in samples where spec.matches(s) {
                if best == nil || s.value > best!.value { best = s }
            }
            if let b = best {
                m.activeLoRAs = splitAdapters(b.label("running_lora_adapters"))
                m.waitingLoRAs = splitAdapters(b.label("waiting_lora_adapters"))
                m.maxLoRA = b.label("max_lora").flatMap { Int($0.trimmingSpaces()) }
            }
        }
        switch mapping.cacheInfo {
        case .infoLabels(let spec, let bs, let nb):
            if let s = latest(spec, samples) {
                m.kvBlockSize = s.label(bs).flatMap { positiveInt($0) }
                m.kvNumBlocks = s.label(nb).flatMap { positiveInt($0) }
            }
        case .gauges(let bs, let nb):
            m.kvBlockSize = pick([bs], samples).flatMap { $0.isFinite && $0 > 0 ? Int($0) : nil }
            m.kvNumBlocks = pick([nb], samples).flatMap { $0.isFinite && $0 > 0 ? Int($0) : nil }
        case nil:
            break
        }
        return m
    }

    private static func latest(_ spec: MetricSpec, _ samples: [PrometheusSample]) -> PrometheusSample? {
        var best: PrometheusSample? = nil
        for s in samples where spec.matches(s) {
            guard let b = best else {
                best = s
                continue
            }
            if (s.timestampMs ?? Int64.min) > (b.timestampMs ?? Int64.min) { best = s }
        }
        return best
    }

    private static func pick(_ specs: [MetricSpec], _ samples: [PrometheusSample]) -> Double? {
        for spec in specs {
            if let s = latest(spec, samples) { return s.value }
        }
        return nil
    }

    private static func splitAdapters(_ s: String?) -> Set<String> {
        guard let s, !s.isEmpty else { return [] }
        var out = Set<String>()
        for part in s.split(separator: ",") {
            let t = String(part).trimmingSpaces()
            if !t.isEmpty { out.insert(t) }
        }
        return out
    }

    private static func positiveInt(_ s: String) -> Int? {
        let t = s.trimmingSpaces()
        if let v = Int(t), v > 0 { return v }
        if let d = Double(t), d.isFinite, d > 0, d < 9e18 { return Int(d) }
        return nil
    }
}

extension StringProtocol {
    /// Trims ASCII spaces and tabs (no Foundation).
    func trimmingSpaces() -> String {
        let str = String(self)
        let u = str.utf8
        var start = u.startIndex
        var end = u.endIndex
        while start < end, u[start] == UInt8(ascii: " ") || u[start] == UInt8(ascii: "\t") { start = u.index(after: start) }
        while end > start {
            let p = u.index(before: end)
            if u[p] == UInt8(ascii: " ") || u[p] == UInt8(ascii: "\t") { end = p } else { break }
        }
        return String(decoding: u[start..<end], as: UTF8.self)
    }
}
