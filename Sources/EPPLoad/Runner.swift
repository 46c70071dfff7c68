import AsyncHTTPClient
import Foundation
import EPPLock

/// Outcome of one request.
public struct RequestResult: Sendable {
    public var index: Int
    public var group: Int
    public var turn: Int
    /// HTTP status, nil for a transport error (connection refused, timeout, …).
    public var status: Int?
    public var error: String?
    /// `x-inference-port` response header.
    public var endpoint: String?
    /// Seconds since the run started when the request was sent.
    public var sentAt: Double
    /// Seconds to the first content chunk (streaming) or to the complete response.
    public var ttft: Double?
    public var e2e: Double
    /// Gaps between consecutive content chunks (streaming only), seconds.
    public var itls: [Double]
    public var promptTokens: Int?
    public var cachedTokens: Int?
    public var completionTokens: Int?
    public var answer: String?

    public var succeeded: Bool { status == 200 && error == nil }
}

/// Results of a run.
public struct LoadResults: Sendable {
    public var config: LoadConfig
    public var results: [RequestResult]
    /// Wall-clock duration of the run, seconds.
    public var duration: Double
}

/// Drives a workload against an OpenAI-compatible server with AsyncHTTPClient (HTTP/1.1
/// keep-alive pool), closed loop (`concurrency` workers) or open loop (Poisson `rate`).
public final class LoadRunner: Sendable {
    public let config: LoadConfig
    let progress: Bool

    struct Progress {
        var done = 0
        var errors = 0
    }
    let state = Lock(Progress())
    let collected = Lock<[RequestResult]>([])

    /// - Parameter progress: print a progress line on stderr (only if stderr is a TTY).
    public init(config: LoadConfig, progress: Bool = true) {
        self.config = config
        self.progress = progress && isatty(2) == 1
    }

    public func run() async throws -> LoadResults {
        try config.validate()
        var hc = HTTPClient.Configuration()
        let pool = config.rate != nil ? 4096 : max(8, config.concurrency)
        hc.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: pool)
        // Loopback connects are instant; fail fast when an endpoint is down.
        hc.timeout = .init(connect: .milliseconds(Int64(min(config.timeout, 3) * 1000)))
        hc.decompression = .disabled
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: hc)
        let source = WorkSource(config: config)
        let start = ContinuousClock.now
        let total = config.totalRequests

        let progressTask: Task<Void, Never>? = progress ? Task {
            while true {
                try? await Task.sleep(for: .milliseconds(250))
                if Task.isCancelled { return }
                printProgress(total: total, start: start, final: false)
            }
        } : nil

        if let rate = config.rate {
            var rng = SeededRNG(seed: config.seed ^ 0xA5A5_5A5A_1234_5678)
            await withTaskGroup(of: Void.self) { group in
                var next = start
                while true {
                    next = next + .nanoseconds(Int64(rng.exponential(rate: rate) * 1e9))
                    try? await Task.sleep(until: next, clock: .continuous)
                    guard let item = await source.next() else { break }
                    group.addTask { await self.perform(item, client: client, source: source, start: start) }
                }
            }
        } else {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<config.concurrency {
                    group.addTask {
                        while let item = await source.next() {
                            await self.perform(item, client: client, source: source, start: start)
                        }
                    }
                }
            }
        }
        let duration = (ContinuousClock.now - start).secondsDouble
        progressTask?.cancel()
        await progressTask?.value
        if progress { printProgress(total: total, start: start, final: true) }
        try? await client.shutdown()
        let results = collected.withLock { $0 }.sorted { $0.index < $1.index }
        return LoadResults(config: config, results: results, duration: duration)
    }

    func printProgress(total: Int, start: ContinuousClock.Instant, final: Bool) {
        let p = state.withLock { $0 }
        let el = (ContinuousClock.now - start).secondsDouble
        let line = String(format: "\r[epp-load] %d/%d done, %d errors, %.1f req/s, %.1f s", p.done, total, p.errors,
                          el > 0 ? Double(p.done) / el : 0, el)
        FileHandle.standardError.write(Data((line + (final ? "\n" : "")).utf8))
    }

    func perform(_ item: PlannedRequest, client: HTTPClient, source: WorkSource, start: ContinuousClock.Instant) async {
        let r = await execute(item, client: client, start: start)
        await source.complete(item, answer: r.succeeded ? r.answer : nil)
        collected.withLock { $0.append(r) }
        state.withLock {
            $0.done += 1
            if !r.succeeded { $0.errors += 1 }
        }
    }

    /// Send one request and measure it.
    func execute(_ item: PlannedRequest, client: HTTPClient, start: ContinuousClock.Instant) async -> RequestResult {
        var req = HTTPClientRequest(url: config.baseURL + config.api.path)
        req.method = .POST
        req.headers.add(name: "content-type", value: "application/json")
        req.headers.add(name: "accept", value: config.stream ? "text/event-stream" : "application/json")
        req.body = .bytes(Array(item.body.utf8))
        let sent = ContinuousClock.now
        var result = RequestResult(
            index: item.index, group: item.group, turn: item.turn, status: nil, error: nil, endpoint: nil,
            sentAt: (sent - start).secondsDouble, ttft: nil, e2e: 0, itls: [])
        do {
            let resp = try await client.execute(req, timeout: .nanoseconds(Int64(config.timeout * 1e9)))
            result.status = Int(resp.status.code)
            result.endpoint = resp.headers.first(name: "x-inference-port")
            if resp.status.code != 200 {
                let body = try await resp.body.collect(upTo: 1 << 20)
                result.error = Self.errorMessage(String(decoding: body.readableBytesView, as: UTF8.self))
                result.e2e = (ContinuousClock.now - sent).secondsDouble
                return result
            }
            if config.stream {
                var sse = SSEParser()
                var last: ContinuousClock.Instant? = nil
                var answer = ""
                var sawDone = false
                for try await buf in resp.body {
                    let now = ContinuousClock.now
                    for event in sse.feed(buf.readableBytesView) {
                        if event == "[DONE]" { sawDone = true; continue }
                        guard let obj = Self.parseObject(event) else { continue }
                        if let text = Self.contentText(obj), !text.isEmpty {
                            if let l = last { result.itls.append((now - l).secondsDouble) } else { result.ttft = (now - sent).secondsDouble }
                            last = now
                            answer += text
                        }
                        if let usage = obj["usage"] as? [String: Any] { Self.apply(usage: usage, to: &result) }
                    }
                }
                result.answer = answer
                if !sawDone { result.error = "stream ended without [DONE]" }
            } else {
                let body = try await resp.body.collect(upTo: 64 << 20)
                guard let obj = Self.parseObject(Data(body.readableBytesView)) else {
                    result.error = "response is not a JSON object"
                    result.e2e = (ContinuousClock.now - sent).secondsDouble
                    return result
                }
                if let usage = obj["usage"] as? [String: Any] { Self.apply(usage: usage, to: &result) }
                result.answer = Self.fullText(obj)
            }
            result.e2e = (ContinuousClock.now - sent).secondsDouble
            if result.ttft == nil { result.ttft = result.e2e }
        } catch {
            result.e2e = (ContinuousClock.now - sent).secondsDouble
            if result.status == nil { result.error = "\(error)" } else { result.error = "body: \(error)" }
        }
        return result
    }

    // MARK: parsing helpers

    static func parseObject(_ s: String) -> [String: Any]? { parseObject(Data(s.utf8)) }
    static func parseObject(_ d: Data) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: d)) as? [String: Any]
    }

    static func apply(usage: [String: Any], to r: inout RequestResult) {
        r.promptTokens = (usage["prompt_tokens"] as? NSNumber)?.intValue ?? r.promptTokens
        r.completionTokens = (usage["completion_tokens"] as? NSNumber)?.intValue ?? r.completionTokens
        if let d = usage["prompt_tokens_details"] as? [String: Any], let c = (d["cached_tokens"] as? NSNumber)?.intValue {
            r.cachedTokens = c
        } else if r.cachedTokens == nil, r.promptTokens != nil {
            r.cachedTokens = 0
        }
    }

    /// Content of a streaming chunk (`choices[0].text` or `choices[0].delta.content`).
    static func contentText(_ obj: [String: Any]) -> String? {
        guard let choices = obj["choices"] as? [[String: Any]], let c = choices.first else { return nil }
        if let t = c["text"] as? String { return t }
        if let d = c["delta"] as? [String: Any], let t = d["content"] as? String { return t }
        return nil
    }

    /// Text of a complete response (`choices[0].text` or `choices[0].message.content`).
    static func fullText(_ obj: [String: Any]) -> String? {
        guard let choices = obj["choices"] as? [[String: Any]], let c = choices.first else { return nil }
        if let t = c["text"] as? String { return t }
        if let m = c["message"] as? [String: Any], let t = m["content"] as? String { return t }
        return nil
    }

    static func errorMessage(_ body: String) -> String {
        if let obj = parseObject(body), let e = obj["error"] as? [String: Any], let m = e["message"] as? String { return m }
        return String(body.prefix(200))
    }
}

/// Incremental parser of `text/event-stream`: returns the `data:` payload of each complete event.
public struct SSEParser: Sendable {
    var buffer: [UInt8] = []
    public init() {}

    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [String] where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        var events: [String] = []
        var start = 0
        var i = 0
        while i + 1 < buffer.count {
            // An event ends with a blank line: "\n\n" (also accept "\r\n\r\n").
            if buffer[i] == 0x0A && buffer[i + 1] == 0x0A {
                events.append(contentsOf: Self.dataPayload(buffer[start..<i]))
                start = i + 2
                i = start
                continue
            }
            if buffer[i] == 0x0D, i + 3 < buffer.count, buffer[i + 1] == 0x0A, buffer[i + 2] == 0x0D, buffer[i + 3] == 0x0A {
                events.append(contentsOf: Self.dataPayload(buffer[start..<i]))
                start = i + 4
                i = start
                continue
            }
            i += 1
        }
        if start > 0 { buffer.removeFirst(start) }
        return events
    }

    static func dataPayload(_ bytes: ArraySlice<UInt8>) -> [String] {
        let text = String(decoding: bytes, as: UTF8.self)
        var parts: [String] = []
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            if line.hasPrefix("data:") {
                var v = line.dropFirst(5)
                if v.hasPrefix(" ") { v = v.dropFirst() }
                parts.append(String(v))
            }
        }
        return parts.isEmpty ? [] : [parts.joined(separator: "\n")]
    }
}

extension Duration {
    var secondsDouble: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
