import EPPLoad
import Foundation
import Testing

@testable import EPPSim

@Suite("Load generator")
struct LoadGeneratorTests {
    @Test func nearestRankPercentiles() {
        let s = (1...10).map(Double.init)
        #expect(Stats.percentile(s, 50) == 5)
        #expect(Stats.percentile(s, 90) == 9)
        #expect(Stats.percentile(s, 99) == 10)
        #expect(Stats.percentile(s, 0) == 1)
        #expect(Stats.percentile(s, 100) == 10)
        // Classic nearest-rank example.
        let w = [15.0, 20, 35, 40, 50].shuffled()
        #expect(Stats.percentile(w, 5) == 15)
        #expect(Stats.percentile(w, 30) == 20)
        #expect(Stats.percentile(w, 40) == 20)
        #expect(Stats.percentile(w, 50) == 35)
        #expect(Stats.percentile(w, 100) == 50)
        #expect(Stats.percentile([], 50) == nil)
        #expect(Stats.percentile([7], 99) == 7)
        let sum = Summary((1...100).map(Double.init))
        #expect(sum.p50 == 50 && sum.p90 == 90 && sum.p99 == 99 && sum.count == 100 && sum.mean == 50.5)
        #expect(Summary([]).p50 == nil)
    }

    @Test func groupPurityMath() {
        let a: [(group: Int, endpoint: String)] = [(0, "a"), (0, "a"), (0, "b"), (1, "c"), (1, "c"), (1, "c"), (1, "a")]
        #expect(groupPurity(a) == 5.0 / 7.0)
        #expect(groupPurity([]) == nil)
    }

    @Test func sseParserHandlesSplitEvents() {
        var p = SSEParser()
        #expect(p.feed(Array("data: {\"a\":".utf8)).isEmpty)
        #expect(p.feed(Array("1}\n\ndata: [DO".utf8)) == ["{\"a\":1}"])
        #expect(p.feed(Array("NE]\n\n".utf8)) == ["[DONE]"])
        #expect(p.feed(Array("data: x\r\n\r\n: comment\n\n".utf8)) == ["x"])
    }

    @Test func workloadIsSeededInterleavedAndSized() async throws {
        var c = LoadConfig()
        c.groups = 4
        c.promptsPerGroup = 5
        c.systemPromptTokens = 100
        c.questionTokens = 20
        let a = await WorkSource(config: c).plannedRequests()
        let b = await WorkSource(config: c).plannedRequests()
        #expect(a.count == 20)
        #expect(a.map(\.body) == b.map(\.body))
        var c2 = c
        c2.seed = 2
        #expect(await WorkSource(config: c2).plannedRequests().map(\.body) != a.map(\.body))
        // Every group gets its prompts, in an interleaved (not grouped) order.
        #expect(Dictionary(grouping: a, by: \.group).mapValues(\.count) == [0: 5, 1: 5, 2: 5, 3: 5])
        let groups = a.map(\.group)
        #expect(groups != groups.sorted())
        // Prompt length in simulator tokens = system + question exactly.
        let tok = SimTokenizer()
        for r in a {
            let prompt = try #require(try JSON.parse(r.body)["prompt"]?.stringValue)
            #expect(tok.encode(prompt).count == 120)
        }
        // Same group ⇒ same first 100 tokens.
        let g0 = a.filter { $0.group == 0 }.map { tok.encode(try! JSON.parse($0.body)["prompt"]!.stringValue!) }
        #expect(Set(g0.map { Array($0.prefix(100)) }).count == 1)
        #expect(Set(g0.map { Array($0.suffix(20)) }).count == 5)
        // --requests overrides the total.
        c.requests = 7
        #expect(await WorkSource(config: c).plannedRequests().count == 7)
        // Chat bodies carry system + user messages.
        c.api = .chat
        let chat = try JSON.parse(await WorkSource(config: c).plannedRequests()[0].body)
        #expect(chat["messages"]?.arrayValue?.map { $0["role"]?.stringValue ?? "" } == ["system", "user"])
    }

    @Test func hitRateMatchesBlockMath() async throws {
        // 1 server, 1 group, N prompts of S + Q tokens: every prompt after the first hits the
        // floor(S / 16) full blocks of the shared system prompt.
        try await withFleet { fleet in
            var c = LoadConfig()
            c.target = fleet.baseURLs[0]
            c.groups = 1
            c.promptsPerGroup = 10
            c.systemPromptTokens = 250
            c.questionTokens = 30
            c.outputTokens = 4
            c.concurrency = 1
            let res = try await LoadRunner(config: c, progress: false).run()
            let rep = LoadReport(res)
            #expect(rep.requests == 10 && rep.errors == 0)
            #expect(rep.prompt_tokens == 10 * 280)
            let expected = Double(9 * (250 / 16) * 16) / Double(10 * 280)
            #expect(abs((rep.prefix_hit_rate ?? -1) - expected) < 1e-9)
            #expect(rep.per_endpoint == [String(fleet.ports[0]): 10])
            #expect(rep.group_purity == 1)
            #expect(rep.completion_tokens == 40)
            // Cross-check with the server's own counters.
            let s = fleet.servers[0].snapshot()
            #expect(s.prefixCacheHits == rep.cached_tokens && s.prefixCacheQueries == rep.prompt_tokens)
        }
    }

    @Test func errorCountsAndPerEndpoint() async throws {
        try await withFleet({ $0.count = 2; $0.failRate = 0.3; $0.seed = 11 }) { fleet in
            var total = 0
            for (i, base) in fleet.baseURLs.enumerated() {
                var c = LoadConfig()
                c.target = base
                c.groups = 3
                c.promptsPerGroup = 10
                c.systemPromptTokens = 64
                c.questionTokens = 16
                c.outputTokens = 3
                c.concurrency = 6
                let rep = LoadReport(try await LoadRunner(config: c, progress: false).run())
                let failures = fleet.servers[i].snapshot().requestFailures
                #expect(rep.requests == 30)
                #expect(rep.errors == failures)
                #expect(rep.errors > 0 && rep.errors < 30)
                #expect(rep.errors_by_status == ["500": failures])
                #expect(rep.succeeded + rep.errors == 30)
                #expect(rep.per_endpoint == [String(fleet.ports[i]): 30])  // errors carry the header too
                #expect(rep.e2e_ms.count == rep.succeeded)
                total += rep.requests
            }
            #expect(total == 60)
        }
        // Transport errors: nothing listens.
        var c = LoadConfig()
        c.target = "http://127.0.0.1:9"
        c.requests = 2
        c.groups = 1
        c.timeout = 2
        let rep = LoadReport(try await LoadRunner(config: c, progress: false).run())
        #expect(rep.errors == 2 && rep.errors_by_status == ["transport": 2] && rep.per_endpoint.isEmpty)
    }

    @Test func streamingMultiTurnAndReports() async throws {
        try await withFleet { fleet in
            var c = LoadConfig()
            c.target = fleet.baseURLs[0]
            c.workload = .multiTurn
            c.api = .chat
            c.stream = true
            c.groups = 3
            c.promptsPerGroup = 4
            c.systemPromptTokens = 100
            c.questionTokens = 10
            c.outputTokens = 5
            c.concurrency = 8
            let res = try await LoadRunner(config: c, progress: false).run()
            let rep = LoadReport(res)
            #expect(rep.requests == 12 && rep.errors == 0)
            // Turns of one conversation are sequential and grow.
            for g in 0..<3 {
                let turns = res.results.filter { $0.group == g }.sorted { $0.turn < $1.turn }
                #expect(turns.map(\.turn) == [0, 1, 2, 3])
                for (x, y) in zip(turns, turns.dropFirst()) {
                    #expect(y.sentAt >= x.sentAt + x.e2e - 1e-6)
                    // previous prompt + previous answer (5) + markup + next question (10).
                    #expect(y.promptTokens! == x.promptTokens! + 5 + 3 + 3 + 10)
                    #expect(y.cachedTokens! >= x.promptTokens! / 16 * 16)
                }
            }
            #expect((rep.prefix_hit_rate ?? 0) > 0.5)
            #expect(rep.itl_ms.count == 12 * 4)  // (output − 1) gaps per streamed request
            #expect(rep.ttft_ms.count == 12)
            #expect(rep.ttft_ms.p50! < rep.e2e_ms.p50!)

            // JSON report keys.
            let obj = try #require(try JSONSerialization.jsonObject(with: rep.jsonData()) as? [String: Any])
            for key in ["requests", "errors", "requests_per_second", "ttft_ms", "e2e_ms", "itl_ms", "prefix_hit_rate",
                        "per_endpoint", "group_purity", "errors_by_status"] {
                #expect(obj[key] != nil, "missing \(key)")
            }
            for key in ["ttft_ms", "e2e_ms", "itl_ms"] {
                let s = try #require(obj[key] as? [String: Any])
                #expect(s["p50"] != nil && s["p90"] != nil && s["p99"] != nil)
            }
            #expect((obj["per_endpoint"] as? [String: Int]) == [String(fleet.ports[0]): 12])

            // HTML is self-contained.
            let html = HTMLReport.render(report: rep, results: res)
            #expect(html.contains("<svg") && html.contains("TTFT histogram") && html.contains(String(fleet.ports[0])))
            #expect(!html.contains("src=") && !html.contains("href=") && !html.contains("<script"))
            #expect(rep.table().contains("prefix hit rate"))
        }
    }

    @Test func poissonOpenLoop() async throws {
        try await withFleet { fleet in
            var c = LoadConfig()
            c.target = fleet.baseURLs[0]
            c.workload = .random
            c.groups = 2
            c.promptsPerGroup = 10
            c.systemPromptTokens = 40
            c.questionTokens = 10
            c.outputTokens = 2
            c.rate = 400
            let rep = LoadReport(try await LoadRunner(config: c, progress: false).run())
            #expect(rep.requests == 20 && rep.errors == 0)
            #expect(rep.requests_per_second > 0)
            #expect(rep.run.rate == 400 && rep.run.concurrency == nil)
        }
    }
}
