/// A data producer whose data needs I/O (a Redis round trip, an HTTP call). In `produce` it prepares the
/// request and appends itself to `ctx.pendingAsync`; the scheduler then parks the context
/// (`FrameworkScheduler+AsyncPrefix.swift`), calls `startAsync` on every pending producer and runs the
/// profiles once all of them called back. Each producer bounds its own wait and fills a fallback on
/// timeout or error, so a parked request always gets its decision.
protocol AsyncDataProducer: AnyObject {
    /// Starts the I/O for the parked `ctx`. `done` runs later on the loop exactly once — never inside this
    /// call — after the producer filled its data (real or fallback). Returns false when nothing was started:
    /// the producer has filled its fallback already and `done` never runs.
    func startAsync(_ ctx: SchedulingContext, _ done: @escaping () -> Void) -> Bool
}

/// The Redis-backed approximate index: one `EVALSHA`, the local index on budget/error.
extension ApproxPrefixCacheProducer: AsyncDataProducer {
    func startAsync(_ ctx: SchedulingContext, _ done: @escaping () -> Void) -> Bool {
        if startRedisLookup(ctx, done) { return true }
        lookupLocally(ctx)   // nothing was sent (connection just went away): the local index answers now
        return false
    }
}
