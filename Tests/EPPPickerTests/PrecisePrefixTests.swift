@testable import EPPPicker
import Testing

/// Precise prefix mode without I/O: the llm-d request-key chain against every vector of kv-index.md §2.2,
/// LongestPrefix scoring with tiers (§2.3), render bodies and responses (§6), the token cache, config loading.
@Suite struct PrecisePrefixKeyTests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }

    func cborHex(_ parent: UInt64, _ tokens: [UInt32]?, _ extra: KVBlockKeys.Extra) -> String {
        var out: [UInt8] = []
        KVBlockKeys.cbor(parent: parent, tokens: tokens, extra: extra, into: &out)
        return Self.hex(out)
    }

    func hash(_ parent: UInt64, _ tokens: [UInt32]?, _ extra: KVBlockKeys.Extra) -> UInt64 {
        var scratch: [UInt8] = []
        return KVBlockKeys.hash(parent: parent, tokens: tokens, extra: extra, scratch: &scratch)
    }

    @Test func initHashes() {
        #expect(KVBlockKeys.initHash(seed: "") == 0xcbf2_9ce4_8422_2325)
        #expect(KVBlockKeys.initHash(seed: "") == 14_695_981_039_346_656_037)
        #expect(KVBlockKeys.initHash(seed: "42") == 0x07ee_7e07_b4b1_9223)
    }

    @Test func seedlessChain() {
        #expect(cborHex(0xcbf2_9ce4_8422_2325, nil, .model("m")) == "831bcbf29ce484222325f6616d")
        let root = KVBlockKeys.root(seed: "", model: "m")
        #expect(root == 0x9ddb_2db6_9f3f_452c)
        #expect(cborHex(root, Array(0..<16), .none) == "831b9ddb2db69f3f452c90000102030405060708090a0b0c0d0e0ff6")
        #expect(hash(root, Array(0..<16), .none) == 7_711_063_176_051_622_293)
        let k1: UInt64 = 0x6b03_331a_8927_0195
        #expect(cborHex(k1, Array(16..<32), .none) == "831b6b03331a8927019590101112131415161718181819181a181b181c181d181e181ff6")
        #expect(hash(k1, Array(16..<32), .none) == 3_714_816_549_193_055_456)
        // 40 tokens ⇒ 2 keys: 32..39 are a partial block and dropped.
        #expect(KVBlockKeys.keys(tokens: Array(0..<40), blockSize: 16, root: root) == [7_711_063_176_051_622_293, 3_714_816_549_193_055_456])
        #expect(KVBlockKeys.keys(tokens: Array(0..<15), blockSize: 16, root: root).isEmpty)
        #expect(KVBlockKeys.keys(tokens: Array(0..<40), blockSize: 16, root: root, maxBlocks: 1) == [7_711_063_176_051_622_293])
    }

    @Test func seededChain() {
        #expect(cborHex(0x07ee_7e07_b4b1_9223, nil, .model("m")) == "831b07ee7e07b4b19223f6616d")
        let root = KVBlockKeys.root(seed: "42", model: "m")
        #expect(root == 0xbdc1_bd2f_f312_d827)
        #expect(cborHex(root, Array(0..<16), .none) == "831bbdc1bd2ff312d82790000102030405060708090a0b0c0d0e0ff6")
        let keys = KVBlockKeys.keys(tokens: Array(0..<32), blockSize: 16, root: root)
        #expect(keys == [12_512_726_660_350_923_543, 17_905_512_622_017_703_015])
        #expect(keys == [0xada6_229a_31c6_d317, 0xf87d_28dc_bca3_6c67])
        #expect(cborHex(keys[0], Array(16..<32), .none) == "831bada6229a31c6d31790101112131415161718181819181a181b181c181d181e181ff6")
    }

    @Test func integerWidths() {
        let root = KVBlockKeys.root(seed: "", model: "m")
        let tokens: [UInt32] = [1, 23, 24, 255, 256, 65535, 65536, 128_000] + Array(repeating: 0, count: 8)
        #expect(cborHex(root, tokens, .none) == "831b9ddb2db69f3f452c900117181818ff19010019ffff1a000100001a0001f4000000000000000000f6")
        #expect(hash(root, tokens, .none) == 8_587_796_660_859_828_429)
    }

    @Test func multimodal() {
        #expect(cborHex(0xcbf2_9ce4_8422_2325, nil, .model("Qwen/Qwen2-VL-2B-Instruct"))
                == "831bcbf29ce484222325f678195177656e2f5177656e322d564c2d32422d496e737472756374")
        #expect(KVBlockKeys.root(seed: "", model: "Qwen/Qwen2-VL-2B-Instruct") == 0x7fb3_8d71_b17c_9adb)
        let id = "f9a38a66df90291515d7ea4de3175b262c1da7668ad1cc32e3dbb98be86388ac"
        let idHex = Self.hex(Array(id.utf8))
        #expect(cborHex(0x9955_0d57_7537_f9f3, [872, 198, 151_652, 151_655], .multimodal([id]))
                == "831b99550d577537f9f3" + "8419036818c61a000250641a00025067" + "81a16448617368" + "7840" + idHex)
        #expect(hash(0x9955_0d57_7537_f9f3, [872, 198, 151_652, 151_655], .multimodal([id])) == 11_142_762_016_000_781_066)
    }

    @Test func cborHeadsUseTheShortestForm() {
        var out: [UInt8] = []
        for (v, h) in [(UInt64(23), "17"), (24, "1818"), (255, "18ff"), (256, "190100"), (65_536, "1a00010000"),
                       (0x1_0000_0000, "1b0000000100000000")] {
            out.removeAll()
            KVBlockKeys.appendHead(0, v, to: &out)
            #expect(Self.hex(out) == h)
        }
    }
}

@Suite struct PrecisePrefixScoringTests {
    let w = TierWeights.standard

    @Test func longestConsecutiveRunPerPod() {
        // pod 0 holds keys 0-3, pod 1 holds 0-1 then 3 (the gap ends its run), pod 2 only key 2 (never starts).
        let holders: [[(candidate: Int, tier: String)]] = [
            [(0, "gpu"), (1, "gpu")], [(0, "gpu"), (1, "gpu")], [(0, "gpu"), (2, "gpu")], [(0, "gpu"), (1, "gpu")],
        ]
        let s = LongestPrefixScore.scores(holders: holders, candidates: 4, totalBlocks: 8, weights: w)
        #expect(s == [0.5, 0.25, 0, 0])
    }

    @Test func tiersWeighAndTheBestEntryPerKeyCounts() {
        let holders: [[(candidate: Int, tier: String)]] = [
            [(0, "cpu"), (1, "GPU"), (1, "cpu")], [(0, "cpu"), (1, "cpu")],
        ]
        let s = LongestPrefixScore.scores(holders: holders, candidates: 2, totalBlocks: 2, weights: w)
        #expect(abs(s[0] - 0.8) < 1e-12)          // (0.8 + 0.8) / 2
        #expect(abs(s[1] - 0.9) < 1e-12)          // (1.0 + 0.8) / 2
        // unknown tier weighs 1.0; the score is capped at 1
        let custom = TierWeights(weights: ["gpu": 2.0])
        let c = LongestPrefixScore.scores(holders: [[(0, "gpu"), (1, "nvme")]], candidates: 2, totalBlocks: 1, weights: custom)
        #expect(c == [1, 1])
    }

    @Test func noBlocksOrNoHoldersScoreZero() {
        #expect(LongestPrefixScore.scores(holders: [], candidates: 3, totalBlocks: 4, weights: w) == [0, 0, 0])
        #expect(LongestPrefixScore.scores(holders: [[(0, "gpu")]], candidates: 1, totalBlocks: 0, weights: w) == [0])
        #expect(LongestPrefixScore.scores(holders: [[(7, "gpu")]], candidates: 1, totalBlocks: 1, weights: w) == [0])
    }
}

@Suite struct PrecisePrefixRenderTests {
    func render(_ json: String, _ kind: APIKind, model: String = "m") throws -> (String, String)? {
        let body = Array(json.utf8)
        return try body.withUnsafeBytes { raw in
            let parsed = try ParsedRequest.parse(body: raw, kind: kind).get()
            return RenderRequest.body(parsed: parsed, body: raw, model: model).map { ($0.path, String(decoding: $0.body, as: UTF8.self)) }
        }
    }

    @Test func completionsBodyKeepsThePromptBytes() throws {
        let r = try #require(try render(#"{"model":"a","prompt":"hi \"you\"","max_tokens":3}"#, .completions, model: "t\"m"))
        #expect(r.0 == "/v1/completions/render")
        #expect(r.1 == #"{"model":"t\"m","prompt":"hi \"you\""}"#)
    }

    @Test func chatBodyCarriesTemplateOptions() throws {
        let r = try #require(try render(#"{"model":"a","messages":[{"role":"user","content":"x"}],"add_generation_prompt":false,"stream":true,"chat_template_kwargs":{"k":1}}"#, .chatCompletions))
        #expect(r.0 == "/v1/chat/completions/render")
        #expect(r.1 == #"{"model":"m","messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"k":1},"add_generation_prompt":false}"#)
        #expect(try render(#"{"model":"a","input":"x"}"#, .embeddings) == nil)
    }

    @Test func responseShapes() throws {
        #expect(try RenderRequest.tokenIDs(Array(#"[{"token_ids":[1,2,3],"x":{"a":[]}}]"#.utf8)).get() == [1, 2, 3])
        #expect(try RenderRequest.tokenIDs(Array(#" {"features":null,"token_ids":[4294967295]} "#.utf8)).get() == [4_294_967_295])
        #expect(try RenderRequest.tokenIDs(Array(#"[{"token_ids":[]},{"token_ids":[9]}]"#.utf8)).get() == [])
        for bad in [#"{"tokens":[1]}"#, #"{"token_ids":[-1]}"#, #"{"token_ids":[1.5]}"#, #"{"token_ids":[4294967296]}"#,
                    #"[{"token_ids":[1]"#, "", "null", #"{"token_ids":["a"]}"#, #"[]"#] {
            if case .success(let t) = RenderRequest.tokenIDs(Array(bad.utf8)) { Issue.record("accepted \(bad) as \(t)") }
        }
    }

    @Test func tokenCacheIsBoundedAndKeepsRecentEntries() {
        var c = TokenCache(capacity: 4)
        c.put(1, [1]); c.put(2, [2])
        #expect(c.get(1) == [1])
        c.put(3, [3]); c.put(4, [4]); c.put(5, [5]); c.put(6, [6])
        #expect(c.count <= 4)
        #expect(c.get(6) == [6])
        #expect(c.get(2) == nil)
        // Bounded by tokens too: a generation turns over once it holds half the budget.
        var t = TokenCache(capacity: 100, maxTokens: 8)
        t.put(1, [1, 1, 1]); t.put(2, [2, 2, 2]); t.put(3, [3, 3, 3])
        #expect(t.get(1) == nil && t.get(3) == [3, 3, 3])
        t.put(4, Array(repeating: 4, count: 5))   // over half the budget: not cached at all
        #expect(t.get(4) == nil)
    }
}

@Suite struct PrecisePrefixConfigTests {
    static func config(_ params: String) -> String {
        """
        apiVersion: llm-d.ai/v1alpha1
        kind: EndpointPickerConfig
        plugins:
        - type: precise-prefix-cache-scorer
          parameters:
        \(params.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        - type: queue-scorer
        schedulingProfiles:
        - name: default
          plugins: [{pluginRef: precise-prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer, weight: 1}]
        """
    }

    @Test func preciseModeLoadsLlmdParameters() throws {
        let c = try PickerConfig.parse(text: Self.config("""
            renderURL: http://127.0.0.1:8082/
            renderTimeout: 20ms
            lookupBudget: 5ms
            tokenProcessorConfig: {blockSize: 64, hashSeed: "42"}
            indexerConfig:
              kvBlockIndexConfig: {redisConfig: {address: "127.0.0.1:6379"}, enableMetrics: true}
              kvCacheBackendConfigs: [{name: gpu, weight: 1.0}, {name: CPU, weight: 0.5}]
            kvEventsConfig: {zmqEndpoint: "tcp://*:5557", topicFilter: "kv@"}
            speculativeIndexing: false
            """), environment: PluginEnvironment())
        let s = try #require(c.plugins["precise-prefix-cache-scorer"] as? PrecisePrefixCacheScorer)
        #expect(s.blockSizeTokens == 64 && s.hashSeed == "42")
        #expect(s.renderURL == "http://127.0.0.1:8082")
        #expect(s.renderTimeoutNanos == 20_000_000 && s.lookupBudgetNanos == 5_000_000)
        #expect(s.redisURL.description == "redis://127.0.0.1:6379")
        #expect(s.tierWeights.weight("cpu") == 0.5)
        #expect(c.producers.count == 1 && c.producers[0] === s)   // no approximate producer: nothing consumes it
        #expect(c.warnings.isEmpty)
    }

    @Test func aDeciderNextToAPreciseScorerStillGetsApproximateMatchInfo() throws {
        let text = """
            apiVersion: llm-d.ai/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: precise-prefix-cache-scorer
              parameters: {renderURL: "http://r:1", indexerConfig: {kvBlockIndexConfig: {redisConfig: {}}}}
            - type: prefill-filter
            - type: decode-filter
            - type: prefix-based-pd-decider
              parameters: {nonCachedTokens: 16}
            - type: disagg-profile-handler
              parameters: {deciders: {prefill: prefix-based-pd-decider}}
            schedulingProfiles:
            - name: prefill
              plugins: [{pluginRef: prefill-filter}, {pluginRef: precise-prefix-cache-scorer, weight: 2}]
            - name: decode
              plugins: [{pluginRef: decode-filter}, {pluginRef: precise-prefix-cache-scorer, weight: 2}]
            """
        let c = try PickerConfig.parse(text: text, environment: PluginEnvironment())
        #expect(c.producers.contains { $0 is PrecisePrefixCacheScorer })
        #expect(c.producers.contains { $0 is ApproxPrefixCacheProducer })
    }

    @Test func withoutRenderURLItStaysApproximate() throws {
        let c = try PickerConfig.parse(text: Self.config("tokenProcessorConfig: {blockSize: 32}"), environment: PluginEnvironment())
        #expect(c.plugins["precise-prefix-cache-scorer"] is PrefixCacheScorer)
        #expect(c.warnings.contains { $0.contains("renderURL") })
        #expect((c.producers.first as? ApproxPrefixCacheProducer)?.blockSizeTokens == 32)
    }

    @Test func badParametersAreClearErrors() {
        for (params, message) in [
            ("renderURL: http://r:1", "redisConfig.address"),
            ("renderURL: ftp://r", "renderURL must be"),
            ("renderURL: http://r:1\nindexerConfig: {kvBlockIndexConfig: {redisConfig: {address: 'rediss://x:1'}}}", "TLS"),
            ("renderURL: http://r:1\nrenderTimeout: 0s\nindexerConfig: {kvBlockIndexConfig: {redisConfig: {}}}", "renderTimeout"),
            ("renderURL: http://r:1\nindexerConfig: {kvBlockIndexConfig: {redisConfig: {}}}\nbogus: 1", "bogus"),
            ("renderURL: http://r:1\nindexerConfig: {kvBlockIndexConfig: {costAwareMemoryConfig: {size: 2GiB}}}", "costAwareMemoryConfig"),
        ] {
            do {
                _ = try PickerConfig.parse(text: Self.config(params), environment: PluginEnvironment())
                Issue.record("accepted: \(params)")
            } catch {
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }
}
