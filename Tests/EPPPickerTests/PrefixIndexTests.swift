import EPPPicker
import Testing

/// kv-index.md §1.5 vectors and the local index's behaviour (§1.3–1.4).
@Suite struct PrefixIndexTests {
    static let fox = Array(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 4).utf8)
    static var text150: [UInt8] { Array(fox.prefix(150)) }

    @Test func xxh64Sanity() {
        #expect(XXHash64.hash([UInt8]()) == 0xef46db3751d8e999)
        #expect(XXHash64.hash(Array("abc".utf8)) == 0x44bc2cf5ad770999)
        #expect(XXHash64.hash("m") == 0xba2e567083a2b2e8)
        #expect(XXHash64.hash("msalt1") == 0xbe8af5b4e2fc6861)
        // ≥ 32 bytes exercises the stripe loop
        #expect(XXHash64.hash(Self.text150) != XXHash64.hash(Array(Self.text150.dropLast())))
    }

    @Test func chainVectors() {
        let h = PrefixHashChain.compute(model: "m", input: Self.text150, blockChars: 64, maxBlocks: 256)
        #expect(h == [0x1e36fa827caedac6, 0x22de1ac286d372d6, 0x211db2cd6e0ddf87])
        #expect(h[0] == 2177202908224740038)
        #expect(Array(Self.text150[128...]) == Array("y dog. The quick brown".utf8))
    }

    @Test func chainEdgeCases() {
        let t = Self.text150
        #expect(PrefixHashChain.compute(model: "m", input: Array(t.prefix(63)), blockChars: 64, maxBlocks: 256) == [])
        #expect(PrefixHashChain.compute(model: "m", input: Array(t.prefix(64)), blockChars: 64, maxBlocks: 256) == [0x1e36fa827caedac6])
        #expect(PrefixHashChain.compute(model: "m", input: Array(t.prefix(128)), blockChars: 64, maxBlocks: 256)
                == [0x1e36fa827caedac6, 0x22de1ac286d372d6])
        #expect(PrefixHashChain.compute(model: "m", input: t, blockChars: 64, maxBlocks: 2) == [0x1e36fa827caedac6, 0x22de1ac286d372d6])
        #expect(PrefixHashChain.compute(model: "m", input: t, blockChars: 64, maxBlocks: 0) == [])
    }

    @Test func saltedChain() {
        let h = PrefixHashChain.compute(model: "m", cacheSalt: "salt1", input: Self.text150, blockChars: 64, maxBlocks: 256)
        #expect(h == [0x507a1a58be1cd3c9, 0xc66e8163a6498b16, 0x0f4225f59ddfbc74])
    }

    @Test func chatVectorThroughRequestParsing() throws {
        let body = #"{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Compare <b>R&D</b> spend in 2025 vs 2026, please."}]}"#
        let parsed = try ParsedRequest.parse(body: Array(body.utf8), kind: .chatCompletions).get()
        let input = Array(body.utf8).withUnsafeBytes { parsed.prefixHashInput(body: $0, maxBytes: 256 * 64) }
        #expect(input.count == 163)
        let h = PrefixHashChain.compute(model: "m", input: input, blockChars: 64, maxBlocks: 256)
        #expect(h == [0x3c6ddb6f6ab4eb06, 0xdd348e32473d45f0, 0x0336bcb8f68ea737])
    }

    @Test func chatArrayContentVector() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Describe this image in detail, please."},{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}}]}]}"#
        let parsed = try ParsedRequest.parse(body: Array(body.utf8), kind: .chatCompletions).get()
        let input = Array(body.utf8).withUnsafeBytes { parsed.prefixHashInput(body: $0) }
        let h = PrefixHashChain.compute(model: "m", input: input, blockChars: 64, maxBlocks: 256)
        #expect(h == [0x86d0404ed4baaf78, 0xc4661b120d8e842b, 0x0c3fd8bba27668fd, 0xd6a548eba17d6591])
    }

    func endpoints(_ n: Int) -> [Endpoint] {
        (0..<n).map { Endpoint(spec: EndpointSpec(name: "e\($0)", address: "10.0.0.\($0 + 1)", port: 8000)) }
    }

    @Test func lookupCountsLongestChainAndBreaks() {
        let idx = LocalPrefixIndex()
        let e = endpoints(3)
        idx.record([1, 2, 3], endpoint: e[0], capacity: 100)
        idx.record([1, 2], endpoint: e[1], capacity: 100)
        var m: [Int] = []
        idx.lookup([1, 2, 3, 4], candidates: e, into: &m)
        #expect(m == [3, 2, 0])
        idx.lookup([9, 1, 2], candidates: e, into: &m)   // first hash unknown ⇒ chain broken for everybody
        #expect(m == [0, 0, 0])
        idx.lookup([], candidates: e, into: &m)
        #expect(m == [0, 0, 0])
        idx.lookup([1], candidates: [], into: &m)
        #expect(m == [])
    }

    @Test func identityIsTheNamespacedName() {
        let idx = LocalPrefixIndex()
        let a = Endpoint(spec: EndpointSpec(name: "x", address: "10.0.0.1", port: 8000))
        idx.record([7, 8], endpoint: a, capacity: 10)
        // same name, new object (e.g. labels changed on reload) keeps the cache
        let a2 = Endpoint(spec: EndpointSpec(name: "x", address: "10.0.0.1", port: 8000, labels: ["k": "v"]))
        var m: [Int] = []
        idx.lookup([7, 8], candidates: [a2], into: &m)
        #expect(m == [2])
    }

    @Test func lruEvictsOldestPerEndpointTailsFirst() {
        let idx = LocalPrefixIndex()
        let e = endpoints(2)
        idx.record([1, 2, 3], endpoint: e[0], capacity: 3)  // recency (newest first): 1, 2, 3 — the head is newest
        idx.record([1], endpoint: e[0], capacity: 3)
        idx.record([4], endpoint: e[0], capacity: 3)        // evicts 3, the chain's tail
        #expect(idx.hashCount(for: e[0]) == 3)
        var m: [Int] = []
        idx.lookup([1, 2, 3], candidates: e, into: &m)
        #expect(m == [2, 0])                                // e0 keeps the usable prefix 1, 2
        idx.record([1, 2, 3], endpoint: e[1], capacity: 3)
        idx.lookup([1, 2, 3], candidates: e, into: &m)
        #expect(m == [2, 3])
        #expect(idx.entryCount == 6)
    }

    /// Two long conversations on one endpoint whose LRU holds less than both: the older conversation loses
    /// its last blocks, never its first ones, so its next turn still matches a prefix there.
    @Test func evictionUnderPressureKeepsConversationHeads() {
        let idx = LocalPrefixIndex()
        let e = endpoints(1)
        let convA = Array(UInt64(1)...UInt64(60)), convB = Array(UInt64(1001)...UInt64(1060))
        idx.record(convA, endpoint: e[0], capacity: 100)
        idx.record(convB, endpoint: e[0], capacity: 100)     // 120 > 100: 20 of A's blocks go
        var m: [Int] = []
        idx.lookup(convA + [61], candidates: e, into: &m)
        #expect(m == [40])                                   // A's first 40 blocks still match
        idx.lookup(convB, candidates: e, into: &m)
        #expect(m == [60])
    }

    @Test func pruneDropsEndpointsNoLongerPresent() {
        let idx = LocalPrefixIndex()
        let e = endpoints(2)
        idx.record([1, 2], endpoint: e[0], capacity: 10)
        idx.record([1, 2], endpoint: e[1], capacity: 10)
        idx.prune(keeping: [e[1].spec.namespacedName])
        var m: [Int] = []
        idx.lookup([1, 2], candidates: e, into: &m)
        #expect(m == [0, 2])
        #expect(idx.entryCount == 2)
    }

    @Test func concurrentRecordAndLookup() async {
        let idx = LocalPrefixIndex()
        let e = endpoints(8)
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<8 {
                g.addTask {
                    var m: [Int] = []
                    for i in 0..<500 {
                        let hashes = (0..<8).map { UInt64($0 + (i % 50) * 100) }
                        idx.record(hashes, endpoint: e[t], capacity: 64)
                        idx.lookup(hashes, candidates: e, into: &m)
                    }
                }
            }
        }
        for x in e { #expect(idx.hashCount(for: x) <= 64) }
    }
}
