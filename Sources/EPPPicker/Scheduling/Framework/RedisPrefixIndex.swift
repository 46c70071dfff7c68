import EPPEventLoop
import EPPObservability
import EPPRedis
import Glibc
import EPPLock

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
/// Redis Cluster slot, so every script touches one slot; pod, segment and block ids are 8 raw bytes, little
/// endian; pod id = xxh64 of the endpoint's namespaced name):
///  - `ns:b:<hash>` STRING — the pods holding the block: 16-byte entries `pod id ‖ segment id`;
///  - `ns:s:<pod><segment>` STRING — a *segment*: the blocks one record wrote for that pod (the part of a
///    request's chain the pod did not hold yet), concatenated hashes; segment id = hash of its first block;
///  - `ns:p:<pod>` ZSET — that pod's segments scored by recency (the per-endpoint LRU of the reference, at
///    segment granularity): a request the pod already holds refreshes its chain with one `ZADD XX` of the few
///    segments along it (never one write per block); past `capacity` blocks (`ns:n`), the least recent
///    segments are evicted whole, deepest first, so prefixes stay intact;
///  - `ns:n` HASH — pod id → blocks held (the capacity count);
///  - `ns:pods` HASH — pod id → namespaced name, the pods `prune` can find;
///  - `<redisKeyPrefix>namespaces` SET — every `ns`, so prune finds every model.
/// Memory per (block, pod) entry: 16 bytes in the block value + 8 in its segment; per block one STRING key
/// (≈ 90 B with its name); per segment one STRING key and one ZSET member (≈ 180 B, one per request that
/// brought new blocks). Bounded by Σ pods × models × (capacity + one request's blocks) entries.
/// Redis CPU per pick: lookup = one plain `MGET` of the request's block keys, walked in epp
/// (`consecutiveRuns`; measured on the development VM: 13 µs of Redis time at 64 blocks against 60 µs for a Lua
/// walk with an early stop — moving each value into Lua costs more than reading a key nobody holds). Record =
/// nothing for a (pod, chain) this lane recorded within a second; a plain `ZADD XX` of the chain's segments
/// when the lookup found the whole chain held; else one `EVALSHA` (`RedisPrefixScripts.record`) given only
/// the blocks after the held run, whose work is proportional to the new blocks. Recency scores use the
/// replicas' wall clocks (ms), so replicas sharing a Redis need NTP-synchronised clocks (skew only shifts
/// eviction order by the skew).
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
    private let lanes = Lock<[ObjectIdentifier: Lane]>([:])
    /// The keep-set of the last prune, so the schedulers of all loops prune a discovery change only once.
    private let lastPrune = Lock<Set<String>?>(nil)

    public init(url: RedisURL, registry: MetricsRegistry, options: Options = Options()) {
        self.url = url
        self.options = options
        metrics = RedisPrefixIndexMetrics(registry: registry)
        clientMetrics = RedisClientMetrics(registry: registry, prefix: "epp_prefix_index_redis_client")
    }

    /// kv-index.md §1.4 over an `MGET` reply (block values in chain order; a value is the holders' 16-byte
    /// entries): per candidate, the number of blocks from the first that it holds without a gap. The walk stops
    /// at the first block nobody holds (nil) or when no candidate is still in its run. nil for a malformed reply
    /// (not a string/nil, or a length that is not a multiple of 16).
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
            guard bytes.count % entryBytes == 0 else { return nil }
            var kept = 0
            bytes.withUnsafeBytes { raw in
                for i in 0..<alive.count {
                    let a = alive[i]
                    if entryOffset(raw, ids[a]) != nil { alive[kept] = a; kept += 1; counts[a] += 1 }
                }
            }
            alive.removeLast(alive.count - kept)
            if alive.isEmpty { break }
        }
        return counts
    }

    /// The segments holding the first `run` blocks of a lookup reply for pod `id`, in chain order, each once
    /// (the recency touch of that chain). Entries missing or malformed end the list.
    static func segments(_ values: [RedisReply], podID id: UInt64, run: Int) -> [UInt64] {
        var out: [UInt64] = []
        for v in values.prefix(run) {
            guard case .string(let bytes) = v, bytes.count % entryBytes == 0 else { break }
            let seg: UInt64? = bytes.withUnsafeBytes { raw in
                entryOffset(raw, id).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 + 8, as: UInt64.self)) }
            }
            guard let seg else { break }
            if out.last != seg { out.append(seg) }
        }
        return out
    }

    /// Bytes per (block, pod) entry in a block value: pod id, segment id.
    static let entryBytes = 16

    static func entryOffset(_ raw: UnsafeRawBufferPointer, _ id: UInt64) -> Int? {
        var off = 0
        while off < raw.count {
            if UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt64.self)) == id { return off }
            off += entryBytes
        }
        return nil
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

    /// A Redis-answered lookup: per candidate the consecutive blocks held, and the reply's block values (what
    /// `record` needs to touch the chosen pods' segments).
    public struct Matches: Sendable {
        public var counts: [Int]
        public var values: [RedisReply]
    }

    /// One loop's connection and its lookups in flight. Loop thread only (created anywhere).
    public final class Lane: @unchecked Sendable {
        public let loop: EventLoop
        public let client: RedisClient
        private unowned let index: RedisPrefixIndex
        var metrics: RedisPrefixIndexMetrics { index.metrics }
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
        /// Records waiting to go out as one script call (`flushRecords`): their block keys and their arguments,
        /// RESP-encoded, all of namespace `batchNamespace`.
        private var batchKeys = RESPEncoder(capacity: 16 * 1024)
        private var batchArgs = RESPEncoder(capacity: 4 * 1024)
        private var batchKeyCount = 0
        private var batchArgCount = 0
        private var batchRecords = 0
        private var batchNamespace: [UInt8] = []
        private var batchTimer: TimerID?
        private let recordSHA: [UInt8], pruneSHA: [UInt8]
        /// An eviction is running (`RedisPrefixEviction.swift`: one at a time per lane).
        var evicting = false
        /// Mean blocks per segment this lane wrote (sizes an eviction's first ZPOPMIN).
        var meanSegmentBlocks = 8.0

        struct PendingLookup {
            var seq: UInt64
            var start: UInt64
            var deadline: UInt64
            var blocks: Int
            /// Pod ids of the candidates, in order (the walk of the reply matches them).
            var candidateIDs: [UInt64]
            var done: ((Result<Matches, Fallback>) -> Void)?
            /// The request's record, waiting for this lookup's reply after the budget answered it (`record`).
            var deferredRecord: (([RedisReply]?) -> Void)?
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

        /// The sequence number of the last lookup sent (for `record(lateLookup:)`).
        public var lastLookupSeq: UInt64 { nextSeq - 1 }

        // MARK: lookup

        /// Sends one `MGET` of the block keys of `hashes` for `candidates`; `done` runs later on this loop exactly once:
        /// per-candidate consecutive match counts (with the reply, for `record`), or `.budget` when no reply came within `budgetNanos`, or
        /// `.error` (error reply, lost connection). Returns false (and never calls `done`) when nothing could be
        /// sent (not connected): the caller answers from the local index at once.
        public func lookup(keyPrefix: String, model: String, hashes: [UInt64], candidates: [Endpoint], budgetNanos: UInt64,
                           done: @escaping (Result<Matches, Fallback>) -> Void) -> Bool {
            guard canLookup, !hashes.isEmpty, !candidates.isEmpty else { return false }
            let ns = namespace(keyPrefix, model)
            encoder.reset()
            encoder.beginCommand(argumentCount: 1 + hashes.count)
            encoder.append(argument: "MGET")
            appendBlockKeys(ns, hashes[...])
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
                var late: [RedisReply]?
                if case .success(.array(let items)) = result, items.count == pending[pendingHead].blocks { late = items }
                if case .success = result {} else { metrics.errorsLookup.increment() }
                finish(.failure(.budget), late: late)
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
                    finish(.success(Matches(counts: counts, values: items)))
                    return
                }
            }
            metrics.errorsLookup.increment()
            if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") { reloadScripts() }
            finish(.failure(.error))
        }

        /// Pops the oldest pending lookup and completes it unless the budget did already; a record waiting for
        /// it gets `late` (its reply after the budget) or nil.
        private func finish(_ r: Result<Matches, Fallback>, late: [RedisReply]? = nil) {
            let done = pending[pendingHead].done
            let deferredRecord = pending[pendingHead].deferredRecord
            pending[pendingHead].done = nil
            pending[pendingHead].deferredRecord = nil
            pendingHead += 1
            guard let done else {
                expiredInFlight -= 1
                compact()
                deferredRecord?(late)
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

        /// Records `hashes` for each pod (decode, prefill), fire and forget. `known`: this request's Redis lookup
        /// found the pod holding blocks 1…known (0: unknown); `lookup`: that lookup's reply, whose entries name
        /// the segments along the held run. When every pod holds the whole chain the record is a plain `ZADD XX`
        /// of those segments per pod (recency only); otherwise plain commands write what the reply shows missing
        /// (`recordDirect`). `lateLookup`: the request's lookup fell back on its budget and its reply is still
        /// due — the record waits for that reply and goes the same way (`deferRecord`). Without any reply the
        /// blocks after the shortest known run join this loop's record batch: one `EVALSHA` per
        /// `recordBatchDelayNanos` (or 64 records) writes only what the pods don't hold. A chain this lane
        /// recorded for the pod within a second is skipped (also when the lookup fell back), so a hot prefix costs
        /// Redis only its lookups and a Redis that is behind gets no extra load. No-op when not connected (the
        /// local index has it).
        public func record(keyPrefix: String, model: String, hashes: [UInt64],
                           pods allPods: [(endpoint: Endpoint, capacity: Int, known: Int)], lookup: [RedisReply]? = nil,
                           lateLookup: UInt64 = 0) {
            guard client.isReady, let tip = hashes.last else { return }
            if lookup == nil, lateLookup != 0, deferRecord(until: lateLookup, keyPrefix, model, hashes, allPods) { return }
            let now = EventLoop.now()
            let ns = namespace(keyPrefix, model)
            let nsKey = UInt64(bitPattern: Int64(ns.hashValue))
            var pods: [(id: UInt64, endpoint: Endpoint, capacity: Int, known: Int, segments: [UInt64])] = []
            for p in allPods {
                let id = podID(p.endpoint)
                let key = id ^ (tip &* 0x9E37_79B9_7F4A_7C15) ^ nsKey
                if let t = refreshed[key], now &- t < Lane.refreshIntervalNanos { continue }
                if refreshed.count >= 65_536 { refreshed.removeAll(keepingCapacity: true) }
                refreshed[key] = now
                let known = lookup == nil ? 0 : min(max(0, p.known), hashes.count)
                var segments = lookup.map { RedisPrefixIndex.segments($0, podID: id, run: known) } ?? []
                if segments.count > Lane.maxTouchedSegments { segments.removeLast(segments.count - Lane.maxTouchedSegments) }
                pods.append((id, p.endpoint, p.capacity, known, segments))
            }
            if pods.isEmpty { return }
            let nowMillis = Lane.wallClockMillis()
            if pods.allSatisfy({ $0.known == hashes.count }) {
                for p in pods where !p.segments.isEmpty { touch(ns, p.id, p.segments, nowMillis) }
                return
            }
            if !announced.contains(ns) {
                announced.insert(ns)
                client.send([Array("SADD".utf8), Array((keyPrefix + "namespaces").utf8), ns]) { _ in }
            }
            if let lookup, lookup.count == hashes.count {
                for p in pods { recordDirect(ns, hashes, lookup, p.id, p.endpoint, p.capacity, p.known, p.segments, nowMillis) }
                return
            }
            // One script per namespace (one Redis Cluster slot): a record of another model sends the batch first.
            if batchRecords > 0 && ns != batchNamespace { flushRecords() }
            let first = pods.map(\.known).min() ?? 0   // blocks 1…first are held by every pod: not sent
            let blocks = hashes[first...]
            batchNamespace = ns
            appendBlockKeys(ns, blocks, into: &batchKeys)
            batchKeyCount += blocks.count
            batchArgs.append(argument: blocks.count)
            batchArgs.append(argument: pods.count)
            batchArgCount += 2
            for p in pods {
                withUnsafeBytes(of: p.id.littleEndian) { batchArgs.append(argument: $0) }
                batchArgs.append(argument: max(1, p.capacity))
                batchArgs.append(argument: p.endpoint.spec.namespacedName)
                batchArgs.append(argument: p.known - first)
                batchArgs.append(argument: p.segments.count)
                for s in p.segments { withUnsafeBytes(of: s.littleEndian) { batchArgs.append(argument: $0) } }
                batchArgCount += 5 + p.segments.count
            }
            batchRecords += 1
            if batchRecords >= Lane.maxBatchRecords || batchKeyCount >= Lane.maxBatchKeys {
                flushRecords()
            } else if batchTimer == nil {
                batchTimer = loop.schedule(afterNanoseconds: Lane.recordBatchDelayNanos) { [weak self] in
                    self?.batchTimer = nil
                    self?.flushRecords()
                }
            }
        }

        /// The request's lookup (`seq`) fell back on its budget and its reply is still due: the record waits
        /// for it and then writes only what the reply shows missing (plain commands), instead of a record script
        /// that must read everything itself — a Redis that is behind gets the cheap record, not the dear one.
        /// No reply (error, lost connection): the record goes the script way. False: not pending any more.
        private func deferRecord(until seq: UInt64, _ keyPrefix: String, _ model: String, _ hashes: [UInt64],
                                 _ pods: [(endpoint: Endpoint, capacity: Int, known: Int)]) -> Bool {
            guard pendingHead < pending.count, seq >= pending[pendingHead].seq else { return false }
            let i = pendingHead + Int(seq - pending[pendingHead].seq)
            guard i < pending.count, pending[i].seq == seq, pending[i].done == nil, pending[i].deferredRecord == nil else { return false }
            pending[i].deferredRecord = { [weak self] late in
                guard let self else { return }
                guard let late, let runs = RedisPrefixIndex.consecutiveRuns(late, candidateIDs: pods.map { self.podID($0.endpoint) }) else {
                    return self.record(keyPrefix: keyPrefix, model: model, hashes: hashes, pods: pods)
                }
                let known = pods.enumerated().map { (endpoint: $1.endpoint, capacity: $1.capacity, known: runs[$0]) }
                self.record(keyPrefix: keyPrefix, model: model, hashes: hashes, pods: known, lookup: late)
            }
            return true
        }

        /// A record right after this request's lookup, whose reply shows which blocks the pod lacks: plain
        /// commands, pipelined (one write), no script — `APPEND` of `pod ‖ segment` to each lacking block, `SET`
        /// of the new segment, one `ZADD` of the touched segments and the new one, one `HINCRBY` of the pod's
        /// count. Redis work is proportional to the new blocks. The lookup may be a few ms old: a block another
        /// replica gave this pod meanwhile gets a second entry for it, which lookups ignore and eviction removes
        /// with the first. Past capacity the pod is cut back to `capacity − capacity/128` with plain commands
        /// (`RedisPrefixEviction.swift`): about once per capacity/128 new blocks, not on every record, and each
        /// command short (≈ 250 blocks at the default capacity: Redis is single-threaded, a long command would
        /// stall every lookup).
        private func recordDirect(_ ns: [UInt8], _ hashes: [UInt64], _ lookup: [RedisReply], _ id: UInt64, _ endpoint: Endpoint,
                                  _ capacity: Int, _ known: Int, _ segments: [UInt64], _ nowMillis: UInt64) {
            var newBlocks: [UInt64] = []
            for i in known..<hashes.count {
                if case .string(let v) = lookup[i], v.count % RedisPrefixIndex.entryBytes == 0,
                   v.withUnsafeBytes({ RedisPrefixIndex.entryOffset($0, id) }) != nil { continue }   // held after a gap
                newBlocks.append(hashes[i])
            }
            guard let segment = newBlocks.first else {
                if !segments.isEmpty { touch(ns, id, segments, nowMillis) }
                return
            }
            metrics.roundTripsRecord.increment()
            for h in newBlocks {
                encoder.reset()
                encoder.beginCommand(argumentCount: 3)
                encoder.append(argument: "APPEND")
                appendKey(ns, ":b:", h)
                appendKey([], "", id, segment)   // the entry: pod id ‖ segment id
                client.send(resp: encoder.bytes) { [weak self] in if case .success(.integer) = $0 {} else { self?.metrics.errorsRecord.increment() } }
            }
            encoder.reset()
            encoder.beginCommand(argumentCount: 3)
            encoder.append(argument: "SET")
            appendKey(ns, ":s:", id, segment)
            keyScratch.removeAll(keepingCapacity: true)
            for h in newBlocks { withUnsafeBytes(of: h.littleEndian) { keyScratch.append(contentsOf: $0) } }
            encoder.append(argument: keyScratch)
            client.send(resp: encoder.bytes) { [weak self] in if case .success(.status) = $0 {} else { self?.metrics.errorsRecord.increment() } }
            // Recency: the held run's segments, then the new one just below them (deeper = evicted first). No XX: a
            // touched segment evicted since the lookup comes back as an empty member, which eviction skips.
            encoder.reset()
            encoder.beginCommand(argumentCount: 2 + 2 * (segments.count + 1))
            encoder.append(argument: "ZADD")
            appendKey(ns, ":p:", id)
            appendScoredSegments(segments, nowMillis)
            encoder.append(argument: Lane.recencyScore(nowMillis, depth: segments.count + 1))
            appendID(segment)
            client.send(resp: encoder.bytes) { [weak self] in if case .success(.integer) = $0 {} else { self?.metrics.errorsRecord.increment() } }
            let added = newBlocks.count
            metrics.entriesWritten.increment(by: UInt64(added))
            meanSegmentBlocks += (Double(added) - meanSegmentBlocks) / 16
            encoder.reset()
            encoder.beginCommand(argumentCount: 4)
            encoder.append(argument: "HINCRBY")
            keyScratch.removeAll(keepingCapacity: true)
            keyScratch.append(contentsOf: ns)
            keyScratch.append(contentsOf: ":n".utf8)
            encoder.append(argument: keyScratch)
            appendID(id)
            encoder.append(argument: added)
            let name = endpoint.spec.namespacedName
            client.send(resp: encoder.bytes) { [weak self] result in
                guard let self else { return }
                guard case .success(.integer(let count)) = result else { self.metrics.errorsRecord.increment(); return }
                if count == Int64(added) {   // the pod's first blocks in this namespace: register it for prune
                    var registry = ns
                    registry.append(contentsOf: ":pods".utf8)
                    self.client.send([Array("HSET".utf8), registry, withUnsafeBytes(of: id.littleEndian) { Array($0) }, Array(name.utf8)]) { _ in }
                }
                if count > Int64(max(1, capacity)) { self.evict(ns, id, count: Int(count), target: max(1, capacity - capacity / 128)) }
            }
        }

        /// Sends the collected records as one `EVALSHA` (`RedisPrefixScripts.record`) now.
        func flushRecords() {
            if let t = batchTimer { loop.cancelTimer(t); batchTimer = nil }
            defer {
                batchKeys.reset()
                batchArgs.reset()
                batchKeyCount = 0
                batchArgCount = 0
                batchRecords = 0
            }
            guard batchRecords > 0, client.isReady else { return }
            encoder.reset()
            encoder.beginCommand(argumentCount: 3 + batchKeyCount + 2 + batchArgCount)
            encoder.append(argument: "EVALSHA")
            encoder.append(argument: recordSHA)
            encoder.append(argument: batchKeyCount)
            encoder.append(argumentsOf: batchKeys)
            encoder.append(argument: batchRecords)
            encoder.append(argument: Int(Lane.wallClockMillis()))
            encoder.append(argumentsOf: batchArgs)
            metrics.roundTripsRecord.increment()
            metrics.recordsBatched.increment(by: UInt64(batchRecords))
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

        /// Records sent together at most this long after the first of them (the next request sees a record
        /// ~1 ms later; Redis gets one script call per batch instead of one per pick).
        static let recordBatchDelayNanos: UInt64 = 1_000_000
        static let maxBatchRecords = 64
        static let maxBatchKeys = 8192

        /// The recency of a chain whose blocks a pod holds: one `ZADD XX` of its segments, scored like the
        /// record script (now × 1024 minus the depth, so deeper segments go first); `XX` never re-adds a
        /// segment evicted since the lookup.
        private func touch(_ ns: [UInt8], _ id: UInt64, _ segments: [UInt64], _ nowMillis: UInt64) {
            encoder.reset()
            encoder.beginCommand(argumentCount: 3 + 2 * segments.count)
            encoder.append(argument: "ZADD")
            appendKey(ns, ":p:", id)
            encoder.append(argument: "XX")
            appendScoredSegments(segments, nowMillis)
            metrics.roundTripsTouch.increment()
            client.send(resp: encoder.bytes) { [weak self] result in
                if case .success(.integer) = result { return }
                self?.metrics.errorsRecord.increment()
            }
        }

        /// Segments touched per pod and record (the score keeps a depth of at most 1022 below the time).
        static let maxTouchedSegments = 1000

        /// ZSET score of a segment `depth` (1 = the chain's first) segments into a chain recorded at `nowMillis`:
        /// time × 1024 minus the depth, so a later request ranks above an earlier one and, within one chain,
        /// deeper segments rank lower (evicted first). The record script scores the same way.
        static func recencyScore(_ nowMillis: UInt64, depth: Int) -> Int { Int(nowMillis) * 1024 + 1023 - min(depth, 1023) }

        /// `score member` pairs for `segments` in chain order (depth 1, 2, …).
        private func appendScoredSegments(_ segments: [UInt64], _ nowMillis: UInt64) {
            for (i, s) in segments.enumerated() {
                encoder.append(argument: Lane.recencyScore(nowMillis, depth: i + 1))
                appendID(s)
            }
        }

        static func wallClockMillis() -> UInt64 {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
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

        /// `ns ‖ infix ‖ value [‖ second]` as one argument (ids are 8 bytes, little endian).
        private func appendKey(_ ns: [UInt8], _ infix: String, _ value: UInt64, _ second: UInt64? = nil) {
            keyScratch.removeAll(keepingCapacity: true)
            keyScratch.append(contentsOf: ns)
            keyScratch.append(contentsOf: infix.utf8)
            withUnsafeBytes(of: value.littleEndian) { keyScratch.append(contentsOf: $0) }
            if let second { withUnsafeBytes(of: second.littleEndian) { keyScratch.append(contentsOf: $0) } }
            encoder.append(argument: keyScratch)
        }

        private func appendBlockKeys(_ ns: [UInt8], _ hashes: ArraySlice<UInt64>) {
            appendBlockKeys(ns, hashes, into: &encoder)
        }

        private func appendBlockKeys(_ ns: [UInt8], _ hashes: ArraySlice<UInt64>, into encoder: inout RESPEncoder) {
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
