// Redis replies as the client sees them: arbitrary bytes from "the server" go through hiredis'
// reader (the parser inside every redisContext, fed in fuzz-chosen chunks like socket reads),
// each reply is copied with RedisReply(copying:) exactly as RedisClient's reply callback does,
// and the replies are handed to the code that interprets them: the prefix index's MGET walk
// (RedisPrefixIndex.consecutiveRuns, then .segments for the recency touch of each candidate's run)
// and the precise-prefix lookup script's reply decoding
// (PreciseLookupScript.holders) followed by LongestPrefixScore.
// Input: byte 0 = number of split choices (mod 32), byte 1 = candidate mask, byte 2 = extra
// request blocks, the split choices (chunk lengths), then the RESP stream.
// Invariants: the same replies and the same error whatever the split; a protocol error is an
// error (message set), never a crash; the copy equals hiredis' tree (type, integer, string bytes,
// element counts, nil elements); consumers agree with straightforward reference versions, never
// report a run longer than the blocks, and are deterministic.
import CHiredis
@testable import EPPPicker
import EPPRedis
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzRedisReply) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRedisReply(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    let choiceCount = Int(r.byte() % 32)
    let candidateMask = r.byte()
    let extraBlocks = Int(r.byte() % 4)
    let choices = r.take(choiceCount)
    let stream = r.rest()
    // hiredis allocates an array's element vector up front from the declared count (calloc of
    // count × 8 bytes, up to 2^31 elements in 0.14): a huge count is hiredis' allocation, not our
    // code, and would only trip libFuzzer's malloc limit. Such inputs are skipped.
    if declaresHugeArray(stream) { return 0 }

    let whole = readReplies([stream])
    let split = readReplies(fuzzSplit(stream, choices: choices))
    fuzzCheck(whole.replies == split.replies,
              "replies depend on the split: \(whole.replies.count) whole, \(split.replies.count) split")
    fuzzCheck(whole.error == split.error,
              "error depends on the split: \(whole.error ?? "none") vs \(split.error ?? "none")")
    if let e = whole.error { fuzzCheck(!e.isEmpty, "protocol error without a message") }

    for reply in whole.replies {
        _ = reply.description   // what logs print (an empty status prints as nothing)
        if case .error = reply { fuzzCheck(reply.isError && reply.text == nil, "error reply not an error") }
        checkPrefixIndexWalk(reply, mask: candidateMask)
        checkPreciseLookup(reply, mask: candidateMask, extraBlocks: extraBlocks)
    }
    return 0
}

// MARK: hiredis reader

/// Feeds the chunks one by one, taking every complete reply after each (what redisAsyncHandleRead
/// does per socket read). Stops at the first protocol error, as the connection does.
private func readReplies(_ chunks: [[UInt8]]) -> (replies: [RedisReply], error: String?) {
    guard let reader = redisReaderCreate() else { fatalError("redisReaderCreate") }
    defer { redisReaderFree(reader) }
    var replies: [RedisReply] = []
    for chunk in chunks {
        let fed = chunk.withUnsafeBytes { redisReaderFeed(reader, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        if fed != REDIS_OK { return (replies, readerError(reader)) }
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else { return (replies, readerError(reader)) }
            guard let raw else { break }
            let tree = UnsafePointer(raw.assumingMemoryBound(to: redisReply.self))
            let copy = RedisReply(copying: tree)
            if let why = mismatch(copy, tree) { fuzzCheck(false, "copy differs from hiredis' reply: \(why)") }
            freeReplyObject(raw)
            replies.append(copy)
        }
    }
    return (replies, nil)
}

private func readerError(_ reader: UnsafeMutablePointer<redisReader>) -> String {
    withUnsafeBytes(of: reader.pointee.errstr) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return "err \(reader.pointee.err): " + String(decoding: bytes, as: UTF8.self)
    }
}

/// Independent walk of hiredis' tree against the copy; nil when they agree.
private func mismatch(_ v: RedisReply, _ r: UnsafePointer<redisReply>, path: String = "$") -> String? {
    let p = r.pointee
    func bytes() -> [UInt8] {
        guard p.len > 0, let s = p.str else { return [] }
        return Array(UnsafeRawBufferPointer(start: s, count: p.len))
    }
    func sameText(_ s: String) -> Bool {
        // The copy decodes status/error text as UTF-8 (invalid bytes become U+FFFD): exact when valid.
        let b = bytes()
        return s == String(decoding: b, as: UTF8.self) && (String(validating: b, as: UTF8.self) == nil || Array(s.utf8) == b)
    }
    switch (p.type, v) {
    case (REDIS_REPLY_STRING, .string(let b)):
        return b == bytes() ? nil : "\(path): string bytes (\(b.count) vs \(p.len))"
    case (REDIS_REPLY_INTEGER, .integer(let i)):
        return i == p.integer ? nil : "\(path): integer \(i) vs \(p.integer)"
    case (REDIS_REPLY_NIL, .null):
        return nil
    case (REDIS_REPLY_STATUS, .status(let s)), (REDIS_REPLY_ERROR, .error(let s)):
        return sameText(s) ? nil : "\(path): text"
    case (REDIS_REPLY_ARRAY, .array(let items)):
        guard items.count == p.elements else { return "\(path): \(items.count) elements vs \(p.elements)" }
        for i in 0..<items.count {
            guard let e = p.element?[i] else {
                if items[i] != .null { return "\(path)[\(i)]: NULL element copied as \(items[i])" }
                continue
            }
            if let why = mismatch(items[i], e, path: "\(path)[\(i)]") { return why }
        }
        return nil
    default:
        return "\(path): type \(p.type) copied as \(v)"
    }
}

/// True when some `*<count>` header in the stream declares more than 1,000,000 elements.
private func declaresHugeArray(_ s: [UInt8]) -> Bool {
    var i = 0
    while i < s.count {
        if s[i] == UInt8(ascii: "*") {
            var j = i + 1
            var digits = 0
            while j < s.count, s[j] >= 0x30, s[j] <= 0x39 { digits += 1; j += 1 }
            if digits > 6 { return true }
        }
        i += 1
    }
    return false
}

// MARK: consumers

/// MGET reply → per-candidate consecutive runs → the segments along each run (the Redis prefix
/// index lookup; a block value is `entryBytes`-byte entries `pod id ‖ segment id`).
private func checkPrefixIndexWalk(_ reply: RedisReply, mask: UInt8) {
    guard case .array(let values) = reply else { return }
    // Candidates: 0 plus the first pod id of some values (chosen by the mask), so runs actually happen.
    var ids: [UInt64] = [0]
    for (k, v) in values.prefix(6).enumerated() where mask & (1 << k) != 0 {
        if case .string(let b) = v, b.count >= 8 { ids.append(entries(b)[0].pod) }
    }
    if mask & 0x80 != 0 { ids.append(ids.last ?? 0) }   // duplicates count separately
    let runs = RedisPrefixIndex.consecutiveRuns(values, candidateIDs: ids)
    let again = RedisPrefixIndex.consecutiveRuns(values, candidateIDs: ids)
    fuzzCheck(runs == again, "consecutiveRuns not deterministic")
    let expected = referenceRuns(values, ids)
    fuzzCheck(runs == expected, "consecutiveRuns \(String(describing: runs)) expected \(String(describing: expected))")
    if let runs {
        fuzzCheck(runs.count == ids.count, "one run per candidate")
        fuzzCheck(runs.allSatisfy { $0 >= 0 && $0 <= values.count }, "run longer than the blocks: \(runs) of \(values.count)")
        for (a, id) in ids.enumerated() {
            let segs = RedisPrefixIndex.segments(values, podID: id, run: runs[a])
            let want = referenceSegments(values, id, runs[a])
            fuzzCheck(segs == want, "segments of candidate \(a): \(segs) expected \(want)")
            fuzzCheck(segs.count <= runs[a], "more segments than blocks in the run")
        }
    }
}

private func le64(_ b: [UInt8], _ o: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) }
}

/// The (pod, segment) entries of a block value; a trailing partial entry only contributes its pod id
/// when 8 bytes of it are there (the walk rejects such values anyway).
private func entries(_ b: [UInt8]) -> [(pod: UInt64, segment: UInt64?)] {
    let size = RedisPrefixIndex.entryBytes
    return stride(from: 0, to: b.count, by: size).compactMap { o in
        guard o + 8 <= b.count else { return nil }
        return (le64(b, o), o + 16 <= b.count ? le64(b, o + 8) : nil)
    }
}

/// The segment of the candidate's first entry in each of the first `run` blocks, consecutive repeats once.
private func referenceSegments(_ values: [RedisReply], _ id: UInt64, _ run: Int) -> [UInt64] {
    var out: [UInt64] = []
    for v in values.prefix(run) {
        guard case .string(let b) = v, b.count % RedisPrefixIndex.entryBytes == 0,
              let e = entries(b).first(where: { $0.pod == id }), let seg = e.segment else { break }
        if out.last != seg { out.append(seg) }
    }
    return out
}

/// A candidate's run = leading values that are well-formed holder lists containing it. The reply is
/// malformed (nil) when a value the walk has to look at (the first, or one some run reaches) is
/// neither nil nor a string of whole entries; the walk stops at the first nil.
private func referenceRuns(_ values: [RedisReply], _ ids: [UInt64]) -> [Int]? {
    func holders(_ v: RedisReply) -> [UInt64]? {
        guard case .string(let b) = v, b.count % RedisPrefixIndex.entryBytes == 0 else { return nil }
        return entries(b).map(\.pod)
    }
    let runs = ids.map { id in
        var n = 0
        for v in values {
            guard let h = holders(v), h.contains(id) else { break }
            n += 1
        }
        return n
    }
    for (i, v) in values.enumerated() {
        if v == .null { break }
        guard i == 0 || runs.contains(where: { $0 >= i }) else { break }
        if holders(v) == nil { return nil }
    }
    return runs
}

/// Lookup-script reply → per-key holders → LongestPrefixScore (the precise prefix scorer).
private func checkPreciseLookup(_ reply: RedisReply, mask: UInt8, extraBlocks: Int) {
    // Candidates: a pod nobody holds plus some pod names from the reply (chosen by the mask).
    var pods = ["10.0.0.1:8000"]
    if case .array(let perKey) = reply {
        var k = 0
        for case .array(let items) in perKey.prefix(4) {
            for case .string(let b) in items.prefix(4) {
                if mask & (1 << (k % 8)) != 0 { pods.append(String(decoding: b, as: UTF8.self)) }
                k += 1
            }
        }
    }
    let holders = PreciseLookupScript.holders(from: reply, candidateIDs: pods)
    let expected = referenceHolders(reply, pods)
    fuzzCheck(String(describing: holders) == String(describing: expected),
              "holders \(String(describing: holders)) expected \(String(describing: expected))")
    guard let holders else { return }
    let totalBlocks = holders.count + extraBlocks
    let weights = TierWeights.standard
    let scores = LongestPrefixScore.scores(holders: holders, candidates: pods.count, totalBlocks: totalBlocks, weights: weights)
    let again = LongestPrefixScore.scores(holders: holders, candidates: pods.count, totalBlocks: totalBlocks, weights: weights)
    fuzzCheck(scores == again, "scores not deterministic")
    fuzzCheck(scores.count == pods.count, "one score per candidate")
    fuzzCheck(scores.allSatisfy { $0 >= 0 && $0 <= 1 }, "score outside 0...1: \(scores)")
    for c in pods.indices {
        // Reference: the candidate's run from key 0, each key adding its best tier weight.
        var raw = 0.0
        for entries in holders {
            let w = entries.filter { $0.candidate == c }.map { weights.weight($0.tier) }.max()
            guard let w else { break }
            raw += w
        }
        let want = totalBlocks > 0 ? min(1, raw / Double(totalBlocks)) : 0
        fuzzCheck(scores[c] == want, "score of candidate \(c): \(scores[c]) expected \(want)")
    }
}

/// An array of per-key arrays of (pod, tier) string pairs, else malformed; pods that are not
/// candidates are dropped, the others map to their first index.
private func referenceHolders(_ reply: RedisReply, _ pods: [String]) -> [[(candidate: Int, tier: String)]]? {
    guard case .array(let perKey) = reply else { return nil }
    var out: [[(candidate: Int, tier: String)]] = []
    for key in perKey {
        guard case .array(let items) = key, items.count % 2 == 0 else { return nil }
        var texts: [String] = []
        for item in items {
            guard case .string(let b) = item else { return nil }
            texts.append(String(decoding: b, as: UTF8.self))
        }
        var entries: [(candidate: Int, tier: String)] = []
        for pair in stride(from: 0, to: texts.count, by: 2) {
            if let c = pods.firstIndex(of: texts[pair]) { entries.append((c, texts[pair + 1])) }
        }
        out.append(entries)
    }
    return out
}
