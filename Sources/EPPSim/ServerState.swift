import Foundation
import EPPLock

/// Errors of the simulated engine, mapped to vLLM-style HTTP errors.
public struct SimError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let message: String
    public var description: String { "\(status): \(message)" }
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public static let queueFull = SimError(429, "waiting requests queue is full")
    public static let kvCapacity = SimError(400, "the kv cache does not have sufficient capacity to store this request")
}

/// Result of admitting a request into the running set.
public struct Admission: Sendable {
    /// Leading prompt blocks that were already in the KV cache.
    public let matchedBlocks: Int
    /// Running requests right after admission (including this one).
    public let running: Int
    /// Seconds spent in the waiting queue.
    public let queueSeconds: Double
}

/// Prometheus-style cumulative histogram.
public struct Histogram: Sendable {
    public let bounds: [Double]
    public private(set) var counts: [Int]
    public private(set) var sum = 0.0
    public private(set) var count = 0
    public init(bounds: [Double]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count)
    }
    public mutating func observe(_ v: Double) {
        for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
        sum += v
        count += 1
    }
}

/// Snapshot of a server's observable state (for `/metrics` and tests).
public struct ServerSnapshot: Sendable {
    public var running: Int
    public var waiting: Int
    public var pinnedBlocks: Int
    public var residentBlocks: Int
    public var capacityBlocks: Int
    public var blockSize: Int
    public var prefixCacheHits: Int
    public var prefixCacheQueries: Int
    public var promptTokens: Int
    public var generationTokens: Int
    public var requestSuccess: Int
    public var requestFailures: Int
    public var evictions: Int
    public var ttft: Histogram
    public var e2e: Histogram
    public var queueTime: Histogram
    /// KV usage 0…1: blocks pinned by running requests ÷ capacity (vLLM semantics: cached but
    /// unreferenced blocks count as free).
    public var kvUsage: Double { capacityBlocks > 0 ? Double(pinnedBlocks) / Double(capacityBlocks) : 0 }
}

/// State of one simulated server: the running/waiting scheduler (FIFO, `max-num-seqs`,
/// `max-waiting`), its KV cache, counters and random draws. All mutable state lives in one
/// mutex; waiting requests are suspended on continuations and resumed when admitted.
///
/// Admission needs a free running slot **and** room in the KV cache for the prompt's full
/// blocks (pinned while running); the queue is strictly FIFO (a head request that does not fit
/// blocks the ones behind it, as vLLM's scheduler does).
public final class ServerState: Sendable {
    public let index: Int
    public let config: SimulatorConfig
    public let latency: LatencyModel
    public let podName: String
    public let startedAt: Int
    public let tokenizer = SimTokenizer()

    struct Waiter {
        let id: UInt64
        let hashes: [UInt64]
        let promptTokens: Int
        let enqueued: ContinuousClock.Instant
        let continuation: CheckedContinuation<Admission, any Error>
    }

    struct Core {
        var port: Int
        var running = 0
        var waiting: [Waiter] = []
        var cancelled: Set<UInt64> = []
        var nextID: UInt64 = 1
        var cache: KVCache
        var rng: SplitMix64
        var prefixHits = 0
        var prefixQueries = 0
        var promptTokens = 0
        var generationTokens = 0
        var success = 0
        var failures = 0
        var ttft = Histogram(bounds: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10])
        var e2e = Histogram(bounds: [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60])
        /// Counter values at the last `/reset` (for `/stats`).
        var statsBase = (requests: 0, prompt: 0, hits: 0, failures: 0)
        var queue = Histogram(bounds: [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60])
    }

    let core: Lock<Core>

    public init(index: Int, config: SimulatorConfig, port: Int) {
        self.index = index
        self.config = config
        self.latency = config.effectiveLatency
        self.podName = config.podName(index: index)
        self.startedAt = Int(Date().timeIntervalSince1970)
        core = Lock(Core(
            port: port,
            cache: KVCache(capacity: config.kvBlocks, blockSize: config.blockSize),
            rng: SplitMix64(seed: config.seed &+ UInt64(index) &* 0x9E37_79B9)))
    }

    /// Listening port (known once the server is bound).
    public var port: Int {
        get { core.withLock { $0.port } }
    }

    func setPort(_ p: Int) { core.withLock { $0.port = p } }

    public var running: Int { core.withLock { $0.running } }

    public func snapshot() -> ServerSnapshot {
        core.withLock { c in
            ServerSnapshot(
                running: c.running, waiting: c.waiting.count,
                pinnedBlocks: c.cache.pinnedCount, residentBlocks: c.cache.residentCount,
                capacityBlocks: c.cache.capacity, blockSize: c.cache.blockSize,
                prefixCacheHits: c.prefixHits, prefixCacheQueries: c.prefixQueries,
                promptTokens: c.promptTokens, generationTokens: c.generationTokens,
                requestSuccess: c.success, requestFailures: c.failures, evictions: c.cache.evictions,
                ttft: c.ttft, e2e: c.e2e, queueTime: c.queue)
        }
    }

    /// Per-request random draws: (answer with 500?, slow?).
    func drawFaults() -> (fail: Bool, slow: Bool) {
        core.withLock { c in
            let f = config.failRate > 0 && c.rng.nextDouble() < config.failRate
            let s = config.slowRate > 0 && c.rng.nextDouble() < config.slowRate
            return (f, s)
        }
    }

    func nextSerial() -> UInt64 {
        core.withLock { c in
            defer { c.nextID += 1 }
            return c.nextID
        }
    }

    /// Whether the cache (prefix) already holds these blocks — for tests/diagnostics.
    public func cachedPrefixBlocks(_ hashes: [UInt64]) -> Int { core.withLock { $0.cache.matchPrefix(hashes) } }

    /// Counters since the last ``resetStats()`` (fake-backend `/stats`, model-server.md §8).
    public func stats() -> JSON {
        core.withLock { c in
            let prompt = c.prefixQueries - c.statsBase.prompt
            let hits = c.prefixHits - c.statsBase.hits
            return [
                "requests": .int(c.success - c.statsBase.requests), "failures": .int(c.failures - c.statsBase.failures),
                "prompt_tokens": .int(prompt), "hit_tokens": .int(hits),
                "hit_rate": prompt > 0 ? .double(Double(hits) / Double(prompt)) : .double(0),
                "running": .int(c.running), "waiting": .int(c.waiting.count),
                "kv_blocks_resident": .int(c.cache.residentCount), "kv_blocks_pinned": .int(c.cache.pinnedCount),
                "kv_blocks_capacity": .int(c.cache.capacity),
            ]
        }
    }

    /// Fake-backend `/reset`: drop unpinned KV blocks and restart the `/stats` counters
    /// (Prometheus counters stay monotonic).
    public func resetStats() {
        core.withLock { c in
            c.cache.resetUnpinned()
            c.statsBase = (c.success, c.prefixQueries, c.prefixHits, c.failures)
        }
    }

    /// vLLM `POST /reset_prefix_cache`: drop all unpinned blocks.
    @discardableResult
    public func resetPrefixCache() -> Int { core.withLock { $0.cache.resetUnpinned() } }

    // MARK: scheduler

    /// Admit a request whose prompt has the given full-block hashes: returns once it is running
    /// (possibly after waiting FIFO). Throws ``SimError/queueFull`` when the waiting queue is full,
    /// ``SimError/kvCapacity`` when the prompt cannot ever fit, `CancellationError` if cancelled
    /// while waiting.
    public func admit(hashes: [UInt64], promptTokens: Int) async throws -> Admission {
        if hashes.count > config.kvBlocks { throw SimError.kvCapacity }
        let id = nextSerial()
        let arrived = ContinuousClock.now
        // A cancellation that raced with admission leaves the id in `cancelled`; drop it.
        defer { core.withLock { _ = $0.cancelled.remove(id) } }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Admission, any Error>) in
                enum Outcome { case admitted(Admission), full, cancelled, queued }
                let outcome: Outcome = core.withLock { c in
                    if c.cancelled.remove(id) != nil { return .cancelled }
                    if c.waiting.isEmpty, c.running < config.maxNumSeqs,
                        let matched = c.cache.acquire(hashes)
                    {
                        c.running += 1
                        Self.account(&c, matched: matched, promptTokens: promptTokens, blockSize: config.blockSize, queue: 0)
                        return .admitted(Admission(matchedBlocks: matched, running: c.running, queueSeconds: 0))
                    }
                    if c.waiting.count >= config.maxWaiting { return .full }
                    c.waiting.append(Waiter(id: id, hashes: hashes, promptTokens: promptTokens, enqueued: arrived, continuation: cont))
                    return .queued
                }
                switch outcome {
                case .admitted(let a): cont.resume(returning: a)
                case .full: cont.resume(throwing: SimError.queueFull)
                case .cancelled: cont.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let toResume: [(CheckedContinuation<Admission, any Error>, Result<Admission, any Error>)] = core.withLock { c in
                var out: [(CheckedContinuation<Admission, any Error>, Result<Admission, any Error>)] = []
                if let i = c.waiting.firstIndex(where: { $0.id == id }) {
                    let w = c.waiting.remove(at: i)
                    out.append((w.continuation, .failure(CancellationError())))
                    out += drainLocked(&c).map { ($0.0, .success($0.1)) }
                } else {
                    c.cancelled.insert(id)
                }
                return out
            }
            for (cont, r) in toResume { cont.resume(with: r) }
        }
    }

    static func account(_ c: inout Core, matched: Int, promptTokens: Int, blockSize: Int, queue: Double) {
        c.prefixQueries += promptTokens
        c.prefixHits += min(promptTokens, matched * blockSize)
        c.promptTokens += promptTokens
        c.queue.observe(queue)
    }

    /// Admit waiting requests from the head of the queue while they fit.
    private func drainLocked(_ c: inout Core) -> [(CheckedContinuation<Admission, any Error>, Admission)] {
        var out: [(CheckedContinuation<Admission, any Error>, Admission)] = []
        let now = ContinuousClock.now
        while let w = c.waiting.first, c.running < config.maxNumSeqs, let matched = c.cache.acquire(w.hashes) {
            c.waiting.removeFirst()
            c.running += 1
            let q = (now - w.enqueued).seconds
            Self.account(&c, matched: matched, promptTokens: w.promptTokens, blockSize: config.blockSize, queue: q)
            out.append((w.continuation, Admission(matchedBlocks: matched, running: c.running, queueSeconds: q)))
        }
        return out
    }

    /// A running request ended: unpin its blocks, free its slot, admit waiters.
    /// - Parameters:
    ///   - success: counted in `request_success_total` (and latency histograms) when true.
    func complete(hashes: [UInt64], generated: Int, success: Bool, ttft: Double?, e2e: Double?) {
        let resume: [(CheckedContinuation<Admission, any Error>, Admission)] = core.withLock { c in
            c.cache.release(hashes)
            c.running -= 1
            c.generationTokens += generated
            if success {
                c.success += 1
                if let ttft { c.ttft.observe(ttft) }
                if let e2e { c.e2e.observe(e2e) }
            } else {
                c.failures += 1
            }
            return drainLocked(&c)
        }
        for (cont, a) in resume { cont.resume(returning: a) }
    }

    /// Count a request rejected before admission (fail-rate 500, queue full, …).
    func countFailure() { core.withLock { $0.failures += 1 } }
}

/// Ownership of a running request's slot and pinned blocks; released exactly once, at the
/// latest when the lease is deallocated (e.g. a streaming body that never ran).
final class Lease: Sendable {
    let state: ServerState
    let hashes: [UInt64]
    let done = Lock(false)
    init(state: ServerState, hashes: [UInt64]) {
        self.state = state
        self.hashes = hashes
    }
    func finish(generated: Int, success: Bool, ttft: Double? = nil, e2e: Double? = nil) {
        let first = done.withLock { d in
            defer { d = true }
            return !d
        }
        if first { state.complete(hashes: hashes, generated: generated, success: success, ttft: ttft, e2e: e2e) }
    }
    deinit { finish(generated: 0, success: false) }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
