import CLinux
import EPPLock
import Glibc
import Synchronization

/// Something registered on an event loop for readiness events on one file descriptor.
/// Called only on the loop's thread.
public protocol EventHandler: AnyObject {
    func handleEvents(_ events: UInt32)
}

/// Something with buffered output that the loop flushes once per iteration (after all events of an
/// `epoll_wait` batch were handled), so many messages produced in one iteration leave in one syscall.
public protocol Flushable: AnyObject {
    /// Set by the loop while the object sits in the flush list; lets `scheduleFlush` dedupe in O(1).
    var flushScheduled: Bool { get set }
    func flush()
}

/// An epoll reactor owned by one thread. Everything except `execute(_:)` and `stop()` must be called
/// on that thread. Timers use a timerfd (nanosecond deadlines); cross-thread wake-ups use an eventfd.
public final class EventLoop: @unchecked Sendable {
    public let index: Int
    private let epfd: Int32
    private let wakeFd: Int32
    private let timerFd: Int32
    private var handlers: [EventHandler?] = []          // indexed by fd
    private var flushList: [Flushable] = []
    private var timers = TimerHeap()
    private var armedDeadline: UInt64 = 0
    private let inbox = Lock<[@Sendable () -> Void]>([])
    private let stopRequested = Atomic<Bool>(false)
    /// Shared scratch buffer for reads on this loop: connections read into it and consume it at once.
    public let readBuffer: UnsafeMutableRawBufferPointer
    /// Hooks run at the end of each iteration before flushing (e.g. a Redis adapter's batched write).
    private var beforeFlushHooks: [() -> Void] = []
    private var deferred: [() -> Void] = []
    /// Queue sizes for `/metrics`, refreshed at the end of every iteration.
    public let queueSizes = LoopQueueSizes()
    private var registeredFds = 0
    private var lastInboxDepth = 0
    /// HTTP/2 streams open on this loop; adjusted by the loop's connections (loop thread only).
    public var openStreams = 0

    public init(index: Int = 0, readBufferSize: Int = 256 * 1024) {
        self.index = index
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epfd >= 0, "epoll_create1 failed: errno \(shim_errno())")
        wakeFd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        timerFd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        precondition(wakeFd >= 0 && timerFd >= 0)
        readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readBufferSize, alignment: 16)
        addRaw(fd: wakeFd, events: EPOLLIN.rawValue)
        addRaw(fd: timerFd, events: EPOLLIN.rawValue)
    }

    deinit {
        close(epfd); close(wakeFd); close(timerFd)
        readBuffer.deallocate()
    }

    // MARK: registration

    private func addRaw(fd: Int32, events: UInt32) {
        var ev = epoll_event()
        ev.events = events
        ev.data.fd = fd
        _ = epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
    }

    /// Registers `handler` for `events` (EPOLLIN/EPOLLOUT/...) on `fd`. The loop keeps a strong reference
    /// until `deregister`.
    public func register(fd: Int32, events: UInt32, handler: EventHandler) {
        let i = Int(fd)
        if i >= handlers.count { handlers.append(contentsOf: repeatElement(nil, count: i + 1 - handlers.count + 64)) }
        if handlers[i] == nil { registeredFds += 1 }
        handlers[i] = handler
        addRaw(fd: fd, events: events)
    }

    public func modify(fd: Int32, events: UInt32) {
        var ev = epoll_event()
        ev.events = events
        ev.data.fd = fd
        _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }

    public func deregister(fd: Int32) {
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
        if Int(fd) < handlers.count, handlers[Int(fd)] != nil {
            handlers[Int(fd)] = nil
            registeredFds -= 1
        }
    }

    // MARK: flushing and deferred work

    public func scheduleFlush(_ f: Flushable) {
        if f.flushScheduled { return }
        f.flushScheduled = true
        flushList.append(f)
    }

    public func addBeforeFlushHook(_ hook: @escaping () -> Void) { beforeFlushHooks.append(hook) }

    /// Runs `work` on this loop after the current event batch (before flushing). Loop thread only.
    public func deferUntilEndOfIteration(_ work: @escaping () -> Void) { deferred.append(work) }

    // MARK: timers

    /// Monotonic clock in nanoseconds.
    @inline(__always)
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Runs `callback` on the loop after `nanoseconds`. Returns an id for `cancelTimer`.
    @discardableResult
    public func schedule(afterNanoseconds nanoseconds: UInt64, _ callback: @escaping () -> Void) -> TimerID {
        let id = timers.insert(deadline: EventLoop.now() &+ nanoseconds, callback: callback)
        rearmTimer()
        return id
    }

    public func cancelTimer(_ id: TimerID) { timers.cancel(id) }

    private func rearmTimer() {
        guard let next = timers.nextDeadline else { return }
        if armedDeadline != 0 && armedDeadline <= next { return }
        armedDeadline = next
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(next / 1_000_000_000)
        spec.it_value.tv_nsec = Int(next % 1_000_000_000)
        _ = timerfd_settime(timerFd, Int32(TFD_TIMER_ABSTIME), &spec, nil)
    }

    private func runExpiredTimers() {
        var buf: UInt64 = 0
        _ = read(timerFd, &buf, 8)
        armedDeadline = 0
        let now = EventLoop.now()
        while let cb = timers.popExpired(now: now) { cb() }
        rearmTimer()
    }

    // MARK: cross-thread

    /// Runs `task` on the loop thread soon. Safe from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        inbox.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    /// Drops every handler, timer, hook and queued task, so the objects they hold (which mostly hold this
    /// loop back) can deinitialise before the process exits. Call only once `run()` has returned, from the
    /// thread that joined the loop's thread; the loop must not run again. Registered fds are not closed
    /// (their owners close them in deinit or at exit).
    public func releaseAfterStop() {
        precondition(stopRequested.load(ordering: .acquiring), "releaseAfterStop() on a loop that was not stopped")
        handlers.removeAll()
        registeredFds = 0
        flushList.removeAll()
        timers = TimerHeap()
        beforeFlushHooks.removeAll()
        deferred.removeAll()
        inbox.withLock { $0.removeAll() }
    }

    private func drainInbox() {
        var buf: UInt64 = 0
        _ = read(wakeFd, &buf, 8)
        let tasks = inbox.withLock { t -> [@Sendable () -> Void] in let x = t; t.removeAll(); return x }
        lastInboxDepth = tasks.count
        for t in tasks { t() }
    }

    // MARK: running

    /// Runs until `stop()`. Call on the thread that owns this loop.
    public func run() {
        let maxEvents = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: maxEvents)
        defer { events.deallocate() }
        while !stopRequested.load(ordering: .acquiring) {
            let timeout: Int32 = (flushList.isEmpty && deferred.isEmpty) ? -1 : 0
            let n = epoll_wait(epfd, events, Int32(maxEvents), timeout)
            if n < 0 {
                if shim_errno() == EINTR { continue }
                fatalError("epoll_wait failed: errno \(shim_errno())")
            }
            for i in 0..<Int(n) {
                let ev = events[i]
                let fd = ev.data.fd
                if fd == wakeFd { drainInbox(); continue }
                if fd == timerFd { runExpiredTimers(); continue }
                if Int(fd) < handlers.count, let h = handlers[Int(fd)] { h.handleEvents(ev.events) }
            }
            runEndOfIteration()
            publishQueueSizes()
        }
    }

    private func publishQueueSizes() {
        queueSizes.fds.store(registeredFds, ordering: .relaxed)
        queueSizes.timers.store(timers.liveCount, ordering: .relaxed)
        queueSizes.timerHeap.store(timers.heapCount, ordering: .relaxed)
        queueSizes.inbox.store(lastInboxDepth, ordering: .relaxed)
        queueSizes.streams.store(openStreams, ordering: .relaxed)
    }

    /// Deferred work, before-flush hooks, then one flush per dirty object.
    public func runEndOfIteration() {
        while !deferred.isEmpty {
            let work = deferred
            deferred.removeAll(keepingCapacity: true)
            for w in work { w() }
        }
        for hook in beforeFlushHooks { hook() }
        var i = 0
        while i < flushList.count {   // flush() may schedule more flushes
            let f = flushList[i]
            f.flushScheduled = false
            f.flush()
            i += 1
        }
        flushList.removeAll(keepingCapacity: true)
    }
}

public struct TimerID: Hashable, Sendable { let raw: UInt64 }

/// Binary min-heap of deadlines; cancelled timers are dropped lazily when they reach the top.
struct TimerHeap {
    private var heap: [(deadline: UInt64, id: UInt64)] = []
    private var callbacks: [UInt64: () -> Void] = [:]
    private var nextID: UInt64 = 1

    var liveCount: Int { callbacks.count }
    var heapCount: Int { heap.count }

    var nextDeadline: UInt64? {
        mutating get {
            while let top = heap.first, callbacks[top.id] == nil { popTop() }
            return heap.first?.deadline
        }
    }

    mutating func insert(deadline: UInt64, callback: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        callbacks[id] = callback
        heap.append((deadline, id))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if heap[p].deadline <= heap[i].deadline { break }
            heap.swapAt(p, i)
            i = p
        }
        return TimerID(raw: id)
    }

    mutating func cancel(_ id: TimerID) { callbacks[id.raw] = nil }

    mutating func popExpired(now: UInt64) -> (() -> Void)? {
        while let top = heap.first {
            guard let cb = callbacks[top.id] else { popTop(); continue }
            if top.deadline > now { return nil }
            popTop()
            callbacks[top.id] = nil
            return cb
        }
        return nil
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        if heap.isEmpty { return }
        heap[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && heap[l].deadline < heap[m].deadline { m = l }
            if r < heap.count && heap[r].deadline < heap[m].deadline { m = r }
            if m == i { break }
            heap.swapAt(m, i)
            i = m
        }
    }
}
