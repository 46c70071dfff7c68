import Atomics
import EPPEventLoop
import EPPGRPC
import EPPProtobuf

/// Process health as the probes see it. Thread-safe; changes wake every Watch stream.
public final class HealthState: Sendable {
    public static let extProcService = "envoy.service.ext_proc.v3.ExternalProcessor"
    public static let knownServices: Set<String> = ["", "liveness", "readiness", extProcService]

    private let endpointsLoaded = ManagedAtomic<Bool>(false)
    private let configValid = ManagedAtomic<Bool>(true)
    private let draining = ManagedAtomic<Bool>(false)
    private let version = ManagedAtomic<Int>(0)
    private let listeners = ManagedAtomic<Int>(0)
    nonisolated(unsafe) private var onChange: [@Sendable () -> Void] = []   // set before start, read-only after

    public init() {}

    /// Registers a change hook (call before the server starts).
    public func addChangeListener(_ f: @escaping @Sendable () -> Void) { onChange.append(f) }

    public func setEndpointsLoaded(_ v: Bool) { update(endpointsLoaded, v) }
    public func setConfigValid(_ v: Bool) { update(configValid, v) }
    public func setDraining(_ v: Bool) { update(draining, v) }

    private func update(_ flag: ManagedAtomic<Bool>, _ v: Bool) {
        if flag.exchange(v, ordering: .acquiringAndReleasing) != v {
            version.wrappingIncrement(ordering: .relaxed)
            for f in onChange { f() }
        }
    }

    public var isLive: Bool { true }
    public var isReady: Bool {
        endpointsLoaded.load(ordering: .acquiring) && configValid.load(ordering: .acquiring) && !draining.load(ordering: .acquiring)
    }
    public var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Status of a service name, or nil for an unknown name.
    public func status(of service: String) -> ServingStatus? {
        switch service {
        case "liveness": return .serving
        case "", "readiness", HealthState.extProcService: return isReady ? .serving : .notServing
        default: return nil
        }
    }
}

/// Watch streams open on one loop; notified when the health state changes. Owned by that loop.
final class HealthWatchers {
    private var calls: [ObjectIdentifier: HealthWatchCall] = [:]

    func add(_ c: HealthWatchCall) { calls[ObjectIdentifier(c)] = c }
    func remove(_ c: HealthWatchCall) { calls[ObjectIdentifier(c)] = nil }
    func notifyAll() { for c in calls.values { c.sendIfChanged() } }
}

/// `grpc.health.v1.Health/Check`: unary; unknown service ⇒ NOT_FOUND (Trailers-Only).
final class HealthCheckCall: GRPCMethodHandler {
    private let health: HealthState
    private var answered = false

    init(health: HealthState) { self.health = health }

    func received(_ call: GRPCCall, message: UnsafeRawBufferPointer) {
        guard !answered else { return call.finish(GRPCStatus(.invalidArgument, "Check takes exactly one request message")) }
        answered = true
        let service: String
        do { service = try HealthCheckRequest.decode(message) } catch {
            return call.finish(GRPCStatus(.internal, "malformed HealthCheckRequest: \(error)"))
        }
        guard let status = health.status(of: service) else {
            return call.finish(GRPCStatus(.notFound, "unknown service \(service)"))
        }
        call.send { out in WireWriter.appendGRPCFrame(to: &out) { HealthCheckResponse.encode(status: status, into: &$0) } }
        call.finish(.ok)
    }

    func clientHalfClosed(_ call: GRPCCall) {
        if !answered { call.finish(GRPCStatus(.invalidArgument, "Check requires a request message")) }
    }

    func callEnded(_ call: GRPCCall, reason: GRPCCall.EndReason) {}
}

/// `grpc.health.v1.Health/Watch`: server stream; sends the status now and on every change; an unknown
/// service gets SERVICE_UNKNOWN and the stream stays open.
final class HealthWatchCall: GRPCMethodHandler {
    private let health: HealthState
    private let watchers: HealthWatchers
    private weak var call: GRPCCall?
    private var service: String?
    private var lastSent: ServingStatus?

    init(health: HealthState, watchers: HealthWatchers) {
        self.health = health
        self.watchers = watchers
    }

    func received(_ call: GRPCCall, message: UnsafeRawBufferPointer) {
        guard service == nil else { return call.finish(GRPCStatus(.invalidArgument, "Watch takes exactly one request message")) }
        do { service = try HealthCheckRequest.decode(message) } catch {
            return call.finish(GRPCStatus(.internal, "malformed HealthCheckRequest: \(error)"))
        }
        self.call = call
        watchers.add(self)
        sendIfChanged()
    }

    func sendIfChanged() {
        guard let call, let service else { return }
        let status = health.status(of: service) ?? .serviceUnknown
        guard status != lastSent else { return }
        lastSent = status
        call.send { out in WireWriter.appendGRPCFrame(to: &out) { HealthCheckResponse.encode(status: status, into: &$0) } }
    }

    func clientHalfClosed(_ call: GRPCCall) {}

    func callEnded(_ call: GRPCCall, reason: GRPCCall.EndReason) { watchers.remove(self) }
}
