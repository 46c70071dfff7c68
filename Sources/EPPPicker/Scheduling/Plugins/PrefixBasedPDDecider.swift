/// `prefix-based-pd-decider` — disaggregate (run prefill elsewhere) when the prompt part the decode
/// endpoint has not cached is long enough:
/// `nonCachedTokens == 0` ⇒ never; inputTokens = prompt chars / 4 (completions: prompt text; chat: the
/// messages JSON); `inputTokens < promptTokens` ⇒ no; `inputTokens < nonCachedTokens` ⇒ no;
/// hit = decode endpoint's matchBlocks × blockSizeTokens; disaggregate iff `inputTokens − hit ≥ nonCachedTokens`.
/// Parameters: `nonCachedTokens` 0 (shipped configs use 16), `promptTokens` 0 (minimum prompt length gate).
public final class PrefixBasedPDDecider: PrefillDecider, ConsumesPrefixInfo {
    public let typeName = "prefix-based-pd-decider"
    public let name: String
    public let nonCachedTokens: Int
    public let promptTokens: Int

    public init(name: String = "prefix-based-pd-decider", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        nonCachedTokens = try params?.int("nonCachedTokens") ?? 0
        promptTokens = try params?.int("promptTokens") ?? 0
        guard nonCachedTokens >= 0, promptTokens >= 0 else {
            throw PickerConfigError(line: params?.line, "\(name): nonCachedTokens and promptTokens must be ≥ 0")
        }
        try params?.finish()
    }

    public func shouldDisaggregate(_ ctx: SchedulingContext, decodeEndpoint: Int) -> Bool {
        guard nonCachedTokens > 0 else { return false }
        let input = ctx.promptChars / 4
        if input < promptTokens || input < nonCachedTokens { return false }
        let match = decodeEndpoint < ctx.prefixMatches.count ? ctx.prefixMatches[decodeEndpoint] : 0
        let hit = match * ctx.blockSizeTokens
        return input - hit >= nonCachedTokens
    }
}

/// `always-disagg-pd-decider` (and `always-disagg-multimodal-decider` for encode) — always yes.
public final class AlwaysDisaggDecider: PrefillDecider {
    public let typeName: String
    public let name: String

    public init(name: String, typeName: String, params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        self.typeName = typeName
        try params?.finish()
    }

    public func shouldDisaggregate(_ ctx: SchedulingContext, decodeEndpoint: Int) -> Bool { true }
}
