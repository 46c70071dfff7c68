// Kubernetes endpoint discovery: keeps the datastore's endpoint set equal to the serving pods of an
// InferencePool (`--pool-name`: the pool's spec.selector.matchLabels and spec.targetPorts, watched so changes
// apply) or of a plain label selector with fixed ports (`--endpoint-selector` + `--endpoint-target-ports`).
// Pods are list+watched in the pool namespace with the selector applied server-side.
//
// Runs on its own EventLoop thread (never a request loop). Every field below `eventLoop` is confined to that
// thread; `start`/`stop` may be called from any thread. Like the endpoints-file reloader, each change replaces
// the datastore's set atomically (`Datastore.replace` keeps unchanged endpoints' objects and counters).

import EPPEventLoop
import EPPObservability
import Glibc
import Logging
import EPPLock

public final class KubernetesDiscovery: @unchecked Sendable {
    public enum Source: Sendable, Equatable {
        /// `inference.networking.k8s.io/v1` InferencePool by name.
        case inferencePool(name: String)
        /// Standalone: pods matching `selector`, one endpoint per target port.
        case selector(KubernetesLabelSelector, targetPorts: [Int])
    }

    public struct Options: Sendable {
        public var backoff = KubernetesBackoff()
        /// Server-side watch timeout (`timeoutSeconds`); nil ⇒ random in 300..<600 s, like client-go, so many
        /// replicas don't rewatch in lockstep.
        public var watchTimeoutSeconds: Int? = nil
        public init() {}
    }

    public static let poolGroupVersion = "inference.networking.k8s.io/v1"

    public let config: KubernetesClientConfig
    public let source: Source
    public let namespace: String
    public let eventLoop: EventLoop
    private let datastore: Datastore
    private let options: Options
    private let logger: Logger
    private let onApplied: (@Sendable (EndpointSnapshot) -> Void)?
    private let metrics: KubernetesReflectorMetrics
    private let applies: Counter?
    private let lifecycle = Lock<LifecycleState>(.idle)
    private enum LifecycleState { case idle, running(pthread_t), stopped }

    // Loop-confined.
    private var client: KubernetesHTTPClient?
    private var poolReflector: KubernetesReflector<PoolState>?
    private var podReflector: KubernetesReflector<KubernetesPod>?
    private var podSelector: KubernetesLabelSelector?
    private var targetPorts: [Int] = []
    private var loggedPoolProblem: String?   // last logged pool problem, so each is logged once

    enum PoolState {
        case valid(InferencePoolSpec)
        case invalid(String)
    }

    /// - Parameter onApplied: called on the discovery thread after a new set was applied (e.g. readiness).
    public init(config: KubernetesClientConfig, source: Source, namespace: String, datastore: Datastore,
                options: Options = Options(), registry: MetricsRegistry? = nil,
                logger: Logger = Logger(label: "epp.kubernetes"),
                onApplied: (@Sendable (EndpointSnapshot) -> Void)? = nil) {
        self.config = config
        self.source = source
        self.namespace = namespace
        self.datastore = datastore
        self.options = options
        self.logger = logger
        self.onApplied = onApplied
        self.eventLoop = EventLoop(index: -1, readBufferSize: 4096)
        self.metrics = KubernetesReflectorMetrics(registry: registry)
        applies = registry?.counter("epp_kubernetes_endpoint_updates_total",
                                    "Endpoint-set changes applied from Kubernetes discovery.").labels()
    }

    /// Starts the discovery thread. Calling it again (or after `stop()`) does nothing.
    public func start() {
        lifecycle.withLock { state in
            guard case .idle = state else { return }
            var tid = pthread_t()
            let arg = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                let d = Unmanaged<KubernetesDiscovery>.fromOpaque(arg!).takeRetainedValue()
                d.threadMain()
                return nil
            }, arg)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            state = .running(tid)
        }
    }

    /// Stops watching and joins the thread; the datastore keeps the last set. Idempotent.
    public func stop() {
        let tid: pthread_t? = lifecycle.withLock { state in
            defer { state = .stopped }
            if case .running(let t) = state { return t }
            return nil
        }
        guard let tid else { return }
        eventLoop.stop()
        if pthread_equal(tid, pthread_self()) != 0 { return }
        pthread_join(tid, nil)
    }

    private func threadMain() {
        setUp()
        eventLoop.run()
        podReflector?.stop()
        poolReflector?.stop()
        podReflector = nil
        poolReflector = nil
        client?.shutdown()
        client = nil
        eventLoop.releaseAfterStop()
    }

    private func setUp() {
        let c = KubernetesHTTPClient(loop: eventLoop, config: config, logger: logger)
        client = c
        switch source {
        case .inferencePool(let name):
            logger.info("Kubernetes discovery: watching InferencePool", metadata: [
                "pool": "\(namespace)/\(name)", "server": "\(config.server)"])
            let target = KubernetesReflector<PoolState>.Target(
                path: "/apis/\(Self.poolGroupVersion)/namespaces/\(kubernetesQueryEscape(namespace))/inferencepools",
                labelSelector: nil, fieldSelector: "metadata.name=\(name)", resource: "inferencepools")
            poolReflector = KubernetesReflector(
                target: target, client: c, logger: logger, metrics: metrics, backoff: options.backoff,
                watchTimeoutSeconds: watchTimeout,
                decode: { obj in
                    do { return .valid(try InferencePoolSpec.decode(obj)) } catch { return .invalid("\(error)") }
                },
                onChange: { [unowned self] in poolChanged(name: name) })
            poolReflector?.start()
        case .selector(let sel, let ports):
            logger.info("Kubernetes discovery: watching pods by selector", metadata: [
                "namespace": "\(namespace)", "selector": "\(sel)", "targetPorts": "\(ports)", "server": "\(config.server)"])
            targetPorts = ports
            startPods(selector: sel)
        }
    }

    private func watchTimeout() -> Int {
        options.watchTimeoutSeconds ?? Int.random(in: 300..<600)
    }

    // MARK: pool

    private func poolChanged(name: String) {
        guard let pr = poolReflector, pr.synced else { return }
        switch pr.store[name] {
        case nil:
            poolUnusable("InferencePool \(namespace)/\(name) not found; no endpoints until it exists")
        case .invalid(let why)?:
            poolUnusable("InferencePool \(namespace)/\(name) is invalid (\(why)); no endpoints until it is fixed")
        case .valid(let spec)?:
            if loggedPoolProblem != nil { logger.info("InferencePool usable again", metadata: ["pool": "\(namespace)/\(name)"]) }
            loggedPoolProblem = nil
            let sel = KubernetesLabelSelector(matchLabels: spec.selector)
            let portsChanged = spec.targetPorts != targetPorts
            targetPorts = spec.targetPorts
            if podSelector != sel || podReflector == nil {
                logger.info("InferencePool selector applied", metadata: [
                    "pool": "\(namespace)/\(name)", "selector": "\(sel)", "targetPorts": "\(spec.targetPorts)"])
                stopPods()
                startPods(selector: sel)   // applies once the new pod list is in
            } else if portsChanged {
                logger.info("InferencePool targetPorts changed", metadata: ["pool": "\(namespace)/\(name)", "targetPorts": "\(spec.targetPorts)"])
                podsChanged()
            }
        }
    }

    /// A missing or invalid pool routes nowhere: stop watching pods and empty the set.
    private func poolUnusable(_ message: String) {
        if loggedPoolProblem != message {
            logger.error("\(message)")
            loggedPoolProblem = message
        }
        stopPods()
        targetPorts = []
        apply([])
    }

    // MARK: pods

    private func startPods(selector: KubernetesLabelSelector) {
        guard let c = client else { return }
        podSelector = selector
        let target = KubernetesReflector<KubernetesPod>.Target(
            path: "/api/v1/namespaces/\(kubernetesQueryEscape(namespace))/pods",
            labelSelector: selector.description, fieldSelector: nil, resource: "pods")
        let r = KubernetesReflector<KubernetesPod>(
            target: target, client: c, logger: logger, metrics: metrics, backoff: options.backoff,
            watchTimeoutSeconds: watchTimeout, decode: KubernetesPod.decode,
            onChange: { [unowned self] in podsChanged() })
        podReflector = r
        r.start()
    }

    private func stopPods() {
        podReflector?.stop()
        podReflector = nil
        podSelector = nil
    }

    private func podsChanged() {
        guard let r = podReflector, r.synced, let sel = podSelector else { return }
        apply(KubernetesEndpointMapping.endpoints(pods: r.store.values, targetPorts: targetPorts, selector: sel))
    }

    private func apply(_ specs: [EndpointSpec]) {
        let current = datastore.snapshot()
        if datastore.hasLoaded && current.endpoints.map(\.spec) == specs { return }
        let snap = datastore.replace(with: specs)
        applies?.increment()
        let before = Set(current.endpoints.map(\.spec.name))
        let after = Set(specs.map(\.name))
        logger.info("Kubernetes endpoints applied", metadata: [
            "count": "\(specs.count)",
            "added": "\(after.subtracting(before).sorted().joined(separator: ","))",
            "removed": "\(before.subtracting(after).sorted().joined(separator: ","))",
        ])
        onApplied?(snap)
    }
}
