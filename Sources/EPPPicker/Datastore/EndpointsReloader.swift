// Hot reload of the endpoints file (scheduling.md §6, `watchFile: true`): on a file change (FileWatcher) or on
// demand (SIGHUP) the file is read leniently — invalid entries are logged and skipped, the valid ones replace
// the endpoint set atomically (`Datastore.replace`, which keeps the objects, counters and metrics of unchanged
// endpoints). An unreadable, oversized or malformed file keeps the previous set, and so does a file whose
// entries are all invalid (a half-written file must not empty the pool); `endpoints: []` does empty it.

import EPPEventLoop
import EPPObservability
import Logging
import EPPLock

public final class EndpointsReloader: Sendable {
    /// What one reload did.
    public enum Outcome: Sendable, Equatable {
        /// The set changed; `skipped` invalid entries were left out.
        case applied(endpoints: Int, skipped: Int)
        /// The file lists the current set already.
        case unchanged(endpoints: Int, skipped: Int)
        /// The previous set was kept.
        case failed(reason: String)

        /// The `result` label of `epp_endpoints_reload_total`.
        public var resultLabel: String {
            switch self {
            case .applied(_, let skipped): return skipped == 0 ? "success" : "partial"
            case .unchanged: return "unchanged"
            case .failed: return "error"
            }
        }
    }

    public let path: String
    private let datastore: Datastore
    private let logger: Logger
    private let onApplied: (@Sendable (EndpointSnapshot) -> Void)?
    private let results: Family<Counter>?
    private let skippedEntries: Counter?
    private let serial = Lock<Int>(0)   // reloads so far; serialises reloads from SIGHUP and the watcher
    private let watcher = Lock<FileWatcher?>(nil)

    /// - Parameter onApplied: called (on the reloading thread) after a new set was applied, e.g. to update readiness.
    public init(path: String, datastore: Datastore, registry: MetricsRegistry? = nil,
                logger: Logger = Logger(label: "epp.endpoints"),
                onApplied: (@Sendable (EndpointSnapshot) -> Void)? = nil) {
        self.path = path
        self.datastore = datastore
        self.logger = logger
        self.onApplied = onApplied
        if let r = registry {
            results = r.counter("epp_endpoints_reload_total", "Endpoints file reloads by result (success, partial, unchanged, error).",
                                labels: ["result"])
            skippedEntries = r.counter("epp_endpoints_reload_skipped_entries_total",
                                       "Invalid endpoints-file entries skipped on reload.").labels()
            for l in ["success", "partial", "unchanged", "error"] { _ = results!.labels(l) }
        } else {
            results = nil
            skippedEntries = nil
        }
    }

    /// Reloads the file now (any thread; reloads are serialised).
    @discardableResult
    public func reload(reason: String = "manual") -> Outcome {
        serial.withLock { count in
            count += 1
            let outcome = reloadLocked(reason: reason)
            results?.labels(outcome.resultLabel).increment()
            return outcome
        }
    }

    private func reloadLocked(reason: String) -> Outcome {
        let loaded: (endpoints: [EndpointSpec], problems: [EndpointsFileProblem])
        do {
            loaded = try EndpointsFile.loadSkippingInvalid(path: path)
        } catch {
            logger.error("endpoints reload failed; keeping the previous set", metadata: [
                "path": "\(path)", "trigger": "\(reason)", "error": "\(error)",
            ])
            return .failed(reason: "\(error)")
        }
        let skipped = Set(loaded.problems.compactMap(\.index)).count   // entries, not problems
        for p in loaded.problems {
            logger.warning("endpoints file: skipping invalid entry", metadata: ["path": "\(path)", "problem": "\(p)"])
        }
        if skipped > 0 { skippedEntries?.increment(by: UInt64(skipped)) }
        if loaded.endpoints.isEmpty && skipped > 0 {
            logger.error("endpoints reload: no valid entry; keeping the previous set", metadata: [
                "path": "\(path)", "trigger": "\(reason)", "invalid": "\(skipped)",
            ])
            return .failed(reason: "no valid entry (\(skipped) invalid)")
        }
        let current = datastore.snapshot()
        if datastore.hasLoaded && current.endpoints.map(\.spec) == loaded.endpoints {
            logger.debug("endpoints file unchanged", metadata: ["path": "\(path)", "trigger": "\(reason)"])
            return .unchanged(endpoints: loaded.endpoints.count, skipped: skipped)
        }
        let snap = datastore.replace(with: loaded.endpoints)
        let before = Set(current.endpoints.map(\.spec.name))
        let after = Set(loaded.endpoints.map(\.name))
        logger.info("endpoints reloaded", metadata: [
            "path": "\(path)", "trigger": "\(reason)", "count": "\(snap.endpoints.count)",
            "added": "\(after.subtracting(before).count)", "removed": "\(before.subtracting(after).count)",
            "skipped": "\(skipped)",
        ])
        onApplied?(snap)
        return .applied(endpoints: snap.endpoints.count, skipped: skipped)
    }

    /// Starts watching the file: every debounced change reloads it on `loop`'s thread. Replaces an earlier watch.
    @discardableResult
    public func watch(on loop: EventLoop, options: FileWatcher.Options = FileWatcher.Options()) -> FileWatcher {
        let w = FileWatcher(path: path, loop: loop, options: options, logger: logger) { [weak self] in
            self?.reload(reason: "file change")
        }
        let old = watcher.withLock { cur -> FileWatcher? in
            let o = cur
            cur = w
            return o
        }
        old?.stop()
        w.start()
        return w
    }

    /// Stops the file watch (if any).
    public func stopWatching() {
        watcher.withLock { cur -> FileWatcher? in
            let o = cur
            cur = nil
            return o
        }?.stop()
    }
}
