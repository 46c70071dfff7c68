// The ext_proc stream state machine (ExtProcStream) over the default
// scheduler and a 4-endpoint datastore, driven by a fuzz-decoded sequence of
// Envoy messages (well-formed ones built from the input, or raw bytes).
// Invariants: never traps; every output frame is a well-formed gRPC frame
// holding a decodable ProcessingResponse; failures carry a known gRPC code
// and a message; when the request was decided and nothing failed, the body
// forwarded equals the body received and the response body echoed equals
// the response body received (no model rewrite is configured).
import EPPPicker
import EPPProtobuf
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzExtProcStream) }
}

final class RecordingOutput: ExtProcOutput {
    var bytes: [UInt8] = []
    var failure: (code: Int, message: String)?
    func send(_ appendFramed: (inout [UInt8]) -> Void) { appendFramed(&bytes) }
    func fail(code: Int, message: String) { if failure == nil { failure = (code, message) } }
    func finishOK() {}
    /// Buffered-input bytes the stream holds; must be 0 once it ended.
    var charged = 0
    func chargeBufferedInput(_ n: Int) -> Bool { charged += n; return true }
    func releaseBufferedInput(_ n: Int) { charged -= n }
}

/// Scheduler and endpoints shared by all runs (built once: the run time
/// should go to the stream, and in-flight counts must return to zero).
private let datastore: Datastore = {
    let ds = Datastore()
    ds.replace(with: (0..<4).map { EndpointSpec(name: "pod-\($0)", address: "10.0.0.\($0 + 1)", port: 8000) })
    for (i, e) in ds.snapshot().endpoints.enumerated() {
        e.updateMetrics(ScrapedMetrics(metrics: EndpointMetrics(waitingQueueSize: i, runningRequests: i, kvCacheUsage: 0.1 * Double(i)),
                                       scrapedAt: UInt64.max / 2))
    }
    return ds
}()
nonisolated(unsafe) private let scheduler = FrameworkScheduler(
    datastore: datastore, config: ConfigHolder(PickerConfig.defaultConfig(environment: PluginEnvironment())))

private let paths = ["/v1/completions", "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/conversations", "/health"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzExtProcStream(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    var limits = ExtProcLimits()
    // Small limits so 413 and re-chunking are reachable with short inputs.
    limits.maxRequestBodyBytes = 64 + Int(r.byte()) * 16
    limits.bodyChunkBytes = 1 + Int(r.byte())
    let output = RecordingOutput()
    let stream = ExtProcStream(output: output, scheduler: scheduler, limits: limits)

    var requestBodyIn: [UInt8] = []
    var responseBodyIn: [UInt8] = []
    var nonDefaultModes = false
    var messages = 0
    while !r.isAtEnd && messages < 64 && output.failure == nil {
        messages += 1
        let op = r.byte()
        if op % 8 == 7 {
            stream.clientHalfClosed()
            continue
        }
        let message = makeMessage(op, &r)
        // What the stream sees, decoded the same way it decodes.
        if let decoded = try? ProcessingRequest.decode(message) {
            if let c = decoded.protocolConfig, c.requestBodyMode != 4 || c.responseBodyMode != 4 { nonDefaultModes = true }
            if decoded.observabilityMode { nonDefaultModes = true }
            if decoded.phase == .requestBody { requestBodyIn += message[decoded.body] }
            if decoded.phase == .responseBody { responseBodyIn += message[decoded.body] }
        }
        message.withUnsafeBytes { stream.receive($0) }
    }
    stream.streamEnded()
    fuzzCheck(output.charged == 0, "buffered-input budget not returned at stream end: \(output.charged) bytes")

    let responses = frames(output.bytes)
    if let f = output.failure {
        fuzzCheck([ExtProcErrorCode.invalidArgument, ExtProcErrorCode.failedPrecondition, ExtProcErrorCode.internal].contains(f.code),
                  "unexpected gRPC code \(f.code)")
        fuzzCheck(!f.message.isEmpty, "failure without message")
        return 0
    }
    if nonDefaultModes { return 0 }
    var decided = false
    var rejected = false
    var requestBodyOut: [UInt8] = []
    var responseBodyOut: [UInt8] = []
    var requestBodyEnded = false
    for resp in responses {
        switch resp.kind {
        case .requestHeaders?: decided = true
        case .immediate?: rejected = true
        case .requestBody(let s?)?:
            requestBodyOut += s.body
            if s.endOfStream { requestBodyEnded = true }
        case .requestTrailers?: requestBodyEnded = true
        case .responseBody(let s?)?: responseBodyOut += s.body
        default: break
        }
    }
    if decided && !rejected && requestBodyEnded {
        fuzzCheck(requestBodyOut == requestBodyIn,
                  "forwarded body (\(requestBodyOut.count) B) differs from received body (\(requestBodyIn.count) B)")
    }
    if decided && !rejected {
        fuzzCheck(responseBodyOut == responseBodyIn,
                  "echoed response body (\(responseBodyOut.count) B) differs from received (\(responseBodyIn.count) B)")
    }
    return 0
}

/// One Envoy -> us message: mostly well-formed phases (so the fuzzer gets deep
/// quickly), sometimes raw bytes (so decoding paths are reached as well).
private func makeMessage(_ op: UInt8, _ r: inout FuzzReader) -> [UInt8] {
    switch op % 8 {
    case 0:
        return r.take(Int(r.byte()))
    case 1:
        let flags = r.byte()
        var headers = [HeaderField(name: ":path", value: paths[Int(r.byte()) % paths.count]),
                       HeaderField(name: ":method", value: "POST")]
        if flags & 2 != 0 { headers.append(HeaderField(name: "x-request-id", value: "fuzz-\(r.byte())")) }
        if flags & 4 != 0 { headers.append(HeaderField(name: "content-length", value: "\(r.uint16())")) }
        if flags & 8 != 0 {
            headers.append(HeaderField(name: "x-gateway-inference-objective", value: String(decoding: r.take(Int(r.byte() % 16)), as: UTF8.self)))
        }
        var req = ProcessingRequest(phase: .requestHeaders, headers: headers, endOfStream: flags & 1 != 0)
        if flags & 16 != 0 { req.protocolConfig = ProtocolConfiguration(requestBodyMode: Int(r.byte() % 5), responseBodyMode: Int(r.byte() % 5)) }
        return req.encoded()
    case 2, 5:
        let eos = r.bool()
        let chunk = r.take(r.uint16() % 1024)
        return ProcessingRequest(phase: op % 8 == 2 ? .requestBody : .responseBody, endOfStream: eos).encoded(body: chunk)
    case 3:
        return ProcessingRequest(phase: .requestTrailers, headers: [HeaderField(name: "x-t", value: "1")]).encoded()
    case 4:
        let sse = r.bool()
        return ProcessingRequest(phase: .responseHeaders, headers: [
            HeaderField(name: ":status", value: "\(200 + Int(r.byte() % 4) * 100)"),
            HeaderField(name: "content-type", value: sse ? "text/event-stream" : "application/json"),
        ], endOfStream: r.bool()).encoded()
    default:
        return ProcessingRequest(phase: .responseTrailers, headers: []).encoded()
    }
}

/// Splits the output into gRPC frames; each must be uncompressed, complete,
/// and decode as a ProcessingResponse.
private func frames(_ bytes: [UInt8]) -> [ProcessingResponse] {
    var out: [ProcessingResponse] = []
    var i = 0
    while i < bytes.count {
        fuzzCheck(i + 5 <= bytes.count, "truncated gRPC prefix at \(i)")
        fuzzCheck(bytes[i] == 0, "compressed flag set")
        let n = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
        fuzzCheck(i + 5 + n <= bytes.count, "frame of \(n) bytes overruns output")
        let msg = Array(bytes[(i + 5)..<(i + 5 + n)])
        do {
            out.append(try ProcessingResponse.decode(msg))
        } catch {
            fuzzCheck(false, "undecodable ProcessingResponse: \(error)")
        }
        i += 5 + n
    }
    return out
}
