import EPPEventLoop
import EPPObservability
import Glibc
import Logging
import Synchronization

/// Counts listener pauses after accept failed with EMFILE/ENFILE and logs them at most once per interval
/// (every loop's listeners share one reporter, so a process-wide fd shortage gives one line, not one per loop).
public final class DescriptorExhaustionReporter: Sendable {
    private let counter: Counter
    private let logger: Logger
    private let intervalNanos: UInt64
    private let lastLogNanos = Atomic<UInt64>(0)
    private let suppressed = Atomic<Int>(0)

    public init(counter: Counter, logger: Logger = Logger(label: "epp.accept"), intervalNanos: UInt64 = 10_000_000_000) {
        self.counter = counter
        self.logger = logger
        self.intervalNanos = intervalNanos
    }

    /// Loop thread of the listener that paused.
    public func listenerPaused(port: Int, errno e: Int32) {
        counter.increment()
        let now = EventLoop.now()
        let last = lastLogNanos.load(ordering: .relaxed)
        guard last == 0 || now &- last >= intervalNanos,
              lastLogNanos.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else {
            suppressed.add(1, ordering: .relaxed)
            return
        }
        let more = suppressed.exchange(0, ordering: .relaxed)
        let what = e == ENFILE ? "ENFILE (system file table full)" : "EMFILE (process file descriptor limit)"
        logger.warning("accept on port \(port) failed: \(what); pausing this listener for 100 ms (raise the fd limit or lower --max-connections)\(more > 0 ? "; \(more) more pauses since the last line" : "")")
    }
}
