import EPPEventLoop
import EPPObservability
@testable import EPPPicker
import EPPRedis
import Foundation
import Testing

/// `RedisPrefixIndex` against a real redis-server (started per test; fails — never skips — without it).
@Suite(.serialized)
struct RedisPrefixIndexTests {
    let server: RedisIndexTestServer
    let group = EventLoopGroup(count: 1)
    let index: RedisPrefixIndex
    var loop: EventLoop { group.loops[0] }

    init() throws {
        server = try RedisIndexTestServer()
        group.start()
        index = RedisPrefixIndex(url: try RedisURL(parsing: server.url), registry: MetricsRegistry())
    }

    // MARK: helpers

    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { cont in loop.execute { cont.resume(returning: body()) } }
    }

    func readyLane() async throws -> RedisPrefixIndex.Lane {
        let lane = index.attach(loop)
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if await onLoop({ lane.isReady }) { return lane }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        throw RedisIndexTestFailure("redis lane never became ready")
    }

    func lookup(_ lane: RedisPrefixIndex.Lane, _ hashes: [UInt64], _ candidates: [Endpoint], prefix: String = "t:",
                model: String = "m", budget: UInt64 = 1_000_000_000) async -> Result<[Int], RedisPrefixIndex.Fallback>? {
        await lookupMatches(lane, hashes, candidates, prefix: prefix, model: model, budget: budget)?.map(\.counts)
    }

    func lookupMatches(_ lane: RedisPrefixIndex.Lane, _ hashes: [UInt64], _ candidates: [Endpoint], prefix: String = "t:",
                       model: String = "m", budget: UInt64 = 1_000_000_000) async -> Result<RedisPrefixIndex.Matches, RedisPrefixIndex.Fallback>? {
        await withCheckedContinuation { cont in
            loop.execute {
                let sent = lane.lookup(keyPrefix: prefix, model: model, hashes: hashes, candidates: candidates,
                                       budgetNanos: budget) { cont.resume(returning: $0) }
                if !sent { cont.resume(returning: nil) }
            }
        }
    }

    /// A record without a lookup before it (`known` blocks claimed held, no segments to touch).
    func record(_ lane: RedisPrefixIndex.Lane, _ hashes: [UInt64], _ pods: [(Endpoint, Int)], prefix: String = "t:",
                model: String = "m", known: Int = 0) async {
        let p = pods.map { (endpoint: $0.0, capacity: $0.1, known: known) }
        await onLoop {
            lane.record(keyPrefix: prefix, model: model, hashes: hashes, pods: p)
            lane.flushRecords()   // not the 1 ms batch window: the next command of the test must see it
        }
    }

    /// What the scheduler does: a lookup of `hashes` for the pods, then a record with what it found.
    func lookupThenRecord(_ lane: RedisPrefixIndex.Lane, _ hashes: [UInt64], _ pods: [(Endpoint, Int)]) async throws {
        let matches = try #require(await lookupMatches(lane, hashes, pods.map(\.0))).get()
        let p = pods.enumerated().map { (endpoint: $1.0, capacity: $1.1, known: matches.counts[$0]) }
        await onLoop {
            lane.record(keyPrefix: "t:", model: "m", hashes: hashes, pods: p, lookup: matches.values)
            lane.flushRecords()
        }
        _ = await command(lane, [Array("PING".utf8)])   // replies come in order: the record's has been handled
        try await evictionSettled(lane)
    }

    /// Waits until the eviction a record may have started (a few round trips of its own) has finished.
    func evictionSettled(_ lane: RedisPrefixIndex.Lane) async throws {
        let deadline = Date().addingTimeInterval(5)
        while await onLoop({ lane.evicting }) {
            guard Date() < deadline else { throw RedisIndexTestFailure("eviction never finished") }
            try await Task.sleep(nanoseconds: 1_000_000)
        }
    }

    func podCount(_ lane: RedisPrefixIndex.Lane, _ e: Endpoint) async -> RedisReply? {
        await command(lane, [Array("HGET".utf8), RedisPrefixIndex.namespace(keyPrefix: "t:", model: "m") + Array(":n".utf8),
                             withUnsafeBytes(of: RedisPrefixIndex.podID(e.spec.namespacedName).littleEndian) { Array($0) }])
    }

    func command(_ lane: RedisPrefixIndex.Lane, _ args: [[UInt8]]) async -> RedisReply? {
        await withCheckedContinuation { cont in
            loop.execute { lane.client.send(args) { cont.resume(returning: try? $0.get()) } }
        }
    }

    static func pod(_ name: String, _ i: Int) -> Endpoint {
        Endpoint(spec: EndpointSpec(name: name, address: "10.0.0.\(i)", port: 8000))
    }

    static func chain(_ seed: UInt64, _ n: Int) -> [UInt64] { (1...UInt64(n)).map { seed &* 1_000_003 &+ $0 } }

    func blockKey(_ h: UInt64, prefix: String = "t:", model: String = "m") -> [UInt8] {
        RedisPrefixIndex.namespace(keyPrefix: prefix, model: model) + Array(":b:".utf8) + withUnsafeBytes(of: h.littleEndian) { Array($0) }
    }

    func lruKey(_ e: Endpoint, prefix: String = "t:", model: String = "m") -> [UInt8] {
        RedisPrefixIndex.namespace(keyPrefix: prefix, model: model) + Array(":p:".utf8)
            + withUnsafeBytes(of: RedisPrefixIndex.podID(e.spec.namespacedName).littleEndian) { Array($0) }
    }

    func shutdown() async {
        index.close()
        try? await Task.sleep(nanoseconds: 20_000_000)
        group.stop()
        group.join()
        server.stop()
    }

    // MARK: tests

    @Test func longestConsecutiveRunPerCandidate() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), b = Self.pod("b", 2), c = Self.pod("c", 3), d = Self.pod("d", 4), e = Self.pod("e", 5)
        let h = Self.chain(1, 8)
        await record(lane, h, [(a, 1000)])
        await record(lane, Array(h[0..<4]), [(b, 1000)])
        await record(lane, [h[0], h[1], 77, 78], [(c, 1000)])
        await record(lane, [h[0], h[2], h[3]], [(e, 1000)])          // gap at h[1]: its run is 1
        #expect(try await lookup(lane, h, [a, b, c, d, e])?.get() == [8, 4, 2, 0, 1])
        // Only a candidate's own run counts, and pods outside the candidates don't extend the walk.
        #expect(try await lookup(lane, h, [d])?.get() == [0])
        #expect(try await lookup(lane, h, [b, d])?.get() == [4, 0])
        // The walk stops at the first block no candidate holds (h is a's chain; 99… was never recorded).
        #expect(try await lookup(lane, [h[0], h[1], 99_999, h[3]], [a, b])?.get() == [2, 2])
        await shutdown()
    }

    @Test func recordsDecodeAndPrefillInOneRoundTripAndNeverRewritesHeldBlocks() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), p = Self.pod("prefill", 2)
        let h = Self.chain(2, 16)
        let tripsBefore = index.metrics.roundTripsRecord.current
        await record(lane, h, [(a, 1000), (p, 1000)])
        #expect(try await lookup(lane, h, [a, p])?.get() == [16, 16])
        #expect(index.metrics.roundTripsRecord.current - tripsBefore == 1)
        #expect(index.metrics.entriesWritten.current == 32)
        // The same chain for the same pods again within a second: this lane does not send it at all.
        let trips = index.metrics.roundTripsRecord.current
        await record(lane, h, [(a, 1000), (p, 1000)], known: h.count)
        await record(lane, h, [(a, 1000), (p, 1000)])
        #expect(index.metrics.roundTripsRecord.current == trips)
        // A longer chain sharing the first 16 blocks (sent: a new chain): only the 4 new blocks are written.
        await record(lane, h + Self.chain(3, 4), [(a, 1000), (p, 1000)], known: 0)
        #expect(index.metrics.roundTripsRecord.current == trips + 1)
        #expect(try await lookup(lane, h + Self.chain(3, 4), [a, p])?.get() == [20, 20])
        #expect(index.metrics.entriesWritten.current == 40)
        // Each block value holds each pod once (16 bytes per holder: pod id, segment id).
        guard case .string(let v) = await command(lane, [Array("GET".utf8), blockKey(h[0])]) else {
            throw RedisIndexTestFailure("block key missing")
        }
        #expect(v.count == 32)
        #expect(await podCount(lane, a) == .string(Array("20".utf8)))
        await shutdown()
    }

    @Test func afterALookupOnlyNewBlocksAreSentAndHeldChainsAreTouchedNotRewritten() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), p = Self.pod("prefill", 2)
        let h = Self.chain(11, 16), more = Self.chain(12, 4)
        try await lookupThenRecord(lane, h, [(a, 1000), (p, 1000)])
        #expect(index.metrics.entriesWritten.current == 32)
        // A longer request: the lookup finds both pods holding 16 blocks, so only the 4 new ones go to Redis,
        // as one new segment per pod.
        try await lookupThenRecord(lane, h + more, [(a, 1000), (p, 1000)])
        #expect(index.metrics.entriesWritten.current == 40)
        #expect(try await lookup(lane, h + more, [a, p])?.get() == [20, 20])
        #expect(await command(lane, [Array("ZCARD".utf8), lruKey(a)]) == .integer(2))
        // A request whose chain both pods hold entirely: no script, one ZADD XX per pod of the 2 segments along it
        // (segments, not blocks: the number of requests that built the chain).
        let records = index.metrics.roundTripsRecord.current
        let segScoreBefore = await command(lane, [Array("ZSCORE".utf8), lruKey(a), withUnsafeBytes(of: h[0].littleEndian) { Array($0) }])
        try await Task.sleep(nanoseconds: 3_000_000)
        try await lookupThenRecord(lane, Array((h + more).prefix(18)), [(a, 1000), (p, 1000)])
        #expect(index.metrics.roundTripsRecord.current == records)
        #expect(index.metrics.roundTripsTouch.current == 2)
        #expect(index.metrics.entriesWritten.current == 40)
        let segScoreAfter = await command(lane, [Array("ZSCORE".utf8), lruKey(a), withUnsafeBytes(of: h[0].littleEndian) { Array($0) }])
        guard case .string(let before) = segScoreBefore, case .string(let after) = segScoreAfter,
              let b = Double(String(decoding: before, as: UTF8.self)), let n = Double(String(decoding: after, as: UTF8.self)) else {
            throw RedisIndexTestFailure("segment scores missing: \(String(describing: segScoreBefore)) \(String(describing: segScoreAfter))")
        }
        #expect(n > b)
        await shutdown()
    }

    @Test func recordsOfOneBatchWindowShareOneScriptCall() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), b = Self.pod("b", 2)
        let system = Self.chain(16, 8)
        // Three requests picked within the batch window: two share a system prompt on a (its 8 blocks are
        // written once), one on b; the window's timer sends them together.
        let sentAtOnce = await onLoop {
            lane.record(keyPrefix: "t:", model: "m", hashes: system + Self.chain(17, 2), pods: [(a, 1000, 0)])
            lane.record(keyPrefix: "t:", model: "m", hashes: system + Self.chain(18, 3), pods: [(a, 1000, 0)])
            lane.record(keyPrefix: "t:", model: "m", hashes: Self.chain(19, 4), pods: [(b, 1000, 0)])
            return self.index.metrics.roundTripsRecord.current   // in the same loop iteration: nothing sent yet
        }
        #expect(sentAtOnce == 0)
        try await Task.sleep(nanoseconds: 30_000_000)
        _ = await command(lane, [Array("PING".utf8)])
        #expect(index.metrics.roundTripsRecord.current == 1)
        #expect(index.metrics.recordsBatched.current == 3)
        #expect(index.metrics.entriesWritten.current == 8 + 2 + 3 + 4)
        #expect(try await lookup(lane, system + Self.chain(17, 2), [a, b])?.get() == [10, 0])
        #expect(try await lookup(lane, system + Self.chain(18, 3), [a])?.get() == [11])
        #expect(try await lookup(lane, Self.chain(19, 4), [a, b])?.get() == [0, 4])
        // a: the first request's 10 blocks are one segment, the second's 3 new blocks another (touching the first).
        #expect(await command(lane, [Array("ZCARD".utf8), lruKey(a)]) == .integer(2))
        #expect(await podCount(lane, a) == .string(Array("13".utf8)))
        // Another model's record sends the batch at once (one script per namespace = one cluster slot).
        await onLoop {
            lane.record(keyPrefix: "t:", model: "m", hashes: Self.chain(20, 2), pods: [(a, 1000, 0)])
            lane.record(keyPrefix: "t:", model: "other", hashes: Self.chain(20, 2), pods: [(a, 1000, 0)])
            lane.flushRecords()
        }
        _ = await command(lane, [Array("PING".utf8)])
        #expect(index.metrics.roundTripsRecord.current == 3)
        #expect(try await lookup(lane, Self.chain(20, 2), [a], model: "other")?.get() == [2])
        await shutdown()
    }

    @Test func recordsAfterALookupArePlainCommandsAndEvictWithHysteresis() async throws {
        let lane = try await readyLane()
        let d = Self.pod("d", 4)
        let scripts = { await self.command(lane, [Array("INFO".utf8), Array("commandstats".utf8)]) }
        let chains = (0..<8).map { Self.chain(30 + UInt64($0), 5) }
        for c in chains {
            try await lookupThenRecord(lane, c, [(d, 32)])
            try await Task.sleep(nanoseconds: 2_000_000)   // later requests are more recent
        }
        // No script ran: records are plain APPEND/SET/ZADD/HINCRBY, and so is the eviction that ran when the 7th
        // and the 8th request took the pod past 32 blocks (each cut it back below 32 − 32/128 = 32 by one 5-block
        // request): ZPOPMIN of the least recent segment, its block list read and deleted, GETDEL of its 5 blocks
        // (nobody else held them: nothing appended back).
        guard case .string(let stats) = await scripts() else { throw RedisIndexTestFailure("no INFO") }
        let text = String(decoding: stats, as: UTF8.self)
        #expect(text.contains("cmdstat_append:calls=40"))
        #expect(!text.contains("cmdstat_evalsha"))
        #expect(text.contains("cmdstat_zpopmin:calls=2,"))
        #expect(text.contains("cmdstat_getdel:calls=10,"))
        // 40 blocks > 32: cut back to 30, the two least recent requests whole.
        #expect(await podCount(lane, d) == .string(Array("30".utf8)))
        #expect(index.metrics.entriesEvicted.current == 10)
        #expect(try await lookup(lane, chains[0], [d])?.get() == [0])
        #expect(try await lookup(lane, chains[1], [d])?.get() == [0])
        #expect(try await lookup(lane, chains[2], [d])?.get() == [5])
        #expect(try await lookup(lane, chains[7], [d])?.get() == [5])
        await shutdown()
    }

    @Test func evictionKeepsTheOtherHoldersOfABlock() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), b = Self.pod("b", 2)
        let first = Self.chain(41, 4), second = Self.chain(42, 2)
        try await lookupThenRecord(lane, first, [(a, 4), (b, 100)])
        try await Task.sleep(nanoseconds: 3_000_000)
        try await lookupThenRecord(lane, second, [(a, 4)])
        // a went past 4 blocks: its least recent segment (first) is cut out of the blocks b holds too.
        #expect(try await lookup(lane, first, [a, b])?.get() == [0, 4])
        #expect(try await lookup(lane, second, [a])?.get() == [2])
        #expect(await command(lane, [Array("STRLEN".utf8), blockKey(first[0])]) == .integer(16))
        #expect(await podCount(lane, a) == .string(Array("2".utf8)))
        #expect(await podCount(lane, b) == .string(Array("4".utf8)))
        #expect(index.metrics.entriesEvicted.current == 4)
        await shutdown()
    }

    @Test func capacityEvictsLeastRecentSegmentsWholeAndDeepestFirst() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), b = Self.pod("b", 2)
        let first = Self.chain(4, 4), second = Self.chain(5, 2)
        await record(lane, first, [(a, 4), (b, 100)])
        try await Task.sleep(nanoseconds: 3_000_000)   // a later millisecond: the second request is more recent
        await record(lane, second, [(a, 4)])
        // a is over its 4 blocks: the least recent segment (the first request's 4 blocks) goes whole.
        #expect(try await lookup(lane, first, [a, b])?.get() == [0, 4])
        #expect(try await lookup(lane, second, [a])?.get() == [2])
        #expect(await command(lane, [Array("ZCARD".utf8), lruKey(a)]) == .integer(1))
        #expect(await podCount(lane, a) == .string(Array("2".utf8)))
        #expect(index.metrics.entriesEvicted.current == 4)
        // The evicted blocks still exist for b only (a cut out of the value).
        #expect(await command(lane, [Array("STRLEN".utf8), blockKey(first[3])]) == .integer(16))
        // Once nobody holds a block, its key is gone.
        await record(lane, Self.chain(6, 4), [(b, 4)])
        #expect(await command(lane, [Array("EXISTS".utf8), blockKey(first[3])]) == .integer(0))

        // Within one conversation, the deeper segment is evicted before its prefix: c holds a 4-block head and a
        // 2-block continuation (touched together, the continuation scored lower); a third request pushes c past 7.
        let c = Self.pod("c", 3)
        let head = Self.chain(13, 4), tail = Self.chain(14, 2), other = Self.chain(15, 3)
        try await lookupThenRecord(lane, head, [(c, 7)])
        try await lookupThenRecord(lane, head + tail, [(c, 7)])
        try await Task.sleep(nanoseconds: 3_000_000)
        try await lookupThenRecord(lane, other, [(c, 7)])
        #expect(try await lookup(lane, head + tail, [c])?.get() == [4])
        #expect(try await lookup(lane, other, [c])?.get() == [3])
        #expect(await podCount(lane, c) == .string(Array("7".utf8)))
        await shutdown()
    }

    @Test func pruneRemovesDepartedPodsInEveryNamespace() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), b = Self.pod("b", 2)
        let h = Self.chain(7, 8)
        await record(lane, h, [(a, 100), (b, 100)], model: "m1")
        await record(lane, h, [(a, 100)], model: "m2")
        #expect(try await lookup(lane, h, [a, b], model: "m1")?.get() == [8, 8])
        let removed: Int? = await withCheckedContinuation { cont in
            loop.execute { lane.prune(keyPrefix: "t:", keep: [b.spec.namespacedName]) { cont.resume(returning: $0) } }
        }
        #expect(removed == 16)
        #expect(await command(lane, [Array("EXISTS".utf8), RedisPrefixIndex.namespace(keyPrefix: "t:", model: "m1") + Array(":s:".utf8)
            + withUnsafeBytes(of: RedisPrefixIndex.podID(a.spec.namespacedName).littleEndian) { Array($0) }
            + withUnsafeBytes(of: h[0].littleEndian) { Array($0) }]) == .integer(0))
        #expect(try await lookup(lane, h, [a, b], model: "m1")?.get() == [0, 8])
        #expect(try await lookup(lane, h, [a], model: "m2")?.get() == [0])
        #expect(await command(lane, [Array("EXISTS".utf8), lruKey(a, model: "m1")]) == .integer(0))
        #expect(await command(lane, [Array("EXISTS".utf8), blockKey(h[0], model: "m2")]) == .integer(0))
        await shutdown()
    }

    @Test func keyPrefixesAndModelsAreSeparateNamespaces() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1)
        let h = Self.chain(8, 4)
        await record(lane, h, [(a, 100)], prefix: "pool1:", model: "m")
        #expect(try await lookup(lane, h, [a], prefix: "pool1:", model: "m")?.get() == [4])
        #expect(try await lookup(lane, h, [a], prefix: "pool2:", model: "m")?.get() == [0])
        #expect(try await lookup(lane, h, [a], prefix: "pool1:", model: "other")?.get() == [0])
        // One model's keys share a hash tag (one Redis Cluster slot).
        let ns = String(decoding: RedisPrefixIndex.namespace(keyPrefix: "pool1:", model: "m"), as: UTF8.self)
        #expect(ns.hasPrefix("pool1:{") && ns.hasSuffix("}") && ns.count == "pool1:{}".count + 16)
        await shutdown()
    }

    @Test func stopsSendingLookupsWhileTooManyRepliesAreOverdue() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1)
        let h = Self.chain(10, 4)
        await record(lane, h, [(a, 100)])
        await onLoop { lane.client.send(["DEBUG", "SLEEP", "0.15"]) { _ in } }
        let overdue = RedisPrefixIndex.Lane.maxExpiredInFlight
        let answered: [Result<[Int], RedisPrefixIndex.Fallback>?] = await withTaskGroup(of: Result<[Int], RedisPrefixIndex.Fallback>?.self) { g in
            for _ in 0..<overdue { g.addTask { await self.lookup(lane, h, [a], budget: 1_000_000) } }
            var all: [Result<[Int], RedisPrefixIndex.Fallback>?] = []
            for await r in g { all.append(r) }
            return all
        }
        #expect(answered.allSatisfy { $0 == .failure(.budget) })
        // Redis is still asleep with `overdue` lookups queued: the next one is not sent at all.
        #expect(await onLoop { lane.canLookup } == false)
        #expect(await lookup(lane, h, [a]) == nil)
        // Once the late replies are in, lookups go to Redis again.
        try await Task.sleep(nanoseconds: 250_000_000)
        #expect(await onLoop { lane.canLookup })
        #expect(try await lookup(lane, h, [a])?.get() == [4])
        #expect(index.metrics.lateReplies.current == UInt64(overdue))
        await shutdown()
    }

    @Test func aRecordAfterABudgetFallbackWaitsForTheLateReplyAndWritesOnlyWhatIsNew() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1), b = Self.pod("b", 2)
        let held = Self.chain(21, 6), longer = held + Self.chain(22, 2)
        try await lookupThenRecord(lane, held, [(a, 100)])
        _ = await command(lane, [Array("CONFIG".utf8), Array("RESETSTAT".utf8)])
        // Redis stalls: the lookup answers .budget; the request's record (what the producer sends after a
        // fallback: no reply, the lookup's sequence number) waits for the late reply instead of a record script.
        await onLoop { lane.client.send(["DEBUG", "SLEEP", "0.05"]) { _ in } }
        let late: UInt64 = await withCheckedContinuation { cont in
            loop.execute {
                _ = lane.lookup(keyPrefix: "t:", model: "m", hashes: longer, candidates: [a, b], budgetNanos: 2_000_000) { r in
                    #expect(r.map(\.counts) == .failure(.budget))
                    lane.record(keyPrefix: "t:", model: "m", hashes: longer, pods: [(a, 100, 0), (b, 100, 0)],
                                lateLookup: lane.lastLookupSeq)
                    cont.resume(returning: lane.lastLookupSeq)
                }
            }
        }
        #expect(late > 0)
        try await Task.sleep(nanoseconds: 150_000_000)
        _ = await command(lane, [Array("PING".utf8)])
        guard case .string(let stats) = await command(lane, [Array("INFO".utf8), Array("commandstats".utf8)]) else {
            throw RedisIndexTestFailure("no INFO")
        }
        let text = String(decoding: stats, as: UTF8.self)
        #expect(!text.contains("cmdstat_evalsha"))
        // a lacked 2 blocks, b all 8: 10 entries appended, one per block and pod.
        #expect(text.contains("cmdstat_append:calls=10,"))
        #expect(index.metrics.lateReplies.current == 1)
        #expect(try await lookup(lane, longer, [a, b])?.get() == [8, 8])
        await shutdown()
    }

    @Test func lookupFallsBackWhenTheBudgetPassesOrRedisIsGone() async throws {
        let lane = try await readyLane()
        let a = Self.pod("a", 1)
        let h = Self.chain(9, 4)
        await record(lane, h, [(a, 100)])
        #expect(try await lookup(lane, h, [a])?.get() == [4])
        // A stalled Redis: the lookup answers .budget after ~5 ms, not after the stall.
        await onLoop { lane.client.send(["DEBUG", "SLEEP", "0.1"]) { _ in } }
        let start = Date()
        let r = await lookup(lane, h, [a], budget: 5_000_000)
        let elapsed = Date().timeIntervalSince(start)
        #expect(r == .failure(.budget))
        #expect(elapsed < 0.1)
        #expect(index.metrics.fallbackBudget.current == 1)
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(index.metrics.lateReplies.current == 1)
        #expect(try await lookup(lane, h, [a])?.get() == [4])
        // Redis killed: lookups are refused at once (the caller uses the local index) …
        server.kill()
        let deadline = Date().addingTimeInterval(2)
        while await onLoop({ lane.isReady }), Date() < deadline { try await Task.sleep(nanoseconds: 5_000_000) }
        #expect(await lookup(lane, h, [a]) == nil)
        // … and work again once it is back (empty: a fresh server), without any restart of ours.
        try server.start()
        _ = try await readyLane()
        await record(lane, h, [(a, 100)])
        #expect(try await lookup(lane, h, [a])?.get() == [4])
        await shutdown()
    }
}

struct RedisIndexTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A throw-away redis-server on a free loopback port.
final class RedisIndexTestServer: @unchecked Sendable {
    let port: Int
    let dir: String
    private var process: Process?

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") else {
            throw RedisIndexTestFailure("redis-server is not installed")
        }
        dir = NSTemporaryDirectory() + "epp-redis-index-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        port = Socket.localPort(fd)
        close(fd)
        try start()
    }

    var url: String { "redis://127.0.0.1:\(port)" }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        p.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
                       "--protected-mode", "no", "--loglevel", "warning", "--enable-debug-command", "yes"]
        let log = dir + "/redis.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        process = p
        try waitAccepting(log: log)
    }

    /// Returns once the server accepts TCP connections (a loaded machine can take seconds to start it); throws
    /// with its log when it exits or never listens, so a test fails with the reason instead of a timeout.
    private func waitAccepting(log: String) throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if rc == 0 { return }
            if let p = process, !p.isRunning {
                throw RedisIndexTestFailure("redis-server on port \(port) exited: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            usleep(20_000)
        }
        throw RedisIndexTestFailure("redis-server on port \(port) not listening after 20 s: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    func kill() {
        guard let p = process else { return }
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }
}

/// The client-side walk of an `MGET` lookup reply (no Redis needed).
@Suite struct ConsecutiveRunsTests {
    /// A block value: each holder's entry is its id and (here) a segment id derived from it and `segment`.
    func value(_ ids: [UInt64], segment: UInt64 = 0) -> RedisReply {
        var b: [UInt8] = []
        for id in ids {
            withUnsafeBytes(of: id.littleEndian) { b.append(contentsOf: $0) }
            withUnsafeBytes(of: (id ^ segment).littleEndian) { b.append(contentsOf: $0) }
        }
        return .string(b)
    }

    @Test func runsFromTheFirstBlockStopAtGapsAndAtTheFirstUnheldBlock() {
        let (a, b, c, d): (UInt64, UInt64, UInt64, UInt64) = (0xA, 0xB, 0xC0FFEE << 20, 0xD)
        let reply: [RedisReply] = [value([a, b, c]), value([a, c]), value([c]), value([b, c]), .null, value([a, b, c, d])]
        // a: 2 (gap at block 3), b: 1 (gap at block 2; holding block 4 again does not count), c: 4, d: 0
        #expect(RedisPrefixIndex.consecutiveRuns(reply, candidateIDs: [a, b, c, d]) == [2, 1, 4, 0])
        #expect(RedisPrefixIndex.consecutiveRuns([.null, value([a])], candidateIDs: [a]) == [0])
        #expect(RedisPrefixIndex.consecutiveRuns([], candidateIDs: [a, b]) == [0, 0])
        #expect(RedisPrefixIndex.consecutiveRuns([value([a])], candidateIDs: []) == [])
        // An id equal to another holder's segment id is not a holder (entries are 16-byte aligned).
        #expect(RedisPrefixIndex.consecutiveRuns([value([a], segment: a ^ b)], candidateIDs: [b]) == [0])
    }

    @Test func segmentsAlongARunAreListedOnceInChainOrder() {
        let (a, b): (UInt64, UInt64) = (0xA, 0xB)
        let reply: [RedisReply] = [value([a, b], segment: 1), value([a, b], segment: 1), value([b, a], segment: 2),
                                   value([a], segment: 3), value([b], segment: 4)]
        #expect(RedisPrefixIndex.segments(reply, podID: a, run: 4) == [a ^ 1, a ^ 2, a ^ 3])
        #expect(RedisPrefixIndex.segments(reply, podID: a, run: 2) == [a ^ 1])
        #expect(RedisPrefixIndex.segments(reply, podID: b, run: 3) == [b ^ 1, b ^ 2])
        #expect(RedisPrefixIndex.segments(reply, podID: b, run: 0) == [])
        // A value that stops holding the pod, or a malformed one, ends the list.
        #expect(RedisPrefixIndex.segments(reply, podID: b, run: 5) == [b ^ 1, b ^ 2])
        #expect(RedisPrefixIndex.segments([.string([1, 2, 3])], podID: a, run: 1) == [])
    }

    @Test func malformedRepliesAreRejected() {
        #expect(RedisPrefixIndex.consecutiveRuns([.string([1, 2, 3])], candidateIDs: [1]) == nil)
        #expect(RedisPrefixIndex.consecutiveRuns([.string([UInt8](repeating: 1, count: 8))], candidateIDs: [1]) == nil)
        #expect(RedisPrefixIndex.consecutiveRuns([.integer(1)], candidateIDs: [1]) == nil)
        #expect(RedisPrefixIndex.consecutiveRuns([.error("ERR x")], candidateIDs: [1]) == nil)
    }
}
