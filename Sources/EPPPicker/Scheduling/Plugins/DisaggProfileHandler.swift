/// `disagg-profile-handler` (P/D and E/P/D) — 1) runs the decode profile first (no endpoint ⇒ error
/// `failed to find available decode workers`); 2) if an encode profile exists and the encode decider says
/// yes ⇒ runs it (`x-encoder-hosts-ports`); 3) if a prefill profile exists and the prefill decider says yes
/// (given decode's first endpoint) ⇒ runs it. Primary = decode; the request goes to the decode endpoint with
/// `x-prefiller-host-port: <prefill ip:port>` (a client-sent value is removed).
///
/// Parameters: `profiles{decode: "decode", prefill: "prefill", encode: "encode"}`,
/// `deciders{prefill: <plugin name>, encode: <plugin name>}`; legacy flat keys `decodeProfile`,
/// `prefillProfile`, `encodeProfile`, `deciderPluginName`, `prefillDeciderPluginName`,
/// `encodeDeciderPluginName` (mixing both forms is an error). Without a prefill decider the handler uses the
/// config's `prefix-based-pd-decider` if there is one, else always disaggregates when a prefill profile exists.
public final class DisaggProfileHandler: ProfileHandler {
    public let typeName = "disagg-profile-handler"
    public let name: String
    public let decodeProfile: String
    public let prefillProfile: String
    public let encodeProfile: String
    public let prefillDecider: String?
    public let encodeDecider: String?

    public init(name: String = "disagg-profile-handler", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        let flat = ["decodeProfile", "prefillProfile", "encodeProfile", "deciderPluginName", "prefillDeciderPluginName",
                    "encodeDeciderPluginName"].filter { params?.has($0) == true }
        let nested = ["profiles", "deciders"].filter { params?.has($0) == true }
        if !flat.isEmpty && !nested.isEmpty {
            throw PickerConfigError(line: params?.lineOf(flat[0]),
                                    "\(name): mixes legacy keys (\(flat.joined(separator: ", "))) with \(nested.joined(separator: "/")); use one form")
        }
        var d = "decode", p = "prefill", e = "encode"
        var pd: String? = nil, ed: String? = nil
        if let profiles = try params?.object("profiles") {
            d = try profiles.string("decode") ?? d
            p = try profiles.string("prefill") ?? p
            e = try profiles.string("encode") ?? e
            try profiles.finish()
        }
        if let deciders = try params?.object("deciders") {
            pd = try deciders.string("prefill")
            ed = try deciders.string("encode")
            try deciders.finish()
        }
        d = try params?.string("decodeProfile") ?? d
        p = try params?.string("prefillProfile") ?? p
        e = try params?.string("encodeProfile") ?? e
        let legacyDecider = try params?.string("deciderPluginName")
        pd = try params?.string("prefillDeciderPluginName") ?? legacyDecider ?? pd
        ed = try params?.string("encodeDeciderPluginName") ?? ed
        try params?.finish()
        decodeProfile = d; prefillProfile = p; encodeProfile = e
        prefillDecider = pd; encodeDecider = ed
    }

    public func validate(profiles: [String: SchedulingProfile], plugins: [String: any SchedulingPlugin]) throws(PluginParameterError) {
        guard profiles[decodeProfile] != nil else {
            throw PickerConfigError(line: nil, "\(name): no scheduling profile named '\(decodeProfile)' (decode)")
        }
        for (what, ref) in [("prefill", prefillDecider), ("encode", encodeDecider)] {
            if let ref {
                guard let p = plugins[ref] else { throw PickerConfigError(line: nil, "\(name): \(what) decider '\(ref)' is not a configured plugin") }
                guard p is PrefillDecider else { throw PickerConfigError(line: nil, "\(name): plugin '\(ref)' (\(p.typeName)) is not a decider") }
            }
        }
    }

    public func run(_ ctx: SchedulingContext, _ config: PickerConfig) -> Result<ProfileHandlerResult, SchedulingFailure> {
        guard let decode = config.profiles[decodeProfile],
              let d = decode.run(ctx, candidates: ctx.allCandidates), let decodeFirst = d.targets.first else {
            return .failure(SchedulingFailure("failed to find available decode workers"))
        }
        var result = ProfileHandlerResult(primary: d, prefill: nil, all: [d])
        if let encode = config.profiles[encodeProfile], decide(encodeDecider, ctx, config, decodeFirst, defaultYes: true),
           let r = encode.run(ctx, candidates: ctx.allCandidates) {
            result.encode = r
            result.all.append(r)
        }
        if let prefill = config.profiles[prefillProfile], decide(prefillDecider, ctx, config, decodeFirst, defaultYes: true),
           let r = prefill.run(ctx, candidates: ctx.allCandidates) {
            result.prefill = r
            result.all.append(r)
        }
        return .success(result)
    }

    private func decide(_ ref: String?, _ ctx: SchedulingContext, _ config: PickerConfig, _ decodeFirst: Int, defaultYes: Bool) -> Bool {
        if let ref, let d = config.plugins[ref] as? PrefillDecider { return d.shouldDisaggregate(ctx, decodeEndpoint: decodeFirst) }
        if ref == nil, let d = config.defaultPrefillDecider { return d.shouldDisaggregate(ctx, decodeEndpoint: decodeFirst) }
        return defaultYes
    }
}

/// `pd-profile-handler` (deprecated) — the same decode-then-maybe-prefill flow with the legacy parameters
/// `decodeProfile` ("decode"), `prefillProfile` ("prefill"), `deciderPluginName` (default
/// `prefix-based-pd-decider`; a missing plugin means its defaults, i.e. never disaggregate), and the
/// v0.2–v0.6 rule when `threshold` is given: `hitPrefix = max(matchBlocks − 1, 0)`,
/// `hit% = hitPrefix · hashBlockSize / promptLen`; skip prefill iff `(1 − hit%) · promptLen < threshold`;
/// `threshold: 0` ⇒ always disaggregate. `hashBlockSize` defaults to the producer's block size in characters.
/// `prefixPluginType`, `prefixPluginName`, `primaryPort` are accepted and ignored.
public final class PDProfileHandler: ProfileHandler, ConsumesPrefixInfo {
    public let typeName = "pd-profile-handler"
    public let name: String
    public let decodeProfile: String
    public let prefillProfile: String
    public let deciderPluginName: String
    public let threshold: Int?
    public let hashBlockSize: Int?

    public init(name: String = "pd-profile-handler", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        decodeProfile = try params?.string("decodeProfile") ?? "decode"
        prefillProfile = try params?.string("prefillProfile") ?? "prefill"
        deciderPluginName = try params?.string("deciderPluginName") ?? "prefix-based-pd-decider"
        threshold = try params?.int("threshold")
        hashBlockSize = try params?.int("hashBlockSize")
        _ = try params?.string("prefixPluginType")
        _ = try params?.string("prefixPluginName")
        _ = try params?.int("primaryPort")
        try params?.finish()
    }

    public func validate(profiles: [String: SchedulingProfile], plugins: [String: any SchedulingPlugin]) throws(PluginParameterError) {
        guard profiles[decodeProfile] != nil else {
            throw PickerConfigError(line: nil, "\(name): no scheduling profile named '\(decodeProfile)' (decode)")
        }
    }

    public func run(_ ctx: SchedulingContext, _ config: PickerConfig) -> Result<ProfileHandlerResult, SchedulingFailure> {
        guard let decode = config.profiles[decodeProfile],
              let d = decode.run(ctx, candidates: ctx.allCandidates), let decodeFirst = d.targets.first else {
            return .failure(SchedulingFailure("failed to find available decode workers"))
        }
        var result = ProfileHandlerResult(primary: d, prefill: nil, all: [d])
        if let prefill = config.profiles[prefillProfile], disaggregate(ctx, config, decodeFirst),
           let r = prefill.run(ctx, candidates: ctx.allCandidates) {
            result.prefill = r
            result.all.append(r)
        }
        return .success(result)
    }

    func disaggregate(_ ctx: SchedulingContext, _ config: PickerConfig, _ decodeFirst: Int) -> Bool {
        if let threshold {
            if threshold <= 0 { return true }
            let promptLen = ctx.promptChars
            guard promptLen > 0 else { return false }
            let matched = decodeFirst < ctx.prefixMatches.count ? ctx.prefixMatches[decodeFirst] : 0
            let hitPrefix = max(matched - 1, 0)
            let hit = min(1, Double(hitPrefix * (hashBlockSize ?? ctx.blockSizeTokens * 4)) / Double(promptLen))
            return (1 - hit) * Double(promptLen) >= Double(threshold)
        }
        if let d = config.plugins[deciderPluginName] as? PrefillDecider { return d.shouldDisaggregate(ctx, decodeEndpoint: decodeFirst) }
        return false   // the default decider has nonCachedTokens 0: never
    }
}
