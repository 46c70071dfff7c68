// Question: what does one routing decision cost, by number of endpoints and prompt size?
// Two columns per cell (median ns over batches, release build, one core):
//   scheduler: FrameworkScheduler.schedule with the reference default config (queue, kv-cache, prefix scorers;
//              body parsed, prefix hashes computed, index looked up and updated, candidates scored, picked);
//   stream:    the whole ext_proc stream state machine around it (decode request_headers + request_body
//              messages, decide, encode the headers response and the re-chunked body) — everything but HTTP/2.
import EPPPicker
import EPPProtobuf
import Glibc

let quick = CommandLine.arguments.contains("--quick")

// CPU time of this thread, not wall time: the cost per decision on one core, and robust against other
// processes competing for the cores while the benchmark runs.
@inline(never) func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

final class NullOutput: ExtProcOutput {
    var bytes = 0
    func send(_ appendFramed: (inout [UInt8]) -> Void) {
        var out: [UInt8] = []
        appendFramed(&out)
        bytes &+= out.count
    }
    func fail(code: Int, message: String) { fatalError("stream failed: \(message)") }
    func finishOK() {}
    func chargeBufferedInput(_ bytes: Int) -> Bool { true }   // no connection budget in this benchmark
    func releaseBufferedInput(_ bytes: Int) {}
}

final class NoWaiter: SchedulingWaiter { func schedulingFinished(_ outcome: SchedulingOutcome) { fatalError("async") } }

func makeDatastore(_ n: Int) -> Datastore {
    let ds = Datastore()
    ds.replace(with: (0..<n).map { EndpointSpec(name: "pod-\($0)", address: "10.\($0 / 65536).\(($0 / 256) % 256).\($0 % 256)", port: 8000) })
    var rng = SystemRandomNumberGenerator()
    for e in ds.snapshot().endpoints {
        e.updateMetrics(ScrapedMetrics(metrics: EndpointMetrics(waitingQueueSize: Int.random(in: 0..<10, using: &rng),
                                                                runningRequests: Int.random(in: 0..<16, using: &rng),
                                                                kvCacheUsage: Double.random(in: 0..<1, using: &rng)),
                                       scrapedAt: UInt64.max / 2))
    }
    return ds
}

/// `groups` distinct bodies of exactly `size` bytes sharing long prefixes within a group.
func bodies(size: Int, count: Int) -> [[UInt8]] {
    (0..<count).map { i in
        let head = Array("{\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"max_tokens\":16,\"prompt\":\"".utf8)
        var prompt = Array("System prompt of group \(i % 8). ".utf8)
        let words = Array("the quick brown fox jumps over the lazy dog while the picker routes requests ".utf8)
        var k = 0
        while head.count + prompt.count + 2 < size - 24 { prompt.append(words[k % words.count]); k += 1 }
        prompt += Array(" question \(i)".utf8)
        var b = head + prompt
        while b.count < size - 2 { b.append(UInt8(ascii: " ")) }
        b += Array("\"}".utf8)
        return Array(b.prefix(size - 2)) + Array("\"}".utf8)
    }
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

func fmt2(_ v: Double) -> String {
    let c = Int((v * 100).rounded())
    let frac = c % 100
    return "\(c / 100).\(frac < 10 ? "0" : "")\(frac)"
}

let only = CommandLine.arguments.contains("--one")
// `--one N BYTES` measures one cell (for profiling).
let oneIndex = CommandLine.arguments.firstIndex(of: "--one")
let oneEndpoints = oneIndex.flatMap { CommandLine.arguments.count > $0 + 1 ? Int(CommandLine.arguments[$0 + 1]) : nil } ?? 256
let oneBytes = oneIndex.flatMap { CommandLine.arguments.count > $0 + 2 ? Int(CommandLine.arguments[$0 + 2]) : nil } ?? 1024
let endpointCounts = only ? [oneEndpoints] : [16, 64, 256, 1024]
let promptSizes = only ? [(oneBytes, "\(oneBytes) B")] : [(1024, "1 KB"), (4096, "4 KB"), (16 * 1024, "16 KB"), (256 * 1024, "256 KB")]
print("| endpoints | prompt | scheduler µs/decision | full stream µs/decision |")
print("|---|---|---|---|")
for n in endpointCounts {
    for (size, label) in promptSizes {
        let ds = makeDatastore(n)
        let holder = ConfigHolder(PickerConfig.defaultConfig(environment: PluginEnvironment()))
        let scheduler = FrameworkScheduler(datastore: ds, config: holder)
        let requestBodies = bodies(size: size, count: 64)
        let headers = [HeaderField(name: ":path", value: "/v1/completions"), HeaderField(name: ":method", value: "POST"),
                       HeaderField(name: "x-request-id", value: "bench")]
        let iterations = quick ? max(20, 2_000_000 / (size * max(1, n / 16))) : max(200, 40_000_000 / (size + 16 * n))
        let batches = quick ? 3 : 7
        let waiter = NoWaiter()
        var schedulerSamples: [Double] = []
        for _ in 0..<batches {
            let t0 = now()
            for i in 0..<iterations {
                requestBodies[i & 63].withUnsafeBytes { body in
                    let r = SchedulingRequest(requestID: "bench", path: "/v1/completions", headers: headers, body: body,
                                              headerOnly: false, subsetHint: nil)
                    guard case .decided(let d)? = scheduler.schedule(r, waiter: waiter) else { fatalError("not decided") }
                    scheduler.release(d)
                }
            }
            schedulerSamples.append(Double(now() - t0) / Double(iterations))
        }
        // The whole state machine: prebuilt Envoy messages (body in 62,000-byte chunks as Envoy may send).
        let headerMsg: [UInt8] = {
            var r = ProcessingRequest(phase: .requestHeaders, headers: headers, endOfStream: false)
            r.protocolConfig = ProtocolConfiguration(requestBodyMode: 4, responseBodyMode: 4)
            return r.encoded()
        }()
        let bodyMsgs: [[[UInt8]]] = requestBodies.map { b in
            stride(from: 0, to: b.count, by: 62_000).map { off in
                let end = min(off + 62_000, b.count)
                return ProcessingRequest(phase: .requestBody, endOfStream: end == b.count).encoded(body: Array(b[off..<end]))
            }
        }
        let output = NullOutput()
        var streamSamples: [Double] = []
        for _ in 0..<batches {
            let t0 = now()
            for i in 0..<iterations {
                let s = ExtProcStream(output: output, scheduler: scheduler, limits: ExtProcLimits())
                headerMsg.withUnsafeBytes { s.receive($0) }
                for m in bodyMsgs[i & 63] { m.withUnsafeBytes { s.receive($0) } }
                s.streamEnded()
            }
            streamSamples.append(Double(now() - t0) / Double(iterations))
        }
        print("| \(n) | \(label) | \(fmt2(median(schedulerSamples) / 1000)) | \(fmt2(median(streamSamples) / 1000)) |")
        fflush(nil)
    }
}
