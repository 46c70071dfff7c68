import EPPPicker
import EPPProtobuf
import Testing

/// Records the state machine's answers and decodes them (gRPC frames → ProcessingResponse).
final class StreamRecorder: ExtProcOutput {
    var bytes: [UInt8] = []
    var failure: (code: Int, message: String)?
    func send(_ appendFramed: (inout [UInt8]) -> Void) { appendFramed(&bytes) }
    func fail(code: Int, message: String) { failure = (code, message) }
    func finishOK() {}
    /// Bytes the stream holds against its (unbounded here) buffered-input budget.
    var charged = 0
    func chargeBufferedInput(_ n: Int) -> Bool { charged += n; return true }
    func releaseBufferedInput(_ n: Int) { charged -= n }

    func take() -> [ProcessingResponse] {
        var out: [ProcessingResponse] = []
        var i = 0
        while i + 5 <= bytes.count {
            let n = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            let msg = Array(bytes[(i + 5)..<(i + 5 + n)])
            out.append(try! msg.withUnsafeBytes { try ProcessingResponse.decode($0) })
            i += 5 + n
        }
        bytes.removeFirst(i)
        return out
    }
}

/// A fixed monotonic "now" shared by metrics and the scheduler clock in tests.
let testNow: UInt64 = 1_000_000_000_000

func fixedOptions(_ now: UInt64 = testNow) -> FrameworkScheduler.Options {
    var o = FrameworkScheduler.Options()
    o.clock = { now }
    return o
}

/// Endpoints `192.168.1.{i+1}:8000` named `pod-i` (the reference's hermetic test layout).
func goldenDatastore(_ n: Int, labels: [[String: String]] = []) -> Datastore {
    let ds = Datastore()
    ds.replace(with: (0..<n).map {
        EndpointSpec(name: "pod-\($0)", address: "192.168.1.\($0 + 1)", port: 8000, labels: $0 < labels.count ? labels[$0] : [:])
    })
    return ds
}

/// `P(i, queue, kv, active…)`: sets metrics on endpoint i (maxLoRA 2, as the reference's fixtures).
func setMetrics(_ ds: Datastore, _ i: Int, queue: Int, kv: Double, active: [String] = [], waiting: [String] = [],
                running: Int = 0, blockSize: Int? = nil, numBlocks: Int? = nil, at: UInt64 = testNow, healthy: Bool = true) {
    let m = EndpointMetrics(waitingQueueSize: queue, runningRequests: running, kvCacheUsage: kv, kvBlockSize: blockSize,
                            kvNumBlocks: numBlocks, activeLoRAs: Set(active), waitingLoRAs: Set(waiting), maxLoRA: 2)
    ds.snapshot().endpoints[i].updateMetrics(ScrapedMetrics(metrics: m, scrapedAt: at, healthy: healthy))
}

struct StreamHarness {
    let recorder = StreamRecorder()
    let stream: ExtProcStream

    init(_ scheduler: RequestScheduler) {
        stream = ExtProcStream(output: recorder, scheduler: scheduler, limits: ExtProcLimits())
    }

    func feed(_ msg: [UInt8]) { msg.withUnsafeBytes { stream.receive($0) } }
    func take() -> [ProcessingResponse] { recorder.take() }
}

func makeScheduler(_ ds: Datastore, config text: String? = nil, env: PluginEnvironment = PluginEnvironment()) throws -> FrameworkScheduler {
    let cfg = try text.map { try PickerConfig.parse(text: $0, environment: env) } ?? PickerConfig.defaultConfig(environment: env)
    return FrameworkScheduler(datastore: ds, config: ConfigHolder(cfg), options: fixedOptions())
}

func reqHeaders(_ path: String = "/v1/completions", eos: Bool = false, _ extra: [(String, String)] = [],
                subset: ProtoValue? = nil) -> [UInt8] {
    var r = ProcessingRequest(phase: .requestHeaders,
                              headers: [HeaderField(name: ":path", value: path), HeaderField(name: ":method", value: "POST")]
                                  + extra.map { HeaderField(name: $0.0, value: $0.1) },
                              endOfStream: eos)
    if let subset { r.metadataContext = [("envoy.lb.subset_hint", ProtoStruct([("x-gateway-destination-endpoint-subset", subset)]))] }
    r.protocolConfig = ProtocolConfiguration(requestBodyMode: 4, responseBodyMode: 4)
    return r.encoded()
}

func reqBody(_ text: String, eos: Bool = true) -> [UInt8] {
    ProcessingRequest(phase: .requestBody, endOfStream: eos).encoded(body: Array(text.utf8))
}

func reqBody(bytes: [UInt8], eos: Bool = true) -> [UInt8] {
    ProcessingRequest(phase: .requestBody, endOfStream: eos).encoded(body: bytes)
}

func respHeaders(contentType: String = "application/json", served: String? = nil) -> [UInt8] {
    var r = ProcessingRequest(phase: .responseHeaders, headers: [HeaderField(name: ":status", value: "200"),
                                                                 HeaderField(name: "content-type", value: contentType)])
    if let served {
        r.metadataContext = [("envoy.lb", ProtoStruct([("x-gateway-destination-endpoint-served", .string(served))]))]
    }
    return r.encoded()
}

func respBody(_ text: String, eos: Bool) -> [UInt8] {
    ProcessingRequest(phase: .responseBody, endOfStream: eos).encoded(body: Array(text.utf8))
}

func respTrailers() -> [UInt8] {
    ProcessingRequest(phase: .responseTrailers, headers: [HeaderField(name: "grpc-status", value: "0")]).encoded()
}

extension ProcessingResponse {
    var requestHeadersMutation: HeaderMutation? {
        guard case .requestHeaders(let c)? = kind else { return nil }
        return c?.headerMutation
    }
    var destination: String? {
        requestHeadersMutation?.setHeaders.first { $0.key == "x-gateway-destination-endpoint" }?.rawValue
    }
    func setHeader(_ name: String) -> String? { requestHeadersMutation?.setHeaders.first { $0.key == name }?.rawValue }
    var responseHeaderSets: [HeaderValueOption] {
        guard case .responseHeaders(let c)? = kind else { return [] }
        return c?.headerMutation?.setHeaders ?? []
    }
    var streamedBody: StreamedBodyResponse? {
        switch kind {
        case .requestBody(let s)?, .responseBody(let s)?: return s
        default: return nil
        }
    }
    var immediate: ImmediateResponse? {
        guard case .immediate(let i)? = kind else { return nil }
        return i
    }
}

/// Runs one complete request (headers + one body chunk) and returns the answers.
func run(_ h: StreamHarness, path: String = "/v1/completions", headers extra: [(String, String)] = [], body: String,
         subset: ProtoValue? = nil) -> [ProcessingResponse] {
    h.feed(reqHeaders(path, extra, subset: subset))
    h.feed(reqBody(body))
    return h.take()
}

/// Decision through the scheduler only (no stream), for plugin-level tests.
final class NullWaiter: SchedulingWaiter { func schedulingFinished(_ outcome: SchedulingOutcome) {} }

func decide(_ s: FrameworkScheduler, path: String = "/v1/completions", headers: [(String, String)] = [], body: String,
            subset: SubsetHint? = nil) -> SchedulingOutcome {
    let bytes = Array(body.utf8)
    return bytes.withUnsafeBytes { b in
        s.schedule(SchedulingRequest(requestID: "r", path: path,
                                     headers: [HeaderField(name: ":path", value: path)] + headers.map { HeaderField(name: $0.0, value: $0.1) },
                                     body: b, headerOnly: false, subsetHint: subset), waiter: NullWaiter())!
    }
}

extension SchedulingOutcome {
    var decision: SchedulingDecision? { if case .decided(let d) = self { return d }; return nil }
    var error: RequestError? { if case .rejected(let e) = self { return e }; return nil }
}
