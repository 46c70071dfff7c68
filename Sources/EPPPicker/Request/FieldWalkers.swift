// Shape validation and canonical re-encoding of the user-input fields
// (`prompt`, `messages`, `input`, `items`, …).
//
// Each walker consumes one JSON value from a cursor. In validation mode
// (`emit == false`) it checks the shape the reference's typed Go structs
// accept (pkg/epp/framework/interface/requesthandling/types.go); in emit mode
// it appends the bytes the approximate prefix scorer hashes
// (kv-index.md §1.1). The same code serves both so the accepted shapes and the
// hashed form can't drift apart.

/// Result of validating one required field.
enum FieldShape: Equatable {
    /// Field absent or `null`.
    case absent
    /// Present but of a shape the typed reference structs reject.
    case invalid
    /// Present but empty (`""`, `[]`) where the reference requires content.
    case empty
    case ok
}

/// Chat `content` kinds recorded while scanning a message.
private enum ContentKind { case none, null, string, array }

enum FieldWalkers {
    // MARK: helpers

    @inline(__always)
    static func appendDecodedGoQuoted(_ c: JSONCursor, _ tok: JSONStringToken, out: inout [UInt8], scratch: inout [UInt8]) {
        // Every decoded byte yields at least one output byte, so decoding
        // more than the remaining budget can't change the kept prefix.
        let budget = c.emitLimit == .max ? Int.max : c.emitLimit - out.count
        scratch.removeAll(keepingCapacity: true)
        scratch.reserveCapacity(min(budget, tok.end - tok.start))
        decodeJSONString(c.b, tok, into: &scratch, maxOut: budget)
        appendGoQuoted(scratch, to: &out)
    }

    @inline(__always)
    static func isNull(_ c: JSONCursor) -> Bool { c.peek() == JSONByte.n }

    /// In emit mode, stops the walk once the output budget is used up.
    @inline(__always)
    static func checkLimit(_ c: JSONCursor, _ out: [UInt8], _ emit: Bool = true) throws(JSONScanError) {
        if emit && out.count >= c.emitLimit { throw JSONScanError.limitReached }
    }

    @inline(__always)
    static func appendLiteral(_ s: StaticString, _ out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Reads an optional string member value: string ⇒ token, null ⇒ keeps
    /// `current` (Go decodes null into a string as a no-op), other ⇒ invalid.
    @inline(__always)
    static func optionalString(
        _ c: inout JSONCursor, level: Int, current: JSONStringToken?, valid: inout Bool
    ) throws(JSONScanError) -> JSONStringToken? {
        switch c.peek() {
        case JSONByte.quote:
            return try c.scanString()
        case JSONByte.n:
            try c.skipValue(level: level)
            return current
        default:
            valid = false
            try c.skipValue(level: level)
            return current
        }
    }

    // MARK: chat messages

    /// `messages` of a chat request (held at `level`). Go shape: `[]Message`,
    /// each `{role string, content string | []ContentBlock}`; elements may be
    /// null. Emit form: `[{"role":…,"content":…},…]` (role omitted when empty;
    /// content `""` when empty/null; blocks in the fixed struct form).
    static func chatMessages(
        _ c: inout JSONCursor, level: Int, emit: Bool, out: inout [UInt8], scratch: inout [UInt8]
    ) throws(JSONScanError) -> FieldShape {
        guard let first = c.peek() else { throw c.eofError() }
        if first == JSONByte.n {
            try c.skipValue(level: level)
            return .absent
        }
        guard first == JSONByte.lbracket else {
            try c.skipValue(level: level)
            return .invalid
        }
        var valid = true
        var count = 0
        if emit { out.append(JSONByte.lbracket) }
        let arrayLevel = level + 1
        try c.forEachElement(level: arrayLevel) { (c) throws(JSONScanError) in
            try checkLimit(c, out, emit)
            if emit && count > 0 { out.append(JSONByte.comma) }
            count += 1
            guard let e = c.peek() else { throw c.eofError() }
            if e == JSONByte.n {
                try c.skipValue(level: arrayLevel)
                if emit { appendLiteral("{\"content\":\"\"}", &out) }
                return
            }
            guard e == JSONByte.lbrace else {
                valid = false
                try c.skipValue(level: arrayLevel)
                return
            }
            let objLevel = arrayLevel + 1
            var role: JSONStringToken? = nil
            var contentKind = ContentKind.none
            var contentRange = 0..<0
            var contentString: JSONStringToken? = nil
            try c.forEachMember(level: objLevel) { (key, c) throws(JSONScanError) in
                if c.keyEquals(key, "role") {
                    role = try optionalString(&c, level: objLevel, current: role, valid: &valid)
                } else if c.keyEquals(key, "content") {
                    let start = c.pos
                    switch c.peek() {
                    case JSONByte.quote:
                        contentString = try c.scanString()
                        contentKind = .string
                    case JSONByte.n:
                        try c.skipValue(level: objLevel)
                        if contentKind == .none { contentKind = .null }
                    case JSONByte.lbracket:
                        var ignored: [UInt8] = []
                        if !(try contentBlocks(&c, level: objLevel, emit: false, out: &ignored, scratch: &scratch)) {
                            valid = false
                        }
                        contentKind = .array
                        contentRange = start..<c.pos
                    default:
                        valid = false
                        try c.skipValue(level: objLevel)
                    }
                } else {
                    try c.skipValue(level: objLevel)
                }
            }
            guard emit else { return }
            out.append(JSONByte.lbrace)
            if let r = role, r.contentEnd > r.contentStart {
                appendLiteral("\"role\":", &out)
                appendDecodedGoQuoted(c, r, out: &out, scratch: &scratch)
                out.append(JSONByte.comma)
            }
            appendLiteral("\"content\":", &out)
            switch contentKind {
            case .string:
                appendDecodedGoQuoted(c, contentString!, out: &out, scratch: &scratch)
            case .array:
                var sub = c.sub(contentRange)
                _ = try contentBlocks(&sub, level: objLevel, emit: true, out: &out, scratch: &scratch)
            case .none, .null:
                appendLiteral("\"\"", &out)
            }
            out.append(JSONByte.rbrace)
        }
        if emit { out.append(JSONByte.rbracket) }
        if !valid { return .invalid }
        return count == 0 ? .empty : .ok
    }

    /// Array of chat content blocks (cursor at `[`, held at `level`). Returns
    /// false for shapes Go's `[]ContentBlock` rejects. Emit form per block:
    /// `{"type":…,"text":…?,"image_url":{"url":…?},"input_audio":{"data":…?,"format":…?},"video_url":{"url":…?}}`.
    static func contentBlocks(
        _ c: inout JSONCursor, level: Int, emit: Bool, out: inout [UInt8], scratch: inout [UInt8]
    ) throws(JSONScanError) -> Bool {
        var valid = true
        var count = 0
        let arrayLevel = level + 1
        if emit { out.append(JSONByte.lbracket) }
        try c.forEachElement(level: arrayLevel) { (c) throws(JSONScanError) in
            try checkLimit(c, out, emit)
            if emit && count > 0 { out.append(JSONByte.comma) }
            count += 1
            var type: JSONStringToken? = nil
            var text: JSONStringToken? = nil
            var imageURL: JSONStringToken? = nil
            var audioData: JSONStringToken? = nil
            var audioFormat: JSONStringToken? = nil
            var videoURL: JSONStringToken? = nil
            guard let e = c.peek() else { throw c.eofError() }
            if e == JSONByte.lbrace {
                let objLevel = arrayLevel + 1
                try c.forEachMember(level: objLevel) { (key, c) throws(JSONScanError) in
                    if c.keyEquals(key, "type") {
                        type = try optionalString(&c, level: objLevel, current: type, valid: &valid)
                    } else if c.keyEquals(key, "text") {
                        text = try optionalString(&c, level: objLevel, current: text, valid: &valid)
                    } else if c.keyEquals(key, "image_url") || c.keyEquals(key, "video_url") {
                        let isImage = c.keyEquals(key, "image_url")
                        var url = isImage ? imageURL : videoURL
                        let ok = try subObject(&c, level: objLevel) { (k, c) throws(JSONScanError) in
                            if c.keyEquals(k, "url") {
                                url = try optionalString(&c, level: objLevel + 1, current: url, valid: &valid)
                            } else {
                                try c.skipValue(level: objLevel + 1)
                            }
                        }
                        if !ok { valid = false }
                        if isImage { imageURL = url } else { videoURL = url }
                    } else if c.keyEquals(key, "input_audio") {
                        let ok = try subObject(&c, level: objLevel) { (k, c) throws(JSONScanError) in
                            if c.keyEquals(k, "data") {
                                audioData = try optionalString(&c, level: objLevel + 1, current: audioData, valid: &valid)
                            } else if c.keyEquals(k, "format") {
                                audioFormat = try optionalString(&c, level: objLevel + 1, current: audioFormat, valid: &valid)
                            } else {
                                try c.skipValue(level: objLevel + 1)
                            }
                        }
                        if !ok { valid = false }
                    } else {
                        try c.skipValue(level: objLevel)
                    }
                }
            } else {
                if e != JSONByte.n { valid = false }
                try c.skipValue(level: arrayLevel)
            }
            guard emit else { return }
            appendLiteral("{\"type\":", &out)
            if let t = type {
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
            } else {
                appendLiteral("\"\"", &out)
            }
            if let t = text, t.contentEnd > t.contentStart {
                appendLiteral(",\"text\":", &out)
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
            }
            appendLiteral(",\"image_url\":{", &out)
            if let t = imageURL, t.contentEnd > t.contentStart {
                appendLiteral("\"url\":", &out)
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
            }
            appendLiteral("},\"input_audio\":{", &out)
            var wroteData = false
            if let t = audioData, t.contentEnd > t.contentStart {
                appendLiteral("\"data\":", &out)
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
                wroteData = true
            }
            if let t = audioFormat, t.contentEnd > t.contentStart {
                appendLiteral(wroteData ? ",\"format\":" : "\"format\":", &out)
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
            }
            appendLiteral("},\"video_url\":{", &out)
            if let t = videoURL, t.contentEnd > t.contentStart {
                appendLiteral("\"url\":", &out)
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
            }
            appendLiteral("}}", &out)
        }
        if emit { out.append(JSONByte.rbracket) }
        return valid
    }

    /// A nested struct-typed member: object ⇒ iterate, null ⇒ no-op; any
    /// other type is consumed and reported as invalid (returns false).
    @inline(__always)
    static func subObject(
        _ c: inout JSONCursor, level: Int,
        _ body: (JSONStringToken, inout JSONCursor) throws(JSONScanError) -> Void
    ) throws(JSONScanError) -> Bool {
        switch c.peek() {
        case JSONByte.lbrace:
            try c.forEachMember(level: level + 1, body)
            return true
        case JSONByte.n:
            try c.skipValue(level: level)
            return true
        default:
            try c.skipValue(level: level)
            return false
        }
    }

    // MARK: completions prompt

    private enum ArrayKind { case unknown, strings, ints, intArrays, mixed }

    /// `prompt` of a completions request. Accepted: non-empty string, non-empty
    /// array of strings, non-empty array of integers (token IDs), non-empty
    /// array of integer arrays (batched token IDs; vLLM accepts them, we do too).
    /// Emit: the decoded text; string arrays joined with one space; token IDs
    /// give nothing.
    static func completionsPrompt(
        _ c: inout JSONCursor, level: Int, emit: Bool, out: inout [UInt8]
    ) throws(JSONScanError) -> FieldShape {
        guard let first = c.peek() else { throw c.eofError() }
        switch first {
        case JSONByte.n:
            try c.skipValue(level: level)
            return .absent
        case JSONByte.quote:
            let tok = try c.scanString()
            if emit { decodeJSONString(c.b, tok, into: &out, maxOut: c.emitLimit == .max ? .max : c.emitLimit - out.count) }
            return tok.contentEnd > tok.contentStart ? .ok : .empty
        case JSONByte.lbracket:
            var n = 0
            let kind = try classifyArray(&c, level: level) { (c, tok) in
                if emit {
                    if n > 0 { out.append(JSONByte.space) }
                    decodeJSONString(c.b, tok, into: &out, maxOut: c.emitLimit == .max ? .max : c.emitLimit - out.count)
                }
                n += 1
            }
            switch kind {
            case .unknown: return .empty
            case .strings, .ints, .intArrays: return .ok
            case .mixed: return .invalid
            }
        default:
            try c.skipValue(level: level)
            return .invalid
        }
    }

    /// Consumes an array and classifies its elements; calls `onString` for each
    /// string element (only meaningful when the result is `.strings`).
    private static func classifyArray(
        _ c: inout JSONCursor, level: Int, onString: (JSONCursor, JSONStringToken) -> Void
    ) throws(JSONScanError) -> ArrayKind {
        var kind = ArrayKind.unknown
        let arrayLevel = level + 1
        try c.forEachElement(level: arrayLevel) { (c) throws(JSONScanError) in
            guard let e = c.peek() else { throw c.eofError() }
            var this: ArrayKind
            switch e {
            case JSONByte.quote:
                let tok = try c.scanString()
                this = .strings
                if kind == .unknown || kind == .strings { onString(c, tok) }
            case JSONByte.minus, JSONByte.zero...JSONByte.nine:
                let tok = try c.scanNumber()
                this = c.intValue(tok) != nil ? .ints : .mixed
            case JSONByte.lbracket:
                var allInts = true
                try c.forEachElement(level: arrayLevel + 1) { (c) throws(JSONScanError) in
                    if let d = c.peek(), d == JSONByte.minus || isJSONDigit(d) {
                        let tok = try c.scanNumber()
                        if c.intValue(tok) == nil { allInts = false }
                    } else {
                        allInts = false
                        try c.skipValue(level: arrayLevel + 1)
                    }
                }
                this = allInts ? .intArrays : .mixed
            default:
                try c.skipValue(level: arrayLevel)
                this = .mixed
            }
            if kind == .unknown {
                kind = this
            } else if kind != this {
                kind = .mixed
            }
        }
        return kind
    }

    // MARK: embeddings input

    /// `input` of an embeddings request. Accepted: string, array of strings,
    /// array of integers, array of integer arrays, `[]`. Emit: Go marshal of
    /// the reference `EmbeddingsInput` struct (no custom marshaller):
    /// `{"Raw":…,"Strings":…,"TokenIDs":…}`. Batched token arrays (which the
    /// reference rejects) emit all-empty fields.
    static func embeddingsInput(
        _ c: inout JSONCursor, level: Int, emit: Bool, out: inout [UInt8], scratch: inout [UInt8]
    ) throws(JSONScanError) -> FieldShape {
        guard let first = c.peek() else { throw c.eofError() }
        switch first {
        case JSONByte.n:
            try c.skipValue(level: level)
            return .absent
        case JSONByte.quote:
            let tok = try c.scanString()
            if emit {
                appendLiteral("{\"Raw\":", &out)
                appendDecodedGoQuoted(c, tok, out: &out, scratch: &scratch)
                appendLiteral(",\"Strings\":null,\"TokenIDs\":null}", &out)
            }
            return .ok
        case JSONByte.lbracket:
            let start = c.pos
            var strings: [UInt8] = []
            var n = 0
            let kind = try classifyArray(&c, level: level) { (c, tok) in
                guard emit else { return }
                if n > 0 { strings.append(JSONByte.comma) }
                n += 1
                scratch.removeAll(keepingCapacity: true)
                decodeJSONString(c.b, tok, into: &scratch)
                appendGoQuoted(scratch, to: &strings)
            }
            if emit {
                switch kind {
                case .unknown, .strings:
                    appendLiteral("{\"Raw\":\"\",\"Strings\":[", &out)
                    out.append(contentsOf: strings)
                    appendLiteral("],\"TokenIDs\":null}", &out)
                case .ints:
                    appendLiteral("{\"Raw\":\"\",\"Strings\":null,\"TokenIDs\":[", &out)
                    var sub = c.sub(start..<c.pos)
                    var k = 0
                    try sub.forEachElement(level: level + 1) { (c) throws(JSONScanError) in
                        let tok = try c.scanNumber()
                        if k > 0 { out.append(JSONByte.comma) }
                        k += 1
                        out.append(contentsOf: Array(String(c.intValue(tok) ?? 0).utf8))
                    }
                    appendLiteral("]}", &out)
                case .intArrays, .mixed:
                    appendLiteral("{\"Raw\":\"\",\"Strings\":null,\"TokenIDs\":null}", &out)
                }
            }
            return kind == .mixed ? .invalid : .ok
        default:
            try c.skipValue(level: level)
            return .invalid
        }
    }

    // MARK: conversations items

    /// `items` of a conversations request: non-empty array of objects
    /// (`type`, `role` strings; `content` any JSON). Emit:
    /// `[{"type":…?,"role":…?,"content":…?},…]` with content in generic
    /// canonical form (keys sorted).
    static func conversationItems(
        _ c: inout JSONCursor, level: Int, emit: Bool, out: inout [UInt8], scratch: inout [UInt8]
    ) throws(JSONScanError) -> FieldShape {
        guard let first = c.peek() else { throw c.eofError() }
        if first == JSONByte.n {
            try c.skipValue(level: level)
            return .absent
        }
        guard first == JSONByte.lbracket else {
            try c.skipValue(level: level)
            return .invalid
        }
        var valid = true
        var count = 0
        let arrayLevel = level + 1
        if emit { out.append(JSONByte.lbracket) }
        try c.forEachElement(level: arrayLevel) { (c) throws(JSONScanError) in
            try checkLimit(c, out, emit)
            if emit && count > 0 { out.append(JSONByte.comma) }
            count += 1
            guard let e = c.peek() else { throw c.eofError() }
            var type: JSONStringToken? = nil
            var role: JSONStringToken? = nil
            var content: Range<Int>? = nil
            if e == JSONByte.lbrace {
                let objLevel = arrayLevel + 1
                try c.forEachMember(level: objLevel) { (key, c) throws(JSONScanError) in
                    if c.keyEquals(key, "type") {
                        type = try optionalString(&c, level: objLevel, current: type, valid: &valid)
                    } else if c.keyEquals(key, "role") {
                        role = try optionalString(&c, level: objLevel, current: role, valid: &valid)
                    } else if c.keyEquals(key, "content") {
                        let start = c.pos
                        let isNull = c.peek() == JSONByte.n
                        try c.skipValue(level: objLevel)
                        content = isNull ? nil : start..<c.pos
                    } else {
                        try c.skipValue(level: objLevel)
                    }
                }
            } else {
                if e != JSONByte.n { valid = false }
                try c.skipValue(level: arrayLevel)
            }
            guard emit else { return }
            out.append(JSONByte.lbrace)
            var any = false
            if let t = type, t.contentEnd > t.contentStart {
                appendLiteral("\"type\":", &out)
                appendDecodedGoQuoted(c, t, out: &out, scratch: &scratch)
                any = true
            }
            if let r = role, r.contentEnd > r.contentStart {
                appendLiteral(any ? ",\"role\":" : "\"role\":", &out)
                appendDecodedGoQuoted(c, r, out: &out, scratch: &scratch)
                any = true
            }
            if let r = content {
                appendLiteral(any ? ",\"content\":" : "\"content\":", &out)
                var sub = c.sub(r)
                try generic(&sub, level: arrayLevel + 1, out: &out, scratch: &scratch)
            }
            out.append(JSONByte.rbrace)
        }
        if emit { out.append(JSONByte.rbracket) }
        if !valid { return .invalid }
        return count == 0 ? .empty : .ok
    }

    // MARK: generic canonical JSON (Go json.Marshal of decoded interface{})

    /// Re-emits one value as Go's `json.Marshal` would after decoding it into
    /// `interface{}`: object keys sorted bytewise (duplicates: last wins),
    /// no whitespace, Go string escaping, numbers through float64.
    static func generic(
        _ c: inout JSONCursor, level: Int, out: inout [UInt8], scratch: inout [UInt8]
    ) throws(JSONScanError) {
        guard let first = c.peek() else { throw c.eofError() }
        switch first {
        case JSONByte.quote:
            let tok = try c.scanString()
            appendDecodedGoQuoted(c, tok, out: &out, scratch: &scratch)
        case JSONByte.lbrace:
            var members: [(key: [UInt8], value: Range<Int>)] = []
            let objLevel = level + 1
            try c.forEachMember(level: objLevel) { (key, c) throws(JSONScanError) in
                var k: [UInt8] = []
                decodeJSONString(c.b, key, into: &k)
                let start = c.pos
                try c.skipValue(level: objLevel)
                members.append((k, start..<c.pos))
            }
            // Stable sort by key bytes, then keep the last of equal keys.
            let order = members.indices.sorted { a, b in
                let ka = members[a].key, kb = members[b].key
                if ka == kb { return a < b }
                return ka.lexicographicallyPrecedes(kb)
            }
            out.append(JSONByte.lbrace)
            var wrote = false
            for (i, idx) in order.enumerated() {
                if i + 1 < order.count, members[order[i + 1]].key == members[idx].key { continue }
                try checkLimit(c, out)
                if wrote { out.append(JSONByte.comma) }
                wrote = true
                appendGoQuoted(members[idx].key, to: &out)
                out.append(JSONByte.colon)
                var sub = c.sub(members[idx].value)
                try generic(&sub, level: objLevel, out: &out, scratch: &scratch)
            }
            out.append(JSONByte.rbrace)
        case JSONByte.lbracket:
            out.append(JSONByte.lbracket)
            var n = 0
            let arrLevel = level + 1
            try c.forEachElement(level: arrLevel) { (c) throws(JSONScanError) in
                try checkLimit(c, out)
                if n > 0 { out.append(JSONByte.comma) }
                n += 1
                try generic(&c, level: arrLevel, out: &out, scratch: &scratch)
            }
            out.append(JSONByte.rbracket)
        case JSONByte.t, JSONByte.f, JSONByte.n:
            let start = c.pos
            try c.scanLiteral()
            out.append(contentsOf: UnsafeBufferPointer(rebasing: c.b[start..<c.pos]))
        case JSONByte.minus, JSONByte.zero...JSONByte.nine:
            let tok = try c.scanNumber()
            let len = tok.end - tok.start
            let negZero = len == 2 && c.b[tok.start] == JSONByte.minus && c.b[tok.start + 1] == JSONByte.zero
            if tok.isIntegerLiteral && len <= 15 && !negZero {
                // exact in float64 and printed identically by Go
                out.append(contentsOf: UnsafeBufferPointer(rebasing: c.b[tok.start..<tok.end]))
            } else if let d = c.doubleValue(tok), d.isFinite {
                appendGoFloat(d, to: &out)
            } else {
                // out of float64 range: the reference rejects the body; we keep the text
                out.append(contentsOf: UnsafeBufferPointer(rebasing: c.b[tok.start..<tok.end]))
            }
        default:
            throw c.invalidChar("looking for beginning of value")
        }
    }
}
