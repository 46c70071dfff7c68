import EPPPicker
import EPPProtobuf
import Testing

/// The 16 golden behaviours of epp-protocol.md §12 over real ext_proc message sequences, with the
/// reference bugs of §13 fixed.
let goldenConfig = """
    apiVersion: inference.networking.x-k8s.io/v1alpha1
    kind: EndpointPickerConfig
    plugins:
    - type: queue-scorer
    - type: kv-cache-utilization-scorer
    - type: prefix-cache-scorer
    - type: lora-affinity-scorer
    schedulingProfiles:
    - name: default
      plugins:
      - pluginRef: queue-scorer
      - pluginRef: kv-cache-utilization-scorer
      - pluginRef: prefix-cache-scorer
      - pluginRef: lora-affinity-scorer
    objectives:
    - {name: my-model, priority: 2}
    - {name: sql-lora-sheddable, priority: -1}
    modelRewrites:
    - {model: model-to-be-rewritten, targets: [{model: rewritten-model, weight: 1}]}
    - {model: sql-lora-sheddable, targets: [{model: sql-lora-1fdg3}]}
    - {model: sql-lora, targets: [{model: sql-lora-1fdg2}]}

    """

let requestIDHeaders: [(String, String)] = [("hi", "mom"), ("x-request-id", "test-request-id")]

func B(_ prompt: String, _ model: String) -> String {
    "{\"prompt\":\"\(prompt)\",\"max_tokens\":100,\"temperature\":0,\"model\":\"\(model)\"}"
}

@Suite struct GoldenBehaviourTests {
    func harness(_ ds: Datastore, _ config: String = goldenConfig) throws -> StreamHarness {
        StreamHarness(try makeScheduler(ds, config: config))
    }

    @Test func g01_basicPick() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 3, kv: 0.2); setMetrics(ds, 1, queue: 0, kv: 0.1); setMetrics(ds, 2, queue: 10, kv: 0.2)
        let h = try harness(ds)
        let out = run(h, headers: requestIDHeaders + [("x-gateway-inference-objective", "my-model"),
                                                      ("x-gateway-model-name-rewrite", "my-model-12345")],
                      body: B("test1", "my-model"))
        #expect(out.count == 2)
        #expect(out[0].destination == "192.168.1.2:8000")
        guard case .requestHeaders(let c)? = out[0].kind else { Issue.record("no headers response"); return }
        #expect(c?.clearRouteCache == true)
        #expect(out[0].dynamicMetadata?["envoy.lb"] == .structValue(ProtoStruct([("x-gateway-destination-endpoint", .string("192.168.1.2:8000"))])))
        // only what we change: no echoed `hi`, no x-request-id (client sent one), control headers removed (§13.1, §13.2)
        let sets = out[0].requestHeadersMutation?.setHeaders.map(\.key) ?? []
        #expect(sets == ["x-gateway-destination-endpoint"])
        #expect(Set(out[0].requestHeadersMutation?.removeHeaders ?? []) == ["x-gateway-inference-objective", "x-gateway-model-name-rewrite"])
        // body byte-identical apart from the model value (§13.10)
        #expect(out[1].streamedBody == StreamedBodyResponse(body: Array(B("test1", "my-model-12345").utf8), endOfStream: true))
    }

    @Test func g02_loraAffinityBeatsKV() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 10, kv: 0.2, active: ["foo", "bar"])
        setMetrics(ds, 1, queue: 10, kv: 0.4, active: ["foo", "sql-lora-1fdg2"])
        setMetrics(ds, 2, queue: 10, kv: 0.3, active: ["foo"])
        let h = try harness(ds)
        let out = run(h, headers: requestIDHeaders, body: B("test2", "sql-lora"))
        #expect(out[0].destination == "192.168.1.2:8000")
        #expect(out[1].streamedBody?.body == Array(B("test2", "sql-lora-1fdg2").utf8))
    }

    @Test func g03_activeLoRAWithLowQueue() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 0, kv: 0.2, active: ["foo", "bar"])
        setMetrics(ds, 1, queue: 0, kv: 0.1, active: ["foo", "sql-lora-1fdg2"])
        setMetrics(ds, 2, queue: 10, kv: 0.2, active: ["foo", "bar"])
        let h = try harness(ds)
        let out = run(h, headers: requestIDHeaders, body: B("test3", "sql-lora"))
        #expect(out[0].destination == "192.168.1.2:8000")
    }

    @Test func g04_bodySplitAcrossChunks() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 0, kv: 0.1); setMetrics(ds, 1, queue: 2, kv: 0.3); setMetrics(ds, 2, queue: 3, kv: 0.3)
        let h = try harness(ds)
        h.feed(reqHeaders("/v1/completions", requestIDHeaders + [("x-gateway-inference-objective", "sql-lora-sheddable")]))
        h.feed(reqBody("{\"max_tokens\":100,\"model\":\"sql-lo", eos: false))
        #expect(h.take().isEmpty)
        h.feed(reqBody("ra-sheddable\",\"prompt\":\"test6\",\"temperature\":0}", eos: true))
        let out = h.take()
        #expect(out.count == 2)
        #expect(out[0].destination == "192.168.1.1:8000")
        #expect(out[1].streamedBody?.body == Array("{\"max_tokens\":100,\"model\":\"sql-lora-1fdg3\",\"prompt\":\"test6\",\"temperature\":0}".utf8))
        #expect(out[0].requestHeadersMutation?.setHeaders.map(\.key) == ["x-gateway-destination-endpoint"])
        #expect(out[0].requestHeadersMutation?.removeHeaders == ["x-gateway-inference-objective"])
    }

    @Test func g05_invalidJSON() throws {
        let ds = goldenDatastore(3)
        let out = run(try harness(ds), body: "no healthy upstream")
        #expect(out.count == 1)
        #expect(out[0].immediate?.status == 400)
        #expect(out[0].immediate?.body.hasPrefix("inference error: BadRequest - error unmarshaling request bodyMap: ") == true)
    }

    @Test func g06_missingModel() throws {
        let out = run(try harness(goldenDatastore(3)), body: "{\"prompt\":\"hello world\"}")
        #expect(out.count == 1)
        #expect(out[0].immediate?.status == 400)
        #expect(out[0].immediate?.body == "inference error: BadRequest - model not found in request body")
    }

    @Test func g07_headerOnly() throws {
        let empty = try harness(Datastore())
        empty.feed(reqHeaders("/v1/models", eos: true))
        let out = empty.take()
        #expect(out.count == 1)
        #expect(out[0].immediate?.status == 500)
        #expect(out[0].immediate?.body == "inference error: Internal - no pods available in datastore")

        // with endpoints: decided at once, through candidates and scoring (not random: §13.8)
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 5, kv: 0.5); setMetrics(ds, 1, queue: 5, kv: 0.5); setMetrics(ds, 2, queue: 0, kv: 0.0)
        for _ in 0..<10 {
            let h = try harness(ds)
            h.feed(reqHeaders("/v1/models", eos: true))
            let o = h.take()
            #expect(o.count == 1)
            #expect(o[0].destination == "192.168.1.3:8000")
        }
        // …and honours the subset hint
        let h = try harness(ds)
        h.feed(reqHeaders("/v1/models", eos: true, subset: .list([.string("192.168.1.1:8000")])))
        #expect(h.take()[0].destination == "192.168.1.1:8000")
    }

    @Test func g08_subsetHint() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 3, kv: 0.2); setMetrics(ds, 1, queue: 0, kv: 0.1); setMetrics(ds, 2, queue: 10, kv: 0.2)
        let all: ProtoValue = .list(["192.168.1.1:8000", "192.168.1.2:8000", "192.168.1.3:8000"].map { .string($0) })
        #expect(run(try harness(ds), body: B("test", "m"), subset: all)[0].destination == "192.168.1.2:8000")
        #expect(run(try harness(ds), body: B("test", "m"), subset: .list([.string("192.168.1.3:8000")]))[0].destination == "192.168.1.3:8000")
        // comma string form (ignored by the reference: §13.4)
        #expect(run(try harness(ds), body: B("test", "m"), subset: .string("192.168.1.3:8000, 192.168.1.1:8000"))[0].destination == "192.168.1.1:8000")
        // port matters (§13.4)
        let none = run(try harness(ds), body: B("test", "m"), subset: .list([.string("192.168.1.2:9999")]))
        #expect(none[0].immediate?.status == 503)
        let out = run(try harness(ds), body: B("test", "m"), subset: .list([.string("192.168.1.99:8000")]))
        #expect(out.count == 1)
        #expect(out[0].immediate?.status == 503)
        #expect(out[0].immediate?.body == "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request")
        #expect(run(try harness(ds), body: B("test", "m"), subset: .list([]))[0].immediate?.status == 503)
    }

    @Test func g09_inferenceModelRewrite() throws {
        let ds = goldenDatastore(3)
        let out = run(try harness(ds), body: B("test", "model-to-be-rewritten"))
        #expect(out[1].streamedBody?.body == Array(B("test", "rewritten-model").utf8))
    }

    @Test func g10_passthroughParser() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 3, kv: 0.2); setMetrics(ds, 1, queue: 0, kv: 0.2); setMetrics(ds, 2, queue: 10, kv: 0.2)
        let cfg = """
            apiVersion: llm-d.ai/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: queue-scorer
            - type: passthrough-parser
            parser: {pluginRef: passthrough-parser}
            objectives: [{name: my-model, priority: 2}]
            """
        let out = run(try harness(ds, cfg), headers: [("x-gateway-inference-objective", "my-model")], body: "passthrough-parser")
        #expect(out.count == 2)
        #expect(out[0].destination == "192.168.1.2:8000")
        #expect(out[1].streamedBody?.body == Array("passthrough-parser".utf8))
    }

    @Test func g11_responseNonSSE() throws {
        let ds = goldenDatastore(3)
        // no model rewrite: streamed through chunk by chunk (byte-identical concatenation)
        var h = try harness(ds)
        _ = run(h, body: B("test", "m"))
        h.feed(respHeaders())
        h.feed(respBody("{\"model\":\"m\",\"usage\":", eos: false))
        h.feed(respBody("{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}", eos: true))
        var out = h.take()
        #expect(out.count == 3)
        #expect(out[0].kind == .responseHeaders(nil))   // no debug marker (§13.12), nothing echoed
        #expect((out[1].streamedBody!.body + out[2].streamedBody!.body) == Array("{\"model\":\"m\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}".utf8))
        #expect(out[2].streamedBody?.endOfStream == true)
        #expect(h.stream.usage == Usage(promptTokens: 3, completionTokens: 4, totalTokens: 7))

        // with a model rewrite: buffered, model rewritten back, one response_body with eos
        h = try harness(ds)
        _ = run(h, headers: [("x-gateway-model-name-rewrite", "target")], body: B("test", "m"))
        h.feed(respHeaders())
        h.feed(respBody("{\"model\":\"tar", eos: false))
        h.feed(respBody("get\",\"x\":1}", eos: false))
        h.feed(respBody("", eos: true))
        out = h.take()
        #expect(out.count == 2)
        #expect(out[1].streamedBody == StreamedBodyResponse(body: Array("{\"model\":\"m\",\"x\":1}".utf8), endOfStream: true))

        // invalid JSON passes unchanged
        h = try harness(ds)
        _ = run(h, body: B("test", "m"))
        h.feed(respHeaders())
        h.feed(respBody("not json", eos: true))
        out = h.take()
        #expect(out[1].streamedBody == StreamedBodyResponse(body: Array("not json".utf8), endOfStream: true))
    }

    @Test func g12_responseSSE() throws {
        let h = try harness(goldenDatastore(3))
        _ = run(h, body: B("test", "m"))
        h.feed(respHeaders(contentType: "text/event-stream"))
        #expect(h.take().count == 1)
        let chunks = ["data: {}\n\n", "data: {\"usage\":{\"prompt_tokens\":7,\"total_tokens\":17,\"completion_tokens\":10}}\ndata: [DONE]", ""]
        for (i, c) in chunks.enumerated() {
            h.feed(respBody(c, eos: i == 2))
            let out = h.take()
            #expect(out.count == 1)   // each chunk echoed at once
            #expect(out[0].streamedBody == StreamedBodyResponse(body: Array(c.utf8), endOfStream: i == 2))
        }
        #expect(h.stream.usage?.promptTokens == 7)
        #expect(h.stream.usage?.completionTokens == 10)
    }

    /// request-attribute-reporter: the usage's CEL result rides on the last response_body message as
    /// `dynamic_metadata["envoy.lb"]["x-gateway-inference-request-cost"]` (a number).
    @Test func g13_requestAttributeReporter() throws {
        let config = goldenConfig.replacingOccurrences(of: "schedulingProfiles:", with: """
            - type: request-attribute-reporter
              name: cost
              parameters:
                attributes:
                - key: {name: x-gateway-inference-request-cost}
                  expression: "usage.completion_tokens"
                  condition: "has(usage.completion_tokens)"
                - key: {namespace: billing, name: total}
                  expression: "(has(usage.prompt_tokens) ? usage.prompt_tokens : 0) + usage.completion_tokens * 2"
            schedulingProfiles:
            """)
        let h = try harness(goldenDatastore(3), config)
        let first = run(h, body: B("test", "m"))
        #expect(first.count == 2)
        h.feed(respHeaders())
        h.feed(respBody("{\"usage\":{\"completion_tokens\":10}}", eos: true))
        let out = h.take()
        #expect(out.count == 2)   // 4 responses in all
        #expect(out[1].streamedBody?.endOfStream == true)
        #expect(out[1].dynamicMetadata?["envoy.lb"] == .structValue(ProtoStruct([("x-gateway-inference-request-cost", .number(10))])))
        #expect(out[1].dynamicMetadata?["billing"] == .structValue(ProtoStruct([("total", .number(20))])))

        // SSE, usage split across chunks: only the last (eos) message carries the metadata
        let s = try harness(goldenDatastore(3), config)
        _ = run(s, body: B("test", "m"))
        s.feed(respHeaders(contentType: "text/event-stream"))
        _ = s.take()
        s.feed(respBody("data: {\"usage\":{\"prompt_tokens\":7,\"compl", eos: false))
        #expect(s.take()[0].dynamicMetadata == nil)
        s.feed(respBody("etion_tokens\":3}}\n\ndata: [DONE]\n\n", eos: false))
        #expect(s.take()[0].dynamicMetadata == nil)
        s.feed(respBody("", eos: true))
        let last = s.take()
        #expect(last[0].dynamicMetadata?["envoy.lb"] == .structValue(ProtoStruct([("x-gateway-inference-request-cost", .number(3))])))
        #expect(last[0].dynamicMetadata?["billing"] == .structValue(ProtoStruct([("total", .number(13))])))

        // no usage ⇒ no metadata; a failing expression is skipped, never fails the stream
        let n = try harness(goldenDatastore(3), config)
        _ = run(n, body: B("test", "m"))
        n.feed(respHeaders())
        n.feed(respBody("{\"usage\":{\"prompt_tokens\":1}}", eos: true))
        let noCompletion = n.take()
        #expect(noCompletion.count == 2)
        #expect(noCompletion[1].dynamicMetadata == nil)   // condition false; `total` fails (no completion_tokens)
    }

    @Test func g14_vllmGRPC() throws {
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 3, kv: 0.2); setMetrics(ds, 1, queue: 0, kv: 0.1); setMetrics(ds, 2, queue: 10, kv: 0.2)
        let cfg = """
            apiVersion: llm-d.ai/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: queue-scorer
            - type: vllmgrpc-parser
            parser: {pluginRef: vllmgrpc-parser}
            """
        let message: [UInt8] = [0x0A, 0x03, 0x61, 0x62, 0x63]   // any protobuf payload
        let frame: [UInt8] = [0, 0, 0, 0, UInt8(message.count)] + message
        var h = try harness(ds, cfg)
        h.feed(reqHeaders("/vllm.grpc.engine.VllmEngine/Generate", [("content-type", "application/grpc")]))
        h.feed(reqBody(bytes: frame))
        var out = h.take()
        #expect(out.count == 2)
        #expect(out[0].destination == "192.168.1.2:8000")
        #expect(out[1].streamedBody?.body == frame)
        // response: gRPC body then trailers (no eos on the body)
        h.feed(respHeaders(contentType: "application/grpc"))
        h.feed(respBody("\u{0}\u{0}\u{0}\u{0}\u{1}x", eos: false))
        h.feed(respTrailers())
        out = h.take()
        #expect(out.count == 3)
        #expect(out[1].streamedBody?.endOfStream == false)
        #expect(out[2].kind == .responseTrailers(nil))

        h = try harness(ds, cfg)
        h.feed(reqHeaders("/vllm.grpc.engine.VllmEngine/Generate"))
        h.feed(reqBody(bytes: [0, 0, 0, 9, 1, 2]))
        out = h.take()
        #expect(out[0].immediate?.body == "inference error: BadRequest - parsing gRPC payload for Generate: not able to parse payload")

        h = try harness(ds, cfg)
        h.feed(reqHeaders("/vllm.grpc.engine.VllmEngine/unsupportedMethod"))
        h.feed(reqBody(bytes: frame))
        out = h.take()
        #expect(out[0].immediate?.body == "inference error: BadRequest - unsupported gRPC path: unsupportedMethod")
    }

    @Test func g15_defaultPriorityNeverShed() throws {
        let ds = goldenDatastore(3)
        for i in 0..<3 { setMetrics(ds, i, queue: 50, kv: 0.99) }   // saturated
        let ok = run(try harness(ds), body: B("test", "m"))
        #expect(ok[0].destination != nil)
        let unknown = run(try harness(ds), headers: [("x-gateway-inference-objective", "nope")], body: B("test", "m"))
        #expect(unknown[0].destination != nil)
        let shed = run(try harness(ds), headers: [("x-gateway-inference-objective", "sql-lora-sheddable")], body: B("test", "m"))
        #expect(shed[0].immediate?.status == 429)
        #expect(shed[0].immediate?.body == "inference error: ResourceExhausted - system saturated, sheddable request dropped")
        // not saturated: sheddable passes
        for i in 0..<3 { setMetrics(ds, i, queue: 0, kv: 0.1) }
        let pass = run(try harness(ds), headers: [("x-gateway-inference-objective", "sql-lora-sheddable")], body: B("test", "m"))
        #expect(pass[0].destination != nil)
    }

    @Test func g16_conformance() throws {
        let ds = Datastore()
        ds.replace(with: [
            EndpointSpec(name: "a", address: "10.0.0.7", port: 3000), EndpointSpec(name: "b", address: "10.0.0.8", port: 3002),
            EndpointSpec(name: "c", address: "10.0.0.8", port: 3000), EndpointSpec(name: "d", address: "10.0.0.9", port: 3000),
        ])
        var seen: Set<String> = []
        for _ in 0..<40 {
            let h = try harness(ds, PickerConfig.defaultConfigText)
            let out = run(h, headers: [("test-epp-endpoint-selection", "10.0.0.7,10.0.0.8:3002")], body: B("x", "m"))
            let dest = out[0].destination ?? ""
            seen.insert(dest)
            h.feed(respHeaders(served: dest))
            let r = h.take()
            #expect(r[0].responseHeaderSets.first { $0.key == "x-conformance-test-served-endpoint" }?.rawValue == dest)
        }
        #expect(seen == ["10.0.0.7:3000", "10.0.0.8:3002"])
        // nothing listed matches ⇒ 503
        let h = try harness(ds, PickerConfig.defaultConfigText)
        let out = run(h, headers: [("test-epp-endpoint-selection", "10.9.9.9")], body: B("x", "m"))
        #expect(out[0].immediate?.status == 503)
    }
}
