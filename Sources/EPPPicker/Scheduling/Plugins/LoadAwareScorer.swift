/// `load-aware-scorer` — waiting queue q: `q == 0` ⇒ 0.5; else `0.5 · (1 − min(q, T)/T)`.
/// Parameter `threshold` T (default 128; ≤ 0 ⇒ 128).
public final class LoadAwareScorer: SchedulingScorer {
    public let typeName = "load-aware-scorer"
    public let name: String
    public let threshold: Int

    public init(name: String = "load-aware-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        let t = try params?.int("threshold") ?? 128
        threshold = t <= 0 ? 128 : t
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        let t = Double(threshold)
        for (k, c) in candidates.enumerated() {
            let q = ctx.waitingQueue[c]
            scores[k] = q <= 0 ? 0.5 : 0.5 * (1 - min(Double(q), t) / t)
        }
    }
}
