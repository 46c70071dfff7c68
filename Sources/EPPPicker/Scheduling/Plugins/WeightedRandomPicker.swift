#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `weighted-random-picker` — weighted sampling without replacement by total score (A-Res): for score > 0
/// draw U ∈ (0, 1] (0 ⇒ 1e-10), key = `U^(1/score)`; score ≤ 0 ⇒ key 0; keys descending, first
/// `maxNumOfEndpoints` (default 1). No score > 0 ⇒ behaves as `random-picker`.
public final class WeightedRandomPicker: SchedulingPicker {
    public let typeName = "weighted-random-picker"
    public let name: String
    public let maxNumOfEndpoints: Int

    public init(name: String = "weighted-random-picker", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        maxNumOfEndpoints = PickerParams.maxEndpoints(try params?.int("maxNumOfEndpoints"))
        try params?.finish()
    }

    public func pick(_ ctx: SchedulingContext, _ candidates: [Int], scores: [Double]) -> [Int] {
        guard !candidates.isEmpty else { return [] }
        guard scores.contains(where: { $0 > 0 }) else {
            return RandomPicker.pickRandom(&ctx.random, candidates, maxNumOfEndpoints)
        }
        var keys = [Double](repeating: 0, count: candidates.count)
        for k in candidates.indices where scores[k] > 0 {
            var u = Double((ctx.random.next() >> 11) + 1) / Double(1 << 53)   // (0, 1]
            if u <= 0 { u = 1e-10 }
            keys[k] = pow(u, 1 / scores[k])
        }
        let order = candidates.indices.sorted { keys[$0] > keys[$1] }
        return order.prefix(maxNumOfEndpoints).map { candidates[$0] }
    }
}

