import EPPPicker
import EPPProtobuf
import Testing

@Suite struct FrameworkSchedulerTests {
    let longPrompt = String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40)

    @Test func prefixIndexUpdatedSynchronouslyAfterPick() throws {
        // §13.14: back-to-back requests with a new shared prefix land on the same endpoint
        let ds = goldenDatastore(8)
        for i in 0..<8 { setMetrics(ds, i, queue: 0, kv: 0.1) }
        let s = try makeScheduler(ds)
        let body = "{\"model\":\"m\",\"prompt\":\"\(longPrompt)\"}"
        let first = try #require(decide(s, body: body).decision)
        for _ in 0..<20 {
            let d = try #require(decide(s, body: body).decision)
            #expect(d.destination == first.destination)
        }
        // a second scheduler (another loop) shares the index through the environment
        let env = PluginEnvironment()
        let a = try makeScheduler(ds, env: env), b = try makeScheduler(ds, env: env)
        let da = try #require(decide(a, body: body).decision)
        #expect(decide(b, body: body).decision?.destination == da.destination)
    }

    @Test func unhealthyEndpointsDroppedAllUnhealthyFallsBack() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 0, kv: 0.0, healthy: false)              // best numbers but unhealthy
        setMetrics(ds, 1, queue: 9, kv: 0.9)
        setMetrics(ds, 2, queue: 9, kv: 0.9, at: testNow - 5_000_000_000)   // stale (> 2 s)
        let s = try makeScheduler(ds)
        for _ in 0..<10 { #expect(decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision?.destination == "192.168.1.2:8000") }
        setMetrics(ds, 1, queue: 9, kv: 0.9, healthy: false)
        // all unhealthy ⇒ all candidates (endpoint 0 has the best numbers)
        #expect(decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision?.destination == "192.168.1.1:8000")
        // no metrics at all (nothing scraped yet) ⇒ still routes
        let fresh = goldenDatastore(2)
        #expect(decide(try makeScheduler(fresh), body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision != nil)
    }

    @Test func chargesAreReleasedAtStreamEnd() throws {
        let ds = goldenDatastore(1)
        let h = StreamHarness(try makeScheduler(ds))
        _ = run(h, body: "{\"model\":\"m\",\"prompt\":\"\(longPrompt)\"}")
        let e = ds.snapshot().endpoints[0]
        #expect(e.inFlightRequests.load(ordering: .relaxed) == 1)
        #expect(e.inFlightPromptTokens.load(ordering: .relaxed) > 400)
        h.stream.streamEnded()
        #expect(e.inFlightRequests.load(ordering: .relaxed) == 0)
        #expect(e.inFlightPromptTokens.load(ordering: .relaxed) == 0)
    }

    @Test func explainHeaderOnTheResponse() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 3, kv: 0.2); setMetrics(ds, 1, queue: 0, kv: 0.1); setMetrics(ds, 2, queue: 10, kv: 0.2)
        let h = StreamHarness(try makeScheduler(ds))
        let out = run(h, headers: [("x-epp-debug", "1")], body: "{\"model\":\"m\",\"prompt\":\"hi\"}")
        #expect(out[0].destination == "192.168.1.2:8000")
        // not sent upstream
        #expect(out[0].requestHeadersMutation?.setHeaders.contains { $0.key == "x-epp-decision" } == false)
        h.feed(respHeaders())
        let r = h.take()
        let text = try #require(r[0].responseHeaderSets.first { $0.key == "x-epp-decision" }?.rawValue)
        #expect(text.hasPrefix("default: pick 192.168.1.2:8000 total=3.800 [queue-scorer=1.000x2 kv-cache-utilization-scorer=0.900x2 prefix-cache-scorer=0.000x3]"))
        #expect(text.contains("runner-up 192.168.1.1:8000 total=3.000"))
        // without the header: nothing
        let q = StreamHarness(try makeScheduler(ds))
        _ = run(q, body: "{\"model\":\"m\",\"prompt\":\"hi\"}")
        q.feed(respHeaders())
        #expect(q.take()[0].kind == .responseHeaders(nil))
    }

    @Test func sessionAffinityRoundTrip() throws {
        let ds = goldenDatastore(3)
        for i in 0..<3 { setMetrics(ds, i, queue: 0, kv: 0.1) }
        let cfg = """
            apiVersion: llm-d.ai/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: session-affinity-scorer
            - type: queue-scorer
            schedulingProfiles:
            - name: default
              plugins: [{pluginRef: session-affinity-scorer, weight: 10}, {pluginRef: queue-scorer}]
            """
        let h = StreamHarness(try makeScheduler(ds, config: cfg))
        let out = run(h, body: "{\"model\":\"m\",\"prompt\":\"hi\"}")
        h.feed(respHeaders())
        let token = try #require(h.take()[0].responseHeaderSets.first { $0.key == "x-session-token" }?.rawValue)
        for _ in 0..<10 {
            let h2 = StreamHarness(try makeScheduler(ds, config: cfg))
            #expect(run(h2, headers: [("x-session-token", token)], body: "{\"model\":\"m\",\"prompt\":\"hi\"}")[0].destination == out[0].destination)
        }
    }

    @Test func sseModelRewrittenBackPerChunk() throws {
        let h = StreamHarness(try makeScheduler(goldenDatastore(2)))
        _ = run(h, headers: [("x-gateway-model-name-rewrite", "big-model")], body: "{\"model\":\"alias\",\"prompt\":\"hi\",\"stream\":true}")
        h.feed(respHeaders(contentType: "text/event-stream"))
        _ = h.take()
        h.feed(respBody("data: {\"model\":\"big-model\",\"choices\":[]}\n\n", eos: false))
        let out = h.take()
        #expect(out.count == 1)
        #expect(out[0].streamedBody?.body == Array("data: {\"model\":\"alias\",\"choices\":[]}\n\n".utf8))
    }

    @Test func headerOnlyGoesThroughProfiles() throws {
        let ds = goldenDatastore(2, labels: [["llm-d.ai/role": "prefill"], ["llm-d.ai/role": "decode"]])
        let h = StreamHarness(try makeScheduler(ds, config: PickerConfigTests.pdConfig))
        h.feed(reqHeaders("/v1/models", eos: true))
        #expect(h.take()[0].destination == "192.168.1.2:8000")   // decode filter applies
    }

    @Test func badRequestErrorsPerKind() throws {
        let h = StreamHarness(try makeScheduler(goldenDatastore(1)))
        let out = run(h, path: "/v1/chat/completions", body: "{\"model\":\"m\",\"messages\":[]}")
        #expect(out[0].immediate?.body == "inference error: BadRequest - chat-completions request must have at least one message")
        let h2 = StreamHarness(try makeScheduler(goldenDatastore(1)))
        let out2 = run(h2, path: "/v1/completions?x=1", body: "{\"model\":\"m\"}")
        #expect(out2[0].immediate?.body == "inference error: BadRequest - invalid completions request: must have prompt field")
    }
}
