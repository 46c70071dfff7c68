import Testing

@testable import EPPSim

@Suite("KV cache")
struct KVCacheTests {
    func blocks(_ base: Int, _ n: Int, bs: Int = 4) -> [UInt64] {
        KVCache.blockHashes(tokens: Array(base..<(base + n * bs)), blockSize: bs)
    }

    @Test func chainedHashes() {
        let t = Array(0..<50)
        let h = KVCache.blockHashes(tokens: t, blockSize: 16)
        #expect(h.count == 3)  // full blocks only
        #expect(KVCache.blockHashes(tokens: Array(t.prefix(40)), blockSize: 16) == Array(h.prefix(2)))
        var t2 = t
        t2[0] = 999
        let h2 = KVCache.blockHashes(tokens: t2, blockSize: 16)
        #expect(Set(h).isDisjoint(with: h2))  // a change in block 0 changes every later block
    }

    @Test func lruEvictionAndPinning() {
        var c = KVCache(capacity: 8, blockSize: 4)
        let x = blocks(0, 4), y = blocks(100, 4), z = blocks(200, 4)
        #expect(c.acquire(x) == 0)
        c.release(x)
        #expect(c.acquire(y) == 0)
        c.release(y)
        #expect(c.acquire(x) == 4)  // hit, x becomes most recent
        c.release(x)
        #expect(c.residentCount == 8)
        #expect(c.acquire(z) == 0)  // evicts y (least recently used)
        c.release(z)
        #expect(c.matchPrefix(x) == 4)
        #expect(c.matchPrefix(y) == 0)
        #expect(c.evictions == 4)

        // Pinned blocks are never evicted; requests that do not fit are refused.
        var p = KVCache(capacity: 8, blockSize: 4)
        #expect(p.acquire(x) == 0)  // pinned (running)
        #expect(p.acquire(y) == 0)
        p.release(y)
        #expect(p.acquire(z) == 0)  // must evict y, not x
        #expect(p.matchPrefix(x) == 4)
        #expect(p.pinnedCount == 8)
        #expect(p.canAcquire(y) == false)
        #expect(p.acquire(y) == nil)
        p.release(x)
        p.release(z)
        #expect(p.pinnedCount == 0)
        #expect(p.resetUnpinned() == 8)
        #expect(p.residentCount == 0)
    }

    @Test func tailOfPromptEvictedFirst() {
        var c = KVCache(capacity: 4, blockSize: 4)
        let x = blocks(0, 4)
        _ = c.acquire(x)
        c.release(x)
        _ = c.acquire(blocks(500, 1))  // one eviction: x's last block
        #expect(c.matchPrefix(x) == 3)
    }

    @Test func latencyModel() {
        var l = LatencyModel()
        l.maxNumSeqs = 16
        #expect(l.factor(running: 1) == 1)
        #expect(abs(l.factor(running: 16) - 2) < 1e-12)
        #expect(abs(l.timeToFirstToken(promptTokens: 256, cachedTokens: 0, running: 1) - 0.07352) < 1e-9)
        #expect(abs(l.timeToFirstToken(promptTokens: 256, cachedTokens: 256, running: 1) - 0.030) < 1e-9)
        #expect(abs(l.kvTransferTime(promptTokens: 1000) - 0.007) < 1e-9)
        l.timeScale = 0.1
        #expect(abs(l.interToken(running: 1) - 0.0015) < 1e-12)
    }
}
