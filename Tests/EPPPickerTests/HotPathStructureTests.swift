@testable import EPPPicker
import Testing

/// The data structures the scheduler's hot path was rewritten onto, checked against simple references.
@Suite struct HotPathStructureTests {
    @Test func uint64MapMatchesDictionaryUnderRandomOperations() {
        var rng = SplitMix(seed: 42)
        var map = UInt64Map<Int>()
        var ref: [UInt64: Int] = [:]
        for step in 0..<200_000 {
            // small key space so inserts, overwrites and removals collide often; clustered keys like addresses
            let key = (rng.next() % 4096) &* 16 &+ 0x7f00_0000_0000
            switch rng.next() % 10 {
            case 0..<5:
                map[key] = step; ref[key] = step
            case 5..<8:
                #expect(map.remove(key) == ref.removeValue(forKey: key))
            case 8:
                var inserted = false
                let wasNew = map.update(key, orInsert: { inserted = true; return 0 }) { $0 += 1 }
                #expect(wasNew == inserted)
                ref[key, default: 0] += 1
            default:
                #expect(map[key] == ref[key])
                #expect(map.contains(key) == (ref[key] != nil))
            }
            if step % 50_000 == 0 { #expect(map.count == ref.count) }
        }
        #expect(map.count == ref.count)
        var seen: [UInt64: Int] = [:]
        map.forEach { k, v in seen[k] = v }
        #expect(seen == ref)
        map.removeAll()
        #expect(map.isEmpty && map[ref.keys.first ?? 0] == nil)
    }

    @Test func xxhashWithSuffixEqualsHashOfConcatenation() {
        var rng = SplitMix(seed: 7)
        for len in 0..<140 {
            let bytes = (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let suffix = rng.next()
            var joined = bytes
            withUnsafeBytes(of: suffix.littleEndian) { joined.append(contentsOf: $0) }
            let expected = XXHash64.hash(joined)
            let got = bytes.withUnsafeBytes { XXHash64.hash($0, suffix: suffix) }
            #expect(got == expected, "length \(len)")
        }
    }

    @Test func plainPromptFastPathEqualsDecodedInput() throws {
        let prompts = ["hello world, a plain ASCII prompt that is long enough", "x",
                       "tab\\tescape", "quote \\\" inside", "caf\u{e9} non-ascii", "emoji \u{1F600} here"]
        for p in prompts {
            let body = Array("{\"model\":\"m\",\"prompt\":\"\(p)\"}".utf8)
            let parsed = try ParsedRequest.parse(body: body, kind: .completions).get()
            let slow = parsed.prefixHashInput(body: body)
            let fast: [UInt8]? = body.withUnsafeBytes { b in parsed.plainPromptBytes(body: b).map { Array($0) } }
            let plain = !p.contains("\\") && p.utf8.allSatisfy { $0 < 0x80 }
            #expect((fast != nil) == plain, "\(p)")
            if let fast { #expect(fast == slow, "\(p)") }
        }
        // chat requests never take the fast path
        let chat = Array(#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let parsed = try ParsedRequest.parse(body: chat, kind: .chatCompletions).get()
        #expect(chat.withUnsafeBytes { parsed.plainPromptBytes(body: $0) } == nil)
    }

    @Test func prefixIndexSlotsFollowServerCreationAndPrune() {
        let index = LocalPrefixIndex()
        let a = Endpoint(spec: EndpointSpec(name: "a", address: "10.0.0.1", port: 8000))
        let b = Endpoint(spec: EndpointSpec(name: "b", address: "10.0.0.2", port: 8000))
        var m: [Int] = []
        index.lookup([1, 2, 3], candidates: [a, b], into: &m)
        #expect(m == [0, 0])   // both cached as never recorded
        index.record([1, 2, 3], endpoint: b, capacity: 10)
        index.lookup([1, 2, 3], candidates: [a, b], into: &m)
        #expect(m == [0, 3])   // b's stale "never recorded" slot was not trusted
        // a second index with the same endpoints does not read the first one's slots
        let other = LocalPrefixIndex()
        other.record([1], endpoint: a, capacity: 10)
        other.lookup([1, 2], candidates: [a, b], into: &m)
        #expect(m == [1, 0])
        index.lookup([1, 2, 3], candidates: [a, b], into: &m)
        #expect(m == [0, 3])
        index.prune(keeping: ["a"])
        index.lookup([1, 2, 3], candidates: [a, b], into: &m)
        #expect(m == [0, 0])
        // an endpoint object replaced on reload (same name) finds the same server
        index.record([1, 2], endpoint: a, capacity: 10)
        let a2 = Endpoint(spec: EndpointSpec(name: "a", address: "10.0.0.1", port: 8000, labels: ["k": "v"]))
        index.lookup([1, 2], candidates: [a2], into: &m)
        #expect(m == [2])
    }
}

/// Deterministic generator for randomized tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
