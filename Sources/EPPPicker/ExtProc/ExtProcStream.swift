import EPPProtobuf

/// Where a stream's answers go: the gRPC call in production, a recorder in tests.
public protocol ExtProcOutput: AnyObject {
    /// Appends one or more gRPC-framed `ProcessingResponse` messages (they leave at the end of the loop
    /// iteration, together with everything else produced in it).
    func send(_ appendFramed: (inout [UInt8]) -> Void)
    /// Ends this stream (only this one) with a gRPC error status.
    func fail(code: Int, message: String)
    /// Ends this stream with status OK (Envoy half-closed and everything it needs was answered).
    func finishOK()
    /// Takes `bytes` of the connection's budget of buffered client input for bytes this stream keeps
    /// (request body before the decision, a response body held for rewriting). False: the budget is spent
    /// and the output already ended this stream with RESOURCE_EXHAUSTED; the caller drops the bytes.
    func chargeBufferedInput(_ bytes: Int) -> Bool
    /// Returns bytes charged with `chargeBufferedInput` once the stream no longer holds them.
    func releaseBufferedInput(_ bytes: Int)
}

public struct ExtProcLimits: Sendable {
    /// Request bodies above this get ImmediateResponse 413 and nothing is forwarded.
    public var maxRequestBodyBytes: Int = 8 << 20
    /// Body re-chunking size for `streamed_response` (the reference EPP uses 62,000 bytes).
    public var bodyChunkBytes: Int = 62_000

    public init() {}
}

/// gRPC status codes this layer reports (kept numeric: the picker domain does not depend on the gRPC layer).
public enum ExtProcErrorCode {
    public static let invalidArgument = 3
    public static let failedPrecondition = 9
    public static let `internal` = 13
}

/// One Envoy ext_proc `Process` stream = one downstream HTTP request, in FULL_DUPLEX_STREAMED mode
/// (ext-proc.md §3, epp-protocol.md §2). Owned by one event loop. Reads top-down:
///
///   request_headers ─┬─ end_of_stream ─────────────▶ decide ▶ headers response            (header-only)
///                    └─ body follows: hold the headers response
///   request_body*   ── buffer (≤ maxRequestBodyBytes, else 413); on end_of_stream ▶ decide ▶
///                      headers response, then the body re-chunked (≤ 62,000 B) as streamed_response
///   request_trailers ─ end of body: decide ▶ headers response, body (eos=false), trailers response
///   response_headers ▶ answered at once, with the decision's response headers (`x-epp-decision`,
///                      `x-session-token`) and, for conformance requests, `x-conformance-test-served-endpoint`
///   response_body*  ▶ each chunk echoed at once (SSE tokens are never delayed; the model name rewritten
///                      back per chunk when the request's model was rewritten) and scanned for usage; a
///                      non-SSE body is buffered only when its model name must be rewritten back
///   response_trailers ▶ (flush a buffered body without end_of_stream) answered
///   stream end (Envoy RST_STREAM or half-close) ▶ release the endpoint's in-flight count
///
/// Every message gets exactly the answers its phase allows, in the order Envoy requires
/// (request headers → request body → request trailers; response headers → body → trailers).
/// Anything else is a spurious message: a gRPC error on this stream only.
public final class ExtProcStream: SchedulingWaiter {
    enum RequestPath: Equatable {
        case awaitingHeaders
        case collectingBody          // FDS: headers response held until the body is complete
        case deciding                // the scheduler is working (possibly asynchronously)
        case forwarded               // decision sent; the request path is done (or passes through)
        case rejected                // an ImmediateResponse ended the request
    }

    enum ResponsePath: Equatable {
        case awaitingHeaders, streamingBody, done
    }

    private unowned let output: ExtProcOutput
    private let scheduler: RequestScheduler
    private let limits: ExtProcLimits
    private let observer: ExtProcObserver?

    private(set) var requestPath = RequestPath.awaitingHeaders
    private(set) var responsePath = ResponsePath.awaitingHeaders
    private var ended = false
    private var observability = false
    private var requestBodyMode = BodySendMode.fullDuplexStreamed.rawValue
    private var responseBodyMode = BodySendMode.fullDuplexStreamed.rawValue

    private var requestHeaders: [HeaderField] = []
    private var requestID = ""
    private var generatedRequestID = false
    private var subsetHint: SubsetHint?
    private var headerOnly = false
    private var bodyEndedWithTrailers = false
    private var body: [UInt8] = []
    /// Bytes of `body` + `responseBuffer` charged to the connection's buffered-input budget.
    private var chargedInput = 0
    /// A body that arrived whole in one message, used in place while the decision is synchronous.
    private var bodyView: UnsafeRawBufferPointer?
    private var decision: SchedulingDecision?
    private var finishWhenDecided = false
    private var headersReceivedAt: UInt64 = 0
    private var bodyCompletedAt: UInt64 = 0
    // response path
    private var usageScanner: UsageScanner?
    private var responseRewriter: ResponseModelRewriter?
    private var bufferingResponse = false
    private var responseBuffer: [UInt8] = []
    /// Token usage reported by the model server (set when the response body ended).
    public private(set) var usage: Usage?

    public init(output: ExtProcOutput, scheduler: RequestScheduler, limits: ExtProcLimits, observer: ExtProcObserver? = nil) {
        self.output = output
        self.scheduler = scheduler
        self.limits = limits
        self.observer = observer
    }

    /// The endpoint chosen for this request, once decided.
    public var chosenDestination: String? { decision?.destination }
    /// The observer's per-request state (e.g. the request's metric series), released with the stream.
    public var observerTag: AnyObject?
    /// The request id (`x-request-id` or generated), once request headers arrived.
    public var currentRequestID: String { requestID }
    /// When request headers arrived (observer clock; 0 without an observer).
    public var requestStartedAt: UInt64 { headersReceivedAt }
    /// Response body bytes seen so far (as the model server sent them).
    public private(set) var responseBodyBytes = 0

    // MARK: input

    /// One `ProcessingRequest` (protobuf bytes, valid only during the call).
    public func receive(_ message: UnsafeRawBufferPointer) {
        guard !ended, requestPath != .rejected else { return }
        let request: ProcessingRequest
        do {
            request = try ProcessingRequest.decode(message)
        } catch {
            fail(ExtProcErrorCode.internal, "malformed ProcessingRequest: \(error)")
            return
        }
        if request.observabilityMode { observability = true }
        if let config = request.protocolConfig {
            requestBodyMode = config.requestBodyMode
            responseBodyMode = config.responseBodyMode
        }
        switch request.phase {
        case .requestHeaders: onRequestHeaders(request)
        case .requestBody: onRequestBody(request, message)
        case .requestTrailers: onRequestTrailers()
        case .responseHeaders: onResponseHeaders(request)
        case .responseBody: onResponseBody(request, message)
        case .responseTrailers: onResponseTrailers()
        case .none: spurious("ProcessingRequest has no request oneof set")
        }
    }

    /// Envoy half-closed the stream (graceful close): finish with OK once nothing is pending.
    public func clientHalfClosed() {
        if requestPath == .deciding { finishWhenDecided = true } else { output.finishOK() }
    }

    /// The stream is gone (Envoy's normal RST_STREAM, client cancel, connection loss, or our own finish).
    public func streamEnded() {
        guard !ended else { return }
        ended = true
        if let d = decision { scheduler.release(d); decision = nil }
        body = []
        responseBuffer = []
        releaseCharged()
        observer?.streamClosed(self)
    }

    // MARK: request path

    private func onRequestHeaders(_ request: ProcessingRequest) {
        guard requestPath == .awaitingHeaders else { return spurious("request_headers received twice") }
        headersReceivedAt = observer?.now() ?? 0
        requestHeaders = request.headers
        if let id = request.header("x-request-id"), !id.isEmpty {
            requestID = id
        } else {
            requestID = observer?.newRequestID() ?? ExtProcStream.fallbackRequestID()
            generatedRequestID = true
        }
        subsetHint = SubsetHint.from(metadata: request.metadataContext)
        if observability { requestPath = .forwarded; return }   // observe only: never answer

        if request.endOfStream {
            headerOnly = true
            decide()
        } else if requestBodyMode == BodySendMode.fullDuplexStreamed.rawValue {
            requestPath = .collectingBody
            if let cl = request.header("content-length"), let n = Int(cl), n > 0 {
                body.reserveCapacity(min(n, limits.maxRequestBodyBytes))
            }
        } else {
            // NONE / STREAMED / BUFFERED: Envoy waits for this answer before sending any body, so the
            // decision cannot see the body; body messages are then acknowledged unchanged.
            decide()
        }
    }

    private func onRequestBody(_ request: ProcessingRequest, _ message: UnsafeRawBufferPointer) {
        if observability { return }
        switch requestPath {
        case .collectingBody:
            let chunk = UnsafeRawBufferPointer(rebasing: message[request.body])
            if body.count + chunk.count > limits.maxRequestBodyBytes {
                return reject(.tooLarge)
            }
            if request.endOfStream && body.isEmpty {
                // The whole body is in this message: decide on it in place, no copy (unless the
                // scheduler answers later, see `decide`).
                bodyCompletedAt = observer?.now() ?? 0
                bodyView = chunk
                decide()
                bodyView = nil
                return
            }
            guard charge(chunk.count) else { return }   // the stream was ended: connection budget spent
            body.append(contentsOf: chunk)
            if request.endOfStream {
                bodyCompletedAt = observer?.now() ?? 0
                decide()
            }
        case .forwarded where requestBodyMode != BodySendMode.fullDuplexStreamed.rawValue:
            send(.init(.requestBody(nil)))   // non-FDS: one BodyResponse per chunk, unchanged
        default:
            spurious("request_body received while \(requestPath)")
        }
    }

    private func onRequestTrailers() {
        if observability { return }
        switch requestPath {
        case .collectingBody:
            // Trailers end the body (the reference never schedules such requests; we do).
            bodyEndedWithTrailers = true
            bodyCompletedAt = observer?.now() ?? 0
            decide()
        case .forwarded where requestBodyMode != BodySendMode.fullDuplexStreamed.rawValue:
            send(.init(.requestTrailers(nil)))
        default:
            spurious("request_trailers received while \(requestPath)")
        }
    }

    private func decide() {
        requestPath = .deciding
        let hasBody = !headerOnly && requestBodyMode == BodySendMode.fullDuplexStreamed.rawValue
        let outcome: SchedulingOutcome? = withBodyBytes { bytes in
            let request = SchedulingRequest(
                requestID: requestID, path: requestHeaders.first { $0.name == ":path" }?.value ?? "",
                headers: requestHeaders, body: hasBody ? bytes : UnsafeRawBufferPointer(start: nil, count: 0),
                headerOnly: headerOnly || !hasBody, subsetHint: subsetHint)
            return scheduler.schedule(request, waiter: self)
        }
        if let outcome {
            decided(outcome)
        } else if let view = bodyView {
            bodyView = nil
            // the scheduler answers later: the message buffer will be gone by then
            guard charge(view.count) else { return }   // ended; the scheduler's answer finds the stream ended
            body = Array(view)
        }
    }

    /// The complete request body: the in-place view of a single-message body, or the collected bytes.
    private func withBodyBytes<R>(_ f: (UnsafeRawBufferPointer) -> R) -> R {
        if let view = bodyView { return f(view) }
        return body.withUnsafeBytes(f)
    }

    /// SchedulingWaiter: an asynchronous outcome. The scheduler holds the stream strongly until then, so
    /// a stream that ended meanwhile still gets here and releases what was charged.
    public func schedulingFinished(_ outcome: SchedulingOutcome) { decided(outcome) }

    private func decided(_ outcome: SchedulingOutcome) {
        guard !ended, requestPath == .deciding else {
            if case .decided(let d) = outcome { scheduler.release(d) }   // stream went away meanwhile
            return
        }
        switch outcome {
        case .rejected(let error):
            reject(error)
        case .decided(let d):
            decision = d
            observer?.decided(self, headersAt: headersReceivedAt, bodyAt: bodyCompletedAt)
            let forwardBody = !headerOnly && requestBodyMode == BodySendMode.fullDuplexStreamed.rawValue
            output.send { out in
                out.reserveCapacity(out.count + 512 + (forwardBody ? (d.rewrittenBody?.count ?? bodyByteCount) + 64 : 0))
                appendHeadersResponse(d, to: &out)
                if forwardBody { appendBody(d.rewrittenBody, to: &out) }
                if forwardBody && bodyEndedWithTrailers {
                    ProcessingResponse(.requestTrailers(nil)).appendGRPCFrame(to: &out)
                }
            }
            requestPath = .forwarded
            body = []   // the bytes now live in the stream's output queue
            releaseCharged()
        }
        if finishWhenDecided { output.finishOK() }
    }

    /// `request_headers{response{header_mutation{set_headers…, remove_headers…}, clear_route_cache}}` +
    /// `dynamic_metadata{"envoy.lb": {"x-gateway-destination-endpoint": …}}`, written straight into the
    /// output (no intermediate message values: this runs once per request).
    private func appendHeadersResponse(_ d: SchedulingDecision, to out: inout [UInt8]) {
        WireWriter.appendGRPCFrame(to: &out) { w in
            w.writeMessage(field: 1) { headersResponse in
                headersResponse.writeMessage(field: 1) { common in
                    common.writeMessage(field: 2) { mutation in
                        ExtProcStream.writeSetHeader(&mutation, EPPHeaders.destinationEndpoint, d.destination)
                        if generatedRequestID { ExtProcStream.writeSetHeader(&mutation, "x-request-id", requestID) }
                        for h in d.setHeaders { mutation.writeMessage(field: 1) { h.encode(into: &$0) } }
                        for name in d.removeHeaders { mutation.writeString(field: 2, name, emitDefault: true) }
                    }
                    common.writeBool(field: 5, true)   // clear_route_cache
                }
            }
            w.writeMessage(field: 8) { metadata in          // google.protobuf.Struct
                metadata.writeMessage(field: 1) { entry in   // fields["envoy.lb"]
                    entry.writeString(field: 1, "envoy.lb")
                    entry.writeMessage(field: 2) { value in
                        value.writeMessage(field: 5) { lb in     // struct_value
                            lb.writeMessage(field: 1) { e in
                                e.writeString(field: 1, EPPHeaders.destinationEndpoint)
                                e.writeMessage(field: 2) { $0.writeString(field: 3, d.destination, emitDefault: true) }
                            }
                            for (k, v) in d.extraMetadata {
                                lb.writeMessage(field: 1) { e in
                                    e.writeString(field: 1, k)
                                    e.writeMessage(field: 2) { v.encode(into: &$0) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `HeaderValueOption{header{key, raw_value}}` (overwrite; value only in raw_value, ext-proc.md rule 1).
    @inline(__always)
    private static func writeSetHeader(_ w: inout WireWriter, _ key: String, _ value: String) {
        w.writeMessage(field: 1) { option in
            option.writeMessage(field: 1) { header in
                header.writeString(field: 1, key)
                header.writeString(field: 3, value)
            }
        }
    }

    /// The body, unchanged (or rewritten), as `streamed_response` chunks of ≤ bodyChunkBytes; the last one
    /// carries end_of_stream unless trailers follow. An empty body without trailers is one empty eos chunk.
    private var bodyByteCount: Int { bodyView?.count ?? body.count }

    private func appendBody(_ replacement: [UInt8]?, to out: inout [UInt8]) {
        let eos = !bodyEndedWithTrailers
        func emit(_ all: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
            if all.count == 0 {
                if eos { appendBodyChunk(all, endOfStream: true, direction: .request, to: &out) }
                return
            }
            var offset = 0
            while offset < all.count {
                let end = min(offset + limits.bodyChunkBytes, all.count)
                appendBodyChunk(UnsafeRawBufferPointer(rebasing: all[offset..<end]),
                                endOfStream: eos && end == all.count, direction: .request, to: &out)
                offset = end
            }
        }
        if let replacement { replacement.withUnsafeBytes { emit($0, &out) } } else { withBodyBytes { emit($0, &out) } }
    }

    // MARK: response path

    private func onResponseHeaders(_ request: ProcessingRequest) {
        if observability { return }
        guard requestPath == .forwarded, responsePath == .awaitingHeaders else {
            return spurious("response_headers received while request path is \(requestPath), response path \(responsePath)")
        }
        if let observer { observer.responseStarted(self, status: request.header(":status").flatMap { Int($0) } ?? 0) }
        let contentType = request.header("content-type")
        let fds = responseBodyMode == BodySendMode.fullDuplexStreamed.rawValue
        if fds { usageScanner = UsageScanner(contentType: contentType) }
        if let rw = decision?.responseModelRewrite, !rw.isIdentity, fds {
            responseRewriter = rw
            bufferingResponse = usageScanner?.mode == .json   // SSE chunks are rewritten one by one
        }
        var set = decision?.responseHeaders ?? []
        if requestHeaders.contains(where: { $0.name == EPPHeaders.testEndpointSelection }) {
            // conformance: the endpoint that actually served (proxy metadata), else our primary
            var served = decision?.destination ?? ""
            if case .string(let s)? = request.filterMetadata("envoy.lb")?[EPPHeaders.destinationEndpointServed] { served = s }
            set.append(HeaderValueOption(key: EPPHeaders.conformanceServedEndpoint, rawValue: served))
        }
        send(.init(.responseHeaders(set.isEmpty ? nil : CommonResponse(headerMutation: HeaderMutation(setHeaders: set)))))
        responsePath = request.endOfStream ? .done : .streamingBody
        if request.endOfStream { responseFinished() }
    }

    private func onResponseBody(_ request: ProcessingRequest, _ message: UnsafeRawBufferPointer) {
        if observability { return }
        guard responsePath == .streamingBody else { return spurious("response_body received while response path is \(responsePath)") }
        responseBodyBytes &+= request.body.count
        if responseBodyMode == BodySendMode.fullDuplexStreamed.rawValue {
            let chunk = UnsafeRawBufferPointer(rebasing: message[request.body])
            usageScanner?.feed(chunk)
            // usage-based attributes ride on the last body message
            let metadata = request.endOfStream ? completionMetadata() : nil
            if bufferingResponse {
                // non-SSE body whose model must be rewritten back: whole body, then ≤ 62,000-byte chunks
                guard charge(chunk.count) else { return }
                responseBuffer.append(contentsOf: chunk)
                if request.endOfStream { flushResponseBuffer(endOfStream: true, metadata: metadata) }
            } else if let rw = responseRewriter, let rewritten = rw.rewrite(chunk) {
                output.send { out in
                    rewritten.withUnsafeBytes {
                        appendBodyChunk($0, endOfStream: request.endOfStream, direction: .response, metadata: metadata, to: &out)
                    }
                }
            } else {
                // Echo at once: SSE token latency depends on it.
                output.send { out in
                    appendBodyChunk(chunk, endOfStream: request.endOfStream, direction: .response, metadata: metadata, to: &out)
                }
            }
        } else {
            send(.init(.responseBody(nil)))
        }
        if request.endOfStream {
            responsePath = .done
            responseFinished()
        }
    }

    private func flushResponseBuffer(endOfStream: Bool, metadata: ProtoStruct? = nil) {
        bufferingResponse = false
        let all = responseRewriter.map { $0.rewrite(responseBuffer) } ?? responseBuffer
        responseBuffer = []
        releaseCharged()
        output.send { out in
            all.withUnsafeBytes { bytes in
                if bytes.count == 0 {
                    appendBodyChunk(bytes, endOfStream: endOfStream, direction: .response, metadata: metadata, to: &out)
                    return
                }
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + limits.bodyChunkBytes, bytes.count)
                    appendBodyChunk(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]),
                                    endOfStream: endOfStream && end == bytes.count, direction: .response,
                                    metadata: end == bytes.count ? metadata : nil, to: &out)
                    offset = end
                }
            }
        }
    }

    /// The response is complete: finalises usage and evaluates the decision's `request-attribute-reporter`
    /// plugins over it (nil when there are none or nothing applies).
    private func completionMetadata() -> ProtoStruct? {
        guard let reporters = decision?.attributeReporters, !reporters.isEmpty else { return nil }
        if usage == nil, var scanner = usageScanner {
            usage = scanner.finish()
            usageScanner = nil
        }
        var merged = ProtoStruct()
        for r in reporters {
            guard let m = r.report(usage) else { continue }
            for (ns, v) in m.fields {
                guard case .structValue(let inner) = v else { continue }
                for (k, x) in inner.fields { RequestAttributeReporter.set(&merged, namespace: ns, key: k, x) }
            }
        }
        return merged.fields.isEmpty ? nil : merged
    }

    /// The response is complete (body end or trailers): usage is final.
    private func responseFinished() {
        if usage == nil, var scanner = usageScanner {
            usage = scanner.finish()
            usageScanner = nil
        }
        observer?.responseCompleted(self, usage: usage)
    }

    private func onResponseTrailers() {
        if observability { return }
        guard responsePath == .streamingBody || (responsePath == .awaitingHeaders && requestPath == .forwarded) else {
            return spurious("response_trailers received while response path is \(responsePath)")
        }
        if bufferingResponse { flushResponseBuffer(endOfStream: false) }   // gRPC model servers end with trailers
        send(.init(.responseTrailers(nil), dynamicMetadata: responsePath == .streamingBody ? completionMetadata() : nil))
        let wasStreaming = responsePath == .streamingBody
        responsePath = .done
        if wasStreaming { responseFinished() }
    }

    // MARK: output helpers

    private func send(_ response: ProcessingResponse) {
        output.send { out in response.appendGRPCFrame(to: &out) }
    }

    private func appendBodyChunk(_ chunk: UnsafeRawBufferPointer, endOfStream: Bool, direction: ProcessingResponse.Direction,
                                 metadata: ProtoStruct? = nil, to out: inout [UInt8]) {
        ProcessingResponse.appendGRPCFrame(to: &out) { w in
            ProcessingResponse.encodeStreamedBody(direction: direction, body: chunk, endOfStream: endOfStream,
                                                  dynamicMetadata: metadata, into: &w)
        }
    }

    /// Ends the request with an ImmediateResponse (`inference error: <Code> - <Msg>`).
    private func reject(_ error: RequestError) {
        requestPath = .rejected
        body = []
        releaseCharged()
        observer?.rejected(self, error)
        send(.init(.immediate(ImmediateResponse(status: error.httpStatus, body: error.body,
                                                details: "epp_" + error.code))))
    }

    /// Charges bytes the stream is about to keep; false when the output ended the stream instead.
    @inline(__always)
    private func charge(_ bytes: Int) -> Bool {
        guard output.chargeBufferedInput(bytes) else {
            observer?.streamFailed(self, "connection buffered-input budget spent")
            return false
        }
        chargedInput += bytes
        return true
    }

    private func releaseCharged() {
        guard chargedInput > 0 else { return }
        output.releaseBufferedInput(chargedInput)
        chargedInput = 0
    }

    private func spurious(_ what: String) {
        fail(ExtProcErrorCode.failedPrecondition, "spurious message: " + what)
    }

    private func fail(_ code: Int, _ message: String) {
        observer?.streamFailed(self, message)
        output.fail(code: code, message: message)
    }

    private static func fallbackRequestID() -> String {
        var r = FastRandom()
        return r.uuidV4()
    }
}

/// Header names of the endpoint-picker protocol.
public enum EPPHeaders {
    public static let destinationEndpoint = "x-gateway-destination-endpoint"
    public static let prefillerHostPort = "x-prefiller-host-port"
    public static let objective = "x-gateway-inference-objective"
    public static let modelNameRewrite = "x-gateway-model-name-rewrite"
    public static let fairnessID = "x-gateway-inference-fairness-id"
    /// Conformance: restricts candidates (request header).
    public static let testEndpointSelection = "test-epp-endpoint-selection"
    /// Conformance: the served endpoint, copied onto the response.
    public static let conformanceServedEndpoint = "x-conformance-test-served-endpoint"
    /// `envoy.lb` metadata key the proxy may set on response messages.
    public static let destinationEndpointServed = "x-gateway-destination-endpoint-served"
}

/// Hooks for metrics and request ids; one per loop. All optional behaviour of a stream goes through it.
public protocol ExtProcObserver: AnyObject {
    func now() -> UInt64
    func newRequestID() -> String
    func decided(_ stream: ExtProcStream, headersAt: UInt64, bodyAt: UInt64)
    func rejected(_ stream: ExtProcStream, _ error: RequestError)
    func streamFailed(_ stream: ExtProcStream, _ message: String)
    /// The response ended (body end of stream or trailers); `usage` when the model server reported it.
    func responseCompleted(_ stream: ExtProcStream, usage: Usage?)
    /// The stream is gone (once per stream, whatever happened before).
    func streamClosed(_ stream: ExtProcStream)
    /// Response headers arrived from the model server (`status`: its `:status`, 0 when absent).
    func responseStarted(_ stream: ExtProcStream, status: Int)
}

extension ExtProcObserver {
    public func responseCompleted(_ stream: ExtProcStream, usage: Usage?) {}
    public func streamClosed(_ stream: ExtProcStream) {}
    public func responseStarted(_ stream: ExtProcStream, status: Int) {}
}
