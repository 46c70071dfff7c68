/// Latency model of a simulated server (llm-d-inference-sim "per-token" calculator,
/// model-server.md §3.2), without jitter.
///
/// With `R` running requests (including the one being timed) and `F = loadFactor`:
/// `f(R) = 1 + (F − 1)·(R − 1)/(maxNumSeqs − 1)` (`f = 1` when `maxNumSeqs ≤ 1`).
/// - TTFT = `(prefillOverhead + (promptTokens − cachedTokens) · prefillPerToken) · f(R)`
/// - each further output token: `interTokenLatency · f(R)` (R re-read at every token)
/// - P/D decode side with remote prefill: TTFT = `kvTransferOverhead + promptTokens · kvTransferPerToken`
///   (no load factor)
/// Every duration is multiplied by `timeScale` (and by `slowFactor` for a "slow" request).
///
/// Defaults — AMD MI300X, 7–8B model (model-server.md §5.2): prefill overhead 30 ms (range
/// 25–40 ms), 0.17 ms per prompt token (0.11–0.23 ms; TTFT(256) = 73.52 ms, inside the 50–100 ms
/// row), ITL 15 ms (12–18 ms); KV transfer 6 µs/token (RoCE 200G, 8B) + 1 ms setup (RDMA
/// 0.5–2 ms); load factor 2.0 and max-num-seqs 16 from the 8B reference profile (§5.1).
public struct LatencyModel: Sendable, Equatable {
    public var prefillOverhead: Double = 0.030
    public var prefillPerToken: Double = 0.000_17
    public var interTokenLatency: Double = 0.015
    public var kvTransferOverhead: Double = 0.001
    public var kvTransferPerToken: Double = 0.000_006
    public var loadFactor: Double = 2.0
    public var maxNumSeqs: Int = 16
    public var timeScale: Double = 1.0

    public init() {}

    /// Load factor `f(R)`; `running` is clamped to `1...maxNumSeqs`.
    public func factor(running: Int) -> Double {
        guard maxNumSeqs > 1 else { return 1 }
        let r = Double(min(max(running, 1), maxNumSeqs))
        return 1 + (loadFactor - 1) * (r - 1) / Double(maxNumSeqs - 1)
    }

    /// Time to first token in seconds (scaled).
    public func timeToFirstToken(promptTokens: Int, cachedTokens: Int, running: Int) -> Double {
        let uncached = Double(max(0, promptTokens - cachedTokens))
        return (prefillOverhead + uncached * prefillPerToken) * factor(running: running) * timeScale
    }

    /// Remote-prefill (P/D decode side) replacement of TTFT in seconds (scaled).
    public func kvTransferTime(promptTokens: Int) -> Double {
        (kvTransferOverhead + Double(promptTokens) * kvTransferPerToken) * timeScale
    }

    /// Inter-token latency in seconds (scaled).
    public func interToken(running: Int) -> Double {
        interTokenLatency * factor(running: running) * timeScale
    }
}
