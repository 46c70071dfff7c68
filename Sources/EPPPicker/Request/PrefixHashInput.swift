// Bytes hashed by the approximate prefix-cache scorer (kv-index.md §1.1) and
// the request-body model splice (epp-protocol.md §6.2).

extension ParsedRequest {
    /// Fast path of `prefixHashInput` for the commonest case, a completions `prompt` that is one JSON string
    /// of plain ASCII without escapes: its decoded text is exactly the body bytes between the quotes, so
    /// the hash chain can read them in place (no decode, no copy). nil otherwise (use `prefixHashInput`).
    public func plainPromptBytes(body: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard kind == .completions, body.count == bodyCount, let r = promptRange, r.count >= 2,
              body[r.lowerBound] == JSONByte.quote, body[r.upperBound - 1] == JSONByte.quote else { return nil }
        let content = UnsafeRawBufferPointer(rebasing: body[(r.lowerBound + 1)..<(r.upperBound - 1)])
        guard let base = content.baseAddress else { return content }
        let n = content.count
        var i = 0
        // Backslashes (escapes) and bytes ≥ 0x80 (UTF-8 the decoder validates) leave the fast path.
        let backslashes: UInt64 = 0x5C5C_5C5C_5C5C_5C5C
        while i + 8 <= n {
            let w = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if w & 0x8080_8080_8080_8080 != 0 || swarHasZero(w ^ backslashes) { return nil }
            i += 8
        }
        while i < n {
            let c = base.load(fromByteOffset: i, as: UInt8.self)
            if c >= 0x80 || c == JSONByte.backslash { return nil }
            i += 1
        }
        return content
    }

    /// The exact bytes the approximate prefix scorer hashes for this request
    /// (kv-index.md §1.1, reproducing GIE `1748e829` `getUserInputBytes`):
    ///
    /// - completions: the decoded prompt text; a string array joined with one
    ///   space; token IDs give `[]` (no hashes).
    /// - chat: Go `json.Marshal` of `messages` as `[]Message`:
    ///   `[{"role":…,"content":…},…]`, role omitted when empty, other message
    ///   fields dropped, content as string (`""` when empty/null) or array of
    ///   blocks `{"type","text"?,"image_url":{"url"?},"input_audio":{"data"?,"format"?},"video_url":{"url"?}}`.
    /// - responses: `[{"instructions":…}?,{"tools":…}?,{"input":…}]`, values
    ///   in Go's generic form (keys sorted, numbers via float64).
    /// - conversations: `[{"type"?,"role"?,"content"?},…]` (content generic).
    /// - embeddings: `{"Raw":…,"Strings":…,"TokenIDs":…}`.
    ///
    /// Strings use Go's escaping (HTML-safe `\u003c`, `\u2028`, …).
    /// `body` must be the bytes this request was parsed from (else `[]`).
    /// Known deviation: Go matches struct keys case-insensitively (`"Role"`
    /// counts as `role`); we match exactly.
    ///
    /// `maxBytes` returns exactly the first `maxBytes` bytes of that input and
    /// stops work early: the scorer hashes at most `maxBlocks × blockChars`
    /// bytes (default 256 × 64 = 16 384), so pass that.
    public func prefixHashInput(body: UnsafeRawBufferPointer, maxBytes: Int = .max) -> [UInt8] {
        guard body.count == bodyCount, maxBytes > 0 else { return [] }
        var out: [UInt8] = []
        var scratch: [UInt8] = []
        var root = JSONCursor(body, maxDepth: maxDepth)
        root.emitLimit = maxBytes
        do throws(JSONScanError) {
            switch kind {
            case .completions:
                guard let r = promptRange else { return [] }
                out.reserveCapacity(min(r.count, maxBytes))
                var c = root.sub(r)
                _ = try FieldWalkers.completionsPrompt(&c, level: 1, emit: true, out: &out)
            case .chatCompletions:
                guard let r = messagesRange else { return [] }
                out.reserveCapacity(min(r.count + r.count / 8 + 16, maxBytes))
                var c = root.sub(r)
                _ = try FieldWalkers.chatMessages(&c, level: 1, emit: true, out: &out, scratch: &scratch)
            case .responses:
                out.reserveCapacity(min((inputRange?.count ?? 0) + (instructionsRange?.count ?? 0)
                                            + (toolsRange?.count ?? 0) + 48, maxBytes))
                out.append(JSONByte.lbracket)
                if let r = instructionsRange {
                    FieldWalkers.appendLiteral("{\"instructions\":", &out)
                    var c = root.sub(r)
                    try FieldWalkers.generic(&c, level: 1, out: &out, scratch: &scratch)
                    FieldWalkers.appendLiteral("},", &out)
                }
                if let r = toolsRange {
                    FieldWalkers.appendLiteral("{\"tools\":", &out)
                    var c = root.sub(r)
                    try FieldWalkers.generic(&c, level: 1, out: &out, scratch: &scratch)
                    FieldWalkers.appendLiteral("},", &out)
                }
                FieldWalkers.appendLiteral("{\"input\":", &out)
                if let r = inputRange {
                    var c = root.sub(r)
                    try FieldWalkers.generic(&c, level: 1, out: &out, scratch: &scratch)
                } else {
                    FieldWalkers.appendLiteral("null", &out)
                }
                FieldWalkers.appendLiteral("}]", &out)
            case .conversations:
                guard let r = itemsRange else { return [] }
                out.reserveCapacity(min(r.count + 16, maxBytes))
                var c = root.sub(r)
                _ = try FieldWalkers.conversationItems(&c, level: 1, emit: true, out: &out, scratch: &scratch)
            case .embeddings:
                guard let r = inputRange else { return [] }
                out.reserveCapacity(min(r.count + 48, maxBytes))
                var c = root.sub(r)
                _ = try FieldWalkers.embeddingsInput(&c, level: 1, emit: true, out: &out, scratch: &scratch)
            }
        } catch {
            // limitReached is expected; anything else is unreachable for a
            // body this request was parsed from
            if error.offset != JSONScanError.limitReached.offset { return [] }
        }
        if out.count > maxBytes { out.removeSubrange(maxBytes...) }
        return out
    }

    public func prefixHashInput(body: [UInt8], maxBytes: Int = .max) -> [UInt8] {
        body.withUnsafeBytes { prefixHashInput(body: $0, maxBytes: maxBytes) }
    }

    // MARK: - model splice (§6.2)

    /// True when forwarding with `target` requires rewriting the body.
    public func needsModelRewrite(to target: String) -> Bool { target != model }

    /// The body with only the `model` value token replaced by `newModel`
    /// (JSON-escaped: `"`, `\` and control characters); every other byte is
    /// identical. When the target equals the incoming model the caller should
    /// forward the original bytes instead (no copy; see `needsModelRewrite`).
    public func bodyWithModel(_ newModel: String, body: UnsafeRawBufferPointer) -> [UInt8] {
        precondition(body.count == bodyCount, "bodyWithModel: body differs from the parsed one")
        var out: [UInt8] = []
        out.reserveCapacity(body.count + newModel.utf8.count + 8)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: body[0..<modelRange.lowerBound]))
        appendJSONQuoted(newModel, to: &out)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: body[modelRange.upperBound..<body.count]))
        return out
    }

    public func bodyWithModel(_ newModel: String, body: [UInt8]) -> [UInt8] {
        body.withUnsafeBytes { bodyWithModel(newModel, body: $0) }
    }
}

/// JSON string literal for `s` with minimal escaping (`"`, `\`, controls).
public func jsonQuoted(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count + 2)
    appendJSONQuoted(s, to: &out)
    return out
}

/// Rewrites the model name in response bytes back to the name the client sent
/// (epp-protocol.md §6.2): literal replacement of `"model":"<target>"`, then of
/// `"model": "<target>"`, by the same text with the incoming name.
///
/// Limitations (same as the reference, §13.13): this is a blind byte replace,
/// so generated text that happens to contain the needle is altered too; and
/// applied per chunk, a needle split across two SSE chunks is not replaced.
/// Names are matched in their minimally-escaped JSON form.
public struct ResponseModelRewriter: Sendable {
    public let target: String
    public let incoming: String
    private let needle1: [UInt8]
    private let repl1: [UInt8]
    private let needle2: [UInt8]
    private let repl2: [UInt8]

    public init(target: String, incoming: String) {
        self.target = target
        self.incoming = incoming
        let t = jsonQuoted(target)
        let i = jsonQuoted(incoming)
        needle1 = Array("\"model\":".utf8) + t
        repl1 = Array("\"model\":".utf8) + i
        needle2 = Array("\"model\": ".utf8) + t
        repl2 = Array("\"model\": ".utf8) + i
    }

    /// True when nothing would ever change (target == incoming).
    public var isIdentity: Bool { target == incoming }

    /// Rewritten chunk, or nil when the chunk contains no needle (forward the
    /// original bytes unchanged).
    public func rewrite(_ chunk: UnsafeRawBufferPointer) -> [UInt8]? {
        guard !isIdentity else { return nil }
        let bytes = chunk.assumingMemoryBound(to: UInt8.self)
        let first = replaceAll(bytes, needle1, repl1)
        if let f = first {
            return f.withUnsafeBufferPointer { replaceAll($0, needle2, repl2) } ?? f
        }
        return replaceAll(bytes, needle2, repl2)
    }

    public func rewrite(_ chunk: [UInt8]) -> [UInt8] {
        chunk.withUnsafeBytes { rewrite($0) } ?? chunk
    }

    private func replaceAll(_ s: UnsafeBufferPointer<UInt8>, _ needle: [UInt8], _ repl: [UInt8]) -> [UInt8]? {
        let n = needle.count
        guard n > 0, s.count >= n else { return nil }
        var out: [UInt8]? = nil
        var copied = 0
        var i = 0
        let first = needle[0]
        let last = s.count - n
        while i <= last {
            if s[i] == first {
                var k = 1
                while k < n && s[i + k] == needle[k] { k += 1 }
                if k == n {
                    if out == nil {
                        out = []
                        out!.reserveCapacity(s.count + max(0, repl.count - n) * 2)
                    }
                    out!.append(contentsOf: UnsafeBufferPointer(rebasing: s[copied..<i]))
                    out!.append(contentsOf: repl)
                    i += n
                    copied = i
                    continue
                }
            }
            i += 1
        }
        guard var o = out else { return nil }
        o.append(contentsOf: UnsafeBufferPointer(rebasing: s[copied..<s.count]))
        return o
    }
}
