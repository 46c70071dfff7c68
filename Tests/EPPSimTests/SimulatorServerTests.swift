import AsyncHTTPClient
import Foundation
import Testing

@testable import EPPSim

let modelName = "meta-llama/Llama-3.1-8B-Instruct"

@Suite("Simulated vLLM server")
struct SimulatorServerTests {
    @Test func basicEndpointsAndHeaders() async throws {
        try await withFleet({ $0.count = 2; $0.podNamePrefix = "sim" }) { fleet in
            #expect(fleet.ports.count == 2 && fleet.ports.allSatisfy { $0 > 0 } && fleet.ports[0] != fleet.ports[1])
            for (i, base) in fleet.baseURLs.enumerated() {
                let h = try await get(base + "/health")
                #expect(h.status == 200)
                #expect(h.headers["x-inference-pod"] == "sim-\(i)")
                #expect(h.headers["x-inference-port"] == String(fleet.ports[i]))
                let m = try await get(base + "/v1/models")
                #expect(m.json?.path("data", "0", "id")?.stringValue == modelName)
                #expect(m.json?.path("object")?.stringValue == "list")
            }
            let base = fleet.baseURLs[0]
            let r = try await post(base + "/v1/completions", ["model": .string(modelName), "prompt": "Hello there", "max_tokens": 5])
            #expect(r.status == 200)
            let j = try #require(r.json)
            #expect(j.path("object")?.stringValue == "text_completion")
            #expect(j.path("choices", "0", "finish_reason")?.stringValue == "length")
            #expect(j.path("usage", "completion_tokens")?.intValue == 5)
            #expect(j.path("usage", "prompt_tokens")?.intValue == SimTokenizer().encode("Hello there").count)
            #expect(SimTokenizer().encode(j.path("choices", "0", "text")!.stringValue!).count == 5)
            // Chat, default max tokens 16.
            let c = try await post(base + "/v1/chat/completions", ["messages": [["role": "user", "content": "Hi"]]])
            #expect(c.json?.path("object")?.stringValue == "chat.completion")
            #expect(c.json?.path("choices", "0", "message", "role")?.stringValue == "assistant")
            #expect(c.json?.path("usage", "completion_tokens")?.intValue == 16)
            #expect(c.headers["x-inference-pod"] == "sim-0")
            // Determinism: same prompt, same answer.
            let c2 = try await post(base + "/v1/chat/completions", ["messages": [["role": "user", "content": "Hi"]]])
            #expect(c2.json?.path("choices", "0", "message", "content") == c.json?.path("choices", "0", "message", "content"))
            // Batched prompts: one choice each.
            let b = try await post(base + "/v1/completions", ["prompt": ["a b c", "d e"], "max_tokens": 3])
            #expect(b.json?.path("choices")?.arrayValue?.count == 2)
            #expect(b.json?.path("usage", "completion_tokens")?.intValue == 6)
            #expect(b.headers["x-backend-id"] == "b\(fleet.ports[0])")
            // Fake-backend /stats and /reset, SGLang probes.
            let st = try await get(base + "/stats")
            #expect(st.json?.path("requests")?.intValue == 5)  // a batched prompt counts per prompt, as in vLLM
            let reset = try await post(base + "/reset", [:])
            #expect(reset.status == 200)
            #expect(try await get(base + "/stats").json?.path("requests")?.intValue == 0)
            #expect(try await get(base + "/get_server_info").json?.path("page_size")?.intValue == 16)
            #expect(try await get(base + "/get_model_info").json?.path("model_path")?.stringValue == modelName)
        }
    }

    @Test func vllmErrors() async throws {
        try await withFleet { fleet in
            let base = fleet.baseURLs[0]
            let wrong = try await post(base + "/v1/completions", ["model": "nope", "prompt": "x"])
            #expect(wrong.status == 404)
            #expect(wrong.json?.path("error", "type")?.stringValue == "NotFoundError")
            #expect(wrong.json?.path("error", "code")?.intValue == 404)
            #expect(wrong.json?.path("error", "message")?.stringValue?.contains("nope") == true)
            #expect(wrong.json?.path("error")?.objectValue?.keys.sorted() == ["code", "message", "param", "type"])
            #expect(wrong.headers["x-inference-port"] == String(fleet.ports[0]))
            var req = HTTPClientRequest(url: base + "/v1/completions")
            req.method = .POST
            req.body = .bytes(Array("{not json".utf8))
            let resp = try await testClient.execute(req, timeout: .seconds(5))
            #expect(resp.status.code == 400)
            let empty = try await post(base + "/v1/completions", ["prompt": []])
            #expect(empty.status == 400)
            #expect(empty.json?.path("error", "type")?.stringValue == "BadRequestError")
            let long = try await post(base + "/v1/completions", ["prompt": "x", "max_tokens": 200_000])
            #expect(long.status == 400)
            let nf = try await get(base + "/nope")
            #expect(nf.status == 404)
            #expect(nf.headers["x-inference-pod"] != nil)
        }
        try await withFleet({ $0.failRate = 1 }) { fleet in
            let r = try await post(fleet.baseURLs[0] + "/v1/completions", ["prompt": "x"])
            #expect(r.status == 500)
            #expect(r.json?.path("error", "type")?.stringValue == "InternalServerError")
        }
    }

    @Test func renderAndTokenizeMatchCache() async throws {
        try await withFleet { fleet in
            let base = fleet.baseURLs[0]
            let text = String(repeating: "The picker routes requests, preferring endpoints with cached prefixes. ", count: 8)
            let t = try await post(base + "/tokenize", ["model": .string(modelName), "prompt": .string(text)])
            let tokens = try #require(t.json?.path("tokens")?.arrayValue?.compactMap { $0.intValue })
            #expect(t.json?.path("count")?.intValue == tokens.count)
            #expect(tokens == SimTokenizer().encode(text))
            let rc = try await post(base + "/v1/completions/render", ["model": .string(modelName), "prompt": .string(text)])
            #expect(rc.json?.path("0", "token_ids")?.arrayValue?.compactMap { $0.intValue } == tokens)
            // Prime the cache with token ids, then send the text: cached = full blocks of the same ids.
            let first = try await post(base + "/v1/completions", idsPrompt(tokens))
            #expect(cachedTokens(first) == 0)
            #expect(first.json?.path("usage", "prompt_tokens")?.intValue == tokens.count)
            let second = try await post(base + "/v1/completions", ["prompt": .string(text), "max_tokens": 2])
            #expect(cachedTokens(second) == tokens.count / 16 * 16)
            #expect(second.headers["x-sim-cached-tokens"] == String(tokens.count / 16 * 16))

            // Chat: render == tokenize(messages) == prompt_tokens of the chat request.
            let msgs: JSON = [["role": "system", "content": .string(text)], ["role": "user", "content": "What is cached?"]]
            let cr = try await post(base + "/v1/chat/completions/render", ["model": .string(modelName), "messages": msgs])
            let chatIDs = try #require(cr.json?.path("token_ids")?.arrayValue?.compactMap { $0.intValue })
            let tm = try await post(base + "/tokenize", ["messages": msgs])
            #expect(tm.json?.path("tokens")?.arrayValue?.compactMap { $0.intValue } == chatIDs)
            let expected = SimTokenizer().encode(ChatTemplate.render([
                ChatMessage(role: "system", content: text), ChatMessage(role: "user", content: "What is cached?"),
            ]))
            #expect(chatIDs == expected)
            let c1 = try await post(base + "/v1/chat/completions", ["messages": msgs, "max_tokens": 1])
            #expect(c1.json?.path("usage", "prompt_tokens")?.intValue == chatIDs.count)
            let c2 = try await post(base + "/v1/chat/completions", ["messages": msgs, "max_tokens": 1])
            #expect(cachedTokens(c2) == chatIDs.count / 16 * 16)
        }
    }

    @Test func prefixHitOnRepeatedPrefix() async throws {
        try await withFleet { fleet in
            let base = fleet.baseURLs[0]
            let a = Array(1000..<1100)  // 6 full blocks + 4
            let r1 = try await post(base + "/v1/completions", idsPrompt(a))
            #expect(cachedTokens(r1) == 0)
            let r2 = try await post(base + "/v1/completions", idsPrompt(a))
            #expect(cachedTokens(r2) == 96)
            // Shares the first 90 tokens: 5 full blocks match.
            let b = Array(1000..<1090) + Array(5000..<5030)
            let r3 = try await post(base + "/v1/completions", idsPrompt(b))
            #expect(cachedTokens(r3) == 80)
            // Different first token: nothing matches (chained hashes).
            let c = [7] + Array(1001..<1100)
            let r4 = try await post(base + "/v1/completions", idsPrompt(c))
            #expect(cachedTokens(r4) == 0)
            // Less than a block: never cached.
            _ = try await post(base + "/v1/completions", idsPrompt(Array(1..<10)))
            let r5 = try await post(base + "/v1/completions", idsPrompt(Array(1..<10)))
            #expect(cachedTokens(r5) == 0)
        }
    }

    @Test func lruEvictionAtCapacity() async throws {
        try await withFleet({ $0.kvBlocks = 8 }) { fleet in
            let base = fleet.baseURLs[0]
            let x = Array(0..<64), y = Array(1000..<1064), z = Array(2000..<2064)  // 4 blocks each
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(x))) == 0)
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(y))) == 0)
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(x))) == 64)  // x most recent
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(z))) == 0)  // evicts y
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(x))) == 64)
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(y))) == 0)
            // A prompt larger than the whole cache can never run.
            let huge = try await post(base + "/v1/completions", idsPrompt(Array(0..<(16 * 9))))
            #expect(huge.status == 400)
            #expect(huge.json?.path("error", "message")?.stringValue?.contains("kv cache") == true)
        }
    }

    @Test func pinnedBlocksSurviveWhileRunning() async throws {
        try await withFleet({ $0.kvBlocks = 8; $0.timeScale = 1 }) { fleet in
            let base = fleet.baseURLs[0]
            let state = fleet.servers[0]
            let a = Array(0..<64), b = Array(1000..<1064), c = Array(2000..<2064)
            // A runs for ~6 s (400 tokens × 15 ms) and pins its 4 blocks; it is cancelled at the end.
            let long = Task { try await post(base + "/v1/completions", idsPrompt(a, maxTokens: 400)) }
            #expect(try await eventually { state.snapshot().running == 1 })
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(b))) == 0)
            // C needs 4 blocks: the only evictable ones are B's.
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(c))) == 0)
            #expect(state.snapshot().running == 1)  // A still running
            #expect(state.cachedPrefixBlocks(KVCache.blockHashes(tokens: a, blockSize: 16)) == 4)
            #expect(state.cachedPrefixBlocks(KVCache.blockHashes(tokens: b, blockSize: 16)) == 0)
            let m = try await metrics(base)
            #expect(m["vllm:kv_cache_usage_perc"] == 0.5)  // A's 4 of 8 blocks pinned
            // The same prompt as A hits A's blocks.
            #expect(cachedTokens(try await post(base + "/v1/completions", idsPrompt(a))) == 64)
            #expect(state.snapshot().running == 1)
            long.cancel()
            _ = try? await long.value
        }
    }

    @Test func queueingAndQueueFull() async throws {
        try await withFleet({ $0.maxNumSeqs = 2; $0.maxWaiting = 2; $0.timeScale = 0.5 }) { fleet in
            let base = fleet.baseURLs[0]
            let state = fleet.servers[0]
            // 4 long requests (≈750 ms each): 2 run, 2 wait.
            let tasks = (0..<4).map { i in
                Task { try await post(base + "/v1/completions", idsPrompt(Array((i * 1000)..<(i * 1000 + 40)), maxTokens: 100)) }
            }
            #expect(try await eventually { let s = state.snapshot(); return s.running == 2 && s.waiting == 2 })
            let m = try await metrics(base)
            #expect(m["vllm:num_requests_running"] == 2)
            #expect(m["vllm:num_requests_waiting"] == 2)
            #expect((m["vllm:kv_cache_usage_perc"] ?? 0) > 0)
            #expect(m["vllm:gpu_cache_usage_perc"] == m["vllm:kv_cache_usage_perc"])
            // Queue full ⇒ 429.
            let rejected = try await post(base + "/v1/completions", idsPrompt([1, 2, 3]))
            #expect(rejected.status == 429)
            #expect(rejected.json?.path("error", "message")?.stringValue == "waiting requests queue is full")
            #expect(rejected.json?.path("error", "type")?.stringValue == "RateLimitError")
            for t in tasks {
                let r = try await t.value
                #expect(r.status == 200)
            }
            // The waiting ones report their queue time.
            let after = try await metrics(base)
            #expect(after["vllm:num_requests_running"] == 0)
            #expect(after["vllm:num_requests_waiting"] == 0)
            #expect(after["vllm:request_success_total"] == 4)
        }
    }

    @Test func metricsReflectCounters() async throws {
        try await withFleet({ $0.kvBlocks = 100; $0.blockSize = 16 }) { fleet in
            let base = fleet.baseURLs[0]
            let page = try await get(base + "/metrics")
            #expect(page.status == 200)
            #expect(page.headers["content-type"]?.hasPrefix("text/plain") == true)
            for name in ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                         "vllm:cache_config_info", "vllm:lora_requests_info", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total",
                         "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total"] {
                #expect(page.body.contains("# HELP \(name) "), "missing HELP for \(name)")
                #expect(page.body.contains("# TYPE \(name) "), "missing TYPE for \(name)")
            }
            #expect(page.body.contains(#"vllm:cache_config_info{block_size="16""#))
            #expect(page.body.contains(#"num_gpu_blocks="100"} 1"#))
            #expect(page.body.contains(#"running_lora_adapters="",waiting_lora_adapters=""}"#))
            #expect(page.body.contains(#"vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0"#))
            let lora = parseMetrics(page.body)["vllm:lora_requests_info"] ?? 0
            #expect(abs(lora - Date().timeIntervalSince1970) < 60)

            let p = Array(0..<64)
            _ = try await post(base + "/v1/completions", idsPrompt(p, maxTokens: 3))
            _ = try await post(base + "/v1/completions", idsPrompt(p, maxTokens: 3))
            _ = try await post(base + "/v1/completions", idsPrompt(Array(0..<40), maxTokens: 3))
            let m = try await metrics(base)
            #expect(m["vllm:prefix_cache_queries_total"] == 168)
            #expect(m["vllm:prefix_cache_hits_total"] == 96)
            #expect(m["vllm:prompt_tokens_total"] == 168)
            #expect(m["vllm:generation_tokens_total"] == 9)
            #expect(m["vllm:request_success_total"] == 3)
            #expect(m["vllm:kv_cache_usage_perc"] == 0)
            #expect(m["vllm:time_to_first_token_seconds_count"] == 3)
        }
    }

    @Test func streamingFormat() async throws {
        try await withFleet { fleet in
            let base = fleet.baseURLs[0]
            for api in ["/v1/completions", "/v1/chat/completions"] {
                for includeUsage in [true, false] {
                    var body: [String: JSON] = ["model": .string(modelName), "max_tokens": 5, "stream": true,
                                                "stream_options": ["include_usage": .bool(includeUsage)]]
                    if api == "/v1/completions" { body["prompt"] = "Tell me a story" } else {
                        body["messages"] = [["role": "user", "content": "Tell me a story"]]
                    }
                    let r = try await post(base + api, .object(body))
                    #expect(r.status == 200)
                    #expect(r.headers["content-type"]?.hasPrefix("text/event-stream") == true)
                    #expect(r.headers["x-inference-port"] == String(fleet.ports[0]))
                    #expect(r.body.hasSuffix("data: [DONE]\n\n"))
                    let events = r.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
                    #expect(events.allSatisfy { $0.hasPrefix("data: ") })
                    let payloads = events.map { String($0.dropFirst(6)) }
                    #expect(payloads.last == "[DONE]")
                    let chunks = try payloads.dropLast().map { try JSON.parse($0) }
                    let content = chunks.filter { !($0.path("choices")?.arrayValue?.isEmpty ?? true) }
                    #expect(content.count == 5)
                    #expect(content.last?.path("choices", "0", "finish_reason")?.stringValue == "length")
                    #expect(content.dropLast().allSatisfy { $0.path("choices", "0", "finish_reason")?.isNull == true })
                    if api == "/v1/chat/completions" {
                        #expect(content.first?.path("choices", "0", "delta", "role")?.stringValue == "assistant")
                        #expect(content.allSatisfy { $0.path("object")?.stringValue == "chat.completion.chunk" })
                    } else {
                        #expect(content.allSatisfy { $0.path("choices", "0", "text")?.stringValue != nil })
                    }
                    if includeUsage {
                        #expect(chunks.count == 6)
                        let u = try #require(chunks.last)
                        #expect(u.path("choices")?.arrayValue?.isEmpty == true)
                        #expect(u.path("usage", "completion_tokens")?.intValue == 5)
                        #expect(u.path("usage", "prompt_tokens_details", "cached_tokens")?.intValue != nil)
                    } else {
                        #expect(chunks.count == 5)
                        #expect(chunks.allSatisfy { $0["usage"] == nil })
                    }
                }
            }
        }
    }

    @Test func prefillDecodeFlow() async throws {
        let prompt = Array(10_000..<12_000)  // 2000 tokens
        try await withFleet({ $0.role = .prefill; $0.timeScale = 0.2 }) { pFleet in
            try await withFleet({ $0.role = .decode; $0.timeScale = 0.2 }) { dFleet in
                let p = pFleet.baseURLs[0], d = dFleet.baseURLs[0]
                // Sidecar-style prefill request.
                let pre = try await post(p + "/v1/completions", idsPrompt(prompt, maxTokens: 1, extra: [
                    "kv_transfer_params": ["do_remote_decode": true, "do_remote_prefill": false, "remote_engine_id": nil,
                                           "remote_block_ids": nil, "remote_host": nil, "remote_port": nil],
                ]))
                #expect(pre.status == 200)
                let kv = try #require(pre.json?.path("kv_transfer_params"))
                #expect(kv["do_remote_prefill"]?.boolValue == true)
                #expect(kv["do_remote_decode"]?.boolValue == false)
                #expect(kv["remote_port"]?.intValue == pFleet.ports[0])
                #expect(kv["remote_block_ids"]?.arrayValue?.count == 2000 / 16)
                #expect(pre.json?.path("usage", "completion_tokens")?.intValue == 1)
                let prefillTTFT = try #require(Double(pre.headers["x-sim-ttft-ms"] ?? ""))
                // A prefill server answers after one token even when asked for more.
                let pre2 = try await post(p + "/v1/completions", idsPrompt(Array(0..<20), maxTokens: 30))
                #expect(pre2.json?.path("usage", "completion_tokens")?.intValue == 1)
                #expect(pre2.json?.path("kv_transfer_params", "do_remote_prefill")?.boolValue == true)

                // Decode with the params: prompt treated as cached, TTFT = KV transfer time.
                let dec = try await post(d + "/v1/completions", idsPrompt(prompt, maxTokens: 4, extra: ["kv_transfer_params": kv]))
                #expect(dec.status == 200)
                #expect(cachedTokens(dec) == 2000)
                #expect(dec.json?.path("usage", "completion_tokens")?.intValue == 4)
                #expect(dec.json?.path("kv_transfer_params")?.isNull == true)
                let decodeTTFT = try #require(Double(dec.headers["x-sim-ttft-ms"] ?? ""))
                let l = dFleet.servers[0].latency
                #expect(abs(decodeTTFT - l.kvTransferTime(promptTokens: 2000) * 1000) < 0.01)  // 13 ms × 0.2
                #expect(abs(prefillTTFT - l.timeToFirstToken(promptTokens: 2000, cachedTokens: 0, running: 1) * 1000) < 0.01)  // 370 ms × 0.2
                #expect(decodeTTFT * 10 < prefillTTFT)
                // Without params the decode server prefills locally (fallback).
                let local = try await post(d + "/v1/completions", idsPrompt(Array(50_000..<50_100), maxTokens: 2))
                #expect(cachedTokens(local) == 0)
            }
        }
        // Role "both" honours do_remote_decode.
        try await withFleet { fleet in
            let r = try await post(fleet.baseURLs[0] + "/v1/chat/completions", [
                "messages": [["role": "user", "content": "hi"]], "max_tokens": 9,
                "kv_transfer_params": ["do_remote_decode": true],
            ])
            #expect(r.json?.path("usage", "completion_tokens")?.intValue == 1)
            #expect(r.json?.path("kv_transfer_params", "do_remote_prefill")?.boolValue == true)
        }
    }

    @Test func loadFactorSlowsUnderLoad() async throws {
        // TTFT grows with the number of running requests: f(R) up to 2× at max-num-seqs.
        var l = LatencyModel()
        l.maxNumSeqs = 5
        l.loadFactor = 3
        #expect(l.factor(running: 3) == 2)
        #expect(l.factor(running: 99) == 3)
        try await withFleet({ $0.slowRate = 1; $0.slowFactor = 4 }) { fleet in
            let r = try await post(fleet.baseURLs[0] + "/v1/completions", idsPrompt(Array(0..<256), maxTokens: 1))
            let ttft = try #require(Double(r.headers["x-sim-ttft-ms"] ?? ""))
            #expect(abs(ttft - 4 * 73.5 * 0.01) < 0.01)
        }
    }

    @Test func configValidation() {
        var c = SimulatorConfig()
        #expect(throws: Never.self) { try c.validate() }
        c.timeScale = 0
        #expect(throws: SimulatorConfig.Invalid.self) { try c.validate() }
        c = SimulatorConfig()
        c.failRate = 1.5
        #expect(throws: SimulatorConfig.Invalid.self) { try c.validate() }
        c = SimulatorConfig()
        c.port = 65535
        c.count = 2
        #expect(throws: SimulatorConfig.Invalid.self) { try c.validate() }
        #expect(SimulatorConfig().podName(index: 3) == "meta-llama-llama-3-1-8b-instruct-3")
    }
}
