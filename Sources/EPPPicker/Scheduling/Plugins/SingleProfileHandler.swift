/// `single-profile-handler` — runs the config's one profile; its result is the primary. A profile that
/// ends with no endpoint ⇒ error `failed to run scheduler profile '<name>'` (429 to the client).
/// Auto-added when the config has exactly one profile and no handler. No parameters.
public final class SingleProfileHandler: ProfileHandler {
    public let typeName = "single-profile-handler"
    public let name: String

    public init(name: String = "single-profile-handler", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func validate(profiles: [String: SchedulingProfile], plugins: [String: any SchedulingPlugin]) throws(PluginParameterError) {
        guard profiles.count == 1 else {
            throw PickerConfigError(line: nil, "\(name): single-profile-handler needs exactly one scheduling profile, found \(profiles.count)")
        }
    }

    public func run(_ ctx: SchedulingContext, _ config: PickerConfig) -> Result<ProfileHandlerResult, SchedulingFailure> {
        let profile = config.orderedProfiles[0]
        guard let r = profile.run(ctx, candidates: ctx.allCandidates) else {
            return .failure(SchedulingFailure("failed to run scheduler profile '\(profile.name)'"))
        }
        return .success(ProfileHandlerResult(primary: r, prefill: nil, all: [r]))
    }
}
