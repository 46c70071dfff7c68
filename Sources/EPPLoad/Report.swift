import Foundation

/// Aggregated report of a run; `--json` writes it with these (snake_case) keys.
public struct LoadReport: Sendable, Codable {
    public struct RunInfo: Sendable, Codable {
        public var target: String
        public var model: String
        public var api: String
        public var workload: String
        public var stream: Bool
        public var concurrency: Int?
        public var rate: Double?
        public var seed: UInt64
        public var groups: Int
        public var prompts_per_group: Int
        public var system_prompt_tokens: Int
        public var question_tokens: Int
        public var output_tokens: Int
    }

    /// Requests sent.
    public var requests: Int
    public var succeeded: Int
    /// Requests that failed (non-200 status, transport error or malformed response).
    public var errors: Int
    public var duration_s: Double
    /// Successful requests per second of wall time.
    public var requests_per_second: Double
    public var ttft_ms: Summary
    public var e2e_ms: Summary
    /// Gaps between consecutive streamed content chunks, pooled over requests (empty unless streaming).
    public var itl_ms: Summary
    /// Σ cached_tokens ÷ Σ prompt_tokens over successful requests that reported usage (nil if none).
    public var prefix_hit_rate: Double?
    public var prompt_tokens: Int
    public var cached_tokens: Int
    public var completion_tokens: Int
    /// Responses per `x-inference-port` value (all statuses; transport errors excluded).
    public var per_endpoint: [String: Int]
    /// Request-weighted fraction of each group's successful requests on its modal endpoint.
    public var group_purity: Double?
    /// Failures by HTTP status; `"transport"` for connection errors/timeouts, `"invalid"` for
    /// 200 responses that could not be parsed or were cut short.
    public var errors_by_status: [String: Int]
    /// First few distinct error messages.
    public var error_samples: [String]
    public var run: RunInfo

    enum CodingKeys: String, CodingKey {
        case requests, succeeded, errors, duration_s, requests_per_second, ttft_ms, e2e_ms, itl_ms, prefix_hit_rate,
            prompt_tokens, cached_tokens, completion_tokens, per_endpoint, group_purity, errors_by_status, error_samples, run
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(requests, forKey: .requests)
        try c.encode(succeeded, forKey: .succeeded)
        try c.encode(errors, forKey: .errors)
        try c.encode(duration_s, forKey: .duration_s)
        try c.encode(requests_per_second, forKey: .requests_per_second)
        try c.encode(ttft_ms, forKey: .ttft_ms)
        try c.encode(e2e_ms, forKey: .e2e_ms)
        try c.encode(itl_ms, forKey: .itl_ms)
        try c.encode(prefix_hit_rate, forKey: .prefix_hit_rate)  // explicit null when unknown
        try c.encode(prompt_tokens, forKey: .prompt_tokens)
        try c.encode(cached_tokens, forKey: .cached_tokens)
        try c.encode(completion_tokens, forKey: .completion_tokens)
        try c.encode(per_endpoint, forKey: .per_endpoint)
        try c.encode(group_purity, forKey: .group_purity)
        try c.encode(errors_by_status, forKey: .errors_by_status)
        try c.encode(error_samples, forKey: .error_samples)
        try c.encode(run, forKey: .run)
    }

    /// Aggregate raw results.
    public init(_ r: LoadResults) {
        let ok = r.results.filter(\.succeeded)
        requests = r.results.count
        succeeded = ok.count
        errors = requests - succeeded
        duration_s = r.duration
        requests_per_second = r.duration > 0 ? Double(succeeded) / r.duration : 0
        ttft_ms = Summary(ok.compactMap(\.ttft)).scaled(1000)
        e2e_ms = Summary(ok.map(\.e2e)).scaled(1000)
        itl_ms = Summary(ok.flatMap(\.itls)).scaled(1000)
        let withUsage = ok.filter { $0.promptTokens != nil }
        prompt_tokens = withUsage.reduce(0) { $0 + ($1.promptTokens ?? 0) }
        cached_tokens = withUsage.reduce(0) { $0 + ($1.cachedTokens ?? 0) }
        completion_tokens = ok.reduce(0) { $0 + ($1.completionTokens ?? 0) }
        prefix_hit_rate = prompt_tokens > 0 ? Double(cached_tokens) / Double(prompt_tokens) : nil
        var pe: [String: Int] = [:]
        for x in r.results { if let e = x.endpoint { pe[e, default: 0] += 1 } }
        per_endpoint = pe
        group_purity = groupPurity(ok.compactMap { x in x.endpoint.map { (group: x.group, endpoint: $0) } })
        var eb: [String: Int] = [:]
        var samples: [String] = []
        for x in r.results where !x.succeeded {
            let key: String
            if let s = x.status { key = s == 200 ? "invalid" : String(s) } else { key = "transport" }
            eb[key, default: 0] += 1
            if let m = x.error, samples.count < 5, !samples.contains(m) { samples.append(m) }
        }
        errors_by_status = eb
        error_samples = samples
        let c = r.config
        run = RunInfo(
            target: c.target, model: c.model, api: c.api.rawValue, workload: c.workload.rawValue, stream: c.stream,
            concurrency: c.rate == nil ? c.concurrency : nil, rate: c.rate, seed: c.seed, groups: c.groups,
            prompts_per_group: c.promptsPerGroup, system_prompt_tokens: c.systemPromptTokens,
            question_tokens: c.questionTokens, output_tokens: c.outputTokens)
    }

    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }

    /// Human-readable table for stdout.
    public func table() -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%9.2f", $0) } ?? "        -" }
        var s = ""
        s += "epp-load: \(run.workload) \(run.api)\(run.stream ? " stream" : "") → \(run.target) "
        s += run.rate.map { "(poisson \($0)/s)" } ?? "(concurrency \(run.concurrency ?? 0))"
        s += "\n"
        s += String(format: "requests %d  ok %d  errors %d  duration %.2f s  throughput %.2f req/s\n",
                    requests, succeeded, errors, duration_s, requests_per_second)
        s += "latency (ms)        p50       p90       p99      mean     count\n"
        for (name, sm) in [("ttft", ttft_ms), ("e2e", e2e_ms), ("itl", itl_ms)] {
            s += name.padding(toLength: 14, withPad: " ", startingAt: 0) + f(sm.p50) + " " + f(sm.p90) + " " + f(sm.p99) + " " + f(sm.mean)
                + String(format: " %9d\n", sm.count)
        }
        if let h = prefix_hit_rate {
            s += String(format: "prefix hit rate  %.4f  (cached %d / prompt %d tokens)\n", h, cached_tokens, prompt_tokens)
        } else {
            s += "prefix hit rate  -  (no usage reported)\n"
        }
        s += "group purity     " + (group_purity.map { String(format: "%.4f", $0) } ?? "-") + "\n"
        s += "per endpoint (x-inference-port):\n"
        if per_endpoint.isEmpty { s += "  (none)\n" }
        for (k, v) in per_endpoint.sorted(by: { $0.key < $1.key }) {
            s += "  " + k.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%7d\n", v)
        }
        if !errors_by_status.isEmpty {
            s += "errors by status: " + errors_by_status.sorted(by: { $0.key < $1.key }).map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
            for m in error_samples { s += "  e.g. \(m)\n" }
        }
        return s
    }
}
