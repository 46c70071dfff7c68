@testable import EPPPicker
import EPPProtobuf
import Testing

/// Per-plugin formulas and edge cases (all equal, zero, stale metrics, no candidates).
@Suite struct PluginTests {
    /// A context with `n` endpoints; `metrics[i]` nil ⇒ no metrics.
    func ctx(_ metrics: [EndpointMetrics?], labels: [[String: String]] = [], scrapedAt: UInt64 = testNow) -> SchedulingContext {
        let c = SchedulingContext()
        c.reset(now: testNow)
        for (i, m) in metrics.enumerated() {
            let e = Endpoint(spec: EndpointSpec(name: "e\(i)", address: "10.0.0.\(i + 1)", port: 8000, labels: i < labels.count ? labels[i] : [:]))
            c.endpoints.append(e)
            c.appendMetrics(m.map { ScrapedMetrics(metrics: $0, scrapedAt: scrapedAt) })
        }
        return c
    }

    func m(q: Int = 0, kv: Double = 0, r: Int = 0, active: [String] = [], waiting: [String] = [], maxLoRA: Int? = 2) -> EndpointMetrics {
        EndpointMetrics(waitingQueueSize: q, runningRequests: r, kvCacheUsage: kv, activeLoRAs: Set(active), waitingLoRAs: Set(waiting), maxLoRA: maxLoRA)
    }

    func scores(_ s: any SchedulingScorer, _ c: SchedulingContext, _ cands: [Int]? = nil) -> [Double] {
        let cs = cands ?? c.allCandidates
        var out = [Double](repeating: 0, count: cs.count)
        s.score(c, cs, into: &out)
        return out
    }

    @Test func queueScorer() throws {
        let s = try QueueScorer()
        #expect(scores(s, ctx([m(q: 0), m(q: 5), m(q: 10)])) == [1, 0.5, 0])
        #expect(scores(s, ctx([m(q: 3), m(q: 3)])) == [1, 1])          // all equal
        #expect(scores(s, ctx([m(q: 0), nil])) == [1, 1])                // no metrics ⇒ q 0
        #expect(scores(s, ctx([m(q: 1)]), []) == [])                     // no candidates
        #expect(scores(s, ctx([m(q: 0), m(q: 5), m(q: 10)]), [1, 2]) == [1, 0])   // min–max over the profile's set
    }

    @Test func runningRequestsScorer() throws {
        let s = try RunningRequestsSizeScorer()
        #expect(scores(s, ctx([m(r: 2), m(r: 4), m(r: 6)])) == [1, 0.5, 0])
        #expect(scores(s, ctx([m(r: 0), m(r: 0)])) == [1, 1])
    }

    @Test func kvCacheScorer() throws {
        let s = try KVCacheUtilizationScorer()
        let out = scores(s, ctx([m(kv: 0), m(kv: 0.25), m(kv: 1), nil]))
        #expect(out == [1, 0.75, 0, 1])
    }

    @Test func loadAwareScorer() throws {
        let s = try LoadAwareScorer()
        #expect(scores(s, ctx([m(q: 0), m(q: 64), m(q: 128), m(q: 500)])) == [0.5, 0.25, 0, 0])
        let p = try ConfigReader(yaml: "threshold: 0", context: "t")
        #expect(try LoadAwareScorer(params: p).threshold == 128)
    }

    @Test func activeRequestScorer() throws {
        let c = ctx([m(), m(), m()])
        c.endpoints[1].inFlightRequests.store(2, ordering: .relaxed)
        c.endpoints[2].inFlightRequests.store(4, ordering: .relaxed)
        #expect(scores(try ActiveRequestScorer(), c) == [1, 0.5, 0])
        let p = try ConfigReader(yaml: "idleThreshold: 2\nmaxBusyScore: 0.5\nrequestTimeout: 2m", context: "t")
        #expect(scores(try ActiveRequestScorer(params: p), c) == [1, 1, 0])
        let zero = ctx([m(), m()])
        #expect(scores(try ActiveRequestScorer(), zero) == [1, 1])
        #expect(throws: PickerConfigError.self) { try ActiveRequestScorer(params: try ConfigReader(yaml: "maxBusyScore: 2", context: "t")) }
    }

    @Test func tokenLoadScorer() throws {
        let c = ctx([m(), m(), m()])
        c.endpoints[1].inFlightPromptTokens.store(2_097_152, ordering: .relaxed)
        c.endpoints[2].inFlightPromptTokens.store(9_000_000, ordering: .relaxed)
        #expect(scores(try TokenLoadScorer(), c) == [1, 0.5, 0])
    }

    @Test func sessionAffinityScorer() throws {
        let c = ctx([m(), m()])
        c.headers = [HeaderField(name: "x-session-token", value: Base64.encode(Array("default/e1".utf8)))]
        #expect(scores(try SessionAffinityScorer(), c) == [0, 1])
        c.headers = [HeaderField(name: "x-session-token", value: "!!!")]
        #expect(scores(try SessionAffinityScorer(), c) == [0, 0])
        #expect(SessionAffinityScorer.token(for: c.endpoints[1]) == "ZGVmYXVsdC9lMQ==")
        #expect(Base64.decode("ZGVmYXVsdC9lMQ==") == Array("default/e1".utf8))
    }

    @Test func noHitLRUScorer() throws {
        let s = try NoHitLRUScorer()
        let c = ctx([m(), m(), m()])
        c.hasPrefixInfo = true
        c.prefixMatches = [0, 0, 0]
        #expect(scores(s, c) == [1, 0.5, 0])                      // never used: candidate order
        s.preRequest(c, primary: c.endpoints[0], prefill: nil)   // e0 used
        #expect(scores(s, c) == [0, 1, 0.5])                      // e1, e2 never used first, then e0
        s.preRequest(c, primary: c.endpoints[1], prefill: nil)
        #expect(scores(s, c) == [0.5, 0, 1])                      // e2 never used, then e0 (older), e1
        c.prefixMatches = [0, 3, 0]                               // warm ⇒ 0.5 for all, no LRU update
        #expect(scores(s, c) == [0.5, 0.5, 0.5])
        #expect(scores(s, ctx([m()])) == [1])                     // single candidate
    }

    @Test func loraAffinityScorer() throws {
        let c = ctx([m(active: ["a"]), m(active: ["x"]), m(active: ["x", "y"], waiting: ["a"]), m(active: ["x", "y"]), nil,
                     m(maxLoRA: nil)])
        c.targetModel = "a"
        #expect(scores(try LoRAAffinityScorer(), c) == [1, 0.8, 0.6, 0, 0, 0])
    }

    @Test func roleFilters() throws {
        let roles: [[String: String]] = [[:], ["llm-d.ai/role": "decode"], ["llm-d.ai/role": "prefill"], ["llm-d.ai/role": "both"],
                                         ["llm-d.ai/role": "encode"], ["llm-d.ai/role": "encode-prefill-decode"], ["llm-d.ai/role": "bogus"]]
        let c = ctx(Array(repeating: m(), count: roles.count), labels: roles)
        #expect(try DecodeFilter().filter(c, c.allCandidates) == [0, 1, 3, 5])
        #expect(try PrefillFilter().filter(c, c.allCandidates) == [2, 3, 5])
        #expect(try EncodeFilter().filter(c, c.allCandidates) == [4, 5])
        #expect(try DecodeFilter().filter(c, []) == [])
    }

    @Test func labelSelectorFilter() throws {
        let c = ctx([m(), m(), m()], labels: [["tier": "gold", "zone": "a"], ["tier": "silver"], [:]])
        let p = try ConfigReader(yaml: """
            matchLabels: {tier: gold}
            matchExpressions:
            - {key: zone, operator: In, values: [a, b]}
            """, context: "t")
        #expect(try LabelSelectorFilter(name: "f", params: p).filter(c, c.allCandidates) == [0])
        let notIn = try ConfigReader(yaml: "matchExpressions: [{key: tier, operator: NotIn, values: [gold]}]", context: "t")
        #expect(try LabelSelectorFilter(name: "f", params: notIn).filter(c, c.allCandidates) == [1, 2])
        let dne = try ConfigReader(yaml: "matchExpressions: [{key: tier, operator: DoesNotExist}]", context: "t")
        #expect(try LabelSelectorFilter(name: "f", params: dne).filter(c, c.allCandidates) == [2])
        let byLabel = try ConfigReader(yaml: "{label: tier, validValues: [silver], allowsNoLabel: true}", context: "t")
        #expect(try LabelSelectorFilter(name: "f", typeName: "by-label", params: byLabel).filter(c, c.allCandidates) == [1, 2])
        #expect(throws: PickerConfigError.self) {
            try LabelSelectorFilter(name: "f", params: try ConfigReader(yaml: "matchExpressions: [{key: a, operator: Near}]", context: "t"))
        }
    }

    @Test func headerBasedTestingFilter() throws {
        let c = ctx([m(), m(), m()])
        c.headers = [HeaderField(name: "test-epp-endpoint-selection", value: "10.0.0.3:8000, 10.0.0.1,10.0.0.2:9")]
        #expect(try HeaderBasedTestingFilter().filter(c, c.allCandidates) == [2, 0])   // header order, port checked
        c.headers = []
        #expect(try HeaderBasedTestingFilter().filter(c, c.allCandidates) == [0, 1, 2])
    }

    @Test func prefixCacheAffinityFilter() throws {
        let c = ctx([m(), m(), m()])
        c.hasPrefixInfo = true
        c.prefixHashes = [1, 2, 3, 4, 5]
        c.prefixMatches = [5, 4, 1]
        let f = try PrefixCacheAffinityFilter(params: try ConfigReader(yaml: "explorationProbability: 0", context: "t"))
        #expect(f.filter(c, c.allCandidates) == [0, 1])          // ratio ≥ 0.8
        c.prefixMatches = [0, 0, 1]
        #expect(f.filter(c, c.allCandidates) == [0, 1, 2])       // none sticky ⇒ all
        #expect(f.filter(c, [2]) == [2])
        let always = try PrefixCacheAffinityFilter(params: try ConfigReader(yaml: "explorationProbability: 1", context: "t"))
        c.prefixMatches = [5, 0, 0]
        #expect(always.filter(c, c.allCandidates) == [0, 1, 2])
    }

    @Test func utilizationDetector() throws {
        let d = try UtilizationDetector()
        let c = ctx([m(q: 0, kv: 0.1), m(q: 5, kv: 0.1), m(q: 0, kv: 0.9)])
        #expect(d.filter(c, c.allCandidates) == [0])
        #expect(abs(d.saturation(c, c.allCandidates) - (0.125 + 1.0 + 1.125) / 3) < 1e-9)
        #expect(d.saturation(c, []) == 1)
        // stale metrics (> 200 ms) count as saturated and are filtered; all stale ⇒ fail open
        let stale = ctx([m(q: 0, kv: 0), m(q: 0, kv: 0)], scrapedAt: testNow - 300_000_000)
        #expect(d.saturation(stale, stale.allCandidates) == 1)
        #expect(d.filter(stale, stale.allCandidates) == [0, 1])
        let noMetrics = ctx([nil, m(q: 1, kv: 0.1)])
        #expect(d.filter(noMetrics, noMetrics.allCandidates) == [1])
    }

    @Test func concurrencyDetector() throws {
        let c = ctx([m(), m()])
        c.endpoints[0].inFlightRequests.store(100, ordering: .relaxed)
        let d = try ConcurrencyDetector()
        #expect(d.saturation(c, c.allCandidates) == 0.5)
        #expect(d.filter(c, c.allCandidates) == [1])
    }

    @Test func maxScorePickerTieBreakIsUniform() throws {
        let c = ctx([m(), m(), m(), m()])
        let p = try MaxScorePicker()
        var counts = [0, 0, 0, 0]
        for _ in 0..<4000 { counts[p.pick(c, [0, 1, 2, 3], scores: [1, 2, 2, 2])[0]] += 1 }
        #expect(counts[0] == 0)
        for k in 1...3 { #expect(counts[k] > 1100 && counts[k] < 1570) }
        let two = try MaxScorePicker(params: try ConfigReader(yaml: "maxNumOfEndpoints: 2", context: "t"))
        #expect(Set(two.pick(c, [0, 1, 2, 3], scores: [3, 1, 5, 0])) == [0, 2])
        #expect(two.pick(c, [0, 1, 2, 3], scores: [3, 1, 5, 0])[0] == 2)
        #expect(p.pick(c, [], scores: []) == [])
        #expect(try MaxScorePicker(params: try ConfigReader(yaml: "maxNumOfEndpoints: 0", context: "t")).maxNumOfEndpoints == 1)
    }

    @Test func randomAndWeightedRandomPickers() throws {
        let c = ctx([m(), m(), m()])
        let r = try RandomPicker()
        var seen: Set<Int> = []
        for _ in 0..<200 { seen.insert(r.pick(c, [0, 1, 2], scores: [9, 0, 0])[0]) }
        #expect(seen == [0, 1, 2])
        let w = try WeightedRandomPicker()
        var counts = [0, 0, 0]
        for _ in 0..<3000 { counts[w.pick(c, [0, 1, 2], scores: [3, 1, 0])[0]] += 1 }
        #expect(counts[2] == 0)                         // score 0 never wins while some score > 0
        #expect(counts[0] > 2000 && counts[0] < 2500)   // ≈ 3/4
        var zero: Set<Int> = []
        for _ in 0..<200 { zero.insert(w.pick(c, [0, 1, 2], scores: [0, 0, 0])[0]) }
        #expect(zero == [0, 1, 2])                      // all zero ⇒ random
    }

    @Test func prefixBasedDecider() throws {
        let c = ctx([m()])
        c.hasPrefixInfo = true
        c.blockSizeTokens = 16
        c.promptChars = 400                             // 100 tokens
        c.prefixMatches = [0]
        let d = try PrefixBasedPDDecider(params: try ConfigReader(yaml: "nonCachedTokens: 16", context: "t"))
        #expect(d.shouldDisaggregate(c, decodeEndpoint: 0))
        c.prefixMatches = [5]                           // 80 cached ⇒ 20 uncached ≥ 16
        #expect(d.shouldDisaggregate(c, decodeEndpoint: 0))
        c.prefixMatches = [6]                           // 96 cached ⇒ 4 uncached
        #expect(!d.shouldDisaggregate(c, decodeEndpoint: 0))
        c.promptChars = 40
        c.prefixMatches = [0]
        #expect(!d.shouldDisaggregate(c, decodeEndpoint: 0))   // 10 tokens < 16
        #expect(!(try PrefixBasedPDDecider()).shouldDisaggregate(c, decodeEndpoint: 0))   // nonCachedTokens 0 ⇒ never
        let gated = try PrefixBasedPDDecider(params: try ConfigReader(yaml: "{nonCachedTokens: 4, promptTokens: 50}", context: "t"))
        c.promptChars = 120
        #expect(!gated.shouldDisaggregate(c, decodeEndpoint: 0))
    }

    @Test func profileClampsAndWeights() throws {
        final class Wild: SchedulingScorer {
            let typeName = "wild"; let name = "wild"
            func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) { scores = [-3, 7, .nan] }
        }
        let c = ctx([m(), m(), m()])
        c.explain = true
        let p = SchedulingProfile(name: "p", filters: [], scorers: [.init(scorer: Wild(), weight: 2)], picker: try MaxScorePicker())
        let r = try #require(p.run(c, candidates: [0, 1, 2]))
        #expect(r.totals == [0, 2, 0])
        #expect(r.targets == [1])
    }
}

