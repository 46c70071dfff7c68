import EPPEventLoop
import EPPObservability
@testable import EPPPicker
import EPPProtobuf
import EPPRedis
import Foundation
import Testing

/// `precise-prefix-cache-scorer` end to end inside one scheduler: a real redis-server holding fixture entries in
/// the llm-d layout (kv-index.md §3.1), the render endpoint `Tests/integration/render_server.py` (decimal words
/// are token ids), decisions through `FrameworkScheduler` on a real loop.
@Suite(.serialized)
struct PrecisePrefixRedisTests {
    /// Four candidates; `pod-i` is `10.0.0.(i+1):8000`.
    static let pods = (0..<4).map { EndpointSpec(name: "pod-\($0)", address: "10.0.0.\($0 + 1)", port: 8000) }
    /// Tokens 0…63 ⇒ 4 blocks of 16; keys for model `m`, seed "" (the first two are kv-index.md §2.2's vectors).
    static let prompt = (0..<64).map(String.init).joined(separator: " ")
    static let keys = KVBlockKeys.keys(tokens: Array(0..<64), blockSize: 16, root: KVBlockKeys.root(seed: "", model: "m"))

    static func config(render: Int, redis: String, renderTimeout: String = "2s") -> String {
        """
        apiVersion: llm-d.ai/v1alpha1
        kind: EndpointPickerConfig
        plugins:
        - type: precise-prefix-cache-scorer
          parameters:
            renderURL: http://127.0.0.1:\(render)
            renderTimeout: \(renderTimeout)
            lookupBudget: 1s
            tokenProcessorConfig: {blockSize: 16}
            indexerConfig: {kvBlockIndexConfig: {redisConfig: {address: "\(redis)"}}}
        - type: header-based-testing-filter
        - type: max-score-picker
        schedulingProfiles:
        - name: default
          plugins: [{pluginRef: precise-prefix-cache-scorer, weight: 1}, {pluginRef: max-score-picker}]
        """
    }

    /// llm-d's exact field bytes: Go `json.Marshal(PodEntry)`.
    static func field(_ pod: String, _ tier: String) -> String {
        #"{"PodIdentifier":"\#(pod)","DeviceTier":"\#(tier)","Speculative":false,"HasGroup":false,"GroupIdx":0}"#
    }

    final class Collector: SchedulingWaiter, @unchecked Sendable {
        var outcome: SchedulingOutcome?
        var at: UInt64 = 0
        func schedulingFinished(_ o: SchedulingOutcome) { outcome = o; at = EventLoop.now() }
    }

    /// One scheduler on its own loop with its own metrics.
    final class Picker: @unchecked Sendable {
        let group = EventLoopGroup(count: 1)
        let env = PluginEnvironment(precise: PrecisePrefixResources(registry: MetricsRegistry()))
        let scheduler: FrameworkScheduler
        let config: PickerConfig
        var loop: EventLoop { group.loops[0] }

        init(_ configText: String) throws {
            group.start()
            let ds = Datastore()
            ds.replace(with: PrecisePrefixRedisTests.pods)
            config = try PickerConfig.parse(text: configText, environment: env)
            scheduler = FrameworkScheduler(datastore: ds, config: ConfigHolder(config))
            scheduler.eventLoop = group.loops[0]
        }

        func count(_ o: PrecisePrefixOutcome) -> UInt64 { env.precise.metrics.outcomes[o]!.current }

        /// Schedules one request on the loop; returns the destination (or "rejected …") and how long it took.
        func decide(_ body: String, path: String = "/v1/completions", only: [Int]? = nil) async throws -> (String, Double) {
            let c = Collector()
            var headers = [HeaderField(name: ":path", value: path)]
            if let only { headers.append(HeaderField(name: "test-epp-endpoint-selection", value: only.map { "10.0.0.\($0 + 1):8000" }.joined(separator: ","))) }
            let request = headers
            let start: UInt64 = await withCheckedContinuation { cont in
                loop.execute {
                    let t0 = EventLoop.now()
                    let bytes = Array(body.utf8)
                    let o = bytes.withUnsafeBytes { raw in
                        self.scheduler.schedule(SchedulingRequest(requestID: "r", path: path, headers: request, body: raw,
                                                                  headerOnly: false, subsetHint: nil), waiter: c)
                    }
                    if let o { c.outcome = o; c.at = t0 }
                    cont.resume(returning: t0)
                }
            }
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                let done = await withCheckedContinuation { cont in loop.execute { cont.resume(returning: c.outcome != nil) } }
                if done { break }
                try await Task.sleep(nanoseconds: 2_000_000)
            }
            guard let o = c.outcome else { throw RedisIndexTestFailure("no decision within 10 s") }
            let seconds = Double(c.at &- start) / 1e9
            switch o {
            case .decided(let d): return (d.destination, seconds)
            case .rejected(let e): return ("rejected \(e)", seconds)
            }
        }

        func shutdown() async {
            env.precise.close()
            try? await Task.sleep(nanoseconds: 20_000_000)
            group.stop()
            group.join()
        }
    }

    /// `python3 Tests/integration/render_server.py` on a free port.
    final class RenderServer: @unchecked Sendable {
        let port: Int
        let process = Process()

        init(stall: Bool = false) throws {
            let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
            port = Socket.localPort(fd)
            close(fd)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("integration/render_server.py").path
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", script, "--port", "\(port)"] + (stall ? ["--stall"] : [])
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if (try? calls()) != nil { return }
                usleep(20_000)
            }
            throw RedisIndexTestFailure("render server did not start")
        }

        /// POSTs the server has received so far.
        func calls() throws -> Int {
            let p = Process()
            let out = Pipe()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments = ["-sf", "--max-time", "2", "http://127.0.0.1:\(port)/stats"]
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            guard p.terminationStatus == 0, let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let n = obj["calls"] as? Int else { throw RedisIndexTestFailure("render server /stats failed") }
            return n
        }

        deinit {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Writes fixture entries with redis-cli (an external writer, like the llm-d indexer).
    /// Retries while the just-started redis-server is not listening yet.
    static func hset(_ port: Int, _ key: UInt64, _ fields: [String]) throws {
        let deadline = Date().addingTimeInterval(5)
        while true {
            let p = Process()
            let out = Pipe()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
            p.arguments = ["-p", "\(port)", "HSET", String(key)] + fields.flatMap { [$0, ""] }
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let reply = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            if p.terminationStatus == 0 && Int(reply.trimmingCharacters(in: .whitespacesAndNewlines)) != nil { return }
            guard Date() < deadline else { throw RedisIndexTestFailure("redis-cli HSET failed: \(reply)") }
            usleep(20_000)
        }
    }

    /// One request opens the loop's Redis connection (lanes connect on first use); then waits until it is ready.
    static func warmUp(_ picker: Picker) async throws {
        _ = try await picker.decide(#"{"model":"m","prompt":"warm up"}"#)
        let scorer = try #require(picker.config.plugins["precise-prefix-cache-scorer"] as? PrecisePrefixCacheScorer)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let ready = await withCheckedContinuation { c in
                picker.loop.execute { c.resume(returning: picker.env.precise.lane(for: picker.loop).redis(scorer.redisURL).isReady) }
            }
            if ready { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        throw RedisIndexTestFailure("redis connection never became ready")
    }

    @Test func ranksPodsByTheLongestHeldPrefixWithTierWeights() async throws {
        let redis = try RedisIndexTestServer()
        let render = try RenderServer()
        let k = Self.keys
        #expect(k[0] == 7_711_063_176_051_622_293 && k[1] == 3_714_816_549_193_055_456)
        // pod-0: blocks 1–2 on GPU ⇒ 2/4 = 0.5;  pod-1: 1–4 on CPU ⇒ 3.2/4 = 0.8;  pod-2: 1–3 on GPU ⇒ 0.75;
        // pod-3: 2–4 only (no first block) ⇒ 0;  10.0.0.9 holds everything but is not a candidate.
        try Self.hset(redis.port, k[0], [Self.field("10.0.0.1:8000", "gpu"), Self.field("10.0.0.2:8000", "cpu"),
                                         Self.field("10.0.0.3:8000", "gpu"), Self.field("10.0.0.9:8000", "gpu"), "not json"])
        try Self.hset(redis.port, k[1], [Self.field("10.0.0.1:8000", "gpu"), Self.field("10.0.0.2:8000", "cpu"),
                                         Self.field("10.0.0.3:8000", "gpu"), Self.field("10.0.0.4:8000", "gpu"), Self.field("10.0.0.9:8000", "gpu")])
        try Self.hset(redis.port, k[2], [Self.field("10.0.0.2:8000", "cpu"), Self.field("10.0.0.3:8000", "gpu"),
                                         Self.field("10.0.0.4:8000", "gpu"), Self.field("10.0.0.9:8000", "gpu")])
        try Self.hset(redis.port, k[3], [Self.field("10.0.0.2:8000", "cpu"), Self.field("10.0.0.4:8000", "gpu"),
                                         Self.field("10.0.0.9:8000", "gpu")])
        let picker = try Picker(Self.config(render: render.port, redis: "127.0.0.1:\(redis.port)"))
        try await Self.warmUp(picker)
        let before = picker.count(.scored)
        let body = #"{"model":"m","prompt":"\#(Self.prompt) tail words"}"#
        #expect(try await picker.decide(body).0 == "10.0.0.2:8000")
        #expect(try await picker.decide(body, only: [0, 2, 3]).0 == "10.0.0.3:8000")
        #expect(try await picker.decide(body, only: [0, 3]).0 == "10.0.0.1:8000")
        #expect(picker.count(.scored) == before + 3)
        // The same prompt is rendered once; the loop's token cache answers the repeats.
        #expect(try render.calls() == 2)   // warm-up + the first ranked request
        // Another model's chain does not match these entries: all 0 ⇒ any pod, still scored.
        let other = try await picker.decide(#"{"model":"other","prompt":"\#(Self.prompt)"}"#)
        #expect(other.0.hasPrefix("10.0.0."))
        #expect(picker.count(.scored) == before + 4)
        await picker.shutdown()
        redis.stop()
    }

    @Test func chatRequestsRenderThroughTheChatEndpoint() async throws {
        let redis = try RedisIndexTestServer()
        let render = try RenderServer()
        // render_server: user role token 2, then the words, then 9 ⇒ [2, 100, 101, …, 130, 9]: 33 tokens ⇒ 2 blocks.
        let tokens: [UInt32] = [2] + (100..<131).map(UInt32.init) + [9]
        let keys = KVBlockKeys.keys(tokens: tokens, blockSize: 16, root: KVBlockKeys.root(seed: "", model: "m"))
        #expect(keys.count == 2)
        try Self.hset(redis.port, keys[0], [Self.field("10.0.0.4:8000", "gpu"), Self.field("10.0.0.1:8000", "gpu")])
        // Readers decode like Go's json.Unmarshal: key order and case don't matter, missing keys are zero values.
        try Self.hset(redis.port, keys[1], [#"{ "deviceTier": "gpu", "podidentifier": "10.0.0.4:8000" }"#])
        let picker = try Picker(Self.config(render: render.port, redis: "redis://127.0.0.1:\(redis.port)"))
        try await Self.warmUp(picker)
        let words = (100..<131).map(String.init).joined(separator: " ")
        let body = #"{"model":"m","messages":[{"role":"user","content":"\#(words)"}]}"#
        #expect(try await picker.decide(body, path: "/v1/chat/completions").0 == "10.0.0.4:8000")
        await picker.shutdown()
        redis.stop()
    }

    @Test func aLoopsFirstLookupWaitsForTheOpeningConnection() async throws {
        let redis = try RedisIndexTestServer()
        try Self.hset(redis.port, Self.keys[0], [Self.field("10.0.0.3:8000", "gpu")])
        // Nothing listens on the render URL: the prompt's tokens are put in the loop's cache instead, so the Redis
        // lookup is the first I/O, while the loop's connection is still opening.
        let picker = try Picker(Self.config(render: 1, redis: "127.0.0.1:\(redis.port)"))
        let scorer = try #require(picker.config.plugins["precise-prefix-cache-scorer"] as? PrecisePrefixCacheScorer)
        let body = #"{"model":"m","prompt":"\#(Self.prompt)"}"#
        let bytes = Array(body.utf8)
        let key = try bytes.withUnsafeBytes { raw in
            let parsed = try ParsedRequest.parse(body: raw, kind: .completions).get()
            let r = try #require(RenderRequest.body(parsed: parsed, body: raw, model: "m"))
            return PrecisePrefixCacheScorer.cacheKey(url: scorer.renderURL + r.path, body: r.body, keep: scorer.tokensKept)
        }
        await withCheckedContinuation { c in
            picker.loop.execute {
                picker.env.precise.lane(for: picker.loop).tokenCache.put(key, Array(0..<64))
                c.resume()
            }
        }
        #expect(try await picker.decide(body).0 == "10.0.0.3:8000")
        #expect(picker.count(.scored) == 1 && picker.count(.redisUnavailable) == 0)
        await picker.shutdown()
        redis.stop()
    }

    @Test func loopHTTPClientReusesConnectionsAndReportsFailures() async throws {
        let render = try RenderServer()
        let group = EventLoopGroup(count: 1)
        group.start()
        let loop = group.loops[0]
        let client = await withCheckedContinuation { c in loop.execute { c.resume(returning: LoopHTTPClient(loop: loop)) } }
        func post(_ url: String, _ body: String, timeout: UInt64 = 2_000_000_000) async -> Result<LoopHTTPResponse, LoopHTTPError> {
            await withCheckedContinuation { c in
                loop.execute {
                    let started = client.post(url: url, body: Array(body.utf8), timeoutNanos: timeout) { c.resume(returning: $0) }
                    if !started { c.resume(returning: .failure(.other("not started"))) }
                }
            }
        }
        let base = "http://127.0.0.1:\(render.port)"
        for i in 0..<5 {
            let r = try await post(base + "/v1/completions/render", #"{"model":"m","prompt":"\#(i) 7"}"#).get()
            #expect(r.status == 200)
            #expect(try RenderRequest.tokenIDs(r.body).get() == [UInt32(i), 7])
        }
        #expect(await withCheckedContinuation { c in loop.execute { c.resume(returning: client.connectionsOpened) } } == 1)
        #expect(try await post(base + "/nope", "{}").get().status == 404)
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let dead = Socket.localPort(fd)
        close(fd)
        guard case .failure(.connect) = await post("http://127.0.0.1:\(dead)/x", "{}") else {
            Issue.record("a refused connection is not a connect error")
            return
        }
        await withCheckedContinuation { c in loop.execute { client.close(); c.resume() } }
        group.stop()
        group.join()
    }

    @Test func aStalledRenderEndpointIsBoundedByTheTimeout() async throws {
        let redis = try RedisIndexTestServer()
        let render = try RenderServer(stall: true)
        let picker = try Picker(Self.config(render: render.port, redis: "127.0.0.1:\(redis.port)", renderTimeout: "150ms"))
        let (dest, seconds) = try await picker.decide(#"{"model":"m","prompt":"\#(Self.prompt)"}"#)
        #expect(dest.hasPrefix("10.0.0."))          // still a decision, scored by the other plugins (here: none)
        #expect(seconds >= 0.14 && seconds < 1.0, "took \(seconds) s")
        #expect(picker.count(.renderTimeout) == 1)
        #expect(try render.calls() == 1)
        // The loop kept serving meanwhile: two stalled requests in a row each take one timeout, not more.
        let second = try await picker.decide(#"{"model":"m","prompt":"\#(Self.prompt) again"}"#)
        #expect(second.1 < 1.0)
        #expect(picker.count(.renderTimeout) == 2)
        await picker.shutdown()
        redis.stop()
    }

    @Test func redisDownScoresZeroWithoutDelay() async throws {
        let render = try RenderServer()
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let deadPort = Socket.localPort(fd)
        close(fd)
        let picker = try Picker(Self.config(render: render.port, redis: "127.0.0.1:\(deadPort)"))
        let (dest, seconds) = try await picker.decide(#"{"model":"m","prompt":"\#(Self.prompt)"}"#)
        #expect(dest.hasPrefix("10.0.0."))
        #expect(seconds < 1.0)
        #expect(picker.count(.redisUnavailable) == 1)
        await picker.shutdown()
    }
}
