/// `running-requests-size-scorer` — min–max over the running requests `r` of the candidates:
/// `(max r − r) / (max r − min r)`; all equal ⇒ 1.0; no metrics ⇒ r = 0. No parameters.
public final class RunningRequestsSizeScorer: SchedulingScorer {
    public let typeName = "running-requests-size-scorer"
    public let name: String

    public init(name: String = "running-requests-size-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        MinMax.score(candidates, into: &scores) { ctx.runningRequests[$0] }
    }
}
