import EPPProtobuf

// The plugin extension points of the scheduling framework (scheduling.md §1–2). Plugin instances are
// immutable values of a loaded `PickerConfig`, shared by all event loops; everything that changes per
// request lives in the `SchedulingContext` owned by one loop's scheduler. Candidates are passed as
// indices into `SchedulingContext.endpoints` (no per-plugin copies of endpoint arrays).

/// Any configured plugin instance.
public protocol SchedulingPlugin: AnyObject, Sendable {
    /// Registered type name (the reference's), e.g. `queue-scorer`.
    var typeName: String { get }
    /// Instance name (defaults to the type name).
    var name: String { get }
}

/// Keeps a subset of the candidates, in order. Returning an empty list fails the profile.
public protocol SchedulingFilter: SchedulingPlugin {
    func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int]
}

/// Scores candidates; `scores` has one slot per candidate (pre-filled with 0); values are clamped to
/// [0, 1] by the framework and multiplied by the profile's weight.
public protocol SchedulingScorer: SchedulingPlugin {
    func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double])
}

/// Chooses the targets among scored candidates (indices into `candidates`' owner list, best first).
public protocol SchedulingPicker: SchedulingPlugin {
    func pick(_ ctx: SchedulingContext, _ candidates: [Int], scores: [Double]) -> [Int]
}

/// Decides whether a request is disaggregated (prefill on another endpoint).
public protocol PrefillDecider: SchedulingPlugin {
    func shouldDisaggregate(_ ctx: SchedulingContext, decodeEndpoint: Int) -> Bool
}

/// Runs once per request before the profiles (e.g. prefix match info).
public protocol DataProducer: SchedulingPlugin {
    func produce(_ ctx: SchedulingContext)
    /// After the pick (synchronously, same loop): e.g. record the request's prefix for the chosen endpoints.
    func afterPick(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?)
}

/// Hook run after the pick (the reference's PreRequest), e.g. the no-hit LRU update.
public protocol PreRequestPlugin: SchedulingPlugin {
    func preRequest(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?)
}

/// Saturation of the candidate set (≥ 1 ⇒ saturated; sheddable requests get 429).
public protocol SaturationDetector: SchedulingPlugin {
    func saturation(_ ctx: SchedulingContext, _ candidates: [Int]) -> Double
}

/// Marks plugins that read the approximate prefix match info (the producer is then auto-created).
public protocol ConsumesPrefixInfo {}

/// Outcome of one profile.
public struct ProfileResult {
    public var profileName: String
    /// Chosen candidates (indices into `SchedulingContext.endpoints`), best first.
    public var targets: [Int]
    /// Candidates that survived the filters, with their total and per-scorer scores (explain only).
    public var scored: [Int] = []
    public var totals: [Double] = []
    /// Per scorer (in profile order): raw clamped scores aligned with `scored` (explain only).
    public var perScorer: [[Double]] = []
    /// Scorer names (sanitised) and weights in profile order (explain only).
    public var scorerLabels: [(name: String, weight: Double)] = []
}

/// What a profile handler decided.
public struct ProfileHandlerResult {
    public var primary: ProfileResult
    /// The prefill result when the request is disaggregated.
    public var prefill: ProfileResult?
    /// The encode result (E/P/D) when an encode profile ran.
    public var encode: ProfileResult? = nil
    /// Every profile that ran (for explain).
    public var all: [ProfileResult]
}

/// Runs the profiles (scheduling.md §2.4). Errors become 429 `failed to find target endpoint: <message>`.
public protocol ProfileHandler: SchedulingPlugin {
    func run(_ ctx: SchedulingContext, _ config: PickerConfig) -> Result<ProfileHandlerResult, SchedulingFailure>
    /// Checked at config load: the profiles this handler needs exist.
    func validate(profiles: [String: SchedulingProfile], plugins: [String: any SchedulingPlugin]) throws(PluginParameterError)
}

public struct SchedulingFailure: Error {
    public var message: String
    public init(_ message: String) { self.message = message }
}
