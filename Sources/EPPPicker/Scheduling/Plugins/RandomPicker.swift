/// `random-picker` — shuffles the candidates and takes the first `maxNumOfEndpoints` (default 1; ≤ 0 ⇒ 1);
/// scores are ignored.
public final class RandomPicker: SchedulingPicker {
    public let typeName = "random-picker"
    public let name: String
    public let maxNumOfEndpoints: Int

    public init(name: String = "random-picker", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        maxNumOfEndpoints = PickerParams.maxEndpoints(try params?.int("maxNumOfEndpoints"))
        try params?.finish()
    }

    public func pick(_ ctx: SchedulingContext, _ candidates: [Int], scores: [Double]) -> [Int] {
        RandomPicker.pickRandom(&ctx.random, candidates, maxNumOfEndpoints)
    }

    static func pickRandom(_ random: inout FastRandom, _ candidates: [Int], _ n: Int) -> [Int] {
        guard !candidates.isEmpty else { return [] }
        if n == 1 { return [candidates[Int(random.next() % UInt64(candidates.count))]] }
        var c = candidates
        c.shuffle(using: &random)
        return Array(c.prefix(n))
    }
}
