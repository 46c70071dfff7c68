import EPPRedis

/// Capacity eviction of the Redis prefix index (layout: `RedisPrefixIndex.swift`) with plain commands. A Lua script
/// would make it one call, but every command a script runs costs Redis several times the same command sent
/// directly (argument and reply conversion: building 256 block keys in Lua alone took ~100 µs here; a script
/// cutting entries out of epp-built keys still cost 2.2–2.7 µs per key against ~0.5 µs for `GETDEL`), and Redis
/// time is what the whole fleet of replicas shares. Runs on the lane's loop, off every request's path, at most
/// one eviction per lane at a time (a pod still over capacity is cut back after its next record).
///
/// One round of an eviction, four round trips:
/// 1. `ZCARD` + `ZPOPMIN` of the pod's least recent segments, as many as cover the excess at the lane's mean
///    segment size. Popping makes them this eviction's alone: a replica evicting the same pod at once pops
///    others, so no entry is counted twice. If that emptied the ZSET the newest popped segment goes back (a
///    pod keeps its last segment).
/// 2. `MGET` of the popped segments' block lists, then `DEL` of the segment keys.
/// 3. `GETDEL` of each of their blocks and `HINCRBY` of the pod's count; 4. `APPEND` of what other pods held
///    back to each block. Why not read, filter, write: another replica may `APPEND` to a block in between, and
///    a plain write would lose that entry (guarding it with `WATCH` costs Redis 7.0 O(keys²): 6.5 ms per WATCH
///    of ~250 keys in the benchmark). `GETDEL` takes the value atomically and entries are unordered, so an
///    entry appended in between stays and ours are appended after it. Between 3 and 4 a lookup sees those
///    blocks without their other holders (a transient miss); two replicas evicting *different* pods from one
///    block in the same instant can leave the other pod's entry behind (the second `GETDEL` finds nothing) —
///    a stale entry that the block's next eviction or `prune` removes.
/// Rounds repeat while the pod is still over its target (at most 4). A connection lost after step 1 leaves that
/// round's entries in the block values without a segment: they cost memory until `prune` drops the pod, and its
/// count stays high, so it is cut back a little early — the bound on Redis memory still holds.
extension RedisPrefixIndex.Lane {
    struct Eviction {
        let ns: [UInt8]
        let id: [UInt8]
        /// Blocks still to remove.
        var excess: Int
        var round = 0
        var lru: [UInt8] { ns + Array(":p:".utf8) + id }
        func segmentKey(_ segment: [UInt8]) -> [UInt8] { ns + Array(":s:".utf8) + id + segment }
        func blockKey<S: Sequence<UInt8>>(_ hash: S) -> [UInt8] { ns + Array(":b:".utf8) + hash }
    }

    static let maxEvictionRounds = 4
    static let maxSegmentsPerRound = 1000

    /// Cuts pod `id` (its record just counted `count` blocks) back to `target` blocks.
    func evict(_ ns: [UInt8], _ id: UInt64, count: Int, target: Int) {
        guard !evicting, count > target else { return }
        evicting = true
        popSegments(Eviction(ns: ns, id: withUnsafeBytes(of: id.littleEndian) { Array($0) }, excess: count - target))
    }

    private func endEviction(failed: Bool) {
        if failed { metrics.errorsRecord.increment() }
        evicting = false
    }

    /// Step 1.
    private func popSegments(_ e: Eviction) {
        let want = min(Self.maxSegmentsPerRound, max(1, Int((Double(e.excess) / max(1, meanSegmentBlocks)).rounded(.up))))
        let lru = e.lru
        client.sendPipeline([[Array("ZCARD".utf8), lru], [Array("ZPOPMIN".utf8), lru, Array(String(want).utf8)]]) { [weak self] result in
            guard let self else { return }
            guard case .success(let r) = result, r.count == 2, case .integer(let card) = r[0], case .array(let flat) = r[1],
                  flat.count % 2 == 0 else { return self.endEviction(failed: true) }
            var segments: [[UInt8]] = []
            for i in stride(from: 0, to: flat.count, by: 2) {
                guard case .string(let s) = flat[i] else { return self.endEviction(failed: true) }
                segments.append(s)
            }
            if card <= Int64(segments.count), let newest = segments.popLast() {   // keep the pod's last segment
                self.client.send([Array("ZADD".utf8), lru, Self.scoreBytes(flat[flat.count - 1]), newest]) { _ in }
            }
            if segments.isEmpty { return self.endEviction(failed: false) }
            self.readSegments(e, segments)
        }
    }

    private static func scoreBytes(_ r: RedisReply) -> [UInt8] {
        if case .string(let b) = r { return b }
        return Array("0".utf8)
    }

    /// Step 2.
    private func readSegments(_ e: Eviction, _ segments: [[UInt8]]) {
        let keys = segments.map { e.segmentKey($0) }
        client.sendPipeline([[Array("MGET".utf8)] + keys, [Array("DEL".utf8)] + keys]) { [weak self] result in
            guard let self else { return }
            guard case .success(let r) = result, r.count == 2, case .array(let lists) = r[0], lists.count == keys.count else {
                return self.endEviction(failed: true)
            }
            var blocks: [[UInt8]] = []
            var seen = Set<[UInt8]>()
            var removed = 0
            for case .string(let list) in lists where list.count % 8 == 0 {
                removed += list.count / 8
                for at in stride(from: 0, to: list.count, by: 8) {
                    let hash = Array(list[at..<at + 8])
                    if seen.insert(hash).inserted { blocks.append(hash) }
                }
            }
            self.dropEntries(e, blocks.map { e.blockKey($0) }, removed: removed)
        }
    }

    /// Step 3: `GETDEL` of every block and `HINCRBY` of the count (one pipeline), then `APPEND` back what other
    /// pods held (second pipeline).
    private func dropEntries(_ e: Eviction, _ keys: [[UInt8]], removed: Int) {
        var commands = keys.map { [Array("GETDEL".utf8), $0] }
        commands.append([Array("HINCRBY".utf8), e.ns + Array(":n".utf8), e.id, Array(String(-removed).utf8)])
        client.sendPipeline(commands) { [weak self] result in
            guard let self else { return }
            guard case .success(let r) = result, r.count == keys.count + 1 else { return self.endEviction(failed: true) }
            var restore: [[[UInt8]]] = []
            for (key, value) in zip(keys, r) {
                guard case .string(let v) = value, v.count % RedisPrefixIndex.entryBytes == 0 else { continue }
                let kept = Self.withoutEntries(of: e.id, v)
                if !kept.isEmpty { restore.append([Array("APPEND".utf8), key, kept]) }
            }
            self.client.sendPipeline(restore) { [weak self] result in
                guard let self else { return }
                guard case .success = result else { return self.endEviction(failed: true) }
                self.metrics.entriesEvicted.increment(by: UInt64(removed))
                var next = e
                next.excess -= removed
                next.round += 1
                if next.excess > 0 && next.round < Self.maxEvictionRounds { self.popSegments(next) } else { self.endEviction(failed: false) }
            }
        }
    }

    /// `value`'s 16-byte entries except those of pod `id`.
    static func withoutEntries(of id: [UInt8], _ value: [UInt8]) -> [UInt8] {
        var kept: [UInt8] = []
        kept.reserveCapacity(value.count)
        for at in stride(from: 0, to: value.count, by: RedisPrefixIndex.entryBytes)
        where !value[at..<at + 8].elementsEqual(id) {
            kept += value[at..<at + RedisPrefixIndex.entryBytes]
        }
        return kept
    }
}
