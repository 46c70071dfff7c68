import Synchronization

// The approximate prefix index (kv-index.md §1): block-hash chain over the request's prefix-hash input,
// `hashToPods` + a per-endpoint LRU of hashes, longest-chain match counting.

/// Where block hashes of routed requests are remembered. The local implementation lives in this process
/// (shared by all event loops); a Redis-backed one can replace it (same two operations).
public protocol PrefixIndex: AnyObject, Sendable {
    /// kv-index.md §1.4: walks `hashes` in order, stops at the first hash no endpoint holds, and counts per
    /// endpoint how many hashes it holds. `matches` is replaced by one count per candidate (same order).
    func lookup(_ hashes: [UInt64], candidates: [Endpoint], into matches: inout [Int])
    /// kv-index.md §1.3: records all `hashes` for `endpoint` (most recent last), evicting that endpoint's
    /// least recently used hashes beyond `capacity`.
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
        scratch.removeAll(keepingCapacity: true)
        scratch.reserveCapacity(blockChars + 8)
        var offset = 0
        while offset < n {
            let end = min(offset + blockChars, n)
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[offset..<end]))
            withUnsafeBytes(of: prev.littleEndian) { scratch.append(contentsOf: $0) }
            prev = scratch.withUnsafeBytes { XXHash64.hash($0) }
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
        let map = Mutex<[UInt64: PodList]>([:])
    }

    /// LRU of one endpoint's hashes: slots in arrays, doubly linked (head = most recent).
    struct HashLRU {
        var slotOf: [UInt64: Int32] = [:]
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
                slotOf[k] = nil
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

        var allKeys: [UInt64] { Array(slotOf.keys) }
    }

    final class Server: Sendable {
        let id: Int32
        let name: String
        let lru = Mutex(HashLRU())
        init(id: Int32, name: String) { self.id = id; self.name = name }
    }

    struct Servers {
        var byName: [String: Server] = [:]
        /// Strong reference to the endpoint keeps its ObjectIdentifier unique while cached.
        var byObject: [ObjectIdentifier: (Endpoint, Server)] = [:]
        /// Endpoints known to have no server yet (never recorded), so lookups skip building and hashing their
        /// name on every request. Holds the objects (no identifier reuse); cleared when a server is created
        /// and on prune.
        var unrecorded: [ObjectIdentifier: Endpoint] = [:]
        var nextID: Int32 = 0
    }

    private static let shardCount = 64
    private let shards: [Shard]
    private let servers = Mutex(Servers())

    public init() {
        shards = (0..<LocalPrefixIndex.shardCount).map { _ in Shard() }
    }

    @inline(__always)
    private func shard(_ h: UInt64) -> Shard { shards[Int(truncatingIfNeeded: (h ^ (h >> 29)) & UInt64(LocalPrefixIndex.shardCount - 1))] }

    private func server(for e: Endpoint, create: Bool) -> Server? {
        servers.withLock { s -> Server? in
            if let (_, srv) = s.byObject[ObjectIdentifier(e)] { return srv }
            let name = e.spec.namespacedName
            var srv = s.byName[name]
            if srv == nil {
                guard create else { return nil }
                srv = Server(id: s.nextID, name: name)
                s.nextID += 1
                s.byName[name] = srv
                s.unrecorded.removeAll(keepingCapacity: true)
            }
            s.byObject[ObjectIdentifier(e)] = (e, srv!)
            return srv
        }
    }

    public func lookup(_ hashes: [UInt64], candidates: [Endpoint], into matches: inout [Int]) {
        matches.removeAll(keepingCapacity: true)
        matches.append(contentsOf: repeatElement(0, count: candidates.count))
        guard !hashes.isEmpty, !candidates.isEmpty else { return }
        // Candidate → server id (−1: never recorded), under one lock.
        var maxID: Int32 = -1
        let ids: [Int32] = servers.withLock { s in
            candidates.map { e in
                let oid = ObjectIdentifier(e)
                if let (_, srv) = s.byObject[oid] { maxID = max(maxID, srv.id); return srv.id }
                if s.unrecorded[oid] != nil { return -1 }
                if let srv = s.byName[e.spec.namespacedName] {
                    s.byObject[oid] = (e, srv)
                    maxID = max(maxID, srv.id)
                    return srv.id
                }
                s.unrecorded[oid] = e
                return -1
            }
        }
        guard maxID >= 0 else { return }
        var counts = [Int32](repeating: 0, count: Int(maxID) + 1)
        for h in hashes {
            let found: Bool = shard(h).map.withLock { m in
                guard let list = m[h], !list.isEmpty else { return false }
                list.forEach { id in if id <= maxID { counts[Int(id)] += 1 } }
                return true
            }
            if !found { break }   // the chain is broken for everybody
        }
        for (i, id) in ids.enumerated() where id >= 0 { matches[i] = Int(counts[Int(id)]) }
    }

    public func record(_ hashes: [UInt64], endpoint: Endpoint, capacity: Int) {
        guard !hashes.isEmpty, let srv = server(for: endpoint, create: true) else { return }
        let id = srv.id
        srv.lru.withLock { lru in
            var evicted: [UInt64] = []
            for h in hashes {
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
                    shard(h).map.withLock { m in m[h, default: PodList()].insert(id) }
                }
            }
        }
    }

    public func prune(keeping keep: Set<String>) {
        let gone: [Server] = servers.withLock { s in
            let dead = s.byName.values.filter { !keep.contains($0.name) }
            for d in dead { s.byName[d.name] = nil }
            s.byObject = s.byObject.filter { keep.contains($0.value.1.name) }
            s.unrecorded.removeAll()
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
