import EPPEventLoop
import EPPObservability
import EPPPicker

/// The picker's own metric families (richer reference-compatible families are added by later layers).
public final class PickerMetrics: Sendable {
    public let registry: MetricsRegistry
    public let streams: Family<Counter>
    public let streamsFailed: Family<Counter>
    public let decisions: Family<Counter>
    public let requestErrors: Family<Counter>
    public let picks: Family<Counter>
    public let processing: Family<Histogram>
    public let readyPods: Family<Gauge>

    public init(registry: MetricsRegistry = MetricsRegistry()) {
        self.registry = registry
        streams = registry.counter("epp_extproc_streams_total", "ext_proc streams opened by Envoy.")
        streamsFailed = registry.counter("epp_extproc_streams_failed_total",
                                         "ext_proc streams ended by the picker with a gRPC error (malformed or spurious messages).")
        decisions = registry.counter("epp_decisions_total", "Routing decisions, by result.", labels: ["result"])
        requestErrors = registry.counter("inference_objective_request_error_total",
                                         "Requests answered with an error by the picker, by error code.", labels: ["model_name", "target_model_name", "error_code"])
        picks = registry.counter("epp_endpoint_picks_total", "Requests routed to each endpoint.", labels: ["endpoint"])
        // Request-path latency inside the picker: from request headers (or from the last body byte) to the decision.
        processing = registry.histogram("epp_request_processing_seconds",
                                        "Time from the phase's start to the routing decision leaving the picker (phase=headers: request headers received; phase=body_end: last body chunk received).",
                                        labels: ["phase"],
                                        bounds: [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])
        readyPods = registry.gauge("inference_pool_ready_pods", "Endpoints currently known to the picker.", labels: ["name"])
    }
}

/// Per-loop observer of ext_proc streams: request ids, metrics. Owned by its loop.
final class LoopObserver: ExtProcObserver {
    private let metrics: PickerMetrics
    private var random = FastRandom()
    private let headersPhase: Histogram
    private let bodyPhase: Histogram
    private let decided: Counter
    private let failed: Counter
    private var pickCounters: [String: Counter] = [:]

    init(metrics: PickerMetrics) {
        self.metrics = metrics
        headersPhase = metrics.processing.labels("headers")
        bodyPhase = metrics.processing.labels("body_end")
        decided = metrics.decisions.labels("routed")
        failed = metrics.streamsFailed.labels()
    }

    func now() -> UInt64 { EventLoop.now() }
    func newRequestID() -> String { random.uuidV4() }

    func decided(_ stream: ExtProcStream, headersAt: UInt64, bodyAt: UInt64) {
        let t = EventLoop.now()
        if headersAt != 0 { headersPhase.observe(nanoseconds: t &- headersAt) }
        if bodyAt != 0 { bodyPhase.observe(nanoseconds: t &- bodyAt) }
        decided.increment()
        if let dest = stream.chosenDestination {
            if let c = pickCounters[dest] { c.increment() } else {
                let c = metrics.picks.labels(dest)
                pickCounters[dest] = c
                c.increment()
            }
        }
    }

    func rejected(_ stream: ExtProcStream, _ error: RequestError) {
        metrics.decisions.labels("rejected").increment()
        metrics.requestErrors.labels("", "", error.code).increment()
    }

    func streamFailed(_ stream: ExtProcStream, _ message: String) { failed.increment() }
}
