/// `active-request-scorer` — in-flight requests c this picker sent to the endpoint (all loops), m = max c
/// over the candidates: `c ≤ idleThreshold` ⇒ 1.0; else `(m − c)/m · maxBusyScore`.
/// Parameters: `idleThreshold` (0), `maxBusyScore` (1.0, valid 0…1), `requestTimeout` (deprecated, ignored).
public final class ActiveRequestScorer: SchedulingScorer {
    public let typeName = "active-request-scorer"
    public let name: String
    public let idleThreshold: Int
    public let maxBusyScore: Double

    public init(name: String = "active-request-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        idleThreshold = try params?.int("idleThreshold") ?? 0
        let mbs = try params?.double("maxBusyScore") ?? 1.0
        guard mbs >= 0 && mbs <= 1 else {
            throw PickerConfigError(line: params?.lineOf("maxBusyScore"), "\(name): maxBusyScore must be within 0…1, got \(mbs)")
        }
        maxBusyScore = mbs
        params?.ignore("requestTimeout")
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        var m = 0
        for c in candidates { m = max(m, ctx.endpoints[c].inFlightRequests.load(ordering: .relaxed)) }
        for (k, c) in candidates.enumerated() {
            let v = ctx.endpoints[c].inFlightRequests.load(ordering: .relaxed)
            scores[k] = v <= idleThreshold || m <= 0 ? 1.0 : Double(m - v) / Double(m) * maxBusyScore
        }
    }
}
