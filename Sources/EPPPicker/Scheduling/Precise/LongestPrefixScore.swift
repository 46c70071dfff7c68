/// llm-d's `LongestPrefix` scoring (kv-index.md §2.3) over what one Redis lookup returned.
///
/// `holders[k]` lists, for request key `k` (in chain order), the candidates that hold it with the entry's
/// device tier. Per key a pod counts once with the best weight of its entries (gpu 1.0, cpu 0.8, unknown 1.0).
/// Pods at key 0 start the run; a pod leaves it at the first key it does not hold; keys after the run of
/// every pod ended add nothing. Score = `min(1, raw / totalBlocks)`, 0 without hits or with no blocks.
public struct TierWeights: Sendable, Equatable {
    public var weights: [String: Double]
    public static let standard = TierWeights(weights: ["gpu": 1.0, "cpu": 0.8])
    public init(weights: [String: Double]) { self.weights = weights }
    /// Tiers are matched lower-cased; an unknown (or empty) tier weighs 1.0 like upstream.
    public func weight(_ tier: String) -> Double { weights[tier.lowercased()] ?? weights[tier] ?? 1.0 }
}

public enum LongestPrefixScore {
    /// `holders`: per key, (candidate index, tier) pairs. Returns one score per candidate in `0..<candidates`.
    public static func scores(holders: [[(candidate: Int, tier: String)]], candidates: Int, totalBlocks: Int,
                              weights: TierWeights) -> [Double] {
        var raw = [Double](repeating: 0, count: candidates)
        guard totalBlocks > 0, candidates > 0, let first = holders.first else { return raw }
        var active = [Bool](repeating: false, count: candidates)
        var keyWeight = [Double](repeating: -1, count: candidates)   // best weight at the current key, -1 ⇒ absent
        func collect(_ entries: [(candidate: Int, tier: String)]) {
            for i in keyWeight.indices { keyWeight[i] = -1 }
            for e in entries where e.candidate >= 0 && e.candidate < candidates {
                keyWeight[e.candidate] = max(keyWeight[e.candidate], weights.weight(e.tier))
            }
        }
        collect(first)
        var anyActive = false
        for c in 0..<candidates where keyWeight[c] >= 0 {
            active[c] = true
            raw[c] = keyWeight[c]
            anyActive = true
        }
        var k = 1
        while anyActive && k < holders.count {
            collect(holders[k])
            anyActive = false
            for c in 0..<candidates where active[c] {
                if keyWeight[c] >= 0 {
                    raw[c] += keyWeight[c]
                    anyActive = true
                } else {
                    active[c] = false
                }
            }
            k += 1
        }
        for c in 0..<candidates { raw[c] = min(1, raw[c] / Double(totalBlocks)) }
        return raw
    }
}
