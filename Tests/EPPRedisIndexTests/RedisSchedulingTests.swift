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
    static let config = """
    apiVersion: inference.networking.x-k8s.io/v1alpha1
    kind: EndpointPickerConfig
    plugins:
    - type: approx-prefix-cache-producer
      parameters: {indexBackend: redis, lookupBudget: 500ms}
    - type: prefix-cache-scorer
    - type: max-score-picker
    schedulingProfiles:
    - name: default
      plugins:
      - {pluginRef: prefix-cache-scorer, weight: 1}
      - {pluginRef: max-score-picker}
    """

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

        init(_ ds: Datastore, url: String) throws {
            group.start()
            index = RedisPrefixIndex(url: try RedisURL(parsing: url), registry: MetricsRegistry())
            let env = PluginEnvironment(redisIndex: index)
            scheduler = FrameworkScheduler(datastore: ds, config: ConfigHolder(try PickerConfig.parse(text: RedisSchedulingTests.config, environment: env)))
            scheduler.eventLoop = group.loops[0]
            index.attach(group.loops[0])
        }

        func waitReady() async throws {
            let lane = index.lane(for: loop)!
            let deadline = Date().addingTimeInterval(5)
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

    @Test func replicasAgreeThroughRedisAndParkedRequestsKeepTheirOwnContext() async throws {
        let server = try RedisIndexTestServer()
        let ds = Self.datastore()
        let a = try Replica(ds, url: server.url), b = try Replica(ds, url: server.url)
        try await a.waitReady()
        try await b.waitReady()

        // Three conversations started on replica a (cold: each lands on a tie-broken pod, recorded in Redis).
        var home: [String: String] = [:]
        for topic in ["alpha", "beta", "gamma"] {
            let (d, n) = try await a.decide([Self.prompt(topic, 0)])
            #expect(n == 1)   // answered after the Redis lookup, not inside schedule
            home[topic] = d[0]
        }
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
}
