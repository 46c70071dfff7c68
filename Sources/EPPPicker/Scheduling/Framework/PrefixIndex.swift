import Atomics
import EPPLock

// The approximate prefix index (kv-index.md §1): block-hash chain over the request's prefix-hash input,
// `hashToPods` + a per-endpoint LRU of hashes, longest-chain match counting.

/// Where block hashes of routed requests are remembered. The local implementation lives in this process
/// (shared by all event loops); a Redis-backed one can replace it (same two operations).
public protocol PrefixIndex: AnyObject, Sendable {
    /// kv-index.md §1.4: walks `hashes` in order, stops at the first hash no endpoint holds, and counts per
    /// endpoint how many hashes it holds. `matches` is replaced by one count per candidate (same order).
    func lookup(_ hashes: [UInt64], candidates: [Endpoint], into matches: inout [Int])
    /// kv-index.md §1.3: records all `hashes` for `endpoint`, evicting that endpoint's least recently used
    /// hashes beyond `capacity`. Implementations should make a chain's head the most recent entry (evict
    /// tails first) so partial eviction leaves a usable prefix.
    func record(_ hashes: [UInt64], endpoint: Endpoint, capacity: Int)
    /// Drops every endpoint whose namespaced name is not in `keep`.
    func prune(keeping keep: Set<String>)
    /// Number of (hash, endpoint) entries (the `prefix_indexer_size` gauge).
    var entryCount: Int { get }
}

/// The hash chain of kv-index.md §1.2 (xxHash64, seed 0):
/// `h0 = xxh64(model ‖ cache_salt)`, `h_i = xxh64(block_i ‖ LE64(h_{i−1}))`, `tail = xxh64(rest ‖ LE64(h_n))`.
/// Input longer than `maxBlocks × blockChars` is cut to exactly that; shorter than one block ⇒ no hashes.
public enum PrefixHashChain {
    public static func compute(model: String, cacheSalt: String?, input: UnsafeRawBufferPointer,
                               blockChars: Int, maxBlocks: Int, into out: inout [UInt64], scratch: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        guard blockChars > 0, maxBlocks > 0, input.count >= blockChars else { return }
        let n = min(input.count, maxBlocks * blockChars)
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: model.utf8)
        if let s = cacheSalt, !s.isEmpty { scratch.append(contentsOf: s.utf8) }
        var prev = scratch.withUnsafeBytes { XXHash64.hash($0) }
        var offset = 0
        while offset < n {
            let end = min(offset + blockChars, n)
            prev = XXHash64.hash(UnsafeRawBufferPointer(rebasing: input[offset..<end]), suffix: prev)
            out.append(prev)
            offset = end
        }
    }

    public static func compute(model: String, cacheSalt: String? = nil, input: [UInt8], blockChars: Int,
                               maxBlocks: Int) -> [UInt64] {
        var out: [UInt64] = []
        var scratch: [UInt8] = []
        input.withUnsafeBytes {
            compute(model: model, cacheSalt: cacheSalt, input: $0, blockChars: blockChars, maxBlocks: maxBlocks,
                    into: &out, scratch: &scratch)
        }
        return out
    }
}

/// The in-process index: `hashToPods` split over 64 mutex-protected shards (by hash), plus one LRU per
/// endpoint (its own mutex). Lock order: an endpoint's LRU, then shards — lookups take shard locks only,
/// one at a time, so loops never wait long on each other. Endpoint identity is the namespaced name
/// (an endpoint object replaced on reload keeps its cache).
public final class LocalPrefixIndex: PrefixIndex {
    struct PodList {
        var a: Int32 = -1
        var b: Int32 = -1
        var more: [Int32]? = nil

        var isEmpty: Bool { a < 0 }

        mutating func insert(_ id: Int32) {
            if a == id || b == id { return }
            if a < 0 { a = id; return }
            if b < 0 { b = id; return }
            if more == nil { more = [id]; return }
            if !more!.contains(id) { more!.append(id) }
        }

        /// Returns true when the list became empty.
        mutating func remove(_ id: Int32) -> Bool {
            if a == id {
                a = b; b = -1
                if var m = more, !m.isEmpty { b = m.removeLast(); more = m.isEmpty ? nil : m }
            } else if b == id {
                b = -1
                if var m = more, !m.isEmpty { b = m.removeLast(); more = m.isEmpty ? nil : m }
            } else if var m = more, let i = m.firstIndex(of: id) {
                m.remove(at: i); more = m.isEmpty ? nil : m
            }
            return a < 0
        }

        @inline(__always)
        func forEach(_ f: (Int32) -> Void) {
            if a >= 0 { f(a) }
            if b >= 0 { f(b) }
            if let more { for x in more { f(x) } }
        }
    }

    final class Shard: Sendable {
        let map = Lock(UInt64Map<PodList>())
    }

    /// LRU of one endpoint's hashes: slots in arrays, doubly linked (head = most recent).
    struct HashLRU {
        var slotOf = UInt64Map<Int32>()
        var keys: [UInt64] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var head: Int32 = -1
        var tail: Int32 = -1
        var free: [Int32] = []
        var count: Int { slotOf.count }

        private mutating func unlink(_ s: Int32) {
            let p = prev[Int(s)], n = next[Int(s)]
            if p >= 0 { next[Int(p)] = n } else { head = n }
            if n >= 0 { prev[Int(n)] = p } else { tail = p }
        }

        private mutating func pushFront(_ s: Int32) {
            prev[Int(s)] = -1
            next[Int(s)] = head
            if head >= 0 { prev[Int(head)] = s }
            head = s
            if tail < 0 { tail = s }
        }

        /// Marks `h` most recent. Returns whether it was new, and the hashes evicted to stay ≤ capacity.
        mutating func touch(_ h: UInt64, capacity: Int, evicted: inout [UInt64]) -> Bool {
            if let s = slotOf[h] {
                if s != head { unlink(s); pushFront(s) }
                return false
            }
            while slotOf.count >= max(1, capacity), tail >= 0 {
                let t = tail
                unlink(t)
                let k = keys[Int(t)]
                slotOf.remove(k)
                free.append(t)
                evicted.append(k)
            }
            let s: Int32
            if let f = free.popLast() {
                s = f; keys[Int(s)] = h
            } else {
                s = Int32(keys.count); keys.append(h); prev.append(-1); next.append(-1)
            }
            slotOf[h] = s
            pushFront(s)
            return true
        }

        var allKeys: [UInt64] { slotOf.allKeys }
    }

    final class Server: Sendable {
        let id: Int32
        let name: String
        let lru = Lock(HashLRU())
        init(id: Int32, name: String) { self.id = id; self.name = name }
    }

    struct Servers {
        var byName: [String: Server] = [:]
        var byID: [Server?] = []
        var nextID: Int32 = 0
    }

    private static let shardCount = 64
    private let shards: [Shard]
    private let servers = Lock(Servers())

    /// Endpoint → server id is cached in the endpoint itself (`Endpoint.prefixIndexSlot` =
    /// `epoch << 24 | (id + 1)`, id −1 = never recorded), valid while it carries this index's current
    /// epoch. The epoch changes whenever servers are created or pruned, and epochs come from one
    /// process-wide sequence, so a slot written by another index or before a change never matches: the
    /// lookup then maps that endpoint once under the lock. Saves a map probe per candidate per request.
    private let epoch: ManagedAtomic<UInt64>
    private static let epochs = ManagedAtomic<UInt64>(1)
    private static let epochMask: UInt64 = (1 << 40) - 1

    private static func freshEpoch() -> UInt64 { epochs.loadThenWrappingIncrement(ordering: .relaxed) & epochMask }

    public init() {
        shards = (0..<LocalPrefixIndex.shardCount).map { _ in Shard() }
        epoch = ManagedAtomic(LocalPrefixIndex.freshEpoch())
    }

    /// Server id of `e` (−1: never recorded), mapping and caching it under the servers lock.
    private func resolveID(_ e: Endpoint, _ s: inout Servers) -> Int32 {
        let id = s.byName[e.spec.namespacedName]?.id ?? -1
        e.prefixIndexSlot.store(epoch.load(ordering: .relaxed) << 24 | UInt64(id + 1), ordering: .relaxed)
        return id
    }

    @inline(__always)
    private func shard(_ h: UInt64) -> Shard { shards[Int(truncatingIfNeeded: (h ^ (h >> 29)) & UInt64(LocalPrefixIndex.shardCount - 1))] }

    private func server(for e: Endpoint, create: Bool) -> Server? {
        servers.withLock { s -> Server? in
            let slot = e.prefixIndexSlot.load(ordering: .relaxed)
            if slot >> 24 == epoch.load(ordering: .relaxed), slot & 0xFF_FFFF > 0 {
                return s.byID[Int(slot & 0xFF_FFFF) - 1]
            }
            let name = e.spec.namespacedName
            if let srv = s.byName[name] {
                _ = resolveID(e, &s)
                return srv
            }
            guard create else { return nil }
            let srv = Server(id: s.nextID, name: name)
            s.nextID += 1
            s.byName[name] = srv
            s.byID.append(srv)
            epoch.store(LocalPrefixIndex.freshEpoch(), ordering: .relaxed)   // "never recorded" slots are stale now
            _ = resolveID(e, &s)
            return srv
        }
    }

    public func lookup(_ hashes: [UInt64], candidates: [Endpoint], into matches: inout [Int]) {
        matches.removeAll(keepingCapacity: true)
        matches.append(contentsOf: repeatElement(0, count: candidates.count))
        guard !hashes.isEmpty, !candidates.isEmpty else { return }
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: candidates.count) { ids in
            // Candidate → server id (−1: never recorded) from the endpoints' cached slots; the lock only for
            // endpoints whose slot is stale.
            var maxID: Int32 = -1
            let current = epoch.load(ordering: .relaxed)
            var stale = false
            for (i, e) in candidates.enumerated() {
                let slot = e.prefixIndexSlot.load(ordering: .relaxed)
                if slot >> 24 == current {
                    ids[i] = Int32(truncatingIfNeeded: slot & 0xFF_FFFF) - 1
                    maxID = max(maxID, ids[i])
                } else {
                    ids[i] = -2
                    stale = true
                }
            }
            if stale {
                servers.withLock { s in
                    for (i, e) in candidates.enumerated() where ids[i] == -2 {
                        ids[i] = resolveID(e, &s)
                        maxID = max(maxID, ids[i])
                    }
                }
            }
            guard maxID >= 0 else { return }
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: Int(maxID) + 1) { counts in
                counts.initialize(repeating: 0)
                for h in hashes {
                    let found: Bool = shard(h).map.withLock { m in
                        guard let list = m[h], !list.isEmpty else { return false }
                        list.forEach { id in if id <= maxID { counts[Int(id)] += 1 } }
                        return true
                    }
                    if !found { break }   // the chain is broken for everybody
                }
                for i in 0..<candidates.count where ids[i] >= 0 { matches[i] = Int(counts[Int(ids[i])]) }
            }
        }
    }

    public func record(_ hashes: [UInt64], endpoint: Endpoint, capacity: Int) {
        guard !hashes.isEmpty, let srv = server(for: endpoint, create: true) else { return }
        let id = srv.id
        srv.lru.withLock { lru in
            var evicted: [UInt64] = []
            // Last block first, so a chain's head ends up most recent and eviction takes tails before heads
            // (as vLLM frees a finished request's blocks tail first). The reference touches head first: under
            // memory pressure it evicts the first blocks of long conversations, which breaks the whole chain
            // (lookups stop at the first missing block) and sends the next turn elsewhere.
            for h in hashes.reversed() {
                let inserted = lru.touch(h, capacity: capacity, evicted: &evicted)
                for old in evicted {
                    shard(old).map.withLock { m in
                        if var l = m[old] {
                            if l.remove(id) { m[old] = nil } else { m[old] = l }
                        }
                    }
                }
                evicted.removeAll(keepingCapacity: true)
                if inserted {
                    shard(h).map.withLock { m in _ = m.update(h, orInsert: { PodList() }) { $0.insert(id) } }
                }
            }
        }
    }

    public func prune(keeping keep: Set<String>) {
        let gone: [Server] = servers.withLock { s in
            let dead = s.byName.values.filter { !keep.contains($0.name) }
            for d in dead { s.byName[d.name] = nil; s.byID[Int(d.id)] = nil }
            if !dead.isEmpty { epoch.store(LocalPrefixIndex.freshEpoch(), ordering: .relaxed) }
            return dead
        }
        for srv in gone {
            srv.lru.withLock { lru in
                for h in lru.allKeys {
                    shard(h).map.withLock { m in
                        if var l = m[h] { if l.remove(srv.id) { m[h] = nil } else { m[h] = l } }
                    }
                }
                lru = HashLRU()
            }
        }
    }

    public var entryCount: Int {
        let all = servers.withLock { Array($0.byName.values) }
        return all.reduce(0) { acc, s in acc + s.lru.withLock { $0.count } }
    }

    /// Hashes currently held for `endpoint` (tests, debugging).
    public func hashCount(for endpoint: Endpoint) -> Int {
        guard let srv = server(for: endpoint, create: false) else { return 0 }
        return srv.lru.withLock { $0.count }
    }
}
