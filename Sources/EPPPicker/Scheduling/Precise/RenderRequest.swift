/// Tokenisation through a vLLM-compatible render endpoint (kv-index.md §6, model-server.md §2.4): the request
/// bodies we send and the token ids we read back. Pure functions over bytes.
enum RenderRequest {
    static let completionsPath = "/v1/completions/render"
    static let chatPath = "/v1/chat/completions/render"

    /// Chat-template options that change the rendered tokens; copied verbatim from the request.
    static let chatTemplateKeys: [String] = [
        "add_generation_prompt", "continue_final_message", "add_special_tokens", "chat_template", "chat_template_kwargs",
        "documents",
    ]

    /// The render path and JSON body for a parsed completions/chat request, from the raw JSON of its prompt or
    /// messages (no re-marshalling: the engine sees exactly what the client sent) and the target model. nil for
    /// other APIs or a request without a prompt.
    static func body(parsed: ParsedRequest, body: UnsafeRawBufferPointer, model: String) -> (path: String, body: [UInt8])? {
        var out: [UInt8] = []
        out.reserveCapacity(64 + (parsed.promptRange?.count ?? parsed.messagesRange?.count ?? 0))
        out.append(contentsOf: #"{"model":"#.utf8)
        appendJSONString(model, to: &out)
        switch parsed.kind {
        case .completions:
            guard let r = parsed.promptRange else { return nil }
            out.append(contentsOf: #","prompt":"#.utf8)
            out.append(contentsOf: body[r])
            out.append(UInt8(ascii: "}"))
            return (completionsPath, out)
        case .chatCompletions:
            guard let r = parsed.messagesRange else { return nil }
            out.append(contentsOf: #","messages":"#.utf8)
            out.append(contentsOf: body[r])
            if let t = parsed.toolsRange {
                out.append(contentsOf: #","tools":"#.utf8)
                out.append(contentsOf: body[t])
            }
            appendTemplateOptions(body, maxDepth: parsed.maxDepth, to: &out)
            out.append(UInt8(ascii: "}"))
            return (chatPath, out)
        default:
            return nil
        }
    }

    /// Copies the top-level chat-template keys of the (already validated) request body.
    private static func appendTemplateOptions(_ body: UnsafeRawBufferPointer, maxDepth: Int, to out: inout [UInt8]) {
        var c = JSONCursor(body, maxDepth: maxDepth)
        c.skipWhitespace()
        guard c.peek() == JSONByte.lbrace else { return }
        var found: [(String, Range<Int>)] = []
        do {
            try c.forEachMember(level: 1) { (key: JSONStringToken, cur: inout JSONCursor) throws(JSONScanError) in
                let start = cur.pos
                try cur.skipValue(level: 2)
                let name = cur.string(key)
                if chatTemplateKeys.contains(name) { found.append((name, start..<cur.pos)) }
            }
        } catch {
            return   // the parser accepted this body, so this cannot happen; render without the options
        }
        var seen = Set<String>()
        for (name, range) in found.reversed() where seen.insert(name).inserted {   // last occurrence wins, like a decoder
            out.append(UInt8(ascii: ","))
            appendJSONString(name, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: body[range])
        }
    }

    static func appendJSONString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 15)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    struct ResponseError: Error, Equatable, CustomStringConvertible {
        var description: String
    }

    /// `token_ids` from `[{"token_ids":[…],…},…]` (completions: element 0) or `{"token_ids":[…],…}` (chat). Any
    /// other shape, or an id outside 0…2³²−1, is an error.
    static func tokenIDs(_ bytes: [UInt8]) -> Result<[UInt32], ResponseError> {
        bytes.withUnsafeBytes { raw in
            var c = JSONCursor(raw, maxDepth: 64)
            var tokens: [UInt32]? = nil
            var bad: String? = nil
            do {
                c.skipWhitespace()
                switch c.peek() {
                case JSONByte.lbracket:
                    var first = true
                    try c.forEachElement(level: 1) { (el: inout JSONCursor) throws(JSONScanError) in
                        if first, el.peek() == JSONByte.lbrace { tokens = try readObject(&el, level: 2, &bad) } else { try el.skipValue(level: 2) }
                        first = false
                    }
                case JSONByte.lbrace:
                    tokens = try readObject(&c, level: 1, &bad)
                default:
                    return .failure(ResponseError(description: "render response is neither an array nor an object"))
                }
                try c.expectEnd()
            } catch {
                return .failure(ResponseError(description: "render response is not valid JSON: \(error)"))
            }
            if let bad { return .failure(ResponseError(description: bad)) }
            guard let tokens else { return .failure(ResponseError(description: "render response has no token_ids")) }
            return .success(tokens)
        }
    }

    private static func readObject(_ c: inout JSONCursor, level: Int, _ bad: inout String?) throws(JSONScanError) -> [UInt32]? {
        var tokens: [UInt32]? = nil
        var badHere: String? = nil
        try c.forEachMember(level: level) { (key: JSONStringToken, cur: inout JSONCursor) throws(JSONScanError) in
            guard cur.keyEquals(key, "token_ids"), cur.peek() == JSONByte.lbracket else {
                try cur.skipValue(level: level + 1)
                return
            }
            var ids: [UInt32] = []
            try cur.forEachElement(level: level + 1) { (el: inout JSONCursor) throws(JSONScanError) in
                let tok = try el.scanNumber()
                if let v = el.intValue(tok), tok.isIntegerLiteral, v >= 0, v <= Int(UInt32.max) { ids.append(UInt32(v)) }
                else if badHere == nil { badHere = "render response has a token id that is not an integer in 0…4294967295" }
            }
            tokens = ids
        }
        if bad == nil { bad = badHere }
        return tokens
    }
}
