/// Block-level prefix cache of one simulated server (vLLM automatic prefix caching).
///
/// - The prompt is cut into full blocks of `blockSize` tokens (the trailing partial block is never
///   cached). Block *i* is identified by a chained hash `h_i = H(h_{i-1}, tokens of block i)`
///   (`h_{-1}` = a fixed seed), so a block hash identifies the whole prefix up to that block.
/// - Capacity is `capacity` blocks. Blocks used by running requests are reference counted
///   (pinned) and never evicted. When a request finishes its blocks become unpinned and join an
///   LRU list — in reverse order, so the tail of a prompt is evicted before its head (as vLLM).
/// - Allocating a new block with a full cache evicts the least recently used unpinned block.
/// - Cached tokens of a request = number of leading blocks already present × `blockSize`.
///
/// Not thread-safe; owned by a ``ServerState`` under its lock.
public struct KVCache: Sendable {
    public let capacity: Int
    public let blockSize: Int

    struct Slot {
        var hash: UInt64
        var refCount: Int
        var prev: Int
        var next: Int
    }

    private var slots: [Slot] = []
    private var index: [UInt64: Int] = [:]
    private var freeSlots: [Int] = []
    private var lruHead = -1  // oldest unpinned
    private var lruTail = -1  // newest unpinned
    /// Number of unpinned (evictable) resident blocks.
    public private(set) var unpinnedCount = 0
    /// Total evictions so far.
    public private(set) var evictions = 0

    public init(capacity: Int, blockSize: Int) {
        precondition(capacity > 0 && blockSize > 0)
        self.capacity = capacity
        self.blockSize = blockSize
        slots.reserveCapacity(min(capacity, 1 << 16))
    }

    /// Blocks currently resident (pinned + cached-unpinned).
    public var residentCount: Int { index.count }
    /// Blocks pinned by running requests.
    public var pinnedCount: Int { index.count - unpinnedCount }
    /// Blocks that can be allocated without eviction.
    public var freeCount: Int { capacity - index.count }

    /// Chained block hashes of the full blocks of `tokens`.
    public static func blockHashes(tokens: [Int], blockSize: Int, seed: UInt64 = 0x6A09_E667_F3BC_C908) -> [UInt64] {
        let full = tokens.count / blockSize
        var out: [UInt64] = []
        out.reserveCapacity(full)
        var parent = seed
        for b in 0..<full {
            // FNV-1a 64 over parent hash and the block's token ids (as little-endian 32-bit words).
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            @inline(__always) func mix(_ v: UInt64, bytes: Int) {
                var x = v
                for _ in 0..<bytes {
                    h ^= x & 0xFF
                    h = h &* 0x0000_0100_0000_01B3
                    x >>= 8
                }
            }
            mix(parent, bytes: 8)
            for t in tokens[(b * blockSize)..<((b + 1) * blockSize)] { mix(UInt64(UInt32(truncatingIfNeeded: t)), bytes: 4) }
            out.append(h)
            parent = h
        }
        return out
    }

    public func contains(_ hash: UInt64) -> Bool { index[hash] != nil }

    public func isPinned(_ hash: UInt64) -> Bool {
        guard let s = index[hash] else { return false }
        return slots[s].refCount > 0
    }

    /// Number of leading `hashes` resident in the cache.
    public func matchPrefix(_ hashes: [UInt64]) -> Int {
        var n = 0
        for h in hashes {
            guard index[h] != nil else { break }
            n += 1
        }
        return n
    }

    /// Can `hashes` be pinned now (counting blocks that would have to be evicted)?
    public func canAcquire(_ hashes: [UInt64]) -> Bool {
        var missing = 0
        var unpinnedHit = 0
        for h in hashes {
            if let s = index[h] {
                if slots[s].refCount == 0 { unpinnedHit += 1 }
            } else {
                missing += 1
            }
        }
        // Missing blocks need free slots or evictable blocks not used by this request.
        return missing <= freeCount + (unpinnedCount - unpinnedHit)
    }

    /// Pin all `hashes` (inserting missing ones, evicting LRU unpinned blocks as needed).
    /// - Returns: the number of leading blocks that were already resident, or `nil` (and no
    ///   change) if the blocks do not fit.
    public mutating func acquire(_ hashes: [UInt64]) -> Int? {
        guard canAcquire(hashes) else { return nil }
        let matched = matchPrefix(hashes)
        // Pin resident blocks first so eviction below cannot take them.
        for h in hashes {
            if let s = index[h] { pin(s) }
        }
        for h in hashes where index[h] == nil {
            let s = allocateSlot(hash: h)
            index[h] = s
        }
        return matched
    }

    /// Unpin blocks previously acquired; they become evictable, the last block first.
    public mutating func release(_ hashes: [UInt64]) {
        for h in hashes.reversed() {
            guard let s = index[h] else { continue }
            slots[s].refCount -= 1
            if slots[s].refCount == 0 { lruAppend(s) }
        }
    }

    /// Drop all unpinned blocks (vLLM `/reset_prefix_cache`). Returns the number dropped.
    @discardableResult
    public mutating func resetUnpinned() -> Int {
        var n = 0
        while lruHead >= 0 {
            let s = lruHead
            lruRemove(s)
            index[slots[s].hash] = nil
            freeSlots.append(s)
            n += 1
        }
        return n
    }

    // MARK: internals

    private mutating func pin(_ s: Int) {
        if slots[s].refCount == 0 { lruRemove(s) }
        slots[s].refCount += 1
    }

    private mutating func allocateSlot(hash: UInt64) -> Int {
        if index.count >= capacity {
            // Evict the least recently used unpinned block.
            let victim = lruHead
            precondition(victim >= 0, "KVCache: no evictable block")
            lruRemove(victim)
            index[slots[victim].hash] = nil
            evictions += 1
            slots[victim] = Slot(hash: hash, refCount: 1, prev: -1, next: -1)
            return victim
        }
        if let s = freeSlots.popLast() {
            slots[s] = Slot(hash: hash, refCount: 1, prev: -1, next: -1)
            return s
        }
        slots.append(Slot(hash: hash, refCount: 1, prev: -1, next: -1))
        return slots.count - 1
    }

    private mutating func lruAppend(_ s: Int) {
        slots[s].prev = lruTail
        slots[s].next = -1
        if lruTail >= 0 { slots[lruTail].next = s } else { lruHead = s }
        lruTail = s
        unpinnedCount += 1
    }

    private mutating func lruRemove(_ s: Int) {
        let p = slots[s].prev
        let n = slots[s].next
        if p >= 0 { slots[p].next = n } else { lruHead = n }
        if n >= 0 { slots[n].prev = p } else { lruTail = p }
        slots[s].prev = -1
        slots[s].next = -1
        unpinnedCount -= 1
    }
}
