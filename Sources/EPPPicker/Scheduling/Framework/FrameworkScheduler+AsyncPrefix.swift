/// The asynchronous path of `FrameworkScheduler.schedule`: producers need I/O first (`AsyncDataProducer` in
/// `ctx.pendingAsync`: the Redis prefix lookup, the precise scorer's render call + Redis read). The request's
/// context — candidates, their metrics, parsed fields, hashes — is parked in a `PendingPrefixSchedule` and a
/// spare context takes its place for the next requests of this loop; the last producer's callback (each bounds
/// its own wait and fills a fallback) restores it and runs the profiles and the decision exactly as the
/// synchronous path would. Contexts are recycled, so a loop allocates at most as many as it has requests parked.
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
        /// Producers that have not called back yet.
        var outstanding = 0

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

    /// Parks the request while the producers in `ctx.pendingAsync` do their I/O (in parallel); the last one to
    /// call back resumes it. Producers that could not start filled their fallback already.
    func suspendForAsyncProducers(_ request: SchedulingRequest, _ config: PickerConfig, _ rewrittenBody: [UInt8]?,
                                  _ waiter: SchedulingWaiter) -> SchedulingOutcome? {
        let parked = ctx
        parked.body = UnsafeRawBufferPointer(start: nil, count: 0)   // the request's bytes go away after this call
        let pending = PendingPrefixSchedule(ctx: parked, config: config, request: request, rewrittenBody: rewrittenBody,
                                            waiter: waiter)
        for producer in parked.pendingAsync {
            // `done` never runs inside `startAsync`, so counting up here cannot race a resume.
            if producer.startAsync(parked, { [unowned self] in self.producerDone(pending) }) { pending.outstanding += 1 }
        }
        guard pending.outstanding > 0 else {
            parked.pendingAsync.removeAll(keepingCapacity: true)
            return finishSchedule(request, config, rewrittenBody)
        }
        let next = spareContexts.popLast() ?? SchedulingContext()
        next.eventLoop = eventLoop
        ctx = next
        return nil
    }

    private func producerDone(_ p: PendingPrefixSchedule) {
        p.outstanding -= 1
        if p.outstanding == 0 { resume(p) }
    }

    /// On the loop, outside any other request's `schedule`: finishes the parked request and hands the outcome
    /// to its waiter.
    private func resume(_ p: PendingPrefixSchedule) {
        let current = ctx
        ctx = p.ctx
        p.ctx.pendingAsync.removeAll(keepingCapacity: true)
        let request = SchedulingRequest(requestID: p.requestID, path: p.path, headers: p.ctx.headers,
                                        body: UnsafeRawBufferPointer(start: nil, count: 0), headerOnly: p.headerOnly,
                                        subsetHint: p.subsetHint)
        let outcome = finishSchedule(request, p.config, p.rewrittenBody)
        ctx = current
        if spareContexts.count < 256 { spareContexts.append(p.ctx) }
        p.waiter.schedulingFinished(outcome)
    }
}
