/// `queue-scorer` — min–max normalised waiting queue over the profile's candidates E:
/// `score = (max q − q) / (max q − min q)`; all equal ⇒ 1.0. `q` = the model server's waiting queue
/// (`vllm:num_requests_waiting`, …); an endpoint without metrics counts as q = 0. No parameters.
public final class QueueScorer: SchedulingScorer {
    public let typeName = "queue-scorer"
    public let name: String

    public init(name: String = "queue-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        MinMax.score(candidates, into: &scores) { ctx.waitingQueue[$0] }
    }
}

/// Shared min–max normalisation: lowest value ⇒ 1, highest ⇒ 0, all equal ⇒ 1.
enum MinMax {
    @inline(__always)
    static func score(_ candidates: [Int], into scores: inout [Double], _ value: (Int) -> Int) {
        guard !candidates.isEmpty else { return }
        var lo = Int.max, hi = Int.min
        for c in candidates {
            let v = value(c)
            if v < lo { lo = v }
            if v > hi { hi = v }
        }
        if hi == lo {
            for k in scores.indices { scores[k] = 1 }
            return
        }
        let range = Double(hi - lo)
        for (k, c) in candidates.enumerated() { scores[k] = Double(hi - value(c)) / range }
    }
}
