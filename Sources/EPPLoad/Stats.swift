/// Percentiles and summaries.
///
/// Percentiles use the **nearest-rank** method: for `n` samples sorted ascending and
/// `0 < p ≤ 100`, the p-th percentile is the sample at 1-based rank `⌈p/100 · n⌉`
/// (`p = 0` gives the minimum). It is always one of the observed values (no interpolation);
/// e.g. for 1…10: p50 = 5, p90 = 9, p99 = 10. With no samples the result is `nil`.
public enum Stats {
    /// Nearest-rank percentile of already **sorted** samples.
    public static func percentile(sorted: [Double], _ p: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        if p <= 0 { return sorted[0] }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    /// Nearest-rank percentile of unsorted samples.
    public static func percentile(_ samples: [Double], _ p: Double) -> Double? {
        percentile(sorted: samples.sorted(), p)
    }
}

/// Count, mean, min/max and p50/p90/p99 of a sample (nearest rank; `nil` when empty).
public struct Summary: Sendable, Equatable, Codable {
    public var count: Int
    public var mean: Double?
    public var min: Double?
    public var max: Double?
    public var p50: Double?
    public var p90: Double?
    public var p99: Double?

    public init(_ samples: [Double]) {
        let s = samples.sorted()
        count = s.count
        mean = s.isEmpty ? nil : s.reduce(0, +) / Double(s.count)
        min = s.first
        max = s.last
        p50 = Stats.percentile(sorted: s, 50)
        p90 = Stats.percentile(sorted: s, 90)
        p99 = Stats.percentile(sorted: s, 99)
    }

    enum CodingKeys: String, CodingKey { case count, mean, min, max, p50, p90, p99 }

    // Emit explicit nulls so the keys are always present.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        try c.encode(mean, forKey: .mean)
        try c.encode(min, forKey: .min)
        try c.encode(max, forKey: .max)
        try c.encode(p50, forKey: .p50)
        try c.encode(p90, forKey: .p90)
        try c.encode(p99, forKey: .p99)
    }

    /// Same summary with every value multiplied by `k` (e.g. seconds → ms).
    public func scaled(_ k: Double) -> Summary {
        var s = self
        s.mean = mean.map { $0 * k }
        s.min = min.map { $0 * k }
        s.max = max.map { $0 * k }
        s.p50 = p50.map { $0 * k }
        s.p90 = p90.map { $0 * k }
        s.p99 = p99.map { $0 * k }
        return s
    }
}

/// Group purity: for each group the fraction of its requests that landed on its modal endpoint;
/// the overall value is weighted by request count (Σ modal counts ÷ Σ requests). `nil` if empty.
public func groupPurity(_ assignments: [(group: Int, endpoint: String)]) -> Double? {
    guard !assignments.isEmpty else { return nil }
    var perGroup: [Int: [String: Int]] = [:]
    for a in assignments { perGroup[a.group, default: [:]][a.endpoint, default: 0] += 1 }
    let modal = perGroup.values.reduce(0) { $0 + ($1.values.max() ?? 0) }
    return Double(modal) / Double(assignments.count)
}
