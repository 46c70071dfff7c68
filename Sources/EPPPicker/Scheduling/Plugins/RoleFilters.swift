/// `decode-filter` — keeps endpoints whose `llm-d.ai/role` is `decode`, `prefill-decode`, `both` or
/// `encode-prefill-decode`, **or that have no role label** (scheduling.md §7). No parameters.
public final class DecodeFilter: SchedulingFilter {
    public let typeName = "decode-filter"
    public let name: String

    public init(name: String = "decode-filter", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        candidates.filter { ctx.endpoints[$0].spec.servesDecode }
    }
}

/// `prefill-filter` — keeps endpoints whose role is `prefill`, `encode-prefill`, `prefill-decode`, `both`
/// or `encode-prefill-decode`; unlabeled endpoints are excluded. No parameters.
public final class PrefillFilter: SchedulingFilter {
    public let typeName = "prefill-filter"
    public let name: String

    public init(name: String = "prefill-filter", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        candidates.filter { ctx.endpoints[$0].spec.servesPrefill }
    }
}

/// `encode-filter` — keeps `encode`, `encode-prefill`, `encode-prefill-decode`. No parameters.
public final class EncodeFilter: SchedulingFilter {
    public let typeName = "encode-filter"
    public let name: String

    public init(name: String = "encode-filter", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        candidates.filter { ctx.endpoints[$0].spec.servesEncode }
    }
}
