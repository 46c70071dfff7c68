// One-pass request body parsing and validation (epp-protocol.md §6.1, §7).

/// What the picker needs from an OpenAI-style request body, extracted in one
/// validating pass over the bytes. Ranges are byte offsets into the body the
/// request was parsed from; they stay valid only for those exact bytes.
public struct ParsedRequest: Sendable, Equatable {
    public var kind: APIKind
    /// Decoded `model` string (escapes resolved).
    public var model: String
    /// Byte range of the `model` value token **including its quotes** (for
    /// `bodyWithModel`). With duplicate keys, the last occurrence (the one a
    /// JSON map decoder would keep).
    public var modelRange: Range<Int>
    /// `stream: true` in the body.
    public var stream: Bool
    /// `stream_options.include_usage: true` in the body.
    public var includeUsage: Bool
    /// `cache_salt` when it is a non-null string.
    public var cacheSalt: String?
    /// `max_tokens` when it is an integer literal that fits in `Int`.
    public var maxTokens: Int?
    /// `max_completion_tokens` when it is an integer literal that fits in `Int`.
    public var maxCompletionTokens: Int?
    /// Byte ranges of the raw JSON values (nil when absent or `null`).
    public var promptRange: Range<Int>?
    public var messagesRange: Range<Int>?
    public var inputRange: Range<Int>?
    public var itemsRange: Range<Int>?
    public var instructionsRange: Range<Int>?
    public var toolsRange: Range<Int>?
    /// Length of the parsed body.
    public var bodyCount: Int
    /// Nesting limit used for parsing (re-used when re-walking ranges).
    public var maxDepth: Int

    public init(
        kind: APIKind, model: String, modelRange: Range<Int>, stream: Bool = false, includeUsage: Bool = false,
        cacheSalt: String? = nil, maxTokens: Int? = nil, maxCompletionTokens: Int? = nil,
        promptRange: Range<Int>? = nil, messagesRange: Range<Int>? = nil, inputRange: Range<Int>? = nil,
        itemsRange: Range<Int>? = nil, instructionsRange: Range<Int>? = nil, toolsRange: Range<Int>? = nil,
        bodyCount: Int, maxDepth: Int = 128
    ) {
        self.kind = kind
        self.model = model
        self.modelRange = modelRange
        self.stream = stream
        self.includeUsage = includeUsage
        self.cacheSalt = cacheSalt
        self.maxTokens = maxTokens
        self.maxCompletionTokens = maxCompletionTokens
        self.promptRange = promptRange
        self.messagesRange = messagesRange
        self.inputRange = inputRange
        self.itemsRange = itemsRange
        self.instructionsRange = instructionsRange
        self.toolsRange = toolsRange
        self.bodyCount = bodyCount
        self.maxDepth = maxDepth
    }

    /// The per-kind §6.1 message for a missing/invalid required field.
    public static func requiredFieldMessage(for kind: APIKind) -> String {
        switch kind {
        case .conversations: return "invalid conversations request: must have items field"
        case .responses: return "invalid responses request: must have input field"
        case .chatCompletions: return "invalid chat completions request: must have valid messages field"
        case .completions: return "invalid completions request: must have prompt field"
        case .embeddings: return "invalid embeddings request: must have input field"
        }
    }

    /// §6.1 message for `"messages": []`.
    public static let emptyMessagesMessage = "chat-completions request must have at least one message"

    /// Parses and validates a request body for `kind`.
    ///
    /// Checks, in the reference's order: (1) the body is one JSON object
    /// (else 400 `error unmarshaling request bodyMap: <scanner message>`),
    /// (2) the kind's required field has a shape the reference's typed structs
    /// accept (else the §6.1 message), (3) `model` is a string (else 400
    /// `model not found in request body`).
    ///
    /// Deviations from the reference (Go `encoding/json`): keys match exactly
    /// (Go's struct decoding is case-insensitive for the per-kind fields);
    /// numbers outside float64 range are accepted; a top-level `null` is
    /// rejected as not-an-object (Go would then fail on the required field);
    /// for chat only `messages`, `tools` and `cache_salt` are type-checked (not
    /// `documents`, `chat_template`, … ); batched token-ID prompts/inputs
    /// (`[[1,2],[3]]`) are accepted.
    public static func parse(
        body: UnsafeRawBufferPointer, kind: APIKind, maxDepth: Int = 128
    ) -> Result<ParsedRequest, RequestError> {
        var c = JSONCursor(body, maxDepth: maxDepth)
        var st = ScanState()
        do throws(JSONScanError) {
            c.skipWhitespace()
            guard let first = c.peek() else { throw c.eofError() }
            guard first == JSONByte.lbrace else {
                try c.skipValue(level: 0)
                try c.expectEnd()
                return .failure(.notJSON("expected a JSON object, found \(jsonTypeName(first)) at offset 0"))
            }
            try c.forEachMember(level: 1) { (key, c) throws(JSONScanError) in
                try scanTopLevelMember(key: key, cursor: &c, kind: kind, state: &st)
            }
            try c.expectEnd()
        } catch {
            return .failure(.notJSON(error.message))
        }

        // (2) required field
        if st.typeError || st.requiredShape != .ok {
            if kind == .chatCompletions && !st.typeError && st.requiredShape == .empty {
                return .failure(.badRequest(emptyMessagesMessage))
            }
            return .failure(.badRequest(requiredFieldMessage(for: kind)))
        }
        // (3) model
        guard let modelTok = st.model else { return .failure(.modelNotFound) }

        var r = ParsedRequest(kind: kind, model: c.string(modelTok), modelRange: modelTok.range, bodyCount: body.count,
                              maxDepth: c.maxDepth)
        r.stream = st.stream
        r.includeUsage = st.includeUsage
        r.cacheSalt = st.cacheSalt.map { c.string($0) }
        r.maxTokens = st.maxTokens
        r.maxCompletionTokens = st.maxCompletionTokens
        r.promptRange = st.prompt
        r.messagesRange = st.messages
        r.inputRange = st.input
        r.itemsRange = st.items
        r.instructionsRange = st.instructions
        r.toolsRange = st.tools
        return .success(r)
    }

    /// Convenience over a byte array.
    public static func parse(body: [UInt8], kind: APIKind, maxDepth: Int = 128) -> Result<ParsedRequest, RequestError> {
        body.withUnsafeBytes { parse(body: $0, kind: kind, maxDepth: maxDepth) }
    }

    // MARK: - internals

    private struct ScanState {
        var model: JSONStringToken? = nil
        var stream = false
        var includeUsage = false
        var cacheSalt: JSONStringToken? = nil
        var maxTokens: Int? = nil
        var maxCompletionTokens: Int? = nil
        var prompt: Range<Int>? = nil
        var messages: Range<Int>? = nil
        var input: Range<Int>? = nil
        var items: Range<Int>? = nil
        var instructions: Range<Int>? = nil
        var tools: Range<Int>? = nil
        /// Shape of the kind's required field (last occurrence).
        var requiredShape = FieldShape.absent
        /// A typed-struct field had a wrong type (sticky, like Go's decoder).
        var typeError = false
    }

    private enum TopKey {
        case model, stream, streamOptions, cacheSalt, maxTokens, maxCompletionTokens
        case prompt, messages, input, items, instructions, tools, other
    }

    private static func classify(_ c: JSONCursor, _ key: JSONStringToken) -> TopKey {
        if !key.hasEscapes {
            switch key.contentEnd - key.contentStart {
            case 5:
                if c.keyEquals(key, "model") { return .model }
                if c.keyEquals(key, "input") { return .input }
                if c.keyEquals(key, "items") { return .items }
                if c.keyEquals(key, "tools") { return .tools }
            case 6:
                if c.keyEquals(key, "stream") { return .stream }
                if c.keyEquals(key, "prompt") { return .prompt }
            case 8:
                if c.keyEquals(key, "messages") { return .messages }
            case 10:
                if c.keyEquals(key, "cache_salt") { return .cacheSalt }
                if c.keyEquals(key, "max_tokens") { return .maxTokens }
            case 12:
                if c.keyEquals(key, "instructions") { return .instructions }
            case 14:
                if c.keyEquals(key, "stream_options") { return .streamOptions }
            case 21:
                if c.keyEquals(key, "max_completion_tokens") { return .maxCompletionTokens }
            default:
                break
            }
            return .other
        }
        // Escaped key spelling (rare): decode and compare.
        let table: [(StaticString, TopKey)] = [
            ("model", .model), ("stream", .stream), ("stream_options", .streamOptions), ("cache_salt", .cacheSalt),
            ("max_tokens", .maxTokens), ("max_completion_tokens", .maxCompletionTokens), ("prompt", .prompt),
            ("messages", .messages), ("input", .input), ("items", .items), ("instructions", .instructions),
            ("tools", .tools),
        ]
        for (name, k) in table where c.keyEquals(key, name) { return k }
        return .other
    }

    /// Consumes one top-level member value.
    private static func scanTopLevelMember(
        key: JSONStringToken, cursor c: inout JSONCursor, kind: APIKind, state st: inout ScanState
    ) throws(JSONScanError) {
        let level = 1
        let start = c.pos
        let first = c.b[c.pos]
        let isNull = first == JSONByte.n
        var ignored: [UInt8] = []
        var scratch: [UInt8] = []
        switch classify(c, key) {
        case .model:
            if first == JSONByte.quote {
                st.model = try c.scanString()
            } else {
                st.model = nil
                try c.skipValue(level: level)
            }
        case .stream:
            st.stream = first == JSONByte.t
            try c.skipValue(level: level)
        case .streamOptions:
            st.includeUsage = false
            if first == JSONByte.lbrace {
                var inc = false
                try c.forEachMember(level: level + 1) { (k, c) throws(JSONScanError) in
                    if c.keyEquals(k, "include_usage") {
                        inc = c.peek() == JSONByte.t
                    }
                    try c.skipValue(level: level + 1)
                }
                st.includeUsage = inc
            } else {
                try c.skipValue(level: level)
            }
        case .cacheSalt:
            if first == JSONByte.quote {
                st.cacheSalt = try c.scanString()
            } else {
                if !isNull { st.typeError = true }
                try c.skipValue(level: level)
            }
        case .maxTokens, .maxCompletionTokens:
            var v: Int? = nil
            if first == JSONByte.minus || isJSONDigit(first) {
                let tok = try c.scanNumber()
                v = c.intValue(tok)
            } else {
                try c.skipValue(level: level)
            }
            if classify(c, key) == .maxTokens { st.maxTokens = v } else { st.maxCompletionTokens = v }
        case .prompt:
            if kind == .completions {
                st.requiredShape = try FieldWalkers.completionsPrompt(&c, level: level, emit: false, out: &ignored)
                if st.requiredShape == .invalid { st.typeError = true }
            } else {
                try c.skipValue(level: level)
            }
            st.prompt = isNull ? nil : start..<c.pos
        case .messages:
            if kind == .chatCompletions {
                st.requiredShape = try FieldWalkers.chatMessages(
                    &c, level: level, emit: false, out: &ignored, scratch: &scratch)
                if st.requiredShape == .invalid { st.typeError = true }
            } else {
                try c.skipValue(level: level)
            }
            st.messages = isNull ? nil : start..<c.pos
        case .input:
            if kind == .embeddings {
                st.requiredShape = try FieldWalkers.embeddingsInput(
                    &c, level: level, emit: false, out: &ignored, scratch: &scratch)
                if st.requiredShape == .invalid { st.typeError = true }
            } else {
                try c.skipValue(level: level)
                if kind == .responses { st.requiredShape = isNull ? .absent : .ok }
            }
            st.input = isNull ? nil : start..<c.pos
        case .items:
            if kind == .conversations {
                st.requiredShape = try FieldWalkers.conversationItems(
                    &c, level: level, emit: false, out: &ignored, scratch: &scratch)
                if st.requiredShape == .invalid { st.typeError = true }
            } else {
                try c.skipValue(level: level)
            }
            st.items = isNull ? nil : start..<c.pos
        case .instructions:
            try c.skipValue(level: level)
            st.instructions = isNull ? nil : start..<c.pos
        case .tools:
            // chat's typed struct has `tools []interface{}`
            if kind == .chatCompletions && !isNull && first != JSONByte.lbracket { st.typeError = true }
            try c.skipValue(level: level)
            st.tools = isNull ? nil : start..<c.pos
        case .other:
            try c.skipValue(level: level)
        }
    }
}

func jsonTypeName(_ first: UInt8) -> String {
    switch first {
    case JSONByte.lbracket: return "array"
    case JSONByte.quote: return "string"
    case JSONByte.t, JSONByte.f: return "boolean"
    case JSONByte.n: return "null"
    default: return "number"
    }
}
