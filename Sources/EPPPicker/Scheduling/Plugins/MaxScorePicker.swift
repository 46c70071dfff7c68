/// `max-score-picker` — highest total score wins, ties broken uniformly at random (the reference shuffles,
/// then stable-sorts by score descending); returns the first `maxNumOfEndpoints` (default 1; ≤ 0 ⇒ 1).
/// For one endpoint this is a single pass with reservoir sampling over the ties (same distribution, no sort).
public final class MaxScorePicker: SchedulingPicker {
    public let typeName = "max-score-picker"
    public let name: String
    public let maxNumOfEndpoints: Int

    public init(name: String = "max-score-picker", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        maxNumOfEndpoints = PickerParams.maxEndpoints(try params?.int("maxNumOfEndpoints"))
        try params?.finish()
    }

    public func pick(_ ctx: SchedulingContext, _ candidates: [Int], scores: [Double]) -> [Int] {
        guard !candidates.isEmpty else { return [] }
        if maxNumOfEndpoints == 1 {
            var best = 0
            var ties: UInt64 = 1
            for k in 1..<candidates.count {
                if scores[k] > scores[best] {
                    best = k; ties = 1
                } else if scores[k] == scores[best] {
                    ties += 1
                    if ctx.random.next() % ties == 0 { best = k }
                }
            }
            return [candidates[best]]
        }
        var order = Array(candidates.indices)
        order.shuffle(using: &ctx.random)
        // stable sort by score descending (Swift's sort is not guaranteed stable: sort by (score, position))
        let pos = order.enumerated().reduce(into: [Int](repeating: 0, count: order.count)) { $0[$1.element] = $1.offset }
        order.sort { a, b in scores[a] != scores[b] ? scores[a] > scores[b] : pos[a] < pos[b] }
        return order.prefix(maxNumOfEndpoints).map { candidates[$0] }
    }
}

enum PickerParams {
    static func maxEndpoints(_ v: Int?) -> Int {
        guard let v, v > 0 else { return 1 }
        return v
    }
}
