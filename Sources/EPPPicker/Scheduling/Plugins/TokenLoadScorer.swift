/// `token-load-scorer` — in-flight prompt tokens t this picker sent to the endpoint: `t ≤ 0` ⇒ 1.0; else
/// `1 − min(t, T)/T`. Parameter `queueThresholdTokens` T (default 4 194 304 = 128 requests × 32K).
public final class TokenLoadScorer: SchedulingScorer {
    public let typeName = "token-load-scorer"
    public let name: String
    public let queueThresholdTokens: Int

    public init(name: String = "token-load-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        let t = try params?.int("queueThresholdTokens") ?? 4_194_304
        queueThresholdTokens = t <= 0 ? 4_194_304 : t
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        let cap = Double(queueThresholdTokens)
        for (k, c) in candidates.enumerated() {
            let t = ctx.endpoints[c].inFlightPromptTokens.load(ordering: .relaxed)
            scores[k] = t <= 0 ? 1.0 : 1 - min(Double(t), cap) / cap
        }
    }
}
