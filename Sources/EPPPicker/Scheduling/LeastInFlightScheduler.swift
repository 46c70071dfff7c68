import Atomics

/// The first real picker: among eligible endpoints (subset hint applied), the one with the fewest
/// in-flight requests tracked by this picker (incremented at pick, decremented at stream end), ties
/// broken uniformly at random. No endpoints ⇒ 503 (header-only requests: 500 `no pods available`).
/// One instance per loop; reads the shared datastore snapshot per request.
public final class LeastInFlightScheduler: RequestScheduler {
    private let datastore: Datastore
    private var random = FastRandom()

    public init(datastore: Datastore) {
        self.datastore = datastore
    }

    public func schedule(_ request: SchedulingRequest, waiter: SchedulingWaiter) -> SchedulingOutcome? {
        let snapshot = datastore.snapshot()
        if snapshot.isEmpty {
            return .rejected(request.headerOnly ? .noPodsInDatastore : .serviceUnavailable)
        }
        var best: Endpoint?
        var bestLoad = Int.max
        var ties = 0
        for e in snapshot.endpoints {
            if let hint = request.subsetHint, !hint.allows(address: e.spec.address, port: e.spec.port, hostPort: e.hostPort) { continue }
            let load = e.inFlightRequests.load(ordering: .relaxed)
            if load < bestLoad {
                best = e; bestLoad = load; ties = 1
            } else if load == bestLoad {
                // Reservoir sampling over equal loads: uniform tie-break in one pass.
                ties += 1
                if random.next() % UInt64(ties) == 0 { best = e }
            }
        }
        guard let chosen = best else { return .rejected(.serviceUnavailable) }
        chosen.inFlightRequests.wrappingIncrement(ordering: .relaxed)
        return .decided(SchedulingDecision(endpoint: chosen))
    }
}
