// MetricsScraper against real HTTP/1.1 servers on loopback (TestMetricsServer).

import EPPObservability
import Glibc
import Synchronization
import Testing
@testable import EPPPicker

func vllmMetricsText(waiting: Int, running: Int, kv: Double) -> String {
    """
    # HELP vllm:num_requests_running Number of requests in model execution batches.
    # TYPE vllm:num_requests_running gauge
    vllm:num_requests_running{engine="0",model_name="m"} \(running).0
    # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
    # TYPE vllm:num_requests_waiting gauge
    vllm:num_requests_waiting{engine="0",model_name="m"} \(waiting).0
    # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
    # TYPE vllm:kv_cache_usage_perc gauge
    vllm:kv_cache_usage_perc{engine="0",model_name="m"} \(kv)
    # HELP vllm:lora_requests_info Running stats on lora requests.
    # TYPE vllm:lora_requests_info gauge
    vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora,foo",waiting_lora_adapters="bar"} 1.7345000042e+09
    vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters=""} 1.7344e+09
    # HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
    # TYPE vllm:cache_config_info gauge
    vllm:cache_config_info{block_size="16",cache_dtype="auto",num_cpu_blocks="None",num_gpu_blocks="31250"} 1.0
    # HELP vllm:prompt_tokens_total Number of prefill tokens processed.
    # TYPE vllm:prompt_tokens_total counter
    vllm:prompt_tokens_total{model_name="m"} 12345.0

    """
}

private func spec(_ name: String, _ server: TestMetricsServer, labels: [String: String] = [:]) -> EndpointSpec {
    EndpointSpec(name: name, address: "127.0.0.1", port: server.port, labels: labels)
}

private func fastOptions(interval: Duration = .milliseconds(20)) -> MetricsScraper.Options {
    var o = MetricsScraper.Options()
    o.interval = interval
    o.stalenessThreshold = .milliseconds(400)
    o.maxConsecutiveFailures = 3
    return o
}

func openFileDescriptors() -> Int {
    guard let d = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(d) }
    var n = 0
    while readdir(d) != nil { n += 1 }
    return n
}

/// The value of one rendered series (`name{labels}`), or nil when absent.
func seriesValue(_ registry: MetricsRegistry, _ series: String) -> Double? {
    for line in registry.render().split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

private extension Datastore {
    func endpoint(_ name: String) -> Endpoint? { snapshot().endpoints.first { $0.name == name } }
}

@Suite(.serialized) struct ScrapeTests {
    @Test func metricsAppearAndFollowTheServer() async throws {
        let server = try TestMetricsServer(body: vllmMetricsText(waiting: 7, running: 3, kv: 0.4125))
        defer { server.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("a", server)])
        let registry = MetricsRegistry()
        let scraper = MetricsScraper(datastore: ds, options: fastOptions(), registry: registry)
        scraper.start()
        defer { scraper.stop() }

        #expect(await eventuallyTrue { ds.endpoint("a")?.metrics != nil })
        let sm = try #require(ds.endpoint("a")?.metrics)
        #expect(sm.healthy)
        #expect(sm.consecutiveFailures == 0)
        #expect(sm.metrics.waitingQueueSize == 7)
        #expect(sm.metrics.runningRequests == 3)
        #expect(sm.metrics.kvCacheUsage == 0.4125)
        #expect(sm.metrics.kvBlockSize == 16)
        #expect(sm.metrics.kvNumBlocks == 31250)
        #expect(sm.metrics.activeLoRAs == ["sql-lora", "foo"])
        #expect(sm.metrics.waitingLoRAs == ["bar"])
        #expect(sm.metrics.maxLoRA == 4)
        #expect(sm.metrics.missing.isEmpty)

        server.body = vllmMetricsText(waiting: 1, running: 9, kv: 0.9)
        #expect(await eventuallyTrue(timeout: .seconds(2)) { ds.endpoint("a")?.metrics?.metrics.runningRequests == 9 })
        #expect(ds.endpoint("a")?.metrics?.metrics.waitingQueueSize == 1)

        let text = registry.render()
        #expect((seriesValue(registry, "epp_metrics_scrapes_total{result=\"success\"}") ?? 0) >= 2)
        #expect(text.contains("epp_metrics_scrape_duration_seconds_count"))
    }

    @Test func scrapesEveryIntervalOverOneKeepAliveConnection() async throws {
        let server = try TestMetricsServer(body: vllmMetricsText(waiting: 0, running: 0, kv: 0))
        defer { server.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("a", server)])
        let registry = MetricsRegistry()
        let scraper = MetricsScraper(datastore: ds, options: fastOptions(interval: .milliseconds(10)), registry: registry)
        let start = ContinuousClock.now
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue(timeout: .seconds(5)) { server.requests >= 40 })
        let elapsed = ContinuousClock.now - start
        // ~10 ms cadence: 40 scrapes take ≥ 390 ms (no bursts) and, on a busy machine, not forever.
        #expect(elapsed >= .milliseconds(380))
        #expect(server.connections <= 2, "keep-alive: \(server.connections) connections for \(server.requests) requests")
        let conns = try #require(seriesValue(registry, "epp_metrics_scrape_connections_total"))
        #expect(conns >= 1 && conns <= 2)
    }

    @Test func endpointGoesAwayBecomesUnhealthyAndRecovers() async throws {
        let server = try TestMetricsServer(body: vllmMetricsText(waiting: 2, running: 5, kv: 0.5))
        defer { server.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("a", server)])
        let registry = MetricsRegistry()
        let scraper = MetricsScraper(datastore: ds, options: fastOptions(), registry: registry)
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue { ds.endpoint("a")?.metrics?.healthy == true })

        server.goAway()
        #expect(await eventuallyTrue(timeout: .seconds(2)) { ds.endpoint("a")?.metrics?.healthy == false })
        let sm = try #require(ds.endpoint("a")?.metrics)
        #expect(sm.consecutiveFailures >= 1, "a refused connection marks the endpoint unhealthy at once")
        #expect(sm.metrics.runningRequests == 5, "last metrics are kept")
        let errors = registry.render()
        #expect(errors.contains("epp_metrics_scrape_errors_total{endpoint=\"a\"}"))
        #expect(await eventuallyTrue { seriesValue(registry, "epp_metrics_scrape_targets{state=\"unhealthy\"}") == 1 })

        server.body = vllmMetricsText(waiting: 0, running: 1, kv: 0.1)
        server.comeBack()
        #expect(await eventuallyTrue(timeout: .seconds(3)) { ds.endpoint("a")?.metrics?.healthy == true })
        #expect(ds.endpoint("a")?.metrics?.consecutiveFailures == 0)
        #expect(ds.endpoint("a")?.metrics?.metrics.runningRequests == 1)
    }

    @Test func hangingEndpointGoesStaleWithoutDelayingOthers() async throws {
        let good = try TestMetricsServer(body: vllmMetricsText(waiting: 1, running: 1, kv: 0.2))
        let hung = try TestMetricsServer(body: vllmMetricsText(waiting: 4, running: 4, kv: 0.4))
        defer { good.shutdown(); hung.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("good", good), spec("hung", hung)])
        var o = fastOptions()
        o.requestTimeout = .seconds(5)   // longer than the test: only staleness can flag the hung one
        let scraper = MetricsScraper(datastore: ds, options: o)
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue { ds.endpoint("hung")?.metrics?.healthy == true && ds.endpoint("good")?.metrics != nil })

        hung.mode = .hang
        let hungRequestsAtHang = hung.requests
        let goodBefore = good.requests
        try await Task.sleep(for: .milliseconds(600))
        // The good endpoint kept its ~20 ms cadence while the other one never answered.
        #expect(good.requests - goodBefore >= 10, "good endpoint scraped \(good.requests - goodBefore) times in 600 ms")
        #expect(ds.endpoint("good")?.metrics?.healthy == true)
        // At most one request in flight to the hung endpoint: no pile-up.
        #expect(hung.requests - hungRequestsAtHang <= 1)
        #expect(hung.connections == 1)
        // Stale after 400 ms, although no request failed yet.
        let sm = try #require(ds.endpoint("hung")?.metrics)
        #expect(sm.healthy == false)
        #expect(sm.metrics.runningRequests == 4)

        hung.mode = .normal   // the pending request is still unanswered; a new one would be served
    }

    @Test func requestTimeoutCountsAsFailure() async throws {
        let server = try TestMetricsServer(body: vllmMetricsText(waiting: 1, running: 1, kv: 0.2))
        defer { server.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("a", server)])
        let registry = MetricsRegistry()
        var o = fastOptions()
        o.requestTimeout = .milliseconds(60)
        o.stalenessThreshold = .seconds(30)
        let scraper = MetricsScraper(datastore: ds, options: o, registry: registry)
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue { ds.endpoint("a")?.metrics?.healthy == true })
        server.mode = .hang
        #expect(await eventuallyTrue(timeout: .seconds(3)) { ds.endpoint("a")?.metrics?.healthy == false })
        #expect((ds.endpoint("a")?.metrics?.consecutiveFailures ?? 0) >= 3)
        #expect((seriesValue(registry, "epp_metrics_scrapes_total{result=\"timeout\"}") ?? 0) >= 1)
        server.mode = .normal
        #expect(await eventuallyTrue(timeout: .seconds(3)) { ds.endpoint("a")?.metrics?.healthy == true })
    }

    @Test func neverReachableEndpointStaysUnknown() async throws {
        let server = try TestMetricsServer(body: "")
        server.goAway()
        defer { server.shutdown() }
        try await Task.sleep(for: .milliseconds(30))
        let ds = Datastore()
        ds.replace(with: [spec("down", server)])
        let registry = MetricsRegistry()
        let scraper = MetricsScraper(datastore: ds, options: fastOptions(), registry: registry)
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue { (seriesValue(registry, "epp_metrics_scrape_errors_total{endpoint=\"down\"}") ?? 0) >= 3 })
        #expect(ds.endpoint("down")?.metrics == nil)
        #expect((seriesValue(registry, "epp_metrics_scrapes_total{result=\"connect_error\"}") ?? 0) >= 3)
    }

    @Test func httpErrorsAndOversizedResponsesAreFailures() async throws {
        let big = String(repeating: "# padding padding padding padding padding padding padding\n", count: 100)
            + vllmMetricsText(waiting: 1, running: 1, kv: 0.1)
        let server = try TestMetricsServer(body: big)
        let errServer = try TestMetricsServer(body: "")
        errServer.mode = .status(500)
        defer { server.shutdown(); errServer.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("big", server), spec("err", errServer)])
        let registry = MetricsRegistry()
        var o = fastOptions()
        o.maxResponseBytes = 2048
        let scraper = MetricsScraper(datastore: ds, options: o, registry: registry)
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue {
            (seriesValue(registry, "epp_metrics_scrapes_total{result=\"too_large\"}") ?? 0) >= 2
                && (seriesValue(registry, "epp_metrics_scrapes_total{result=\"http_error\"}") ?? 0) >= 2
        })
        #expect(ds.endpoint("big")?.metrics == nil)
        #expect(ds.endpoint("err")?.metrics == nil)
    }

    @Test func followsTheDatastore() async throws {
        let a = try TestMetricsServer(body: vllmMetricsText(waiting: 1, running: 1, kv: 0.1))
        let b = try TestMetricsServer(body: vllmMetricsText(waiting: 2, running: 2, kv: 0.2))
        defer { a.shutdown(); b.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("a", a)])
        let scraper = MetricsScraper(datastore: ds, options: fastOptions())
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue { ds.endpoint("a")?.metrics != nil })
        #expect(b.requests == 0)

        ds.replace(with: [spec("a", a), spec("b", b)])   // added: picked up
        #expect(await eventuallyTrue { ds.endpoint("b")?.metrics?.metrics.runningRequests == 2 })

        ds.replace(with: [spec("b", b)])                  // removed: no more scrapes
        try await Task.sleep(for: .milliseconds(60))
        let aCount = a.requests
        try await Task.sleep(for: .milliseconds(200))
        #expect(a.requests == aCount)
        #expect(b.requests > 0)

        // Labels changed ⇒ a new Endpoint object for the same server; it inherits the metrics at once.
        let old = try #require(ds.endpoint("b")?.metrics)
        ds.replace(with: [spec("b", b, labels: ["llm-d.ai/role": "decode"])])
        try await Task.sleep(for: .milliseconds(50))
        let inherited = try #require(ds.endpoint("b")?.metrics)
        #expect(inherited.scrapedAt >= old.scrapedAt)
    }

    @Test func engineLabelSelectsTheMapping() async throws {
        let sglang = """
        # TYPE sglang:num_running_reqs gauge
        sglang:num_running_reqs{model_name="m"} 6
        # TYPE sglang:num_queue_reqs gauge
        sglang:num_queue_reqs{model_name="m"} 2
        # TYPE sglang:token_usage gauge
        sglang:token_usage{model_name="m"} 0.25
        sglang:cache_config_info{page_size="32",num_pages="1000"} 1

        """
        let server = try TestMetricsServer(body: sglang)
        defer { server.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("s", server, labels: [EngineType.labelKey: "sglang"])])
        let scraper = MetricsScraper(datastore: ds, options: fastOptions())
        scraper.start()
        defer { scraper.stop() }
        #expect(await eventuallyTrue { ds.endpoint("s")?.metrics != nil })
        let m = try #require(ds.endpoint("s")?.metrics?.metrics)
        #expect(m.runningRequests == 6)
        #expect(m.waitingQueueSize == 2)
        #expect(m.kvCacheUsage == 0.25)
        #expect(m.kvBlockSize == 32)
        #expect(m.kvNumBlocks == 1000)
    }

    @Test func stopIsCleanAndIdempotent() async throws {
        let server = try TestMetricsServer(body: vllmMetricsText(waiting: 1, running: 1, kv: 0.1))
        defer { server.shutdown() }
        let ds = Datastore()
        ds.replace(with: [spec("a", server)])
        let fdsBefore = openFileDescriptors()
        for _ in 0..<10 {
            let scraper = MetricsScraper(datastore: ds, options: fastOptions())
            let seen = server.requests
            scraper.start()
            #expect(await eventuallyTrue { server.requests > seen })
            scraper.stop()
            scraper.stop()
        }
        let n = server.requests
        try await Task.sleep(for: .milliseconds(100))
        #expect(server.requests == n)
        // Stopping closed the keep-alive connection, and the loop's fds went with the scraper (a leak of one fd
        // per scraper would show as ≥ 10; other suites running in parallel may hold a few).
        #expect(await eventuallyTrue { server.openConnections == 0 })
        #expect(openFileDescriptors() < fdsBefore + 8, "fds: \(fdsBefore) before, \(openFileDescriptors()) after")
        let unstarted = MetricsScraper(datastore: ds)
        unstarted.stop()
    }

    @Test func defaultTimeoutIsBoundedByInterval() {
        var o = MetricsScraper.Options()
        #expect(o.effectiveRequestTimeout == .seconds(1))
        o.interval = .milliseconds(10)
        #expect(o.effectiveRequestTimeout == .milliseconds(200))
        o.requestTimeout = .milliseconds(70)
        #expect(o.effectiveRequestTimeout == .milliseconds(70))
    }
}
