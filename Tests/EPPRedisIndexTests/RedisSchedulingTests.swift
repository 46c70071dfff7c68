import EPPEventLoop
import EPPObservability
@testable import EPPPicker
import EPPProtobuf
import EPPRedis
import Foundation
import Testing

/// `FrameworkScheduler` with the Redis backend: decisions wait for the lookup (schedule returns nil, the
/// waiter gets the outcome), parked requests keep their own context, and two schedulers with separate
/// in-process indexes agree through Redis.
@Suite(.serialized)
struct RedisSchedulingTests {
    static func config(stride: Int) -> String { """
    apiVersion: inference.networking.x-k8s.io/v1alpha1
    kind: EndpointPickerConfig
    plugins:
    - type: approx-prefix-cache-producer
      parameters: {indexBackend: redis, lookupBudget: 500ms, redisBlockStride: \(stride)}
    - type: prefix-cache-scorer
    - type: max-score-picker
    schedulingProfiles:
    - name: default
      plugins:
      - {pluginRef: prefix-cache-scorer, weight: 1}
      - {pluginRef: max-score-picker}
    """
    }

    final class Collector: SchedulingWaiter, @unchecked Sendable {
        var outcomes: [String] = []
        var asynchronous = 0
        func schedulingFinished(_ outcome: SchedulingOutcome) {
            switch outcome {
            case .decided(let d): outcomes.append(d.destination)
            case .rejected(let e): outcomes.append("rejected \(e)")
            }
        }
    }

    /// One replica: its own loop, in-process index and scheduler; Redis shared.
    final class Replica: @unchecked Sendable {
        let group = EventLoopGroup(count: 1)
        let index: RedisPrefixIndex
        let scheduler: FrameworkScheduler
        var loop: EventLoop { group.loops[0] }

        init(_ ds: Datastore, url: String, stride: Int = 1) throws {
            group.start()
            index = RedisPrefixIndex(url: try RedisURL(parsing: url), registry: MetricsRegistry())
            let env = PluginEnvironment(redisIndex: index)
            scheduler = FrameworkScheduler(datastore: ds, config: ConfigHolder(try PickerConfig.parse(text: RedisSchedulingTests.config(stride: stride), environment: env)))
            scheduler.eventLoop = group.loops[0]
            index.attach(group.loops[0])
        }

        func waitReady() async throws {
            let lane = index.lane(for: loop)!
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline {
                let ready = await withCheckedContinuation { c in loop.execute { c.resume(returning: lane.isReady) } }
                if ready { return }
                try await Task.sleep(nanoseconds: 10_000_000)
            }
            throw RedisIndexTestFailure("lane not ready")
        }

        /// Schedules `prompts` back to back in one loop iteration; returns destinations in order and how many
        /// were answered later (nil from `schedule`).
        func decide(_ prompts: [String]) async throws -> (destinations: [String], asynchronous: Int) {
            let collectors = prompts.map { _ in Collector() }
            let asyncCount: Int = await withCheckedContinuation { c in
                loop.execute {
                    var n = 0
                    for (i, p) in prompts.enumerated() {
                        let body = Array("{\"model\":\"m\",\"prompt\":\"\(p)\"}".utf8)
                        let outcome = body.withUnsafeBytes { bytes in
                            self.scheduler.schedule(SchedulingRequest(requestID: "r\(i)", path: "/v1/completions",
                                                             headers: [HeaderField(name: ":path", value: "/v1/completions")],
                                                             body: bytes, headerOnly: false, subsetHint: nil),
                                           waiter: collectors[i])
                        }
                        if let outcome { collectors[i].schedulingFinished(outcome) } else { n += 1 }
                    }
                    c.resume(returning: n)
                }
            }
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline {
                let done = await withCheckedContinuation { c in loop.execute { c.resume(returning: collectors.allSatisfy { $0.outcomes.count == 1 }) } }
                if done { break }
                try await Task.sleep(nanoseconds: 2_000_000)
            }
            let dests = await withCheckedContinuation { c in loop.execute { c.resume(returning: collectors.map { $0.outcomes.first ?? "none" }) } }
            return (dests, asyncCount)
        }

        func stop() async {
            index.close()
            try? await Task.sleep(nanoseconds: 20_000_000)
            group.stop()
            group.join()
        }
    }

    static func datastore() -> Datastore {
        let ds = Datastore()
        _ = ds.replace(with: (0..<4).map { EndpointSpec(name: "pod-\($0)", address: "10.1.0.\($0 + 1)", port: 8000) })
        return ds
    }

    static func prompt(_ topic: String, _ i: Int) -> String {
        String(repeating: "\(topic) is the shared system prompt of this conversation. ", count: 20) + "turn \(i)"
    }

    /// Stride 4: Redis keeps every 4th block's key (and the last), so the same agreement costs a quarter of the writes.
    @Test(arguments: [1, 4])
    func replicasAgreeThroughRedisAndParkedRequestsKeepTheirOwnContext(stride: Int) async throws {
        let server = try RedisIndexTestServer()
        let ds = Self.datastore()
        let a = try Replica(ds, url: server.url, stride: stride), b = try Replica(ds, url: server.url, stride: stride)
        try await a.waitReady()
        try await b.waitReady()
        let blocks = Array(Self.prompt("alpha", 0).utf8).count / 64 + 1   // ≤ the chain (the body adds no prompt bytes)

        // Three conversations started on replica a (cold: each lands on a tie-broken pod, recorded in Redis).
        var home: [String: String] = [:]
        for topic in ["alpha", "beta", "gamma"] {
            let (d, n) = try await a.decide([Self.prompt(topic, 0)])
            #expect(n == 1)   // answered after the Redis lookup, not inside schedule
            home[topic] = d[0]
        }
        try await Task.sleep(nanoseconds: 50_000_000)   // records are fire and forget
        let written = a.index.metrics.entriesWritten.current
        #expect(written > 0 && written <= UInt64(3 * ((blocks + stride - 1) / stride + 1)))
        // Replica b has never seen them; its in-process index is empty. Several requests parked at once, mixed.
        let order = ["gamma", "alpha", "beta", "alpha", "gamma", "beta"]
        let (d, n) = try await b.decide(order.enumerated().map { Self.prompt($0.element, $0.offset + 1) })
        #expect(n == order.count)
        #expect(d == order.map { home[$0]! })
        #expect(b.index.metrics.fallbackBudget.current + b.index.metrics.fallbackError.current == 0)

        // Redis gone: b decides synchronously from its own in-process index (it recorded its picks), counted.
        server.kill()
        try await Task.sleep(nanoseconds: 100_000_000)
        let (d2, n2) = try await b.decide([Self.prompt("beta", 9)])
        #expect(n2 == 0)
        #expect(d2 == [home["beta"]!])
        #expect(b.index.metrics.fallbackUnavailable.current >= 1)
        await a.stop()
        await b.stop()
        server.stop()
    }

    @Test func strideSamplingKeepsEveryKthBlockAndTheLast() {
        var out: [UInt64] = []
        ApproxPrefixCacheProducer.strided(Array(1...10), stride: 4, into: &out)
        #expect(out == [4, 8, 10])
        ApproxPrefixCacheProducer.strided(Array(1...8), stride: 4, into: &out)
        #expect(out == [4, 8])
        ApproxPrefixCacheProducer.strided(Array(1...3), stride: 4, into: &out)
        #expect(out == [3])
        ApproxPrefixCacheProducer.strided(Array(1...3), stride: 1, into: &out)
        #expect(out == [1, 2, 3])
        #expect(ApproxPrefixCacheProducer.blocksCovered(run: 2, stride: 4, blocks: 10) == 8)
        #expect(ApproxPrefixCacheProducer.blocksCovered(run: 3, stride: 4, blocks: 10) == 10)
        #expect(ApproxPrefixCacheProducer.blocksCovered(run: 0, stride: 4, blocks: 10) == 0)
        #expect(throws: PickerConfigError.self) {
            try PickerConfig.parse(text: RedisSchedulingTests.config(stride: 0), environment: PluginEnvironment())
        }
    }
}
