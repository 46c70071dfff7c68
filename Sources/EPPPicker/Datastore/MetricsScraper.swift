// Model-server metrics scraping (scheduling.md §8): every `--refresh-metrics-interval` each endpoint of the
// current datastore snapshot gets `GET http://address:port/metrics`; the text is parsed with the endpoint's
// engine mapping and stored on the `Endpoint`.
//
// Runs on its own `EventLoop` (its own thread, never a request loop). HTTP is libcurl's multi interface driven
// by that epoll loop (`CurlMultiLoop`: curl tells it which sockets to watch and when to wake it; it answers
// with `curl_multi_socket_action`). Connections live in the multi handle's
// cache, so consecutive scrapes of one endpoint reuse one keep-alive connection.
//
// Health: a success stores fresh metrics with `healthy = true`. A failure keeps the last metrics and marks them
// `healthy = false` once `maxConsecutiveFailures` failures happened in a row (a refused connection at once); independently, metrics older than
// `stalenessThreshold` are marked unhealthy on every tick (a hung server whose requests only time out becomes
// unhealthy as soon as its data is stale). The next success makes the endpoint healthy again. An endpoint never
// scraped successfully keeps `metrics == nil` ("unknown").

import CCurl
import CLinux
import EPPEventLoop
import EPPObservability
import Glibc
import Logging
import EPPLock

public final class MetricsScraper: @unchecked Sendable {
    public struct Options: Sendable {
        /// Time between scrape rounds (`--refresh-metrics-interval`, default 50 ms).
        public var interval: Duration = .milliseconds(50)
        /// Per-request timeout (connect + response). nil ⇒ min(interval × 20, 1 s), at least 10 ms.
        public var requestTimeout: Duration? = nil
        /// Metrics older than this are marked unhealthy (`--metrics-staleness-threshold`, default 2 s).
        public var stalenessThreshold: Duration = .seconds(2)
        /// Failures in a row that mark an endpoint unhealthy (default 3).
        public var maxConsecutiveFailures: Int = 3
        /// Larger responses are failures (`too_large`), default 4 MiB.
        public var maxResponseBytes: Int = 4 << 20
        /// Request path.
        public var path: String = "/metrics"
        /// Idle keep-alive connections the multi handle may keep (CURLMOPT_MAXCONNECTS); at least one per endpoint
        /// is needed for reuse.
        public var maxIdleConnections: Int = 5000
        /// Replaces the built-in mapping of an engine (config `engineConfigs`).
        public var engineMappings: [EngineType: EngineMetricMapping] = [:]

        public init() {}

        /// The timeout actually used.
        public var effectiveRequestTimeout: Duration {
            if let t = requestTimeout { return t }
            return max(.milliseconds(10), min(interval * 20, .seconds(1)))
        }
    }

    /// Result labels of `epp_metrics_scrapes_total`.
    public enum ScrapeResult: String, Sendable, CaseIterable {
        case success
        case httpError = "http_error"
        case timeout
        case connectError = "connect_error"
        case tooLarge = "too_large"
        case parseError = "parse_error"
        case error
    }

    public let options: Options
    /// The scraper's own loop. Other rare background work (file watchers) may share it.
    public let eventLoop: EventLoop
    private let datastore: Datastore
    private let logger: Logger

    private let intervalNs: UInt64
    private let timeoutMs: Int
    private let stalenessNs: UInt64

    // Observability (nil without a registry).
    private let scrapeResults: [ScrapeResult: Counter]
    private let scrapeDuration: Histogram?
    private let scrapeErrors: Family<Counter>?
    private let newConnections: Counter?
    private let targetStates: Family<Gauge>?

    // Lifecycle (any thread).
    private let lifecycle = Lock<LifecycleState>(.idle)
    private enum LifecycleState { case idle, running(pthread_t), stopped }

    // Loop-confined state.
    private var curl: CurlMultiLoop? = nil
    private var headers: UnsafeMutablePointer<curl_slist>? = nil
    private var targets: [ObjectIdentifier: ScrapeTarget] = [:]
    private var targetList: [ScrapeTarget] = []
    private var tickTimer: TimerID? = nil
    private var nextTickAt: UInt64 = 0
    private var lastSnapshotVersion = -1
    private var mappings: [EngineType: EngineMetricMapping]
    private var running = false

    public init(datastore: Datastore, options: Options = Options(), registry: MetricsRegistry? = nil,
                logger: Logger = Logger(label: "epp.metrics-scraper")) {
        precondition(options.interval > .zero, "scrape interval must be positive")
        self.datastore = datastore
        self.options = options
        self.logger = logger
        self.eventLoop = EventLoop(index: -1, readBufferSize: 4096)
        self.mappings = options.engineMappings
        intervalNs = max(1, scraperNanoseconds(options.interval))
        timeoutMs = max(1, Int(scraperNanoseconds(options.effectiveRequestTimeout) / 1_000_000))
        stalenessNs = scraperNanoseconds(options.stalenessThreshold)
        _ = curlGlobalInit
        if let r = registry {
            let fam = r.counter("epp_metrics_scrapes_total", "Model-server /metrics scrapes by result.", labels: ["result"])
            var m: [ScrapeResult: Counter] = [:]
            for res in ScrapeResult.allCases { m[res] = fam.labels(res.rawValue) }
            scrapeResults = m
            scrapeDuration = r.histogram("epp_metrics_scrape_duration_seconds", "Duration of model-server /metrics scrapes.",
                                         bounds: Histogram.exponential(start: 0.0005, factor: 2, count: 14)).labels()
            scrapeErrors = r.counter("epp_metrics_scrape_errors_total", "Failed model-server /metrics scrapes by endpoint.",
                                     labels: ["endpoint"])
            newConnections = r.counter("epp_metrics_scrape_connections_total",
                                       "TCP connections opened for scrapes (keep-alive reuse keeps this low).").labels()
            targetStates = r.gauge("epp_metrics_scrape_targets", "Scraped endpoints by state (healthy, unhealthy, unknown).",
                                   labels: ["state"])
        } else {
            scrapeResults = [:]
            scrapeDuration = nil
            scrapeErrors = nil
            newConnections = nil
            targetStates = nil
        }
    }

    deinit {
        // stop() normally tore everything down on the loop thread; a never-started scraper owns nothing.
        if let h = headers { curl_slist_free_all(h) }
    }

    // MARK: lifecycle

    /// Starts the scraper thread. Calling it again (or after `stop()`) does nothing.
    public func start() {
        lifecycle.withLock { state in
            guard case .idle = state else { return }
            var tid = pthread_t()
            let arg = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                let scraper = Unmanaged<MetricsScraper>.fromOpaque(arg!).takeRetainedValue()
                scraper.threadMain()
                return nil
            }, arg)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            state = .running(tid)
        }
    }

    /// Stops scraping and joins the thread: in-flight transfers are aborted, connections closed. Endpoints keep
    /// their last metrics. Idempotent; called on the scraper's own loop it only
    /// requests the stop (no join).
    public func stop() {
        let tid: pthread_t? = lifecycle.withLock { state in
            defer { state = .stopped }
            if case .running(let t) = state { return t }
            return nil
        }
        guard let tid else { return }
        eventLoop.stop()
        if pthread_equal(tid, pthread_self()) != 0 { return }   // called on the scraper loop: it tears down on exit
        pthread_join(tid, nil)
    }

    /// Replaces engine metric mappings (e.g. after a config reload). Thread-safe; applied on the next scrapes.
    public func setEngineMappings(_ m: [EngineType: EngineMetricMapping]) {
        eventLoop.execute { [self] in
            mappings = m
            for t in targetList { t.mapping = mapping(for: t.endpoint) }
        }
    }

    private func threadMain() {
        setUp()
        eventLoop.run()
        tearDown()
        eventLoop.releaseAfterStop()
    }

    // MARK: setup / teardown (scraper thread)

    private func setUp() {
        guard let c = CurlMultiLoop(loop: eventLoop, maxConnections: max(16, options.maxIdleConnections),
                                    onFinished: { [unowned self] in self.collected($0) }) else {
            logger.critical("curl_multi_init failed; model-server metrics will not be scraped")
            return
        }
        curl = c
        headers = curl_slist_append(nil, "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1")
        running = true
        nextTickAt = EventLoop.now()
        tick()
    }

    private func tearDown() {
        running = false
        if let id = tickTimer { eventLoop.cancelTimer(id) }
        tickTimer = nil
        for t in targetList { removeTarget(t) }
        targets.removeAll()
        targetList.removeAll()
        curl?.close()   // closes cached connections
        curl = nil
        if let h = headers { curl_slist_free_all(h) }
        headers = nil
    }

    // MARK: scrape rounds

    private func tick() {
        guard running else { return }
        let now = EventLoop.now()
        let snap = datastore.snapshot()
        if snap.version != lastSnapshotVersion { reconcile(with: snap) }
        var healthy = 0, unhealthy = 0, unknown = 0
        for t in targetList {
            checkStaleness(t, now: now)
            if !t.inFlight { startScrape(t, now: now) }
            switch t.endpoint.metrics?.healthy {
            case .some(true): healthy += 1
            case .some(false): unhealthy += 1
            case nil: unknown += 1
            }
        }
        if let g = targetStates {
            g.labels("healthy").set(Double(healthy))
            g.labels("unhealthy").set(Double(unhealthy))
            g.labels("unknown").set(Double(unknown))
        }
        nextTickAt &+= intervalNs
        let after = EventLoop.now()
        if nextTickAt <= after { nextTickAt = after &+ intervalNs }   // fell behind: don't burst
        tickTimer = eventLoop.schedule(afterNanoseconds: nextTickAt - after) { [weak self] in self?.tick() }
    }

    /// Adds targets for new endpoints, drops removed ones. An endpoint object replaced by a new one with the same
    /// `ip:port` (labels changed) inherits the old one's metrics so it is not "unknown" for a round.
    private func reconcile(with snap: EndpointSnapshot) {
        lastSnapshotVersion = snap.version
        var next: [ObjectIdentifier: ScrapeTarget] = [:]
        var list: [ScrapeTarget] = []
        var added: [ScrapeTarget] = []
        for e in snap.endpoints {
            let id = ObjectIdentifier(e)
            if next[id] != nil { continue }
            if let t = targets[id] {
                next[id] = t
                list.append(t)
            } else if let t = makeTarget(for: e) {
                next[id] = t
                list.append(t)
                added.append(t)
            }
        }
        let gone = targets.filter { next[$0.key] == nil }.map(\.value)
        var goneByHostPort: [String: ScrapeTarget] = [:]
        for t in gone { goneByHostPort[t.endpoint.hostPort] = t }
        for t in added {
            if t.endpoint.metrics == nil, let old = goneByHostPort[t.endpoint.hostPort], let m = old.endpoint.metrics {
                t.endpoint.updateMetrics(m)
                t.consecutiveFailures = old.consecutiveFailures
                t.state = old.state
            }
        }
        let liveNames = Set(list.map(\.endpoint.name))
        for t in gone {
            removeTarget(t)
            if !liveNames.contains(t.endpoint.name) { scrapeErrors?.remove([t.endpoint.name]) }
        }
        targets = next
        targetList = list
        if !added.isEmpty || !gone.isEmpty {
            logger.debug("scrape targets updated", metadata: ["targets": "\(list.count)", "added": "\(added.count)"])
        }
    }

    private func makeTarget(for e: Endpoint) -> ScrapeTarget? {
        guard let easy = curl_easy_init() else {
            logger.error("curl_easy_init failed", metadata: ["endpoint": "\(e.name)"])
            return nil
        }
        let t = ScrapeTarget(endpoint: e, easy: easy, mapping: mapping(for: e),
                             url: "http://\(e.spec.address):\(e.spec.port)\(options.path)")
        let tp = Unmanaged.passUnretained(t).toOpaque()
        _ = t.url.withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_URL, $0) }   // curl copies strings
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_PRIVATE, tp)
        _ = shim_curl_easy_setopt_write_function(easy) { data, size, count, userdata in
            let t = Unmanaged<ScrapeTarget>.fromOpaque(userdata!).takeUnretainedValue()
            return t.append(data, size &* count)
        }
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, tp)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, timeoutMs)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, timeoutMs)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeRawPointer(headers))
        _ = "*".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_NOPROXY, $0) }
        _ = "http".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_PROTOCOLS_STR, $0) }
        _ = "epp-metrics-scraper".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_USERAGENT, $0) }
        _ = shim_curl_easy_setopt_off_t(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(options.maxResponseBytes))
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        t.maxBytes = options.maxResponseBytes
        t.errorCounter = scrapeErrors?.labels(e.name)
        return t
    }

    private func removeTarget(_ t: ScrapeTarget) {
        if t.inFlight { curl?.remove(t.easy) }
        t.inFlight = false
        curl_easy_cleanup(t.easy)
    }

    private func mapping(for e: Endpoint) -> EngineMetricMapping {
        let engine = e.spec.engineType
        return mappings[engine] ?? engine.mapping
    }

    private func startScrape(_ t: ScrapeTarget, now: UInt64) {
        guard let curl else { return }
        t.resetBody()
        t.startedAt = now
        t.inFlight = true
        let rc = curl.add(t.easy)
        if rc != CURLM_OK {
            t.inFlight = false
            failed(t, .error, String(cString: curl_multi_strerror(rc)), now: now)
        }
    }

    private func checkStaleness(_ t: ScrapeTarget, now: UInt64) {
        guard let sm = t.endpoint.metrics, sm.healthy, now > sm.scrapedAt, now - sm.scrapedAt > stalenessNs else { return }
        t.endpoint.updateMetrics(sm.with(healthy: false))
        transition(t, to: .unhealthy, reason: "metrics stale for \((now - sm.scrapedAt) / 1_000_000) ms"
                   + (t.lastError.map { " (last error: \($0))" } ?? ""))
    }

    // MARK: finished transfers (scraper thread)

    private func collected(_ transfers: [CurlMultiLoop.Finished]) {
        for f in transfers {
            guard let priv = f.privateData else { continue }
            let t = Unmanaged<ScrapeTarget>.fromOpaque(priv).takeUnretainedValue()
            t.inFlight = false
            if f.connects > 0 { newConnections?.increment(by: UInt64(f.connects)) }
            finished(t, code: f.code, status: f.status)
        }
    }

    // MARK: results

    private func finished(_ t: ScrapeTarget, code: CURLcode, status: Int) {
        let now = EventLoop.now()
        scrapeDuration?.observe(nanoseconds: now &- t.startedAt)
        guard code == CURLE_OK else {
            let result: ScrapeResult
            switch code {
            case CURLE_OPERATION_TIMEDOUT: result = .timeout
            case CURLE_COULDNT_CONNECT: result = .connectError
            case CURLE_FILESIZE_EXCEEDED: result = .tooLarge
            case CURLE_WRITE_ERROR where t.overflow: result = .tooLarge
            default: result = .error
            }
            let reason = result == .tooLarge ? "response larger than \(t.maxBytes) bytes"
                                             : String(cString: curl_easy_strerror(code))
            failed(t, result, reason, now: now)
            return
        }
        guard status == 200 else {
            failed(t, .httpError, "HTTP status \(status)", now: now)
            return
        }
        let metrics: EndpointMetrics
        var limits = PrometheusText.Limits.default
        limits.maxBytes = max(limits.maxBytes, t.maxBytes)
        do {
            metrics = try t.parse(limits: limits)
        } catch {
            failed(t, .parseError, "unparsable metrics: \(error)", now: now)
            return
        }
        scrapeResults[.success]?.increment()
        t.consecutiveFailures = 0
        t.lastError = nil
        t.endpoint.updateMetrics(ScrapedMetrics(metrics: metrics, scrapedAt: now, consecutiveFailures: 0, healthy: true))
        if !metrics.missing.isEmpty && !t.warnedMissing {
            t.warnedMissing = true
            logger.warning("model server does not expose some metrics; using 0", metadata: [
                "endpoint": "\(t.endpoint.name)", "address": "\(t.endpoint.hostPort)",
                "engine": "\(t.endpoint.spec.engineType.rawValue)", "missing": "\(metrics.missing.joined(separator: ","))",
            ])
        }
        transition(t, to: .healthy, reason: nil)
    }

    private func failed(_ t: ScrapeTarget, _ result: ScrapeResult, _ reason: String, now: UInt64) {
        scrapeResults[result]?.increment()
        t.errorCounter?.increment()
        t.consecutiveFailures += 1
        t.lastError = reason
        logger.trace("scrape failed", metadata: ["endpoint": "\(t.endpoint.name)", "error": "\(reason)"])
        guard let old = t.endpoint.metrics else {
            // Never scraped successfully: stays unknown (nil); log once.
            if t.state != .failingUnknown {
                t.state = .failingUnknown
                logger.warning("cannot scrape model-server metrics", metadata: [
                    "endpoint": "\(t.endpoint.name)", "url": "\(t.url)", "error": "\(reason)",
                ])
            }
            return
        }
        let stale = now > old.scrapedAt && now - old.scrapedAt > stalenessNs
        // Refused connection: nothing listens there any more (a killed server), so stop picking it now instead
        // of after `maxConsecutiveFailures` rounds of requests that can only fail.
        let unhealthy = result == .connectError || t.consecutiveFailures >= options.maxConsecutiveFailures || stale
        let sm = old.with(healthy: unhealthy ? false : old.healthy, consecutiveFailures: t.consecutiveFailures)
        t.endpoint.updateMetrics(sm)
        if !sm.healthy {
            transition(t, to: .unhealthy, reason: "\(t.consecutiveFailures) failed scrapes in a row, last: \(reason)")
        }
    }

    private func transition(_ t: ScrapeTarget, to s: ScrapeTarget.State, reason: String?) {
        guard t.state != s else { return }
        let old = t.state
        t.state = s
        switch s {
        case .unhealthy:
            logger.warning("endpoint marked unhealthy", metadata: [
                "endpoint": "\(t.endpoint.name)", "address": "\(t.endpoint.hostPort)", "reason": "\(reason ?? "")",
            ])
        case .healthy where old == .unhealthy || old == .failingUnknown:
            logger.info("endpoint metrics recovered", metadata: ["endpoint": "\(t.endpoint.name)", "address": "\(t.endpoint.hostPort)"])
        default:
            break
        }
    }
}

/// One endpoint being scraped; owns its reusable easy handle and response buffer. Scraper-thread only.
final class ScrapeTarget {
    enum State { case unknown, healthy, unhealthy, failingUnknown }

    let endpoint: Endpoint
    let easy: UnsafeMutableRawPointer
    let url: String
    var mapping: EngineMetricMapping
    var maxBytes = 4 << 20
    var inFlight = false
    var startedAt: UInt64 = 0
    var consecutiveFailures = 0
    var lastError: String? = nil
    var state: State = .unknown
    var warnedMissing = false
    var errorCounter: Counter? = nil
    fileprivate var overflow = false
    private var body: [UInt8] = []

    init(endpoint: Endpoint, easy: UnsafeMutableRawPointer, mapping: EngineMetricMapping, url: String) {
        self.endpoint = endpoint
        self.easy = easy
        self.mapping = mapping
        self.url = url
    }

    func resetBody() {
        if body.capacity > 1 << 20 { body = [] } else { body.removeAll(keepingCapacity: true) }
        overflow = false
    }

    /// Write callback: returning less than `n` aborts the transfer (CURLE_WRITE_ERROR).
    func append(_ data: UnsafeMutablePointer<CChar>?, _ n: Int) -> Int {
        guard n > 0, let data else { return 0 }
        if body.count + n > maxBytes {
            overflow = true
            return 0
        }
        body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
        return n
    }

    func parse(limits: PrometheusText.Limits) throws(PrometheusParseError) -> EndpointMetrics {
        let mapping = self.mapping
        let r = body.withUnsafeBytes { buf in
            Result { () throws(PrometheusParseError) -> EndpointMetrics in
                try EndpointMetrics.extract(from: buf, mapping: mapping, limits: limits)
            }
        }
        return try r.get()
    }
}

@inline(__always)
private func scraperNanoseconds(_ d: Duration) -> UInt64 {
    let (s, atto) = d.components
    if s < 0 { return 0 }
    return UInt64(s) &* 1_000_000_000 &+ UInt64(atto / 1_000_000_000)
}
