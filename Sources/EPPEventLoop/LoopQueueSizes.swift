import Synchronization

/// The sizes of one loop's queues, published by the loop thread once per iteration (relaxed stores, no
/// read-modify-write) so `/metrics` can read them from any thread. A value that only grows under steady
/// traffic points at a leak: timers never fired or cancelled, fds never deregistered, streams never closed.
public final class LoopQueueSizes: Sendable {
    /// Registered file descriptors (listeners, connections, client sockets), the loop's own two excluded.
    public let fds = Atomic<Int>(0)
    /// Live timers (scheduled, neither fired nor cancelled).
    public let timers = Atomic<Int>(0)
    /// Timer-heap entries including cancelled ones not yet dropped (they go when they reach the top).
    public let timerHeap = Atomic<Int>(0)
    /// Cross-thread tasks found waiting in the inbox at the last wake-up.
    public let inbox = Atomic<Int>(0)
    /// HTTP/2 streams open on this loop's connections.
    public let streams = Atomic<Int>(0)

    public init() {}
}
