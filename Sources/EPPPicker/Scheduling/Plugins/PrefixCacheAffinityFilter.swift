/// `prefix-cache-affinity-filter` — keeps the "sticky" endpoints whose prefix match ratio
/// `matchBlocks/totalBlocks ≥ affinityThreshold`. Everything passes when ≤ 1 candidate, threshold ≤ 0,
/// with probability `explorationProbability`, or when no endpoint is sticky. (`maxTTFTPenaltyMs` applies to
/// predicted TTFTs, which this picker does not have: accepted, no effect.)
/// Parameters: `affinityThreshold` 0.80 (≤ 1), `explorationProbability` 0.01, `maxTTFTPenaltyMs` 5000.
public final class PrefixCacheAffinityFilter: SchedulingFilter, ConsumesPrefixInfo {
    public let typeName = "prefix-cache-affinity-filter"
    public let name: String
    public let affinityThreshold: Double
    public let explorationProbability: Double
    public let maxTTFTPenaltyMs: Double

    public init(name: String = "prefix-cache-affinity-filter", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        affinityThreshold = try params?.double("affinityThreshold") ?? 0.80
        guard affinityThreshold <= 1 else {
            throw PickerConfigError(line: params?.lineOf("affinityThreshold"), "\(name): affinityThreshold must be ≤ 1")
        }
        explorationProbability = try params?.double("explorationProbability") ?? 0.01
        maxTTFTPenaltyMs = try params?.double("maxTTFTPenaltyMs") ?? 5000
        try params?.finish()
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        guard candidates.count > 1, affinityThreshold > 0 else { return candidates }
        if explorationProbability > 0 {
            let u = Double(ctx.random.next() >> 11) / Double(1 << 53)
            if u < explorationProbability { return candidates }
        }
        let sticky = candidates.filter { ctx.prefixRatio($0) >= affinityThreshold }
        return sticky.isEmpty ? candidates : sticky
    }
}
