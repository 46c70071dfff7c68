// Token usage from model-server responses (epp-protocol.md §6.3).

/// Token usage reported by a model server.
public struct Usage: Sendable, Equatable {
    /// `prompt_tokens` (or `input_tokens` for Responses/Conversations).
    public var promptTokens: Int
    /// `completion_tokens` (or `output_tokens`).
    public var completionTokens: Int
    public var totalTokens: Int
    /// `prompt_tokens_details.cached_tokens` (correct OpenAI/vLLM spelling; the
    /// reference reads the misspelt `prompt_token_details`, §13.6), or
    /// `input_tokens_details.cached_tokens` for Responses.
    public var cachedTokens: Int?
    /// The `usage` object as the model server sent it (JSON bytes), for `request-attribute-reporter`
    /// expressions. Not part of equality.
    public var json: [UInt8] = []

    public init(promptTokens: Int = 0, completionTokens: Int = 0, totalTokens: Int = 0, cachedTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens
        self.cachedTokens = cachedTokens
    }

    public static func == (a: Usage, b: Usage) -> Bool {
        a.promptTokens == b.promptTokens && a.completionTokens == b.completionTokens && a.totalTokens == b.totalTokens
            && a.cachedTokens == b.cachedTokens
    }
}

/// Incremental usage extractor fed with response body chunks split at
/// arbitrary points.
///
/// - `.sse`: scans `data:` lines (the `data: ` prefix; a missing space is
///   tolerated), skips `[DONE]`, and takes the **first** JSON object with a
///   non-null `usage` member, or a Responses event `type == "response.completed"`
///   → `response.usage`. Memory: at most one partial line is kept, capped at
///   `maxLineBytes`; a longer line is dropped (counted in `droppedLines`) and
///   scanning resumes at the next line — never a crash, never unbounded memory.
///   Lines without the text `"usage"` are not parsed at all.
/// - `.json`: a small resumable lexer follows the top-level object without
///   buffering it and captures only the top-level `usage` object (capped at
///   `maxLineBytes`) and the `object` string; parsed at `finish()`.
public struct UsageScanner: Sendable {
    public enum Mode: Sendable, Equatable {
        case sse
        case json
    }

    public let mode: Mode
    public let maxLineBytes: Int
    /// Usage found so far (SSE: final once set; JSON: final after `finish()`).
    public private(set) var usage: Usage?
    /// Number of SSE lines dropped because they exceeded `maxLineBytes`, or 1
    /// in JSON mode when the usage object exceeded it.
    public private(set) var droppedLines = 0

    // SSE state
    private var pending: [UInt8] = []
    private var boundaries: [Int] = []
    private var discardingLine = false

    // JSON lexer state
    private var depth = 0
    private var inString = false
    private var escaped = false
    private var expectKey = false
    private var stringIsKey = false
    private var capturingString = false
    private var stringBuf: [UInt8] = []
    private var lastKey: [UInt8] = []
    private var capturingUsage = false
    private var usageBuf: [UInt8] = []
    private var objectType: [UInt8] = []
    private var jsonFailed = false

    public init(mode: Mode, maxLineBytes: Int = 1 << 20) {
        self.mode = mode
        self.maxLineBytes = max(64, maxLineBytes)
    }

    /// Mode from the response `content-type` (contains `text/event-stream`,
    /// case-insensitive ⇒ SSE).
    public init(contentType: String?, maxLineBytes: Int = 1 << 20) {
        let isSSE = contentType.map { $0.lowercased().contains("text/event-stream") } ?? false
        self.init(mode: isSSE ? .sse : .json, maxLineBytes: maxLineBytes)
    }

    public mutating func feed(_ chunk: [UInt8]) {
        chunk.withUnsafeBytes { feed($0) }
    }

    public mutating func feed(_ chunk: UnsafeRawBufferPointer) {
        let b = chunk.assumingMemoryBound(to: UInt8.self)
        switch mode {
        case .sse: feedSSE(b)
        case .json: feedJSON(b)
        }
    }

    /// Ends the stream: a final SSE line without newline is processed; in JSON
    /// mode the captured usage is parsed. Returns `usage`.
    @discardableResult
    public mutating func finish() -> Usage? {
        switch mode {
        case .sse:
            if usage == nil && !discardingLine && !pending.isEmpty {
                processPending()
            }
            pending = []
            boundaries = []
        case .json:
            if !capturingUsage && !usageBuf.isEmpty {
                usage = UsageScanner.parseUsageBytes(usageBuf, objectType: objectType)
            }
        }
        return usage
    }

    /// Usage from a complete non-streaming JSON body (top-level `usage`).
    public static func parseJSON(_ body: UnsafeRawBufferPointer) -> Usage? {
        let c = JSONCursor(body, maxDepth: 128)
        return extractFromObject(c, range: 0..<body.count, allowResponsesEvent: false)
    }

    public static func parseJSON(_ body: [UInt8]) -> Usage? {
        body.withUnsafeBytes { parseJSON($0) }
    }

    /// Usage from complete SSE text (all lines), as one call.
    public static func parseSSE(_ body: [UInt8]) -> Usage? {
        var s = UsageScanner(mode: .sse)
        s.feed(body)
        return s.finish()
    }

    // MARK: - SSE

    private mutating func feedSSE(_ b: UnsafeBufferPointer<UInt8>) {
        guard usage == nil else { return }
        let n = b.count
        // The reference parses each chunk on its own, so a chunk that starts
        // with `data:` after a chunk without trailing newline is also tried as
        // a line of its own (golden behaviour 12).
        if !pending.isEmpty && !discardingLine && startsWithData(b, 0, n) && boundaries.count < 16 {
            boundaries.append(pending.count)
        }
        var i = 0
        while i < n {
            var j = i
            while j < n && b[j] != JSONByte.lf { j += 1 }
            if j == n {
                // partial line
                if discardingLine { return }
                if pending.count + (n - i) > maxLineBytes {
                    droppedLines += 1
                    discardingLine = true
                    pending = []
                    boundaries = []
                    return
                }
                pending.append(contentsOf: UnsafeBufferPointer(rebasing: b[i..<n]))
                return
            }
            // complete line b[i..<j]
            if discardingLine {
                discardingLine = false
            } else if pending.isEmpty {
                // Same cap as for a buffered line, so the outcome does not
                // depend on where the chunks were split (found by fuzzing).
                if j - i > maxLineBytes {
                    droppedLines += 1
                } else {
                    processLine(UnsafeBufferPointer(rebasing: b[i..<j]))
                }
            } else if pending.count + (j - i) > maxLineBytes {
                droppedLines += 1
                pending.removeAll(keepingCapacity: false)
                boundaries.removeAll()
            } else {
                pending.append(contentsOf: UnsafeBufferPointer(rebasing: b[i..<j]))
                processPending()
            }
            if usage != nil {
                pending = []
                return
            }
            i = j + 1
        }
    }

    /// Processes the buffered line (then clears it): first as one line, then,
    /// if that gave no usage, split at chunk boundaries that began with `data:`.
    private mutating func processPending() {
        let line = pending
        let cuts = boundaries
        pending.removeAll(keepingCapacity: true)
        boundaries.removeAll()
        line.withUnsafeBufferPointer { buf in
            processLine(buf)
            guard usage == nil, !cuts.isEmpty else { return }
            var start = 0
            for cut in cuts + [buf.count] where cut > start {
                processLine(UnsafeBufferPointer(rebasing: buf[start..<cut]))
                if usage != nil { return }
                start = cut
            }
        }
    }

    private func startsWithData(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ n: Int) -> Bool {
        n - i >= 5 && b[i] == UInt8(ascii: "d") && b[i + 1] == UInt8(ascii: "a") && b[i + 2] == UInt8(ascii: "t")
            && b[i + 3] == UInt8(ascii: "a") && b[i + 4] == JSONByte.colon
    }

    private mutating func processLine(_ lineIn: UnsafeBufferPointer<UInt8>) {
        var end = lineIn.count
        if end > 0 && lineIn[end - 1] == JSONByte.cr { end -= 1 }
        // "data:" prefix
        guard end >= 5, lineIn[0] == UInt8(ascii: "d"), lineIn[1] == UInt8(ascii: "a"),
              lineIn[2] == UInt8(ascii: "t"), lineIn[3] == UInt8(ascii: "a"), lineIn[4] == JSONByte.colon
        else { return }
        var start = 5
        if start < end && lineIn[start] == JSONByte.space { start += 1 }
        let payload = UnsafeBufferPointer(rebasing: lineIn[start..<end])
        guard bytesContain(payload, "\"usage\"") else { return }  // also skips [DONE]
        let c = JSONCursor(UnsafeRawBufferPointer(payload), maxDepth: 128)
        if let u = UsageScanner.extractFromObject(c, range: 0..<payload.count, allowResponsesEvent: true) {
            usage = u
        }
    }

    // MARK: - JSON (resumable lexer)

    private mutating func feedJSON(_ b: UnsafeBufferPointer<UInt8>) {
        guard !jsonFailed else { return }
        for i in 0..<b.count {
            let ch = b[i]
            if capturingUsage {
                if usageBuf.count >= maxLineBytes {
                    capturingUsage = false
                    usageBuf = []
                    droppedLines = 1
                } else {
                    usageBuf.append(ch)
                }
            }
            if inString {
                if escaped {
                    escaped = false
                } else if ch == JSONByte.backslash {
                    escaped = true
                } else if ch == JSONByte.quote {
                    inString = false
                    if stringIsKey {
                        lastKey = stringBuf
                        expectKey = false
                    } else if capturingString {
                        objectType = stringBuf
                    }
                    capturingString = false
                    continue
                }
                if (stringIsKey || capturingString) && stringBuf.count < 256 { stringBuf.append(ch) }
                continue
            }
            switch ch {
            case JSONByte.quote:
                inString = true
                escaped = false
                stringIsKey = depth == 1 && expectKey
                capturingString = depth == 1 && !expectKey && lastKey == Array("object".utf8)
                stringBuf.removeAll(keepingCapacity: true)
            case JSONByte.lbrace, JSONByte.lbracket:
                if depth == 1 && ch == JSONByte.lbrace && lastKey == Array("usage".utf8) && !capturingUsage {
                    capturingUsage = true
                    usageBuf = [ch]
                }
                depth += 1
                if depth == 1 { expectKey = ch == JSONByte.lbrace }
                if depth == 1 && ch != JSONByte.lbrace { jsonFailed = true; return }
            case JSONByte.rbrace, JSONByte.rbracket:
                depth -= 1
                if depth == 1 && capturingUsage {
                    capturingUsage = false
                    usage = UsageScanner.parseUsageBytes(usageBuf, objectType: objectType)
                }
                if depth < 0 { jsonFailed = true; return }
            case JSONByte.comma:
                if depth == 1 {
                    expectKey = true
                    lastKey.removeAll(keepingCapacity: true)
                }
            default:
                break
            }
        }
    }

    // MARK: - extraction

    private static func parseUsageBytes(_ bytes: [UInt8], objectType: [UInt8]) -> Usage? {
        bytes.withUnsafeBytes { raw -> Usage? in
            let c = JSONCursor(raw, maxDepth: 128)
            return parseUsageObject(c, range: 0..<raw.count, objectType: objectType)
        }
    }

    /// Top-level object in `range`: `usage` member (non-null object), or, when
    /// allowed, `type == "response.completed"` with `response.usage`.
    static func extractFromObject(_ root: JSONCursor, range: Range<Int>, allowResponsesEvent: Bool) -> Usage? {
        var c = root.sub(range)
        var usageRange: Range<Int>? = nil
        var responseRange: Range<Int>? = nil
        var objectType: [UInt8] = []
        var isCompleted = false
        do throws(JSONScanError) {
            c.skipWhitespace()
            guard c.peek() == JSONByte.lbrace else { return nil }
            try c.forEachMember(level: 1) { (key, c) throws(JSONScanError) in
                let start = c.pos
                let first = c.peek()
                if c.keyEquals(key, "usage") {
                    try c.skipValue(level: 1)
                    usageRange = first == JSONByte.lbrace ? start..<c.pos : nil
                } else if c.keyEquals(key, "object"), first == JSONByte.quote {
                    let tok = try c.scanString()
                    objectType = []
                    decodeJSONString(c.b, tok, into: &objectType)
                } else if allowResponsesEvent && c.keyEquals(key, "type"), first == JSONByte.quote {
                    let tok = try c.scanString()
                    isCompleted = c.keyEquals(tok, "response.completed")
                } else if allowResponsesEvent && c.keyEquals(key, "response"), first == JSONByte.lbrace {
                    try c.skipValue(level: 1)
                    responseRange = start..<c.pos
                } else {
                    try c.skipValue(level: 1)
                }
            }
            try c.expectEnd()
        } catch {
            return nil
        }
        if let r = usageRange {
            return parseUsageObject(root, range: r, objectType: objectType)
        }
        if isCompleted, let r = responseRange {
            return extractFromObject(root, range: r, allowResponsesEvent: false)
        }
        return nil
    }

    /// Reads a `usage` object. Responses/Conversations objects (`object`
    /// starting with `response`/`conversation`) prefer `input_tokens` /
    /// `output_tokens`; others prefer `prompt_tokens` / `completion_tokens`;
    /// either falls back to the other spelling.
    static func parseUsageObject(_ root: JSONCursor, range: Range<Int>, objectType: [UInt8]) -> Usage? {
        var c = root.sub(range)
        var prompt: Int? = nil, completion: Int? = nil, total: Int? = nil
        var input: Int? = nil, output: Int? = nil
        var cachedPrompt: Int? = nil, cachedInput: Int? = nil
        do throws(JSONScanError) {
            guard c.peek() == JSONByte.lbrace else { return nil }
            try c.forEachMember(level: 1) { (key, c) throws(JSONScanError) in
                if c.keyEquals(key, "prompt_tokens") {
                    prompt = try number(&c)
                } else if c.keyEquals(key, "completion_tokens") {
                    completion = try number(&c)
                } else if c.keyEquals(key, "total_tokens") {
                    total = try number(&c)
                } else if c.keyEquals(key, "input_tokens") {
                    input = try number(&c)
                } else if c.keyEquals(key, "output_tokens") {
                    output = try number(&c)
                } else if c.keyEquals(key, "prompt_tokens_details") || c.keyEquals(key, "input_tokens_details") {
                    let isPrompt = c.keyEquals(key, "prompt_tokens_details")
                    if c.peek() == JSONByte.lbrace {
                        var cached: Int? = nil
                        try c.forEachMember(level: 2) { (k, c) throws(JSONScanError) in
                            if c.keyEquals(k, "cached_tokens") {
                                cached = try number(&c)
                            } else {
                                try c.skipValue(level: 2)
                            }
                        }
                        if isPrompt { cachedPrompt = cached } else { cachedInput = cached }
                    } else {
                        try c.skipValue(level: 1)
                    }
                } else {
                    try c.skipValue(level: 1)
                }
            }
        } catch {
            return nil
        }
        let responsesStyle = hasPrefix(objectType, "response") || hasPrefix(objectType, "conversation")
        var u = Usage()
        if responsesStyle {
            u.promptTokens = input ?? prompt ?? 0
            u.completionTokens = output ?? completion ?? 0
            u.cachedTokens = cachedInput ?? cachedPrompt
        } else {
            u.promptTokens = prompt ?? input ?? 0
            u.completionTokens = completion ?? output ?? 0
            u.cachedTokens = cachedPrompt ?? cachedInput
        }
        u.totalTokens = total ?? 0
        u.json = Array(UnsafeBufferPointer(rebasing: root.b[range]))
        return u
    }

    /// A number value as Int (fractions truncated like Go's `int(float64)`);
    /// non-numbers are skipped and give nil.
    private static func number(_ c: inout JSONCursor) throws(JSONScanError) -> Int? {
        guard let f = c.peek(), f == JSONByte.minus || isJSONDigit(f) else {
            try c.skipValue(level: 1)
            return nil
        }
        let tok = try c.scanNumber()
        if let v = c.intValue(tok) { return v }
        if let d = c.doubleValue(tok), d.isFinite, d.magnitude < 9.0e18 { return Int(d) }
        return nil
    }

    private static func hasPrefix(_ s: [UInt8], _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard s.count >= n else { return false }
        for i in 0..<n where s[i] != p.utf8Start[i] { return false }
        return true
    }
}

/// Naive substring search (needles are tiny).
func bytesContain(_ hay: UnsafeBufferPointer<UInt8>, _ needle: StaticString) -> Bool {
    let n = needle.utf8CodeUnitCount
    let p = needle.utf8Start
    guard n > 0, hay.count >= n else { return false }
    let first = p[0]
    var i = 0
    let last = hay.count - n
    while i <= last {
        if hay[i] == first {
            var k = 1
            while k < n && hay[i + k] == p[k] { k += 1 }
            if k == n { return true }
        }
        i += 1
    }
    return false
}
