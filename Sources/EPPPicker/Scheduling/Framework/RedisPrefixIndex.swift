import EPPEventLoop
import EPPObservability
import EPPRedis
import Synchronization

/// The approximate prefix index (kv-index.md §1) shared through Redis, so several `epp` replicas route a
/// prefix to the same pod. It is asynchronous (a round trip per lookup), so it does not conform to the
/// synchronous `PrefixIndex`: the producer asks it through the per-loop `Lane` and the scheduler finishes the
/// request when the reply (or the budget) comes (`FrameworkScheduler+AsyncPrefix.swift`). The in-process
/// `LocalPrefixIndex` is always kept as well and answers whenever Redis can't within the budget.
///
/// **Connections.** One `RedisClient` per event loop (`attach(_:)`), used only on that loop; its writes are
/// batched once per loop iteration, so all lookups and records of one iteration leave in one `write()`.
///
/// **Layout** (`ns` = `<redisKeyPrefix>{<hex xxh64(model)>}`: the hash tag puts one model's keys in one
/// Redis Cluster slot, so every script touches one slot; pods and hashes are 8 raw bytes, little endian;
/// pod id = xxh64 of the endpoint's namespaced name):
///  - `ns:b:<hash>` STRING — ids of the pods holding the block, concatenated (8 bytes per holder);
///  - `ns:p:<pod>` ZSET — that pod's blocks (member = hash) scored by recency; at most `capacity` members
///    (the per-endpoint LRU of the reference): recording beyond it evicts the least recent blocks and cuts
///    the pod out of their `ns:b:` values;
///  - `ns:pods` HASH — pod id → namespaced name, the pods `prune` can find;
///  - `<redisKeyPrefix>namespaces` SET — every `ns`, so prune finds every model.
/// Memory: per (block, pod) entry 8 bytes in the block value + one ZSET member (≈ 80–100 B in a skiplist
/// ZSET); per block one STRING key (≈ 90 B with its name). Bounded by Σ pods × models × capacity entries.
/// Lookup is one plain `MGET` of the request's block keys; epp walks the values (`consecutiveRuns`). Measured
/// on the development VM (RESULTS.md): 13 µs of Redis time at 64 blocks against 60 µs for a Lua script that
/// walked them server-side with an early stop — moving each value into Lua costs more than Redis reading a
/// key nobody holds, so the early stop is done in epp. Records and prunes are Lua scripts
/// (`RedisPrefixScripts`): they must read-modify-write atomically.
public final class RedisPrefixIndex: Sendable {
    public struct Options: Sendable {
        /// Deadline of one Redis command; a command past it resets the connection (a stalled Redis). The
        /// per-request lookup budget is separate and much shorter: a late reply is just dropped, and an
        /// overloaded Redis is left alone (`Lane.canLookup`), so only a real stall should reset.
        public var commandTimeoutNanos: UInt64 = 1_000_000_000
        public var connectTimeoutNanos: UInt64 = 1_000_000_000
        public var reconnectMinDelayNanos: UInt64 = 50_000_000
        /// Short, so prefix hits come back soon after Redis does.
        public var reconnectMaxDelayNanos: UInt64 = 1_000_000_000
        public init() {}
    }

    public let url: RedisURL
    public let metrics: RedisPrefixIndexMetrics
    let clientMetrics: RedisClientMetrics
    let options: Options
    private let lanes = Mutex<[ObjectIdentifier: Lane]>([:])
    /// The keep-set of the last prune, so the schedulers of all loops prune a discovery change only once.
    private let lastPrune = Mutex<Set<String>?>(nil)

    public init(url: RedisURL, registry: MetricsRegistry, options: Options = Options()) {
        self.url = url
        self.options = options
        metrics = RedisPrefixIndexMetrics(registry: registry)
        clientMetrics = RedisClientMetrics(registry: registry, prefix: "epp_prefix_index_redis_client")
    }

    /// kv-index.md §1.4 over an `MGET` reply (block values in chain order; a value is the holders' 8-byte
    /// ids): per candidate, the number of blocks from the first that it holds without a gap. The walk stops at
    /// the first block nobody holds (nil) or when no candidate is still in its run. nil for a malformed reply
    /// (not a string/nil, or a length that is not a multiple of 8).
    static func consecutiveRuns(_ values: [RedisReply], candidateIDs ids: [UInt64]) -> [Int]? {
        var counts = [Int](repeating: 0, count: ids.count)
        var alive = Array(ids.indices)
        walk: for v in values {
            let bytes: [UInt8]
            switch v {
            case .string(let b): bytes = b
            case .null: break walk
            default: return nil
            }
            guard bytes.count % 8 == 0 else { return nil }
            var kept = 0
            bytes.withUnsafeBytes { raw in
                for i in 0..<alive.count {
                    let a = alive[i]
                    var held = false
                    var off = 0
                    while off < raw.count {
                        if UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt64.self)) == ids[a] { held = true; break }
                        off += 8
                    }
                    if held { alive[kept] = a; kept += 1; counts[a] += 1 }
                }
            }
            alive.removeLast(alive.count - kept)
            if alive.isEmpty { break }
        }
        return counts
    }

    /// Creates `loop`'s connection (once) and starts connecting on the loop. Any thread.
    @discardableResult
    public func attach(_ loop: EventLoop) -> Lane {
        let (lane, created) = lanes.withLock { l -> (Lane, Bool) in
            if let existing = l[ObjectIdentifier(loop)] { return (existing, false) }
            let new = Lane(loop: loop, index: self)
            l[ObjectIdentifier(loop)] = new
            return (new, true)
        }
        if created { loop.execute { lane.client.connect() } }
        return lane
    }

    /// The lane of `loop`, nil when `attach` was not called for it.
    public func lane(for loop: EventLoop) -> Lane? { lanes.withLock { $0[ObjectIdentifier(loop)] } }

    /// Closes every connection (each on its loop). Any thread.
    public func close() {
        for lane in lanes.withLock({ Array($0.values) }) { lane.loop.execute { lane.client.close() } }
    }

    /// True once per distinct keep-set (all loops see the same discovery change).
    func claimPrune(_ keep: Set<String>) -> Bool {
        lastPrune.withLock { last in
            if last == keep { return false }
            last = keep
            return true
        }
    }

    static func podID(_ namespacedName: String) -> UInt64 {
        var s = namespacedName
        return s.withUTF8 { XXHash64.hash(UnsafeRawBufferPointer($0)) }
    }

    /// `<prefix>{<16 hex digits of xxh64(model)>}`.
    static func namespace(keyPrefix: String, model: String) -> [UInt8] {
        var out = Array(keyPrefix.utf8)
        out.append(UInt8(ascii: "{"))
        let h = podID(model)
        let digits = Array("0123456789abcdef".utf8)
        for shift in stride(from: 60, through: 0, by: -4) { out.append(digits[Int((h >> UInt64(shift)) & 15)]) }
        out.append(UInt8(ascii: "}"))
        return out
    }

    public enum Fallback: Error, Sendable, Equatable { case budget, error }

    /// One loop's connection and its lookups in flight. Loop thread only (created anywhere).
    public final class Lane: @unchecked Sendable {
        public let loop: EventLoop
        public let client: RedisClient
        private unowned let index: RedisPrefixIndex
        private var metrics: RedisPrefixIndexMetrics { index.metrics }
        private var encoder = RESPEncoder(capacity: 16 * 1024)
        private var keyScratch: [UInt8] = []
        /// (pod, last block of a chain) → when this lane last recorded that chain for that pod; it is not recorded
        /// again within `refreshIntervalNanos` (cleared on reconnect: Redis may have restarted empty).
        private var refreshed: [UInt64: UInt64] = [:]
        static let refreshIntervalNanos: UInt64 = 1_000_000_000
        /// Endpoint → pod id (holds the endpoint so its identifier stays unique).
        private var podIDs: [ObjectIdentifier: (Endpoint, UInt64)] = [:]
        /// keyPrefix → model → namespace bytes.
        private var namespaces: [String: [String: [UInt8]]] = [:]
        /// Namespaces added to `<prefix>namespaces` since this connection became ready.
        private var announced: Set<[UInt8]> = []
        private var pending: [PendingLookup] = []
        private var pendingHead = 0
        private var timer: TimerID?
        private var timerDeadline: UInt64 = 0
        /// Lookups answered by their budget whose reply is still due: Redis is behind. Past
        /// `maxExpiredInFlight` no more lookups are sent (they would only queue up in Redis) until it catches up.
        private var expiredInFlight = 0
        static let maxExpiredInFlight = 64
        private var nextSeq: UInt64 = 1
        private let recordSHA: [UInt8], pruneSHA: [UInt8]

        struct PendingLookup {
            var seq: UInt64
            var start: UInt64
            var deadline: UInt64
            var blocks: Int
            /// Pod ids of the candidates, in order (the walk of the reply matches them).
            var candidateIDs: [UInt64]
            var done: ((Result<[Int], Fallback>) -> Void)?
        }

        init(loop: EventLoop, index: RedisPrefixIndex) {
            self.loop = loop
            self.index = index
            var config = RedisClient.Configuration()
            config.defaultCommandTimeoutNanos = index.options.commandTimeoutNanos
            config.connectTimeoutNanos = index.options.connectTimeoutNanos
            config.reconnectMinDelayNanos = index.options.reconnectMinDelayNanos
            config.reconnectMaxDelayNanos = index.options.reconnectMaxDelayNanos
            client = RedisClient(loop: loop, url: index.url, configuration: config, metrics: index.clientMetrics)
            recordSHA = Array(RedisPrefixScripts.record.sha1.utf8)
            pruneSHA = Array(RedisPrefixScripts.prune.sha1.utf8)
            for s in RedisPrefixScripts.all { client.preload(s) }
            client.onStateChange = { [weak self] state in
                if state == .ready {   // Redis may have restarted empty
                    self?.announced.removeAll()
                    self?.refreshed.removeAll()
                }
            }
        }

        public var isReady: Bool { client.isReady }

        /// Connected and not behind (see `expiredInFlight`).
        public var canLookup: Bool { client.isReady && expiredInFlight < Lane.maxExpiredInFlight }

        /// Lookups sent and not yet answered or expired.
        public var lookupsInFlight: Int { pending.count - pendingHead }

        // MARK: lookup

        /// Sends one `MGET` of the block keys of `hashes` for `candidates`; `done` runs later on this loop exactly once:
        /// per-candidate consecutive match counts, or `.budget` when no reply came within `budgetNanos`, or
        /// `.error` (error reply, lost connection). Returns false (and never calls `done`) when nothing could be
        /// sent (not connected): the caller answers from the local index at once.
        public func lookup(keyPrefix: String, model: String, hashes: [UInt64], candidates: [Endpoint], budgetNanos: UInt64,
                           done: @escaping (Result<[Int], Fallback>) -> Void) -> Bool {
            guard canLookup, !hashes.isEmpty, !candidates.isEmpty else { return false }
            let ns = namespace(keyPrefix, model)
            encoder.reset()
            encoder.beginCommand(argumentCount: 1 + hashes.count)
            encoder.append(argument: "MGET")
            appendBlockKeys(ns, hashes)
            let ids = candidates.map { podID($0) }
            let seq = nextSeq
            var synchronous = true
            var refused = false
            client.send(resp: encoder.bytes) { [weak self] result in
                if synchronous { refused = true; return }
                self?.lookupReplied(seq, result)
            }
            synchronous = false
            if refused { return false }
            nextSeq += 1
            metrics.roundTripsLookup.increment()
            let now = EventLoop.now()
            let deadline = now &+ budgetNanos
            pending.append(PendingLookup(seq: seq, start: now, deadline: deadline, blocks: hashes.count,
                                         candidateIDs: ids, done: done))
            if timer == nil || deadline < timerDeadline { armTimer(deadline, now) }
            return true
        }

        /// Every sent lookup gets exactly one completion from the client, in order: pop it here. Lookups past
        /// their budget were already answered (`done == nil`).
        private func lookupReplied(_ seq: UInt64, _ result: Result<RedisReply, RedisClientError>) {
            while pendingHead < pending.count, pending[pendingHead].seq < seq { finish(.failure(.error)) }
            guard pendingHead < pending.count, pending[pendingHead].seq == seq else { return }
            guard pending[pendingHead].done != nil else {
                metrics.lateReplies.increment()   // this request already used the local index
                if case .success = result {} else { metrics.errorsLookup.increment() }
                finish(.failure(.budget))
                return
            }
            metrics.lookupLatency.observe(nanoseconds: EventLoop.now() &- pending[pendingHead].start)
            if case .success(.array(let items)) = result, items.count == pending[pendingHead].blocks {
                if let counts = RedisPrefixIndex.consecutiveRuns(items, candidateIDs: pending[pendingHead].candidateIDs) {
                    let blocks = pending[pendingHead].blocks
                    let best = counts.max() ?? 0
                    metrics.hitRatio.observe(blocks > 0 ? Double(best) / Double(blocks) : 0)
                    metrics.lookupBlocks.increment(by: UInt64(blocks))
                    metrics.matchedBlocks.increment(by: UInt64(best))
                    finish(.success(counts))
                    return
                }
            }
            metrics.errorsLookup.increment()
            if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") { reloadScripts() }
            finish(.failure(.error))
        }

        /// Pops the oldest pending lookup and completes it unless the budget did already.
        private func finish(_ r: Result<[Int], Fallback>) {
            let done = pending[pendingHead].done
            pending[pendingHead].done = nil
            pendingHead += 1
            guard let done else {
                expiredInFlight -= 1
                compact()
                return
            }
            compact()
            switch r {
            case .failure(.budget): metrics.fallbackBudget.increment()
            case .failure(.error): metrics.fallbackError.increment()
            case .success: break
            }
            done(r)
        }

        private func compact() {
            if pendingHead == pending.count {
                pending.removeAll(keepingCapacity: true)
                pendingHead = 0
            } else if pendingHead >= 1024 && pendingHead * 2 >= pending.count {
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
        }

        // One timer, at the earliest budget deadline among unanswered lookups. An expired lookup is answered
        // (`.budget`) but stays queued until its reply, which the client always delivers, pops it.
        private func armTimer(_ deadline: UInt64, _ now: UInt64) {
            if let t = timer { loop.cancelTimer(t) }
            timerDeadline = deadline
            timer = loop.schedule(afterNanoseconds: deadline > now ? deadline - now : 0) { [weak self] in self?.timerFired() }
        }

        private func timerFired() {
            timer = nil
            let now = EventLoop.now()
            var next = UInt64.max
            for i in pendingHead..<pending.count {
                guard let done = pending[i].done else { continue }
                if pending[i].deadline <= now {
                    pending[i].done = nil
                    expiredInFlight += 1
                    metrics.fallbackBudget.increment()
                    done(.failure(.budget))
                } else {
                    next = min(next, pending[i].deadline)
                }
            }
            if next != .max { armTimer(next, now) }
        }

        // MARK: record

        /// Records `hashes` for each pod (decode, prefill) in one `EVALSHA`, fire and forget. Blocks a pod holds
        /// are not rewritten, only their recency refreshed. `known`: this request's Redis lookup found the pod
        /// holding blocks 1…known (0: unknown). A chain this lane recorded for the pod within a second is
        /// skipped (also when the lookup fell back), so a hot prefix costs Redis only its lookups and a Redis
        /// that is behind gets no extra load. No-op when not connected (the local index has it).
        public func record(keyPrefix: String, model: String, hashes: [UInt64],
                           pods allPods: [(endpoint: Endpoint, capacity: Int, known: Int)]) {
            guard client.isReady, let tip = hashes.last else { return }
            let now = EventLoop.now()
            let ns = namespace(keyPrefix, model)
            let nsKey = UInt64(bitPattern: Int64(ns.hashValue))
            var pods: [(endpoint: Endpoint, capacity: Int, known: Int)] = []
            for p in allPods {
                let key = podID(p.endpoint) ^ (tip &* 0x9E37_79B9_7F4A_7C15) ^ nsKey
                if let t = refreshed[key], now &- t < Lane.refreshIntervalNanos { continue }
                if refreshed.count >= 65_536 { refreshed.removeAll(keepingCapacity: true) }
                refreshed[key] = now
                pods.append(p)
            }
            if pods.isEmpty { return }
            if !announced.contains(ns) {
                announced.insert(ns)
                client.send([Array("SADD".utf8), Array((keyPrefix + "namespaces").utf8), ns]) { _ in }
            }
            encoder.reset()
            encoder.beginCommand(argumentCount: 3 + hashes.count + pods.count + 1 + 2 + 4 * pods.count)
            encoder.append(argument: "EVALSHA")
            encoder.append(argument: recordSHA)
            encoder.append(argument: hashes.count + pods.count + 1)
            appendBlockKeys(ns, hashes)
            for p in pods { appendKey(ns, ":p:", podID(p.endpoint)) }
            keyScratch.removeAll(keepingCapacity: true)
            keyScratch.append(contentsOf: ns)
            keyScratch.append(contentsOf: ":pods".utf8)
            encoder.append(argument: keyScratch)
            encoder.append(argument: hashes.count)
            encoder.append(argument: pods.count)
            for p in pods {
                appendID(podID(p.endpoint))
                encoder.append(argument: max(1, p.capacity))
                encoder.append(argument: p.endpoint.spec.namespacedName)
                encoder.append(argument: min(max(0, p.known), hashes.count))
            }
            metrics.roundTripsRecord.increment()
            client.send(resp: encoder.bytes) { [weak self] result in
                guard let self else { return }
                if case .success(.array(let r)) = result, r.count == 2, case .integer(let w) = r[0], case .integer(let e) = r[1] {
                    self.metrics.entriesWritten.increment(by: UInt64(max(0, w)))
                    self.metrics.entriesEvicted.increment(by: UInt64(max(0, e)))
                    return
                }
                self.metrics.errorsRecord.increment()
                if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") { self.reloadScripts() }
            }
        }

        // MARK: prune

        /// Removes every pod not named in `keep` from every namespace under `keyPrefix` (one `SMEMBERS`, then one
        /// `EVALSHA` per namespace). `done` (optional, for tests) gets the number of entries removed, or nil.
        public func prune(keyPrefix: String, keep: Set<String>, done: ((Int?) -> Void)? = nil) {
            guard client.isReady else { done?(nil); return }
            let keepIDs = keep.map { RedisPrefixIndex.podID($0) }
            client.send([Array("SMEMBERS".utf8), Array((keyPrefix + "namespaces").utf8)]) { [weak self] result in
                guard let self, case .success(.array(let items)) = result else {
                    self?.metrics.errorsPrune.increment()
                    done?(nil)
                    return
                }
                var remaining = items.count
                var removed = 0
                var failed = false
                if remaining == 0 { done?(0); return }
                for item in items {
                    guard case .string(let ns) = item else { remaining -= 1; continue }
                    var args: [[UInt8]] = [ns + Array(":pods".utf8), ns]
                    for id in keepIDs { args.append(withUnsafeBytes(of: id.littleEndian) { Array($0) }) }
                    self.metrics.roundTripsPrune.increment()
                    self.client.evalScript(RedisPrefixScripts.prune, keys: [args[0]], arguments: Array(args.dropFirst())) { r in
                        if case .success(.array(let v)) = r, v.count == 2, case .integer(let e) = v[1] {
                            removed += Int(e)
                            self.metrics.entriesPruned.increment(by: UInt64(max(0, e)))
                        } else {
                            failed = true
                            self.metrics.errorsPrune.increment()
                        }
                        remaining -= 1
                        if remaining == 0 { done?(failed ? nil : removed) }
                    }
                }
            }
        }

        // MARK: encoding

        private func namespace(_ keyPrefix: String, _ model: String) -> [UInt8] {
            if let ns = namespaces[keyPrefix]?[model] { return ns }
            let ns = RedisPrefixIndex.namespace(keyPrefix: keyPrefix, model: model)
            if namespaces.count > 64 { namespaces.removeAll() }   // prefixes only change with config reloads
            if (namespaces[keyPrefix]?.count ?? 0) > 4096 { namespaces[keyPrefix] = [:] }
            namespaces[keyPrefix, default: [:]][model] = ns
            return ns
        }

        private func podID(_ e: Endpoint) -> UInt64 {
            if let (_, id) = podIDs[ObjectIdentifier(e)] { return id }
            let id = RedisPrefixIndex.podID(e.spec.namespacedName)
            if podIDs.count >= 4096 { podIDs.removeAll() }   // endpoints replaced by reloads
            podIDs[ObjectIdentifier(e)] = (e, id)
            return id
        }

        private func appendID(_ id: UInt64) {
            withUnsafeBytes(of: id.littleEndian) { encoder.append(argument: $0) }
        }

        private func appendKey(_ ns: [UInt8], _ infix: String, _ value: UInt64) {
            keyScratch.removeAll(keepingCapacity: true)
            keyScratch.append(contentsOf: ns)
            keyScratch.append(contentsOf: infix.utf8)
            withUnsafeBytes(of: value.littleEndian) { keyScratch.append(contentsOf: $0) }
            encoder.append(argument: keyScratch)
        }

        private func appendBlockKeys(_ ns: [UInt8], _ hashes: [UInt64]) {
            keyScratch.removeAll(keepingCapacity: true)
            keyScratch.append(contentsOf: ns)
            keyScratch.append(contentsOf: ":b:".utf8)
            let base = keyScratch.count
            keyScratch.append(contentsOf: repeatElement(0, count: 8))
            for h in hashes {
                keyScratch.withUnsafeMutableBytes { buf in buf.storeBytes(of: h.littleEndian, toByteOffset: base, as: UInt64.self) }
                encoder.append(argument: keyScratch)
            }
        }

        private func reloadScripts() {
            for s in RedisPrefixScripts.all {
                client.send([Array("SCRIPT".utf8), Array("LOAD".utf8), Array(s.source.utf8)]) { _ in }
            }
        }
    }
}
