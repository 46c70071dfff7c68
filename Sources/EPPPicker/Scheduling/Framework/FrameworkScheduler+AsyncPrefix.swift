/// The asynchronous path of `FrameworkScheduler.schedule`: a producer sent its prefix lookup to Redis
/// (`ctx.pendingPrefixLookup`). The request's context — candidates, their metrics, parsed fields, hashes — is
/// parked in a `PendingPrefixSchedule` and a spare context takes its place for the next requests of this
/// loop; the reply (or the budget, or an error: the local index answers) restores it and runs the profiles
/// and the decision exactly as the synchronous path would. Contexts are recycled, so a loop allocates at
/// most as many as it has lookups in flight.
extension FrameworkScheduler {
    /// What a parked request needs besides its context. The body is not kept: only producers read it, and they
    /// are done (`ctx.body` is empty while the request finishes).
    final class PendingPrefixSchedule {
        let ctx: SchedulingContext
        let config: PickerConfig
        let requestID: String
        let path: String
        let subsetHint: SubsetHint?
        let headerOnly: Bool
        let rewrittenBody: [UInt8]?
        let waiter: SchedulingWaiter

        init(ctx: SchedulingContext, config: PickerConfig, request: SchedulingRequest, rewrittenBody: [UInt8]?,
             waiter: SchedulingWaiter) {
            self.ctx = ctx
            self.config = config
            requestID = request.requestID
            path = request.path
            subsetHint = request.subsetHint
            headerOnly = request.headerOnly
            self.rewrittenBody = rewrittenBody
            self.waiter = waiter
        }
    }

    func suspendForPrefixLookup(_ request: SchedulingRequest, _ config: PickerConfig, _ rewrittenBody: [UInt8]?,
                                _ waiter: SchedulingWaiter) -> SchedulingOutcome? {
        guard let producer = ctx.pendingPrefixLookup else { return finishSchedule(request, config, rewrittenBody) }
        let parked = ctx
        parked.body = UnsafeRawBufferPointer(start: nil, count: 0)   // the request's bytes go away after this call
        let pending = PendingPrefixSchedule(ctx: parked, config: config, request: request, rewrittenBody: rewrittenBody,
                                            waiter: waiter)
        let started = producer.startRedisLookup(parked) { [unowned self] in self.resume(pending) }
        guard started else {
            // Nothing was sent (connection just went away): the local index answers now.
            producer.lookupLocally(parked)
            parked.pendingPrefixLookup = nil
            return finishSchedule(request, config, rewrittenBody)
        }
        let next = spareContexts.popLast() ?? SchedulingContext()
        next.eventLoop = eventLoop
        ctx = next
        return nil
    }

    /// On the loop, outside any other request's `schedule`: finishes the parked request and hands the outcome
    /// to its waiter.
    private func resume(_ p: PendingPrefixSchedule) {
        let current = ctx
        ctx = p.ctx
        p.ctx.pendingPrefixLookup = nil
        let request = SchedulingRequest(requestID: p.requestID, path: p.path, headers: p.ctx.headers,
                                        body: UnsafeRawBufferPointer(start: nil, count: 0), headerOnly: p.headerOnly,
                                        subsetHint: p.subsetHint)
        let outcome = finishSchedule(request, p.config, p.rewrittenBody)
        ctx = current
        if spareContexts.count < 256 { spareContexts.append(p.ctx) }
        p.waiter.schedulingFinished(outcome)
    }
}
