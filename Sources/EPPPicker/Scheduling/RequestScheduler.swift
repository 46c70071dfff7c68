import Atomics
import EPPProtobuf

/// What the scheduler sees of one request. Borrowed: valid only during `schedule`.
public struct SchedulingRequest {
    public var requestID: String
    public var path: String
    public var headers: [HeaderField]
    /// Whole request body (empty for header-only requests).
    public var body: UnsafeRawBufferPointer
    /// True when the request has no body (GET, or request_headers with end_of_stream).
    public var headerOnly: Bool
    /// Subset hint from `envoy.lb.subset_hint` (nil = no hint; empty = hint present but empty).
    public var subsetHint: SubsetHint?

    public init(requestID: String, path: String, headers: [HeaderField], body: UnsafeRawBufferPointer,
                headerOnly: Bool, subsetHint: SubsetHint?) {
        self.requestID = requestID
        self.path = path
        self.headers = headers
        self.body = body
        self.headerOnly = headerOnly
        self.subsetHint = subsetHint
    }

    public func header(_ name: String) -> String? {
        for h in headers where h.name == name { return h.value }
        return nil
    }
}

/// A decision: where the request goes and what changes on the way.
public struct SchedulingDecision {
    /// The primary endpoint (its in-flight counters were incremented by the scheduler).
    public var endpoint: Endpoint
    /// Value of `x-gateway-destination-endpoint` (and of the `envoy.lb` metadata key).
    public var destination: String
    /// Extra request headers to set (e.g. `x-prefiller-host-port`).
    public var setHeaders: [HeaderValueOption] = []
    /// Request headers to remove upstream (control headers).
    public var removeHeaders: [String] = []
    /// A replacement body (e.g. model rewritten); nil forwards the original bytes unchanged.
    public var rewrittenBody: [UInt8]? = nil
    /// Extra `envoy.lb` metadata keys.
    public var extraMetadata: [(String, ProtoValue)] = []
    /// Endpoints whose counters must be released at stream end besides `endpoint` (e.g. the prefill pod).
    public var alsoCharged: [Endpoint] = []
    /// Estimated prompt tokens charged to `inFlightPromptTokens`.
    public var chargedPromptTokens: Int = 0
    /// Headers to set on the client's response (answer to response_headers), e.g. `x-session-token`,
    /// `x-epp-decision`.
    public var responseHeaders: [HeaderValueOption] = []
    /// Set when the model was rewritten: the response's `model` is rewritten back to the client's name.
    public var responseModelRewrite: ResponseModelRewriter? = nil
    /// Evaluated over the response's usage when it completes; their results go to the proxy as dynamic
    /// metadata on the last response message.
    public var attributeReporters: [RequestAttributeReporter] = []

    public init(endpoint: Endpoint, destination: String? = nil) {
        self.endpoint = endpoint
        self.destination = destination ?? endpoint.hostPort
    }
}

public enum SchedulingOutcome {
    case decided(SchedulingDecision)
    case rejected(RequestError)
}

/// Receives an outcome that was not available at once (e.g. it waited for a Redis round trip).
public protocol SchedulingWaiter: AnyObject {
    func schedulingFinished(_ outcome: SchedulingOutcome)
}

/// Chooses an endpoint per request. One instance per event loop (owned by it).
public protocol RequestScheduler: AnyObject {
    /// Returns the outcome at once, or nil when it will call `waiter.schedulingFinished` later on this loop
    /// (the request view is only valid during this call: copy what is needed for later).
    func schedule(_ request: SchedulingRequest, waiter: SchedulingWaiter) -> SchedulingOutcome?
    /// The request's ext_proc stream ended: release what `schedule` charged.
    func release(_ decision: SchedulingDecision)
}

extension RequestScheduler {
    public func release(_ decision: SchedulingDecision) {
        decision.endpoint.inFlightRequests.wrappingDecrement(ordering: .relaxed)
        decision.endpoint.inFlightPromptTokens.wrappingDecrement(by: decision.chargedPromptTokens, ordering: .relaxed)
        for e in decision.alsoCharged {
            e.inFlightRequests.wrappingDecrement(ordering: .relaxed)
            e.inFlightPromptTokens.wrappingDecrement(by: decision.chargedPromptTokens, ordering: .relaxed)
        }
    }
}
