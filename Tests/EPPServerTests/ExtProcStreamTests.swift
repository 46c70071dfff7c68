import Atomics
import EPPPicker
import EPPProtobuf
import Testing

/// Records what the state machine sends; decodes the gRPC frames back into ProcessingResponses.
final class Recorder: ExtProcOutput {
    var bytes: [UInt8] = []
    var failure: (code: Int, message: String)?
    var finishedOK = false
    /// Buffered-input budget, as a connection would hold it; `charged` must return to 0 when the stream ends.
    var budget = Int.max
    var charged = 0
    /// Set on a refused charge; the test then ends the stream as the gRPC layer would.
    var exhausted = false

    func send(_ appendFramed: (inout [UInt8]) -> Void) { appendFramed(&bytes) }
    func fail(code: Int, message: String) { failure = (code, message) }
    func finishOK() { finishedOK = true }
    func chargeBufferedInput(_ n: Int) -> Bool {
        guard n <= budget - charged else { exhausted = true; return false }
        charged += n
        return true
    }
    func releaseBufferedInput(_ n: Int) { charged -= n }

    /// Takes every complete frame sent so far.
    func take() -> [ProcessingResponse] {
        var out: [ProcessingResponse] = []
        var i = 0
        while i + 5 <= bytes.count {
            #expect(bytes[i] == 0)
            let n = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            let msg = Array(bytes[(i + 5)..<(i + 5 + n)])
            out.append(try! msg.withUnsafeBytes { try ProcessingResponse.decode($0) })
            i += 5 + n
        }
        bytes.removeFirst(i)
        return out
    }
}

/// A scheduler that answers later (like one waiting for Redis), to exercise the deciding state.
final class DeferredScheduler: RequestScheduler, SchedulingWaiter {
    let inner: RequestScheduler
    var pending: [() -> Void] = []
    var bodies: [[UInt8]] = []
    init(_ inner: RequestScheduler) { self.inner = inner }
    func schedule(_ request: SchedulingRequest, waiter: SchedulingWaiter) -> SchedulingOutcome? {
        bodies.append(Array(request.body))
        let outcome = inner.schedule(request, waiter: self)!
        pending.append { waiter.schedulingFinished(outcome) }
        return nil
    }
    func schedulingFinished(_ outcome: SchedulingOutcome) {}
    func release(_ decision: SchedulingDecision) { inner.release(decision) }
}

func makeDatastore(_ n: Int = 3) -> Datastore {
    let ds = Datastore()
    ds.replace(with: (0..<n).map { EndpointSpec(name: "pod-\($0)", address: "10.0.0.\($0 + 1)", port: 8000) })
    return ds
}

func headers(_ path: String = "/v1/completions", eos: Bool = false, extra: [HeaderField] = [],
             subset: ProtoValue? = nil, mode: Int = 4) -> [UInt8] {
    var r = ProcessingRequest(phase: .requestHeaders,
                              headers: [HeaderField(name: ":path", value: path), HeaderField(name: ":method", value: "POST")] + extra,
                              endOfStream: eos)
    if let subset { r.metadataContext = [("envoy.lb.subset_hint", ProtoStruct([("x-gateway-destination-endpoint-subset", subset)]))] }
    r.protocolConfig = ProtocolConfiguration(requestBodyMode: mode, responseBodyMode: mode)
    return r.encoded()
}

func body(_ bytes: [UInt8], eos: Bool, response: Bool = false) -> [UInt8] {
    ProcessingRequest(phase: response ? .responseBody : .requestBody, endOfStream: eos).encoded(body: bytes)
}

func trailers(response: Bool = false) -> [UInt8] {
    ProcessingRequest(phase: response ? .responseTrailers : .requestTrailers, headers: [HeaderField(name: "x-t", value: "1")]).encoded()
}

func responseHeaders(eos: Bool = false, contentType: String = "application/json") -> [UInt8] {
    ProcessingRequest(phase: .responseHeaders, headers: [HeaderField(name: ":status", value: "200"),
                                                         HeaderField(name: "content-type", value: contentType)], endOfStream: eos).encoded()
}

struct Harness {
    let recorder = Recorder()
    let datastore: Datastore
    let stream: ExtProcStream
    let scheduler: RequestScheduler

    init(datastore: Datastore = makeDatastore(), limits: ExtProcLimits = ExtProcLimits(), scheduler: RequestScheduler? = nil) {
        self.datastore = datastore
        self.scheduler = scheduler ?? LeastInFlightScheduler(datastore: datastore)
        stream = ExtProcStream(output: recorder, scheduler: self.scheduler, limits: limits)
    }

    func feed(_ msg: [UInt8]) { msg.withUnsafeBytes { stream.receive($0) } }
}

func destination(_ r: ProcessingResponse) -> String? {
    guard case .requestHeaders(let c)? = r.kind else { return nil }
    return c?.headerMutation?.setHeaders.first { $0.key == "x-gateway-destination-endpoint" }?.rawValue
}

func streamed(_ r: ProcessingResponse) -> StreamedBodyResponse? {
    switch r.kind {
    case .requestBody(let s)?, .responseBody(let s)?: return s
    default: return nil
    }
}

@Suite struct ExtProcStreamTests {
    @Test func headerOnlyIsAnsweredAtOnceWithRequestID() {
        let h = Harness()
        h.feed(headers(eos: true))
        let out = h.recorder.take()
        #expect(out.count == 1)
        let dest = destination(out[0])
        #expect(dest?.hasPrefix("10.0.0.") == true)
        guard case .requestHeaders(let c)? = out[0].kind else { Issue.record("wrong kind"); return }
        #expect(c?.clearRouteCache == true)
        let id = c?.headerMutation?.setHeaders.first { $0.key == "x-request-id" }?.rawValue
        #expect(id?.count == 36)
        #expect(out[0].dynamicMetadata?["envoy.lb"] == .structValue(ProtoStruct([("x-gateway-destination-endpoint", .string(dest!))])))
    }

    @Test func existingRequestIDIsNotAdded() {
        let h = Harness()
        h.feed(headers(eos: true, extra: [HeaderField(name: "x-request-id", value: "abc")]))
        guard case .requestHeaders(let c)? = h.recorder.take()[0].kind else { Issue.record("wrong kind"); return }
        #expect(c?.headerMutation?.setHeaders.contains { $0.key == "x-request-id" } == false)
    }

    @Test func headersResponseHeldUntilBodyEndsThenBodyEchoed() {
        let h = Harness()
        h.feed(headers())
        #expect(h.recorder.take().isEmpty)
        let payload = Array("{\"model\":\"m\",\"prompt\":\"hello world\"}".utf8)
        for (i, b) in payload.enumerated() {   // one byte per chunk
            h.feed(body([b], eos: i == payload.count - 1))
            if i < payload.count - 1 { #expect(h.recorder.take().isEmpty) }
        }
        let out = h.recorder.take()
        #expect(out.count == 2)
        #expect(destination(out[0]) != nil)
        #expect(streamed(out[1]) == StreamedBodyResponse(body: payload, endOfStream: true))
    }

    @Test func emptyBodyGetsOneEmptyEOSChunk() {
        let h = Harness()
        h.feed(headers())
        h.feed(body([], eos: true))
        let out = h.recorder.take()
        #expect(out.count == 2)
        #expect(streamed(out[1]) == StreamedBodyResponse(body: [], endOfStream: true))
    }

    @Test func largeBodyRechunkedAt62000() {
        let h = Harness()
        h.feed(headers())
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var off = 0
        while off < big.count {
            let end = min(off + 16_384, big.count)
            h.feed(body(Array(big[off..<end]), eos: end == big.count))
            off = end
        }
        let out = h.recorder.take()
        #expect(out.count == 1 + 5)   // 300,000 / 62,000 → 5 chunks
        var joined: [UInt8] = []
        for (i, r) in out.dropFirst().enumerated() {
            let s = streamed(r)!
            #expect(s.body.count <= 62_000)
            #expect(s.endOfStream == (i == 4))
            joined += s.body
        }
        #expect(joined == big)
    }

    @Test func trailersEndTheBody() {
        let h = Harness()
        h.feed(headers())
        h.feed(body(Array("abc".utf8), eos: false))
        #expect(h.recorder.take().isEmpty)
        h.feed(trailers())
        let out = h.recorder.take()
        #expect(out.count == 3)
        #expect(destination(out[0]) != nil)
        #expect(streamed(out[1]) == StreamedBodyResponse(body: Array("abc".utf8), endOfStream: false))
        #expect(out[2].kind == .requestTrailers(nil))
    }

    @Test func oversizeBodyIs413AndNothingForwarded() {
        var limits = ExtProcLimits()
        limits.maxRequestBodyBytes = 100
        let h = Harness(limits: limits)
        h.feed(headers())
        h.feed(body([UInt8](repeating: 1, count: 60), eos: false))
        h.feed(body([UInt8](repeating: 1, count: 60), eos: false))
        let out = h.recorder.take()
        #expect(out.count == 1)
        guard case .immediate(let ir)? = out[0].kind else { Issue.record("expected immediate response"); return }
        #expect(ir.status == 413)
        h.feed(body([1], eos: true))   // Envoy may still have sent chunks: ignored
        #expect(h.recorder.take().isEmpty)
        #expect(h.recorder.failure == nil)
    }

    @Test func collectedBodyIsChargedToTheBudgetUntilTheDecision() {
        let h = Harness()
        h.feed(headers())
        h.feed(body([UInt8](repeating: 1, count: 1000), eos: false))
        h.feed(body([UInt8](repeating: 1, count: 500), eos: false))
        #expect(h.recorder.charged == 1500)
        h.feed(body([UInt8](repeating: 1, count: 10), eos: true))
        #expect(h.recorder.take().count == 2)
        #expect(h.recorder.charged == 0)   // the bytes moved to the output queue
        h.stream.streamEnded()
        #expect(h.recorder.charged == 0)
    }

    @Test func bodyOverTheConnectionBudgetStopsTheStreamAndReturnsItsCharge() {
        let h = Harness()
        h.recorder.budget = 1200
        h.feed(headers())
        h.feed(body([UInt8](repeating: 1, count: 1000), eos: false))
        h.feed(body([UInt8](repeating: 1, count: 500), eos: false))   // 1500 > 1200: refused
        #expect(h.recorder.exhausted)
        #expect(h.recorder.take().isEmpty)   // nothing forwarded, no decision
        h.stream.streamEnded()   // what the gRPC layer does after ending the call
        #expect(h.recorder.charged == 0)
    }

    @Test func rejectedAndEndedStreamsReturnTheirCharge() {
        var limits = ExtProcLimits()
        limits.maxRequestBodyBytes = 100
        let h = Harness(limits: limits)
        h.feed(headers())
        h.feed(body([UInt8](repeating: 1, count: 60), eos: false))
        #expect(h.recorder.charged == 60)
        h.feed(body([UInt8](repeating: 1, count: 60), eos: false))   // 413
        #expect(h.recorder.charged == 0)
        let g = Harness()
        g.feed(headers())
        g.feed(body([UInt8](repeating: 1, count: 60), eos: false))
        g.stream.streamEnded()   // Envoy reset mid-body
        #expect(g.recorder.charged == 0)
    }

    @Test func responsePathPassesThroughChunksImmediately() {
        let h = Harness()
        h.feed(headers(eos: true))
        _ = h.recorder.take()
        h.feed(responseHeaders(contentType: "text/event-stream"))
        #expect(h.recorder.take().map(\.kind) == [.responseHeaders(nil)])
        for (i, chunk) in ["data: {\"a\":1}\n\n", "data: [DONE]\n\n", ""].enumerated() {
            h.feed(body(Array(chunk.utf8), eos: i == 2, response: true))
            let out = h.recorder.take()
            #expect(out.count == 1)
            #expect(streamed(out[0]) == StreamedBodyResponse(body: Array(chunk.utf8), endOfStream: i == 2))
        }
    }

    @Test func responseTrailersAnsweredInOrder() {
        let h = Harness()
        h.feed(headers(eos: true))
        _ = h.recorder.take()
        h.feed(responseHeaders())
        h.feed(body(Array("x".utf8), eos: false, response: true))
        h.feed(trailers(response: true))
        let out = h.recorder.take()
        #expect(out.count == 3)
        #expect(out[0].kind == .responseHeaders(nil))
        #expect(streamed(out[1])?.endOfStream == false)
        #expect(out[2].kind == .responseTrailers(nil))
    }

    @Test func observabilityModeNeverAnswers() {
        let h = Harness()
        var r = ProcessingRequest(phase: .requestHeaders, headers: [HeaderField(name: ":path", value: "/v1/completions")], endOfStream: false)
        r.observabilityMode = true
        h.feed(r.encoded())
        var b = ProcessingRequest(phase: .requestBody, endOfStream: true)
        b.observabilityMode = true
        h.feed(b.encoded(body: Array("{}".utf8)))
        h.feed(responseHeaders())
        h.feed(body([1], eos: true, response: true))
        #expect(h.recorder.bytes.isEmpty)
        #expect(h.recorder.failure == nil)
    }

    @Test(arguments: [
        ("body before headers", [body([1], eos: true)]),
        ("headers twice", [headers(), headers()]),
        ("response headers before the request was decided", [headers(), responseHeaders()]),
        ("response body before response headers", [headers(eos: true), body([1], eos: true, response: true)]),
        ("no oneof", [ProcessingRequest().encoded()]),
    ])
    func spuriousMessagesFailOnlyThisStream(name: String, msgs: [[UInt8]]) {
        let h = Harness()
        for m in msgs { h.feed(m) }
        #expect(h.recorder.failure?.code == ExtProcErrorCode.failedPrecondition, "\(name)")
        #expect(h.recorder.failure?.message.hasPrefix("spurious message") == true)
    }

    @Test func malformedProtobufIsInternal() {
        let h = Harness()
        h.feed([0x12, 0xff, 0xff, 0xff, 0xff, 0x0f])
        #expect(h.recorder.failure?.code == ExtProcErrorCode.internal)
    }

    @Test func noEndpointsGives503AndHeaderOnly500() {
        let h = Harness(datastore: Datastore())
        h.feed(headers())
        h.feed(body(Array("{}".utf8), eos: true))
        guard case .immediate(let ir)? = h.recorder.take().first?.kind else { Issue.record("expected immediate"); return }
        #expect(ir.status == 503)
        #expect(ir.body == "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request")
        let h2 = Harness(datastore: Datastore())
        h2.feed(headers(eos: true))
        guard case .immediate(let ir2)? = h2.recorder.take().first?.kind else { Issue.record("expected immediate"); return }
        #expect(ir2.status == 500)
        #expect(ir2.body == "inference error: Internal - no pods available in datastore")
    }

    @Test func subsetHintListAndCommaString() {
        for hint in [ProtoValue.list([.string("10.0.0.2:8000")]), .string(" 10.0.0.9:1 , 10.0.0.2:8000")] {
            for _ in 0..<10 {
                let h = Harness()
                h.feed(headers(eos: true, subset: hint))
                #expect(destination(h.recorder.take()[0]) == "10.0.0.2:8000")
            }
        }
        let h = Harness()
        h.feed(headers(eos: true, subset: .list([])))
        guard case .immediate(let ir)? = h.recorder.take().first?.kind else { Issue.record("expected immediate"); return }
        #expect(ir.status == 503)
    }

    @Test func inFlightCountedUntilStreamEnds() {
        let ds = makeDatastore(1)
        let h = Harness(datastore: ds)
        h.feed(headers(eos: true))
        let ep = ds.snapshot().endpoints[0]
        #expect(ep.inFlightRequests.load(ordering: .relaxed) == 1)
        h.stream.streamEnded()
        #expect(ep.inFlightRequests.load(ordering: .relaxed) == 0)
        h.stream.streamEnded()   // idempotent
        #expect(ep.inFlightRequests.load(ordering: .relaxed) == 0)
    }

    @Test func leastInFlightSpreadsLoad() {
        let ds = makeDatastore(3)
        let sched = LeastInFlightScheduler(datastore: ds)
        var streams: [(Recorder, ExtProcStream)] = []
        for _ in 0..<9 {
            let r = Recorder()
            let s = ExtProcStream(output: r, scheduler: sched, limits: ExtProcLimits())
            headers(eos: true).withUnsafeBytes { s.receive($0) }
            streams.append((r, s))
        }
        for e in ds.snapshot().endpoints { #expect(e.inFlightRequests.load(ordering: .relaxed) == 3) }
    }

    @Test func asynchronousDecisionAndStreamEndingWhileDeciding() {
        let ds = makeDatastore(1)
        let sched = DeferredScheduler(LeastInFlightScheduler(datastore: ds))
        let h = Harness(datastore: ds, scheduler: sched)
        h.feed(headers())
        h.feed(body(Array("{\"a\":1}".utf8), eos: true))   // single-message body: kept past the message
        #expect(h.recorder.take().isEmpty)
        #expect(sched.bodies.last == Array("{\"a\":1}".utf8))
        sched.pending.removeFirst()()
        let out = h.recorder.take()
        #expect(out.count == 2)
        #expect(streamed(out[1]) == StreamedBodyResponse(body: Array("{\"a\":1}".utf8), endOfStream: true))

        let h2 = Harness(datastore: ds, scheduler: sched)
        h2.feed(headers(eos: true))
        h2.stream.streamEnded()          // Envoy reset the stream while we were deciding
        sched.pending.removeFirst()()
        #expect(h2.recorder.bytes.isEmpty)
        h.stream.streamEnded()
        #expect(ds.snapshot().endpoints[0].inFlightRequests.load(ordering: .relaxed) == 0)
    }

    @Test func halfCloseWhileDecidingFinishesAfterTheDecision() {
        let ds = makeDatastore(1)
        let sched = DeferredScheduler(LeastInFlightScheduler(datastore: ds))
        let h = Harness(datastore: ds, scheduler: sched)
        h.feed(headers(eos: true))
        h.stream.clientHalfClosed()
        #expect(!h.recorder.finishedOK)
        sched.pending.removeFirst()()
        #expect(h.recorder.take().count == 1)
        #expect(h.recorder.finishedOK)
    }

    @Test func nonFDSModesAnswerEveryMessage() {
        let h = Harness()
        h.feed(headers(mode: 2))   // BUFFERED: the decision cannot wait for the body
        #expect(destination(h.recorder.take()[0]) != nil)
        h.feed(body(Array("{}".utf8), eos: true))
        #expect(h.recorder.take().map(\.kind) == [.requestBody(nil)])
    }
}
