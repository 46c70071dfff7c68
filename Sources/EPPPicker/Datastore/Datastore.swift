import Atomics
import EPPLock

/// A model-server endpoint known to the picker. Identity is (name, ip:port); the object survives reloads
/// of the endpoint set so in-flight counters stay accurate. Shared by all loops: immutable apart from
/// atomics.
public final class Endpoint: Sendable {
    public let spec: EndpointSpec
    /// `ip:port`, exactly what goes into `x-gateway-destination-endpoint`.
    public let hostPort: String
    /// Requests picked for this endpoint whose ext_proc stream has not ended yet (all loops, all replicas'
    /// own picks only).
    public let inFlightRequests = ManagedAtomic<Int>(0)
    /// Prompt tokens (estimated) of those requests.
    public let inFlightPromptTokens = ManagedAtomic<Int>(0)
    /// Cache of the in-process prefix index: this endpoint's id there (see `LocalPrefixIndex`).
    let prefixIndexSlot = ManagedAtomic<UInt64>(0)

    /// Latest scrape result (written by the metrics scraper's loop, read lock-free-ish on the request path).
    private let scraped = Lock<ScrapedMetrics?>(nil)
    /// Bumped on every metrics update of any endpoint of the same datastore, so request loops can reuse
    /// what they read until something changes (`Datastore.metricsGeneration`).
    private let generation: ManagedAtomic<Int>

    public init(spec: EndpointSpec, metricsGeneration: ManagedAtomic<Int> = ManagedAtomic(0)) {
        self.spec = spec
        self.hostPort = spec.hostPort
        self.generation = metricsGeneration
    }

    /// The most recent metrics of this endpoint, or nil before the first successful scrape.
    public var metrics: ScrapedMetrics? { scraped.withLock { $0 } }

    public func updateMetrics(_ m: ScrapedMetrics) {
        scraped.withLock { $0 = m }
        generation.wrappingIncrement(ordering: .releasing)
    }

    public var name: String { spec.name }
}

/// What the scraper last learned about an endpoint. Immutable and shared by reference: the request path
/// reads it with one retain instead of copying a struct with reference-counted fields, and reads the hot
/// numbers (`waitingQueueSize`, `runningRequests`, `kvCacheUsage`) unpacked in `let`s.
public final class ScrapedMetrics: Sendable {
    public let metrics: EndpointMetrics
    /// Monotonic time (EventLoop.now(), ns) of the last successful scrape.
    public let scrapedAt: UInt64
    /// Scrapes failed in a row since the last success.
    public let consecutiveFailures: Int
    /// False when the metrics are stale or scrapes keep failing: filters drop such endpoints.
    public let healthy: Bool
    public let waitingQueueSize: Int
    public let runningRequests: Int
    public let kvCacheUsage: Double

    public init(metrics: EndpointMetrics, scrapedAt: UInt64, consecutiveFailures: Int = 0, healthy: Bool = true) {
        self.metrics = metrics
        self.scrapedAt = scrapedAt
        self.consecutiveFailures = consecutiveFailures
        self.healthy = healthy
        waitingQueueSize = metrics.waitingQueueSize
        runningRequests = metrics.runningRequests
        kvCacheUsage = metrics.kvCacheUsage
    }

    /// The same metrics with another health state.
    public func with(healthy: Bool, consecutiveFailures: Int? = nil) -> ScrapedMetrics {
        ScrapedMetrics(metrics: metrics, scrapedAt: scrapedAt, consecutiveFailures: consecutiveFailures ?? self.consecutiveFailures,
                       healthy: healthy)
    }
}

/// An immutable view of the endpoint set; readers on the request path take one per request.
public final class EndpointSnapshot: Sendable {
    public let endpoints: [Endpoint]
    public let version: Int
    private let byHostPort: [String: Endpoint]

    init(endpoints: [Endpoint], version: Int) {
        self.endpoints = endpoints
        self.version = version
        var map: [String: Endpoint] = [:]
        for e in endpoints { map[e.hostPort] = e }
        byHostPort = map
    }

    public func endpoint(hostPort: String) -> Endpoint? { byHostPort[hostPort] }
    public var isEmpty: Bool { endpoints.isEmpty }
}

/// The set of endpoints, swapped atomically when discovery changes it. Thread-safe.
public final class Datastore: Sendable {
    private let current: Lock<EndpointSnapshot>
    private let loaded = ManagedAtomic<Bool>(false)
    /// Changes whenever any endpoint's metrics change (see `Endpoint.updateMetrics`).
    private let generation = ManagedAtomic<Int>(0)

    /// Read before reading endpoints' metrics: if it is unchanged later, what was read is still current.
    public var metricsGeneration: Int { generation.load(ordering: .acquiring) }

    public init() {
        current = Lock(EndpointSnapshot(endpoints: [], version: 0))
    }

    /// The current set (cheap: one lock, one retain).
    public func snapshot() -> EndpointSnapshot { current.withLock { $0 } }

    /// True once a first endpoint set was applied (readiness gate).
    public var hasLoaded: Bool { loaded.load(ordering: .acquiring) }

    /// Replaces the endpoint set; endpoints with the same name and address keep their counters.
    @discardableResult
    public func replace(with specs: [EndpointSpec]) -> EndpointSnapshot {
        let snap = current.withLock { old -> EndpointSnapshot in
            var reuse: [String: Endpoint] = [:]
            for e in old.endpoints { reuse[e.name + "|" + e.hostPort] = e }
            let eps = specs.map { spec -> Endpoint in
                if let e = reuse[spec.name + "|" + spec.hostPort], e.spec == spec { return e }
                return Endpoint(spec: spec, metricsGeneration: generation)
            }
            let next = EndpointSnapshot(endpoints: eps, version: old.version + 1)
            old = next
            return next
        }
        loaded.store(true, ordering: .releasing)
        return snap
    }
}
