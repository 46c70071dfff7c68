// List+watch of one resource collection (client-go's Reflector, reduced to what discovery needs):
//   list (paged, `limit`/`continue`) ⇒ replace the store, remember the list's resourceVersion
//   watch from that version (`watch=1&allowWatchBookmarks=true&timeoutSeconds=N`), newline-delimited JSON
//   events: ADDED/MODIFIED/DELETED update the store, BOOKMARK advances the version, ERROR ends the watch.
//   A watch the server ends normally (its timeout) resumes from the last version at once; 410 Gone (HTTP status
//   or an ERROR event with code 410) relists; other failures retry with capped exponential backoff.
//
// Loop-confined: created, driven and stopped on the discovery loop's thread.

import CCurl
import EPPEventLoop
import EPPObservability
import Foundation
import Logging

/// Counters shared by all reflectors of one discovery (nil-safe without a registry).
struct KubernetesReflectorMetrics {
    var lists: Family<Counter>?
    var events: Family<Counter>?
    var restarts: Family<Counter>?

    init(registry: MetricsRegistry?) {
        guard let r = registry else { return }
        lists = r.counter("epp_kubernetes_lists_total", "Kubernetes list requests by resource and result (success, error, expired).",
                          labels: ["resource", "result"])
        events = r.counter("epp_kubernetes_watch_events_total", "Kubernetes watch events by resource and type.",
                           labels: ["resource", "type"])
        restarts = r.counter("epp_kubernetes_watch_restarts_total",
                             "Kubernetes watches that ended, by resource and reason (timeout, expired, error).",
                             labels: ["resource", "reason"])
    }
}

/// Backoff timing; tests shorten it.
public struct KubernetesBackoff: Sendable {
    public var initial: Duration = .milliseconds(250)
    public var max: Duration = .seconds(30)
    public init() {}
}

final class KubernetesReflector<Object> {
    struct Target {
        /// Collection path, e.g. `/api/v1/namespaces/ns/pods`.
        var path: String
        var labelSelector: String?
        var fieldSelector: String?
        /// For logs and metric labels (`pods`, `inferencepools`).
        var resource: String
    }

    let target: Target
    /// Objects by `metadata.name`; valid once `synced`.
    private(set) var store: [String: Object] = [:]
    /// True after the first complete list.
    private(set) var synced = false
    private(set) var resourceVersion = ""

    private let client: KubernetesHTTPClient
    private let decode: ([String: Any]) throws -> Object
    /// Called after a list replaced the store or watch events changed it (deferred to the end of the loop
    /// iteration, outside curl callbacks, so it may stop or start reflectors).
    private let onChange: () -> Void
    private let logger: Logger
    private let metrics: KubernetesReflectorMetrics
    private let backoffConfig: KubernetesBackoff
    private let watchTimeoutSeconds: () -> Int

    private var request: KubernetesRequest?
    private var retryTimer: TimerID?
    private var backoffNs: UInt64 = 0
    private var stopped = true
    private var changePending = false
    private var failing = false          // logs a failure once, then the recovery
    private var lastExpiryAt: UInt64 = 0 // monotonic ns of the last 410
    // Paged list in progress.
    private var listItems: [String: Object] = [:]
    private var listBody: [UInt8] = []
    // Watch in progress.
    private var splitter = KubernetesLineSplitter()
    private var watchError: (reason: String, expired: Bool)?
    private var watchStartedAt: UInt64 = 0
    private var watchEvents = 0
    private var errorBody: [UInt8] = []

    static var maxListBytes: Int { 64 << 20 }

    init(target: Target, client: KubernetesHTTPClient, logger: Logger, metrics: KubernetesReflectorMetrics,
         backoff: KubernetesBackoff, watchTimeoutSeconds: @escaping () -> Int,
         decode: @escaping ([String: Any]) throws -> Object, onChange: @escaping () -> Void) {
        self.target = target
        self.client = client
        self.logger = logger
        self.metrics = metrics
        self.backoffConfig = backoff
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.decode = decode
        self.onChange = onChange
    }

    func start() {
        guard stopped else { return }
        stopped = false
        list(continueToken: "")
    }

    /// Cancels the request or retry in flight; `onChange` is not called again.
    func stop() {
        stopped = true
        if let r = request { client.cancel(r) }
        request = nil
        if let t = retryTimer { client.loop.cancelTimer(t) }
        retryTimer = nil
    }

    // MARK: list

    private func query(_ extra: [(String, String)]) -> String {
        var q: [(String, String)] = []
        if let l = target.labelSelector { q.append(("labelSelector", l)) }
        if let f = target.fieldSelector { q.append(("fieldSelector", f)) }
        q += extra
        return target.path + "?" + q.map { "\($0.0)=\(kubernetesQueryEscape($0.1))" }.joined(separator: "&")
    }

    private func list(continueToken: String) {
        guard !stopped else { return }
        if continueToken.isEmpty { listItems = [:] }
        listBody = []
        var extra = [("limit", "500")]
        if !continueToken.isEmpty { extra.append(("continue", continueToken)) }
        let path = query(extra)
        request = client.get(path, timeout: .seconds(60), onData: { [unowned self] bytes, _ in
            guard listBody.count + bytes.count <= Self.maxListBytes else { return false }
            listBody.append(contentsOf: bytes)
            return true
        }, onDone: { [unowned self] result in
            request = nil
            listDone(result, continued: !continueToken.isEmpty)
        })
        if request == nil { retryLater("cannot start the list request", relist: true) }
    }

    private func listDone(_ result: KubernetesTransferResult, continued: Bool) {
        guard !stopped else { return }
        let body = listBody
        listBody = []
        if result.abortedByHandler {
            metrics.lists?.labels(target.resource, "error").increment()
            retryLater("list response larger than \(Self.maxListBytes) bytes", relist: true)
            return
        }
        guard result.code == CURLE_OK else {
            metrics.lists?.labels(target.resource, "error").increment()
            retryLater("list failed: \(result.error ?? "transfer error")", relist: true)
            return
        }
        guard result.status == 200 else {
            let st = KubernetesStatus.decode(body: body)
            if result.status == 410 && continued {
                // The continue token outlived the server's snapshot: list again from the start.
                metrics.lists?.labels(target.resource, "expired").increment()
                logger.info("list continuation expired; relisting", metadata: ["resource": "\(target.resource)"])
                relistAfterExpiry()
                return
            }
            metrics.lists?.labels(target.resource, "error").increment()
            retryLater("list: HTTP \(result.status)" + (st.map { " \($0.reason): \($0.message)" } ?? ""), relist: true)
            return
        }
        let page: KubernetesListPage
        do {
            page = try KubernetesListPage.decode(body: body)
        } catch {
            metrics.lists?.labels(target.resource, "error").increment()
            retryLater("list: \(error)", relist: true)
            return
        }
        for item in page.items { upsert(item) }
        if !page.continueToken.isEmpty {
            list(continueToken: page.continueToken)
            return
        }
        metrics.lists?.labels(target.resource, "success").increment()
        store = listItems
        listItems = [:]
        resourceVersion = page.resourceVersion
        synced = true
        recovered()
        logger.debug("listed", metadata: ["resource": "\(target.resource)", "objects": "\(store.count)",
                                          "resourceVersion": "\(resourceVersion)"])
        notifyChange()
        watch()
    }

    /// Adds one list item to the page being built (a broken item is skipped with a warning, not fatal).
    private func upsert(_ item: [String: Any]) {
        do {
            let meta = try KubernetesObjectMeta.decode(item)
            listItems[meta.name] = try decode(item)
        } catch {
            logger.warning("skipping undecodable object", metadata: ["resource": "\(target.resource)", "error": "\(error)"])
        }
    }

    // MARK: watch

    private func watch() {
        guard !stopped else { return }
        splitter.reset()
        watchError = nil
        errorBody = []
        watchEvents = 0
        watchStartedAt = EventLoop.now()
        let timeout = watchTimeoutSeconds()
        let path = query([("watch", "1"), ("resourceVersion", resourceVersion), ("allowWatchBookmarks", "true"),
                          ("timeoutSeconds", String(timeout))])
        request = client.get(path, timeout: .seconds(timeout + 30), onData: { [unowned self] bytes, status in
            watchData(bytes, status: status)
        }, onDone: { [unowned self] result in
            request = nil
            watchDone(result)
        })
        if request == nil { retryLater("cannot start the watch request", relist: false) }
    }

    /// Runs inside curl's write callback: only parses and updates the store.
    private func watchData(_ bytes: UnsafeRawBufferPointer, status: Int) -> Bool {
        guard status == 200 else {
            if errorBody.count < 64 << 10 { errorBody.append(contentsOf: bytes) }
            return true
        }
        let lines: [[UInt8]]
        do {
            lines = try splitter.feed(bytes)
        } catch {
            watchError = ("\(error)", false)
            return false
        }
        for line in lines {
            let ev: KubernetesWatchEvent
            do {
                ev = try KubernetesWatchEvent.decode(line: line)
            } catch {
                watchError = ("\(error)", false)
                return false
            }
            metrics.events?.labels(target.resource, ev.kind.rawValue).increment()
            watchEvents += 1
            switch ev.kind {
            case .added, .modified, .deleted:
                let meta: KubernetesObjectMeta
                do {
                    meta = try KubernetesObjectMeta.decode(ev.object)
                } catch {
                    logger.warning("skipping watch event", metadata: ["resource": "\(target.resource)", "error": "\(error)"])
                    continue
                }
                if ev.kind == .deleted {
                    store.removeValue(forKey: meta.name)
                } else {
                    do {
                        store[meta.name] = try decode(ev.object)
                    } catch {
                        logger.warning("skipping undecodable object", metadata: [
                            "resource": "\(target.resource)", "name": "\(meta.name)", "error": "\(error)"])
                        store.removeValue(forKey: meta.name)
                    }
                }
                if !meta.resourceVersion.isEmpty { resourceVersion = meta.resourceVersion }
                notifyChange()
            case .bookmark:
                if let rv = ev.resourceVersion, !rv.isEmpty { resourceVersion = rv }
            case .error:
                let st = KubernetesStatus.decode(ev.object)
                watchError = ("\(st.code) \(st.reason): \(st.message)", st.isExpired)
                return false
            }
        }
        return true
    }

    private func watchDone(_ result: KubernetesTransferResult) {
        guard !stopped else { return }
        if let e = watchError {
            if e.expired {
                metrics.restarts?.labels(target.resource, "expired").increment()
                logger.info("watch expired (410); relisting", metadata: ["resource": "\(target.resource)", "status": "\(e.reason)"])
                relistAfterExpiry()
            } else {
                metrics.restarts?.labels(target.resource, "error").increment()
                retryLater("watch: \(e.reason)", relist: true)
            }
            return
        }
        if result.status == 410 {
            metrics.restarts?.labels(target.resource, "expired").increment()
            logger.info("watch resourceVersion expired (HTTP 410); relisting", metadata: ["resource": "\(target.resource)"])
            relistAfterExpiry()
            return
        }
        if result.status != 200 && result.status != 0 {
            metrics.restarts?.labels(target.resource, "error").increment()
            let st = KubernetesStatus.decode(body: errorBody)
            retryLater("watch: HTTP \(result.status)" + (st.map { " \($0.reason): \($0.message)" } ?? ""), relist: true)
            return
        }
        guard result.code == CURLE_OK else {
            metrics.restarts?.labels(target.resource, "error").increment()
            retryLater("watch: \(result.error ?? "transfer error")", relist: false)
            return
        }
        // The server closed the stream (its timeoutSeconds): resume from the last version. A server that keeps
        // closing at once without events must not make us spin.
        metrics.restarts?.labels(target.resource, "timeout").increment()
        let lived = EventLoop.now() &- watchStartedAt
        if watchEvents == 0 && lived < 1_000_000_000 {
            retryLater("watch closed immediately without events", relist: false)
        } else {
            backoffNs = 0
            watch()
        }
    }

    // MARK: retry

    /// A 410 means our version is too old: relist now. Another 410 within 2 s means the server keeps expiring
    /// us; back off instead of spinning list ⇄ 410.
    private func relistAfterExpiry() {
        let now = EventLoop.now()
        let recent = lastExpiryAt != 0 && now &- lastExpiryAt < 2_000_000_000
        lastExpiryAt = now
        if recent {
            retryLater("resource version expired again within 2 s", relist: true)
        } else {
            list(continueToken: "")
        }
    }

    private func retryLater(_ reason: String, relist: Bool) {
        guard !stopped else { return }
        let initial = nanos(backoffConfig.initial), cap = nanos(backoffConfig.max)
        backoffNs = backoffNs == 0 ? initial : min(cap, backoffNs &* 2)
        let delay = backoffNs - backoffNs / 5 + UInt64.random(in: 0...max(1, backoffNs / 5 * 2))   // ±20 % jitter
        if !failing {
            failing = true
            logger.error("Kubernetes API request failed; retrying with backoff", metadata: [
                "resource": "\(target.resource)", "error": "\(reason)", "retry_ms": "\(delay / 1_000_000)"])
        } else {
            logger.debug("Kubernetes API request failed again", metadata: [
                "resource": "\(target.resource)", "error": "\(reason)", "retry_ms": "\(delay / 1_000_000)"])
        }
        retryTimer = client.loop.schedule(afterNanoseconds: delay) { [weak self] in
            guard let self else { return }
            retryTimer = nil
            if relist || resourceVersion.isEmpty { list(continueToken: "") } else { watch() }
        }
    }

    private func recovered() {
        backoffNs = 0
        if failing {
            failing = false
            logger.info("Kubernetes API requests succeed again", metadata: ["resource": "\(target.resource)"])
        }
    }

    private func notifyChange() {
        guard !changePending else { return }
        changePending = true
        client.loop.deferUntilEndOfIteration { [weak self] in
            guard let self else { return }
            changePending = false
            if !stopped { onChange() }
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
func kubernetesQueryEscape(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
        }
    }
    return out
}

private extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

private func nanos(_ d: Duration) -> UInt64 {
    let (s, atto) = d.components
    return s < 0 ? 0 : UInt64(s) &* 1_000_000_000 &+ UInt64(atto / 1_000_000_000)
}
