/// `lora-affinity-scorer` — for the target model (the adapter name after rewrite): running on the endpoint
/// (`vllm:lora_requests_info` running adapters) ⇒ 1.0; else `|running| + |waiting| < maxLoras` ⇒ 0.8 (room
/// to load it); else waiting there ⇒ 0.6; else 0.0. No metrics ⇒ 0. An endpoint that reports no
/// `max_lora` has maxLoras = 0 (as in the reference), so it never gets 0.8. No parameters.
public final class LoRAAffinityScorer: SchedulingScorer {
    public let typeName = "lora-affinity-scorer"
    public let name: String

    public init(name: String = "lora-affinity-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        let model = ctx.targetModel
        for (k, c) in candidates.enumerated() {
            guard let m = ctx.metrics[c]?.metrics else { continue }
            if m.activeLoRAs.contains(model) {
                scores[k] = 1.0
            } else if m.activeLoRAs.count + m.waitingLoRAs.count < (m.maxLoRA ?? 0) {
                scores[k] = 0.8
            } else if m.waitingLoRAs.contains(model) {
                scores[k] = 0.6
            } else {
                scores[k] = 0
            }
        }
    }
}
