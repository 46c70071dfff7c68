import CHiredis
import CLinux
import EPPEventLoop
import EPPObservability
import Glibc
import Logging

/// One Redis connection on one `EventLoop`, using hiredis 0.14's async API with our own epoll adapter.
///
/// **Ownership and threading.** A client belongs to exactly one loop (one client per loop). Create it anywhere,
/// but call every method (`connect`, `send…`, `evalScript`, `preload`, `close`) and read every property on that
/// loop's thread; completions and `onStateChange` run there too. Call `close()` before dropping the last
/// reference (a client dropped while connected frees its context without running pending completions).
///
/// **Writes** are batched: hiredis' `addWrite` only records the wish; a before-flush hook of the loop calls
/// `redisAsyncHandleWrite` once per iteration (one `write()` for everything issued in that iteration) and arms
/// `EPOLLOUT` only when output is left over. Commands are RESP encoded in Swift and handed to
/// `redisAsyncFormattedCommand` (no variadic C calls, binary safe).
///
/// **Failure model.** Commands fail fast with `.unavailable` unless the connection is ready (connected, `AUTH`
/// and `SELECT` done). A command whose deadline passes gets `.timeout` at once and the connection is reset
/// (replies are FIFO, so a late reply would poison the stream): every other pending command gets
/// `.disconnected`, and the client reconnects with exponential backoff (min…max delay, jittered in [d/2, d]).
/// Completions may run before `send` returns (fail fast).
public final class RedisClient: @unchecked Sendable {
    public enum State: Sendable, Equatable {
        /// Created, `connect()` not called yet.
        case idle
        /// TCP/unix connect or `AUTH`/`SELECT`/`SCRIPT LOAD` handshake in progress; commands fail fast.
        case connecting
        /// Commands are accepted.
        case ready
        /// Waiting to reconnect after a failure; commands fail fast.
        case backoff
        /// `close()` was called.
        case closed
    }

    public struct Configuration: Sendable {
        /// Deadline for TCP/unix connect plus the handshake.
        public var connectTimeoutNanos: UInt64 = 1_000_000_000
        /// Timeout of commands sent without an explicit one.
        public var defaultCommandTimeoutNanos: UInt64 = 1_000_000_000
        public var reconnectMinDelayNanos: UInt64 = 50_000_000
        public var reconnectMaxDelayNanos: UInt64 = 2_000_000_000
        /// More commands in flight than this fail with `.unavailable` (bounds memory if Redis stalls).
        public var maxInFlight: Int = 65_536
        public init() {}
    }

    /// Counters for tests and debugging (loop thread only).
    public struct Stats: Sendable {
        public var commandsSent: UInt64 = 0
        public var replies: UInt64 = 0
        /// `redisAsyncHandleWrite` calls on a connected context — each is one `write()` syscall.
        public var writeCalls: UInt64 = 0
        /// `epoll_ctl(MOD)` calls made by the adapter.
        public var epollModifies: UInt64 = 0
        /// Handshakes completed (the connection became ready).
        public var connects: UInt64 = 0
        public var reconnectAttempts: UInt64 = 0
        /// Connection resets caused by a command deadline.
        public var timeouts: UInt64 = 0
    }

    public let loop: EventLoop
    public let url: RedisURL
    public let configuration: Configuration
    private let metrics: RedisClientMetrics?

    public private(set) var state: State = .idle
    public private(set) var stats = Stats()
    /// The last connection problem (connect error, handshake error reply, timeout), for logs.
    public private(set) var lastError: String?
    /// Called on the loop whenever `state` changes.
    public var onStateChange: ((State) -> Void)?
    /// Connection problems are logged as warnings (the first failure, then at most one line per
    /// `problemLogIntervalNanos` while it lasts), recovery at info. The URL is logged redacted.
    public var logger: Logger
    public var problemLogIntervalNanos: UInt64 = 10_000_000_000
    /// When the current run of failures began (0: not failing), its attempts, and its last log line.
    private var failingSince: UInt64 = 0
    private var failedAttempts = 0
    private var lastProblemLogAt: UInt64 = 0

    // Connection (one hiredis context at a time).
    private var ac: UnsafeMutablePointer<redisAsyncContext>?
    private var fd: Int32 = -1
    private var handler: SocketHandler?
    /// Free of the current context started (by us or by hiredis); don't touch `ac` except to wait for cleanup.
    private var dying = false
    private var tcpConnected = false
    private var handshakeRemaining = 0
    private var reading = false
    private var writeArmed = false
    private var wantWrite = false
    private var hookInstalled = false
    private var connectTimer: TimerID?
    private var reconnectTimer: TimerID?
    private var consecutiveFailures = 0

    // Commands in flight, FIFO (matches hiredis' reply order). privdata carries `seq`.
    private var nextSeq: UInt64 = 1
    private var pending = Ring<Pending>()
    /// Monotonic deque of (seq, deadline): the front is the earliest deadline among commands in flight.
    private var deadlines = Ring<(seq: UInt64, deadline: UInt64)>()
    private var timeoutTimer: TimerID?
    private var timeoutTimerDeadline: UInt64 = 0
    private var encoder = RESPEncoder(capacity: 4096)
    private var preloaded: [RedisScript] = []

    public typealias Completion = (Result<RedisReply, RedisClientError>) -> Void

    public init(loop: EventLoop, url: RedisURL, configuration: Configuration = Configuration(),
                metrics: RedisClientMetrics? = nil, logger: Logger = Logger(label: "epp.redis")) {
        self.logger = logger
        self.loop = loop
        self.url = url
        self.configuration = configuration
        self.metrics = metrics
    }

    deinit {
        if let t = timeoutTimer { loop.cancelTimer(t) }
        if let t = connectTimer { loop.cancelTimer(t) }
        if let t = reconnectTimer { loop.cancelTimer(t) }
        if let ac {
            ac.pointee.ev.data = nil          // hooks and reply callbacks become no-ops
            if fd >= 0 { loop.deregister(fd: fd) }
            if !dying { redisAsyncFree(ac) }
        }
    }

    // MARK: public API

    /// Starts connecting (and keeps reconnecting until `close()`). Loop thread only.
    public func connect() {
        guard state == .idle else { return }
        if !hookInstalled {
            hookInstalled = true
            loop.addBeforeFlushHook { [weak self] in self?.flushWrites() }
        }
        startConnect(isReconnect: false)
    }

    /// Fails everything pending with `.closed`, frees the connection, stops reconnecting.
    public func close() {
        guard state != .closed else { return }
        if let t = reconnectTimer { loop.cancelTimer(t); reconnectTimer = nil }
        if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
        if let t = timeoutTimer { loop.cancelTimer(t); timeoutTimer = nil }
        let entries = takeAllPending()
        setState(.closed)
        if let ac, !dying { dying = true; redisAsyncFree(ac) }
        for e in entries { deliver(e.sink, .failure(.closed)) }
    }

    public var isReady: Bool { state == .ready }

    /// Sends one command (arguments are binary safe). `timeoutNanos` defaults to the configured one.
    public func send(_ arguments: [[UInt8]], timeoutNanos: UInt64? = nil, _ completion: @escaping Completion) {
        guard admit() else { fail(.single(completion), .unavailable); return }
        encoder.reset()
        encoder.encode(command: arguments)
        submitEncoded(sink: .single(completion), timeoutNanos: timeoutNanos)
    }

    public func send(_ arguments: [String], timeoutNanos: UInt64? = nil, _ completion: @escaping Completion) {
        guard admit() else { fail(.single(completion), .unavailable); return }
        encoder.reset()
        encoder.encode(command: arguments)
        submitEncoded(sink: .single(completion), timeoutNanos: timeoutNanos)
    }

    /// Sends exactly ONE prebuilt RESP command (e.g. from `RESPEncoder`). Several commands in one buffer would
    /// desynchronise the reply FIFO; use `sendPipeline` for those.
    public func send(resp: UnsafeRawBufferPointer, timeoutNanos: UInt64? = nil, _ completion: @escaping Completion) {
        guard admit() else { fail(.single(completion), .unavailable); return }
        submit(resp, sink: .single(completion), timeoutNanos: timeoutNanos)
    }

    public func send(resp: [UInt8], timeoutNanos: UInt64? = nil, _ completion: @escaping Completion) {
        resp.withUnsafeBytes { send(resp: $0, timeoutNanos: timeoutNanos, completion) }
    }

    /// Sends several commands back to back (they leave in the same `write()`, one round trip) and completes once
    /// with all replies in order, or with the first transport error. One deadline covers the whole pipeline.
    public func sendPipeline(_ commands: [[[UInt8]]], timeoutNanos: UInt64? = nil,
                             _ completion: @escaping (Result<[RedisReply], RedisClientError>) -> Void) {
        let collector = PipelineCollector(expected: commands.count, completion: completion)
        if commands.isEmpty { completion(.success([])); return }
        guard admit(extra: commands.count) else { collector.add(.failure(.unavailable)); countResult(.failure(.unavailable)); return }
        let timeout = timeoutNanos ?? configuration.defaultCommandTimeoutNanos
        let deadline = EventLoop.now() &+ timeout
        for c in commands {
            if collector.done { break }
            encoder.reset()
            encoder.encode(command: c)
            encoder.bytes.withUnsafeBytes { submitRaw($0, sink: .pipeline(collector), deadline: deadline) }
        }
    }

    /// Runs `script` with `EVALSHA`; on `NOSCRIPT` retries once with `EVAL` (which also caches it in Redis)
    /// within the remaining time budget.
    public func evalScript(_ script: RedisScript, keys: [[UInt8]] = [], arguments: [[UInt8]] = [],
                           timeoutNanos: UInt64? = nil, _ completion: @escaping Completion) {
        guard admit() else { fail(.single(completion), .unavailable); return }
        let timeout = timeoutNanos ?? configuration.defaultCommandTimeoutNanos
        let start = EventLoop.now()
        encodeEval(script.sha1Bytes, evalsha: true, keys: keys, arguments: arguments)
        submitEncoded(sink: .single({ [weak self] result in
            guard let self, case let .success(.error(message)) = result, message.hasPrefix("NOSCRIPT") else {
                completion(result)
                return
            }
            self.metrics?.scriptFallbacks.increment()
            let elapsed = EventLoop.now() &- start
            guard elapsed < timeout else { completion(.failure(.timeout)); return }
            guard self.admit() else { completion(.failure(.unavailable)); return }
            self.encodeEval(script.sourceBytes, evalsha: false, keys: keys, arguments: arguments)
            self.submitEncoded(sink: .single(completion), timeoutNanos: timeout - elapsed)
        }), timeoutNanos: timeout)
    }

    /// Remembers `script` and `SCRIPT LOAD`s it now (if ready) and on every (re)connect, as part of the handshake.
    public func preload(_ script: RedisScript) {
        guard !preloaded.contains(script) else { return }
        preloaded.append(script)
        if state == .ready {
            encoder.reset()
            encoder.encode(command: [Array("SCRIPT".utf8), Array("LOAD".utf8), script.sourceBytes])
            submitEncoded(sink: .single({ _ in }), timeoutNanos: configuration.connectTimeoutNanos)
        }
    }

    // MARK: submitting

    private func admit(extra: Int = 1) -> Bool {
        state == .ready && ac != nil && !dying && pending.count + extra <= configuration.maxInFlight
    }

    private func fail(_ sink: Sink, _ error: RedisClientError) {
        deliver(sink, .failure(error))
    }

    private func encodeEval(_ scriptOrSha: [UInt8], evalsha: Bool, keys: [[UInt8]], arguments: [[UInt8]]) {
        encoder.reset()
        encoder.beginCommand(argumentCount: 3 + keys.count + arguments.count)
        encoder.append(argument: evalsha ? "EVALSHA" : "EVAL")
        encoder.append(argument: scriptOrSha)
        encoder.append(argument: keys.count)
        for k in keys { encoder.append(argument: k) }
        for a in arguments { encoder.append(argument: a) }
    }

    private func submitEncoded(sink: Sink, timeoutNanos: UInt64?) {
        encoder.bytes.withUnsafeBytes { submit($0, sink: sink, timeoutNanos: timeoutNanos) }
    }

    private func submit(_ bytes: UnsafeRawBufferPointer, sink: Sink, timeoutNanos: UInt64?) {
        let timeout = timeoutNanos ?? configuration.defaultCommandTimeoutNanos
        submitRaw(bytes, sink: sink, deadline: EventLoop.now() &+ timeout)
    }

    /// Hands one RESP command to hiredis and records it in the FIFO. `deadline == .max`: no deadline.
    private func submitRaw(_ bytes: UnsafeRawBufferPointer, sink: Sink, deadline: UInt64) {
        guard let ac, !dying else { fail(sink, .unavailable); return }
        let seq = nextSeq
        let rc = redisAsyncFormattedCommand(ac, { ac, reply, privdata in
            guard let data = ac?.pointee.ev.data else { return }
            let client = Unmanaged<RedisClient>.fromOpaque(data).takeUnretainedValue()
            client.handleReply(reply?.assumingMemoryBound(to: redisReply.self),
                               seq: UInt64(UInt(bitPattern: privdata)))
        }, UnsafeMutableRawPointer(bitPattern: UInt(seq)),
           bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count)
        guard rc == REDIS_OK else { fail(sink, .unavailable); return }
        nextSeq += 1
        stats.commandsSent += 1
        pending.append(Pending(seq: seq, start: EventLoop.now(), deadline: deadline, sink: sink))
        if deadline != .max { trackDeadline(seq: seq, deadline: deadline) }
    }

    // MARK: replies

    private func handleReply(_ reply: UnsafeMutablePointer<redisReply>?, seq: UInt64) {
        guard let front = pending.first, front.seq == seq else { return }   // stale: its context was reset
        guard let reply else {
            // hiredis is freeing the context (I/O error, EOF, connect failure): everything pending is lost.
            connectionLost()
            return
        }
        let entry = pending.removeFirst()
        while let d = deadlines.first, d.seq <= seq { deadlines.removeFirst() }
        stats.replies += 1
        let value = RedisReply(copying: reply)
        if case .handshake = entry.sink {} else { metrics?.latency.observe(nanoseconds: EventLoop.now() &- entry.start) }
        deliver(entry.sink, .success(value))
    }

    private func deliver(_ sink: Sink, _ result: Result<RedisReply, RedisClientError>) {
        switch sink {
        case let .single(c):
            countResult(result)
            c(result)
        case let .pipeline(p):
            countResult(result)
            p.add(result)
        case let .handshake(step):
            handshakeReply(step, result)
        }
    }

    private func countResult(_ result: Result<RedisReply, RedisClientError>) {
        guard let metrics else { return }
        switch result {
        case .success(.error): metrics.commandsErrorReply.increment()
        case .success: metrics.commandsOK.increment()
        case .failure(.timeout): metrics.commandsTimeout.increment()
        case .failure(.unavailable): metrics.commandsUnavailable.increment()
        case .failure(.disconnected), .failure(.closed): metrics.commandsDisconnected.increment()
        }
    }

    private func takeAllPending() -> [Pending] {
        _ = deadlines.drain()
        if let t = timeoutTimer { loop.cancelTimer(t); timeoutTimer = nil }
        return pending.drain()
    }

    // MARK: timeouts

    private func trackDeadline(seq: UInt64, deadline: UInt64) {
        while let last = deadlines.last, last.deadline >= deadline { deadlines.removeLast() }
        deadlines.append((seq, deadline))
        if timeoutTimer == nil || deadline < timeoutTimerDeadline { armTimeoutTimer(deadline) }
    }

    private func armTimeoutTimer(_ deadline: UInt64) {
        if let t = timeoutTimer { loop.cancelTimer(t) }
        let now = EventLoop.now()
        timeoutTimerDeadline = deadline
        timeoutTimer = loop.schedule(afterNanoseconds: deadline > now ? deadline - now : 0) { [weak self] in
            self?.timeoutTimerFired()
        }
    }

    private func timeoutTimerFired() {
        timeoutTimer = nil
        guard let earliest = deadlines.first else { return }
        let now = EventLoop.now()
        if earliest.deadline > now { armTimeoutTimer(earliest.deadline); return }
        stats.timeouts += 1
        metrics?.timeoutResets.increment()
        lastError = "command timed out; connection reset"
        resetConnection(timedOutBefore: now)
    }

    /// Drops the current context: commands past `timedOutBefore` get `.timeout`, the rest `.disconnected`.
    private func resetConnection(timedOutBefore: UInt64 = 0) {
        let entries = takeAllPending()
        if state == .ready || state == .connecting { setState(.backoff) }
        if let ac, !dying {
            dying = true
            redisAsyncFree(ac)          // deferred by hiredis if we are inside one of its callbacks
        }
        for e in entries { deliver(e.sink, .failure(e.deadline <= timedOutBefore ? .timeout : .disconnected)) }
    }

    private func connectionLost() {
        if state == .ready {
            lastError = "connection lost: " + (ac.flatMap { $0.pointee.err != 0 ? $0.pointee.errstr.map { String(cString: $0) } : nil } ?? "closed by the server")
        }
        dying = true
        if tcpConnected && state == .ready { metrics?.ioErrors.increment() }
        let entries = takeAllPending()
        if state == .ready || state == .connecting { setState(.backoff) }
        for e in entries { deliver(e.sink, .failure(.disconnected)) }
    }

    // MARK: connecting

    private func startConnect(isReconnect: Bool) {
        guard state != .closed, ac == nil else { return }
        if isReconnect {
            stats.reconnectAttempts += 1
            metrics?.reconnects.increment()
        }
        setState(.connecting)
        let ctx: UnsafeMutablePointer<redisAsyncContext>?
        switch url.endpoint {
        case let .tcp(host, port): ctx = redisAsyncConnect(host, Int32(port))
        case let .unix(path): ctx = redisAsyncConnectUnix(path)
        }
        guard let ctx else { connectFailed("redisAsyncConnect returned NULL"); return }
        if ctx.pointee.err != 0 {
            let why = ctx.pointee.errstr.map { String(cString: $0) } ?? "error \(ctx.pointee.err)"
            redisAsyncFree(ctx)
            connectFailed(why)
            return
        }
        attach(ctx)
        connectTimer = loop.schedule(afterNanoseconds: configuration.connectTimeoutNanos) { [weak self] in
            self?.connectTimedOut()
        }
        // Handshake, pipelined ahead of everything else (hiredis buffers it until the socket is connected).
        handshakeRemaining = 0
        if let password = url.password {
            var args: [[UInt8]] = [Array("AUTH".utf8)]
            if let user = url.username { args.append(Array(user.utf8)) }
            args.append(Array(password.utf8))
            sendHandshake(args, .auth)
        }
        if url.database != 0 { sendHandshake([Array("SELECT".utf8), Array(String(url.database).utf8)], .select) }
        for s in preloaded { sendHandshake([Array("SCRIPT".utf8), Array("LOAD".utf8), s.sourceBytes], .scriptLoad) }
    }

    private func sendHandshake(_ args: [[UInt8]], _ step: HandshakeStep) {
        handshakeRemaining += 1
        encoder.reset()
        encoder.encode(command: args)
        encoder.bytes.withUnsafeBytes { submitRaw($0, sink: .handshake(step), deadline: .max) }
    }

    private func attach(_ ctx: UnsafeMutablePointer<redisAsyncContext>) {
        ac = ctx
        dying = false
        tcpConnected = false
        reading = false
        writeArmed = false
        wantWrite = false
        fd = ctx.pointee.c.fd
        ctx.pointee.ev.data = Unmanaged.passUnretained(self).toOpaque()
        ctx.pointee.ev.addRead = { p in RedisClient.from(p)?.setReading(true) }
        ctx.pointee.ev.delRead = { p in RedisClient.from(p)?.setReading(false) }
        ctx.pointee.ev.addWrite = { p in RedisClient.from(p)?.addWrite() }
        ctx.pointee.ev.delWrite = { p in RedisClient.from(p)?.delWrite() }
        ctx.pointee.ev.cleanup = { p in RedisClient.from(p)?.contextGone() }
        let h = SocketHandler(client: self)
        handler = h
        loop.register(fd: fd, events: 0, handler: h)
        _ = redisAsyncSetConnectCallback(ctx) { ac, status in
            guard let data = ac?.pointee.ev.data else { return }
            Unmanaged<RedisClient>.fromOpaque(data).takeUnretainedValue().connected(ok: status == REDIS_OK)
        }
    }

    private func connected(ok: Bool) {
        guard ok else {
            // hiredis frees the context right after this (pending handshake callbacks get NULL, then cleanup).
            let why = ac.flatMap { $0.pointee.errstr.map { String(cString: $0) } } ?? "connect failed"
            lastError = why
            metrics?.connectErrors.increment()
            return
        }
        tcpConnected = true
        if handshakeRemaining == 0 { becomeReady() }
    }

    private func handshakeReply(_ step: HandshakeStep, _ result: Result<RedisReply, RedisClientError>) {
        guard case let .success(reply) = result else { return }   // the connection is already being reset
        if case let .error(message) = reply, step != .scriptLoad {
            lastError = "\(step == .auth ? "AUTH" : "SELECT") failed: \(message)"
            metrics?.authErrors.increment()
            resetConnection()
            return
        }
        handshakeRemaining -= 1
        if handshakeRemaining == 0 && tcpConnected && state == .connecting { becomeReady() }
    }

    private func becomeReady() {
        if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
        consecutiveFailures = 0
        stats.connects += 1
        metrics?.connectionsEstablished.increment()
        setState(.ready)
    }

    private func connectTimedOut() {
        connectTimer = nil
        guard state == .connecting, ac != nil else { return }
        lastError = "connect timed out"
        metrics?.connectErrors.increment()
        resetConnection()
    }

    private func connectFailed(_ why: String) {
        lastError = why
        metrics?.connectErrors.increment()
        setState(.backoff)
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        guard state != .closed, reconnectTimer == nil else { return }
        consecutiveFailures += 1
        let shift = UInt64(min(consecutiveFailures - 1, 16))
        let base = min(configuration.reconnectMaxDelayNanos, configuration.reconnectMinDelayNanos << shift)
        let delay = base / 2 + UInt64.random(in: 0...max(1, base / 2))
        reconnectTimer = loop.schedule(afterNanoseconds: delay) { [weak self] in
            guard let self else { return }
            self.reconnectTimer = nil
            self.startConnect(isReconnect: true)
        }
    }

    /// hiredis' cleanup hook: the context is being freed (its fd is still open). Runs exactly once per context.
    private func contextGone() {
        if fd >= 0 { loop.deregister(fd: fd) }
        ac?.pointee.ev.data = nil
        ac = nil
        fd = -1
        handler = nil
        dying = false
        tcpConnected = false
        reading = false
        writeArmed = false
        wantWrite = false
        if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
        let leftovers = takeAllPending()
        if state != .closed {
            if state != .backoff { setState(.backoff) }
            scheduleReconnect()
        }
        for e in leftovers { deliver(e.sink, .failure(.disconnected)) }
    }

    private func setState(_ new: State) {
        guard new != state else { return }
        let old = state
        state = new
        if old == .ready { metrics?.connected.add(-1) }
        if new == .ready { metrics?.connected.add(1) }
        if new == .backoff && (old == .connecting || old == .ready) { logProblem() }
        if new == .ready { logRecovery() }
        onStateChange?(new)
    }

    // MARK: logging (never the password: `url.description` is redacted, Redis error replies do not echo it)

    private func logProblem() {
        let now = EventLoop.now()
        failedAttempts += 1
        let why = lastError ?? "connection failed"
        if failingSince == 0 {
            failingSince = now
            lastProblemLogAt = now
            logger.warning("redis \(url) unavailable: \(why); commands fail fast until it reconnects (retrying with backoff)")
        } else if now &- lastProblemLogAt >= problemLogIntervalNanos {
            lastProblemLogAt = now
            logger.warning("redis \(url) still unavailable: \(why) (\(failedAttempts) failed attempts in \((now &- failingSince) / 1_000_000_000) s)")
        }
    }

    private func logRecovery() {
        if failingSince != 0 {
            let down = Double((EventLoop.now() &- failingSince) / 1_000_000) / 1000
            logger.info("redis \(url) connected again after \(failedAttempts) failed attempts (\(down) s)")
        } else if stats.connects == 1 {
            logger.info("redis \(url) connected")
        }
        failingSince = 0
        failedAttempts = 0
    }

    // MARK: adapter (hiredis ev hooks)

    fileprivate static func from(_ p: UnsafeMutableRawPointer?) -> RedisClient? {
        p.map { Unmanaged<RedisClient>.fromOpaque($0).takeUnretainedValue() }
    }

    private func setReading(_ on: Bool) {
        guard reading != on else { return }
        reading = on
        updateEvents()
    }

    private func addWrite() {
        guard let ac else { return }
        if ac.pointee.c.flags & REDIS_CONNECTED != 0 {
            // Connected: just record the wish; `flushWrites` writes once per loop iteration.
            if !writeArmed && !wantWrite {
                wantWrite = true
                loop.deferUntilEndOfIteration(RedisClient.noop)   // make sure the loop runs its hooks soon
            }
        } else if !writeArmed {
            writeArmed = true       // connect completion is detected on writability
            updateEvents()
        }
    }

    private static let noop: @Sendable () -> Void = {}

    private func delWrite() {
        wantWrite = false
        if writeArmed {
            writeArmed = false
            updateEvents()
        }
    }

    private func updateEvents() {
        guard fd >= 0 else { return }
        stats.epollModifies += 1
        loop.modify(fd: fd, events: (reading ? EPOLLIN.rawValue : 0) | (writeArmed ? EPOLLOUT.rawValue : 0))
    }

    /// Before-flush hook: one `redisAsyncHandleWrite` per iteration; EPOLLOUT only if output is left over.
    private func flushWrites() {
        guard wantWrite else { return }
        wantWrite = false
        guard let ctx = ac, !dying, ctx.pointee.c.flags & REDIS_CONNECTED != 0 else { return }
        stats.writeCalls += 1
        redisAsyncHandleWrite(ctx)
        if ac == ctx, !dying, wantWrite {    // hiredis asked for more: the socket buffer is full
            wantWrite = false
            if !writeArmed { writeArmed = true; updateEvents() }
        }
    }

    fileprivate func handleEvents(_ events: UInt32) {
        guard let ctx = ac, !dying else { return }
        if events & (EPOLLIN.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
            redisAsyncHandleRead(ctx)
        }
        if events & EPOLLOUT.rawValue != 0, ac == ctx, !dying {
            if ctx.pointee.c.flags & REDIS_CONNECTED != 0 { stats.writeCalls += 1 }
            redisAsyncHandleWrite(ctx)
        }
    }
}

// MARK: - internals

private enum HandshakeStep: Equatable { case auth, select, scriptLoad }

private enum Sink {
    case single(RedisClient.Completion)
    case pipeline(PipelineCollector)
    case handshake(HandshakeStep)
}

private struct Pending {
    var seq: UInt64
    var start: UInt64
    var deadline: UInt64
    var sink: Sink
}

private final class PipelineCollector {
    let expected: Int
    var replies: [RedisReply] = []
    var done = false
    let completion: (Result<[RedisReply], RedisClientError>) -> Void

    init(expected: Int, completion: @escaping (Result<[RedisReply], RedisClientError>) -> Void) {
        self.expected = expected
        self.completion = completion
        replies.reserveCapacity(expected)
    }

    func add(_ result: Result<RedisReply, RedisClientError>) {
        guard !done else { return }
        switch result {
        case let .success(r):
            replies.append(r)
            if replies.count == expected { done = true; completion(.success(replies)) }
        case let .failure(e):
            done = true
            completion(.failure(e))
        }
    }
}

private final class SocketHandler: EventHandler {
    weak var client: RedisClient?
    init(client: RedisClient) { self.client = client }
    func handleEvents(_ events: UInt32) { client?.handleEvents(events) }
}
