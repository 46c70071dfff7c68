/// Role of a simulated server in prefill/decode disaggregation (model-server.md §4).
public enum SimRole: String, Sendable, CaseIterable {
    /// Every request is answered after one token with `kv_transfer_params` for a decoder.
    case prefill
    /// Requests with `kv_transfer_params.do_remote_prefill: true` skip prefill and pay a KV
    /// transfer time instead; other requests are served normally (local prefill fallback).
    case decode
    /// Honour whatever `kv_transfer_params` asks for (`do_remote_decode` ⇒ prefill behaviour,
    /// `do_remote_prefill` ⇒ decode behaviour); plain requests are served normally.
    case both
}

/// Configuration of a fleet of simulated vLLM servers (`epp-sim` flags).
public struct SimulatorConfig: Sendable, Equatable {
    /// Bind address; loopback by default.
    public var host = "127.0.0.1"
    /// First port; server *i* listens on `port + i`. `0` = each server picks a free port (tests).
    public var port = 8000
    /// Number of servers.
    public var count = 1
    /// Served model name (`model` field, `/v1/models`, metric label).
    public var model = "meta-llama/Llama-3.1-8B-Instruct"
    /// Prefix of `x-inference-pod` (`<prefix>-<index>`); default: the model name lower-cased
    /// with every character outside `[a-z0-9-]` replaced by `-` (a valid Kubernetes pod name).
    public var podNamePrefix: String? = nil
    /// KV cache capacity per server, in blocks.
    public var kvBlocks = 1024
    /// Tokens per KV block.
    public var blockSize = 16
    /// Maximum concurrently running requests per server.
    public var maxNumSeqs = 16
    /// Maximum waiting (queued) requests per server; beyond ⇒ 429.
    public var maxWaiting = 1000
    /// Maximum prompt + output tokens per request (⇒ 400 beyond).
    public var maxModelLen = 131_072
    public var role: SimRole = .both
    /// Latency parameters (unscaled); ``timeScale`` is applied on top.
    public var latency = LatencyModel()
    /// Multiplies every simulated duration (0.1 = ten times faster).
    public var timeScale = 1.0
    /// Fraction of requests answered with HTTP 500.
    public var failRate = 0.0
    /// Fraction of requests whose durations are multiplied by ``slowFactor``.
    public var slowRate = 0.0
    public var slowFactor = 5.0
    /// Seed of the per-server random draws (fail/slow); server *i* uses `seed + i`.
    public var seed: UInt64 = 0
    /// Log level of the HTTP servers (swift-log names: trace … critical). Hummingbird reports
    /// task cancellation at shutdown as errors, hence the quiet default.
    public var logLevel = "critical"

    public init() {}

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Check ranges; throws ``Invalid`` with a one-line message.
    public func validate() throws {
        func fail(_ m: String) throws -> Never { throw Invalid(m) }
        if count < 1 || count > 1024 { try fail("--count must be between 1 and 1024 (got \(count))") }
        if port < 0 || port > 65535 { try fail("--port must be between 0 and 65535 (got \(port))") }
        if port > 0 && port + count - 1 > 65535 { try fail("--port \(port) + --count \(count) exceeds port 65535") }
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) {
            try fail("--log-level must be one of trace, debug, info, notice, warning, error, critical (got \(logLevel))")
        }
        if model.isEmpty { try fail("--model must not be empty") }
        if kvBlocks < 1 { try fail("--kv-blocks must be ≥ 1 (got \(kvBlocks))") }
        if blockSize < 1 || blockSize > 1024 { try fail("--block-size must be between 1 and 1024 (got \(blockSize))") }
        if maxNumSeqs < 1 { try fail("--max-num-seqs must be ≥ 1 (got \(maxNumSeqs))") }
        if maxWaiting < 0 { try fail("--max-waiting must be ≥ 0 (got \(maxWaiting))") }
        if maxModelLen < 1 { try fail("--max-model-len must be ≥ 1 (got \(maxModelLen))") }
        if !(timeScale > 0) || !timeScale.isFinite { try fail("--time-scale must be > 0 (got \(timeScale))") }
        if !(0...1).contains(failRate) { try fail("--fail-rate must be between 0 and 1 (got \(failRate))") }
        if !(0...1).contains(slowRate) { try fail("--slow-rate must be between 0 and 1 (got \(slowRate))") }
        if !(slowFactor >= 1) || !slowFactor.isFinite { try fail("--slow-factor must be ≥ 1 (got \(slowFactor))") }
        if !(latency.loadFactor >= 1) { try fail("--load-factor must be ≥ 1 (got \(latency.loadFactor))") }
        for (name, v) in [
            ("--prefill-overhead-ms", latency.prefillOverhead), ("--prefill-per-token-ms", latency.prefillPerToken),
            ("--itl-ms", latency.interTokenLatency), ("--kv-transfer-ms", latency.kvTransferOverhead),
            ("--kv-transfer-per-token-us", latency.kvTransferPerToken),
        ] where !(v >= 0) || !v.isFinite {
            try fail("\(name) must be ≥ 0")
        }
    }

    /// Pod name of server `index`.
    public func podName(index: Int) -> String {
        "\(podNamePrefix ?? Self.sanitize(model))-\(index)"
    }

    static func sanitize(_ s: String) -> String {
        var out = ""
        var lastDash = false
        for c in s.lowercased().unicodeScalars {
            let ok = (c >= "a" && c <= "z") || (c >= "0" && c <= "9")
            if ok {
                out.unicodeScalars.append(c)
                lastDash = false
            } else if !lastDash {
                out += "-"
                lastDash = true
            }
        }
        while out.hasPrefix("-") { out.removeFirst() }
        while out.hasSuffix("-") { out.removeLast() }
        return out.isEmpty ? "sim" : out
    }

    /// The latency model as used by the servers (max-num-seqs and time scale applied).
    public var effectiveLatency: LatencyModel {
        var l = latency
        l.maxNumSeqs = maxNumSeqs
        l.timeScale = timeScale
        return l
    }
}
