// A hand-written, validating, allocation-free JSON cursor over raw bytes.
//
// Used by the request parser (one pass over the body), the prefix-hash input
// builder, and the response usage scanner. No Foundation: the request path
// never decodes the body into a generic tree and never re-serialises it.
//
// Grammar: RFC 8259. Whitespace is SP, HT, LF, CR. Strings must not contain
// raw control characters (< 0x20); escapes are the JSON set, `\u` needs four
// hex digits. Raw bytes ≥ 0x80 are not validated as UTF-8 while scanning (Go's
// encoding/json accepts invalid UTF-8 too); decoding replaces invalid
// sequences with U+FFFD the way Go does (one replacement per invalid byte).

/// A JSON syntax (or shape) error with the byte offset where it was detected.
/// `message` is the complete human-readable text, e.g.
/// `invalid character 'o' in literal null (expecting 'u') at offset 1`.
public struct JSONScanError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }
    public var description: String { message }

    /// Internal sentinel: an emit-mode walker reached `JSONCursor.emitLimit`.
    static let limitReached = JSONScanError(message: "output limit reached", offset: -1)
}

/// A scanned string token. `start` is the offset of the opening quote, `end`
/// the offset just past the closing quote.
struct JSONStringToken {
    var start: Int
    var end: Int
    var hasEscapes: Bool
    @inline(__always) var range: Range<Int> { start..<end }
    @inline(__always) var contentStart: Int { start + 1 }
    @inline(__always) var contentEnd: Int { end - 1 }
}

/// A scanned number token.
struct JSONNumberToken {
    var start: Int
    var end: Int
    /// True when the literal has neither fraction nor exponent.
    var isIntegerLiteral: Bool
}

enum JSONByte {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let lbrace = UInt8(ascii: "{")
    static let rbrace = UInt8(ascii: "}")
    static let lbracket = UInt8(ascii: "[")
    static let rbracket = UInt8(ascii: "]")
    static let colon = UInt8(ascii: ":")
    static let comma = UInt8(ascii: ",")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let lf = UInt8(ascii: "\n")
    static let cr = UInt8(ascii: "\r")
    static let t = UInt8(ascii: "t")
    static let f = UInt8(ascii: "f")
    static let n = UInt8(ascii: "n")
    static let u = UInt8(ascii: "u")
    static let b = UInt8(ascii: "b")
    static let r = UInt8(ascii: "r")
    static let e = UInt8(ascii: "e")
    static let E = UInt8(ascii: "E")
}

/// Hard ceiling on the nesting limit, so recursion can never exhaust a stack.
let jsonAbsoluteMaxDepth = 512

/// Cursor over a byte buffer. All scanning methods leave `pos` just past the
/// consumed token. Methods throw `JSONScanError` for malformed input; they
/// never trap on any input.
struct JSONCursor {
    let b: UnsafeBufferPointer<UInt8>
    let end: Int
    var pos: Int
    let maxDepth: Int
    /// Emit-mode walkers stop once their output reaches this many bytes
    /// (prefix-hash input is only needed up to the scorer's cap).
    var emitLimit = Int.max

    init(_ raw: UnsafeRawBufferPointer, start: Int = 0, end: Int? = nil, maxDepth: Int = 128) {
        self.b = raw.assumingMemoryBound(to: UInt8.self)
        self.end = min(end ?? raw.count, raw.count)
        self.pos = max(0, min(start, self.end))
        self.maxDepth = max(1, min(maxDepth, jsonAbsoluteMaxDepth))
    }

    init(_ buf: UnsafeBufferPointer<UInt8>, start: Int, end: Int, maxDepth: Int) {
        self.b = buf
        self.end = min(end, buf.count)
        self.pos = max(0, min(start, self.end))
        self.maxDepth = max(1, min(maxDepth, jsonAbsoluteMaxDepth))
    }

    /// A new cursor over `range` of the same buffer.
    func sub(_ range: Range<Int>) -> JSONCursor {
        var c = JSONCursor(b, start: range.lowerBound, end: range.upperBound, maxDepth: maxDepth)
        c.emitLimit = emitLimit
        return c
    }

    @inline(__always) var atEnd: Bool { pos >= end }

    @inline(__always) func peek() -> UInt8? { pos < end ? b[pos] : nil }

    @inline(__always) mutating func skipWhitespace() {
        while pos < end {
            let c = b[pos]
            if c == JSONByte.space || c == JSONByte.lf || c == JSONByte.cr || c == JSONByte.tab {
                pos += 1
            } else {
                return
            }
        }
    }

    // MARK: errors

    func eofError() -> JSONScanError {
        JSONScanError(message: "unexpected end of JSON input at offset \(end)", offset: end)
    }

    func invalidChar(_ context: String) -> JSONScanError {
        guard pos < end else { return eofError() }
        return JSONScanError(
            message: "invalid character \(quoteByte(b[pos])) \(context) at offset \(pos)", offset: pos)
    }

    func depthError() -> JSONScanError {
        JSONScanError(message: "exceeded max nesting depth \(maxDepth) at offset \(pos)", offset: pos)
    }

    // MARK: tokens

    /// `pos` must be at `"`.
    mutating func scanString() throws(JSONScanError) -> JSONStringToken {
        let start = pos
        pos += 1
        var esc = false
        while true {
            // Fast inner loops over ordinary bytes: 8 at a time, then single.
            while pos + 8 <= end, !swarStringSpecial(loadWord(b, pos)) { pos += 8 }
            while pos < end {
                let c = b[pos]
                if c == JSONByte.quote || c == JSONByte.backslash || c < 0x20 { break }
                pos += 1
            }
            guard pos < end else { throw eofError() }
            let c = b[pos]
            if c == JSONByte.quote {
                pos += 1
                return JSONStringToken(start: start, end: pos, hasEscapes: esc)
            }
            if c < 0x20 { throw invalidChar("in string literal") }
            // backslash
            esc = true
            pos += 1
            guard pos < end else { throw eofError() }
            switch b[pos] {
            case JSONByte.quote, JSONByte.backslash, JSONByte.slash, JSONByte.b, JSONByte.f, JSONByte.n, JSONByte.r, JSONByte.t:
                pos += 1
            case JSONByte.u:
                pos += 1
                for _ in 0..<4 {
                    guard pos < end else { throw eofError() }
                    guard jsonHexValue(b[pos]) != nil else {
                        throw invalidChar("in \\u hexadecimal character escape")
                    }
                    pos += 1
                }
            default:
                throw invalidChar("in string escape code")
            }
        }
    }

    /// `pos` must be at `-` or a digit.
    mutating func scanNumber() throws(JSONScanError) -> JSONNumberToken {
        let start = pos
        var integer = true
        if b[pos] == JSONByte.minus {
            pos += 1
            guard pos < end else { throw eofError() }
        }
        let c = b[pos]
        if c == JSONByte.zero {
            pos += 1
        } else if c > JSONByte.zero && c <= JSONByte.nine {
            pos += 1
            while pos < end, isJSONDigit(b[pos]) { pos += 1 }
        } else {
            throw invalidChar("in numeric literal")
        }
        if pos < end, b[pos] == JSONByte.dot {
            integer = false
            pos += 1
            guard pos < end else { throw eofError() }
            guard isJSONDigit(b[pos]) else { throw invalidChar("after decimal point in numeric literal") }
            while pos < end, isJSONDigit(b[pos]) { pos += 1 }
        }
        if pos < end, b[pos] == JSONByte.e || b[pos] == JSONByte.E {
            integer = false
            pos += 1
            guard pos < end else { throw eofError() }
            if b[pos] == JSONByte.plus || b[pos] == JSONByte.minus {
                pos += 1
                guard pos < end else { throw eofError() }
            }
            guard isJSONDigit(b[pos]) else { throw invalidChar("in exponent of numeric literal") }
            while pos < end, isJSONDigit(b[pos]) { pos += 1 }
        }
        return JSONNumberToken(start: start, end: pos, isIntegerLiteral: integer)
    }

    /// `pos` must be at the first letter of `true`, `false` or `null`.
    mutating func scanLiteral() throws(JSONScanError) {
        let word: StaticString
        let name: String
        switch b[pos] {
        case JSONByte.t: word = "true"; name = "true"
        case JSONByte.f: word = "false"; name = "false"
        default: word = "null"; name = "null"
        }
        let n = word.utf8CodeUnitCount
        let p = word.utf8Start
        for i in 1..<n {
            guard pos + i < end else { throw eofError() }
            if b[pos + i] != p[i] {
                pos += i
                throw invalidChar("in literal \(name) (expecting \(quoteByte(p[i])))")
            }
        }
        pos += n
    }

    /// Validates and skips one value. `level` is the nesting level of the
    /// container holding the value (0 at top level); containers opened here
    /// are at `level + 1`, which must not exceed `maxDepth`.
    mutating func skipValue(level: Int) throws(JSONScanError) {
        guard pos < end else { throw eofError() }
        switch b[pos] {
        case JSONByte.quote:
            _ = try scanString()
        case JSONByte.lbrace:
            try skipObject(level: level + 1)
        case JSONByte.lbracket:
            try skipArray(level: level + 1)
        case JSONByte.t, JSONByte.f, JSONByte.n:
            try scanLiteral()
        case JSONByte.minus, JSONByte.zero...JSONByte.nine:
            _ = try scanNumber()
        default:
            throw invalidChar("looking for beginning of value")
        }
    }

    /// `pos` at `{`; `level` is the level of this object.
    mutating func skipObject(level: Int) throws(JSONScanError) {
        try forEachMember(level: level) { (_, c) throws(JSONScanError) in
            try c.skipValue(level: level)
        }
    }

    /// `pos` at `[`; `level` is the level of this array.
    mutating func skipArray(level: Int) throws(JSONScanError) {
        try forEachElement(level: level) { (c) throws(JSONScanError) in
            try c.skipValue(level: level)
        }
    }

    /// Iterates the members of the object at `pos` (which must be `{`). For
    /// each member `body` is called with the key token and the cursor placed
    /// at the first byte of the value; `body` must consume exactly the value
    /// (e.g. with `skipValue(level: level)`).
    @inline(__always)
    mutating func forEachMember(
        level: Int, _ body: (JSONStringToken, inout JSONCursor) throws(JSONScanError) -> Void
    ) throws(JSONScanError) {
        if level > maxDepth { throw depthError() }
        pos += 1
        skipWhitespace()
        guard pos < end else { throw eofError() }
        if b[pos] == JSONByte.rbrace {
            pos += 1
            return
        }
        while true {
            guard pos < end else { throw eofError() }
            guard b[pos] == JSONByte.quote else { throw invalidChar("looking for beginning of object key string") }
            let key = try scanString()
            skipWhitespace()
            guard pos < end else { throw eofError() }
            guard b[pos] == JSONByte.colon else { throw invalidChar("after object key") }
            pos += 1
            skipWhitespace()
            guard pos < end else { throw eofError() }
            try body(key, &self)
            skipWhitespace()
            guard pos < end else { throw eofError() }
            let c = b[pos]
            if c == JSONByte.comma {
                pos += 1
                skipWhitespace()
                continue
            }
            if c == JSONByte.rbrace {
                pos += 1
                return
            }
            throw invalidChar("after object key:value pair")
        }
    }

    /// Iterates the elements of the array at `pos` (which must be `[`);
    /// `body` is called with the cursor at the first byte of each element and
    /// must consume it.
    @inline(__always)
    mutating func forEachElement(
        level: Int, _ body: (inout JSONCursor) throws(JSONScanError) -> Void
    ) throws(JSONScanError) {
        if level > maxDepth { throw depthError() }
        pos += 1
        skipWhitespace()
        guard pos < end else { throw eofError() }
        if b[pos] == JSONByte.rbracket {
            pos += 1
            return
        }
        while true {
            guard pos < end else { throw eofError() }
            try body(&self)
            skipWhitespace()
            guard pos < end else { throw eofError() }
            let c = b[pos]
            if c == JSONByte.comma {
                pos += 1
                skipWhitespace()
                continue
            }
            if c == JSONByte.rbracket {
                pos += 1
                return
            }
            throw invalidChar("after array element")
        }
    }

    /// After the top-level value: only whitespace may follow.
    mutating func expectEnd() throws(JSONScanError) {
        skipWhitespace()
        if pos < end { throw invalidChar("after top-level value") }
    }

    // MARK: helpers on tokens

    /// Compares a key token with an ASCII literal, decoding escapes if needed.
    func keyEquals(_ tok: JSONStringToken, _ lit: StaticString) -> Bool {
        let n = lit.utf8CodeUnitCount
        let p = lit.utf8Start
        if !tok.hasEscapes {
            guard tok.contentEnd - tok.contentStart == n else { return false }
            var i = 0
            while i < n {
                if b[tok.contentStart + i] != p[i] { return false }
                i += 1
            }
            return true
        }
        var tmp: [UInt8] = []
        decodeJSONString(b, tok, into: &tmp)
        guard tmp.count == n else { return false }
        for i in 0..<n where tmp[i] != p[i] { return false }
        return true
    }

    /// Decoded string value of a token.
    func string(_ tok: JSONStringToken) -> String {
        if !tok.hasEscapes {
            var ascii = true
            for i in tok.contentStart..<tok.contentEnd where b[i] >= 0x80 {
                ascii = false
                break
            }
            if ascii {
                return String(decoding: UnsafeBufferPointer(rebasing: b[tok.contentStart..<tok.contentEnd]), as: UTF8.self)
            }
        }
        var tmp: [UInt8] = []
        tmp.reserveCapacity(tok.contentEnd - tok.contentStart)
        decodeJSONString(b, tok, into: &tmp)
        return String(decoding: tmp, as: UTF8.self)
    }

    /// Integer value of a number token when it is an integer literal that
    /// fits in `Int`; otherwise nil.
    func intValue(_ tok: JSONNumberToken) -> Int? {
        guard tok.isIntegerLiteral else { return nil }
        var i = tok.start
        var neg = false
        if b[i] == JSONByte.minus {
            neg = true
            i += 1
        }
        var v = 0
        while i < tok.end {
            let d = Int(b[i] &- JSONByte.zero)
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = neg ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d)
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        return v
    }

    /// Numeric value as Double (any valid JSON number).
    func doubleValue(_ tok: JSONNumberToken) -> Double? {
        let s = String(decoding: UnsafeBufferPointer(rebasing: b[tok.start..<tok.end]), as: UTF8.self)
        return Double(s)
    }
}

@inline(__always) func isJSONDigit(_ c: UInt8) -> Bool { c >= JSONByte.zero && c <= JSONByte.nine }

// MARK: - SWAR (8 bytes at a time) helpers; exact "any byte matches" tests.

private let swarOnes: UInt64 = 0x0101_0101_0101_0101
private let swarHigh: UInt64 = 0x8080_8080_8080_8080

@inline(__always) func swarHasZero(_ x: UInt64) -> Bool { ((x &- swarOnes) & ~x & swarHigh) != 0 }
@inline(__always) func swarHasByte(_ w: UInt64, _ c: UInt8) -> Bool { swarHasZero(w ^ (swarOnes &* UInt64(c))) }
/// Some byte < n (n ≤ 128).
@inline(__always) func swarHasLess(_ w: UInt64, _ n: UInt8) -> Bool { ((w &- swarOnes &* UInt64(n)) & ~w & swarHigh) != 0 }

@inline(__always) func loadWord(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt64 {
    UnsafeRawPointer(b.baseAddress! + i).loadUnaligned(as: UInt64.self)
}

/// True if the word holds `"`, `\` or a control byte (string scanning stops there).
@inline(__always) func swarStringSpecial(_ w: UInt64) -> Bool {
    swarHasByte(w, JSONByte.quote) || swarHasByte(w, JSONByte.backslash) || swarHasLess(w, 0x20)
}

@inline(__always) func jsonHexValue(_ c: UInt8) -> UInt32? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c - UInt8(ascii: "A") + 10)
    default: return nil
    }
}

/// Renders a byte for an error message: `'x'`, `'\n'`, `'\''`, `'\x01'`.
func quoteByte(_ c: UInt8) -> String {
    switch c {
    case UInt8(ascii: "'"): return "'\\''"
    case JSONByte.lf: return "'\\n'"
    case JSONByte.cr: return "'\\r'"
    case JSONByte.tab: return "'\\t'"
    case 0x20..<0x7F: return "'" + String(UnicodeScalar(c)) + "'"
    default:
        let hex = Array("0123456789abcdef".utf8)
        return "'\\x" + String(decoding: [hex[Int(c >> 4)], hex[Int(c & 15)]], as: UTF8.self) + "'"
    }
}

// MARK: - string decoding

@inline(__always) func appendUTF8Scalar(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        out.append(UInt8(scalar))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | (scalar >> 6)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | (scalar >> 12)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
        out.append(UInt8(0xF0 | (scalar >> 18)))
        out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}

/// Length of the valid UTF-8 sequence starting at `i`, or 0 if invalid
/// (Go `utf8.DecodeRune` rules: no overlongs, no surrogates, ≤ U+10FFFF).
@inline(__always) func validUTF8Length(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int) -> Int {
    let c0 = b[i]
    if c0 < 0x80 { return 1 }
    var n = 0
    var lo: UInt8 = 0x80
    var hi: UInt8 = 0xBF
    switch c0 {
    case 0xC2...0xDF: n = 2
    case 0xE0: n = 3; lo = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: n = 3
    case 0xED: n = 3; hi = 0x9F
    case 0xF0: n = 4; lo = 0x90
    case 0xF1...0xF3: n = 4
    case 0xF4: n = 4; hi = 0x8F
    default: return 0
    }
    guard i + n <= end else { return 0 }
    let c1 = b[i + 1]
    guard c1 >= lo && c1 <= hi else { return 0 }
    for k in 2..<max(2, n) {
        let c = b[i + k]
        guard c >= 0x80 && c <= 0xBF else { return 0 }
    }
    return n
}

/// Appends the decoded UTF-8 content of a (validated) string token. Escapes
/// are resolved (`\uXXXX` including surrogate pairs; lone surrogates become
/// U+FFFD), invalid UTF-8 bytes become U+FFFD one per byte, like Go.
func decodeJSONString(_ b: UnsafeBufferPointer<UInt8>, _ tok: JSONStringToken, into out: inout [UInt8],
                      maxOut: Int = .max) {
    var i = tok.contentStart
    let end = tok.contentEnd
    let stopAt = maxOut == .max ? Int.max : out.count + max(0, maxOut)
    while i < end && out.count < stopAt {
        // Bulk-copy a run of plain ASCII (no escapes), within the budget.
        let runEnd = stopAt == .max ? end : min(end, i + (stopAt - out.count))
        var j = i
        while j + 8 <= runEnd {
            let w = loadWord(b, j)
            if (w & swarHigh) != 0 || swarHasByte(w, JSONByte.backslash) { break }
            j += 8
        }
        while j < runEnd {
            let c = b[j]
            if c >= 0x80 || c == JSONByte.backslash { break }
            j += 1
        }
        if j > i {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: b[i..<j]))
            i = j
            if i >= end || out.count >= stopAt { break }
        }
        let c = b[i]
        if c == JSONByte.backslash {
            let e = b[i + 1]
            i += 2
            switch e {
            case JSONByte.b: out.append(0x08)
            case JSONByte.f: out.append(0x0C)
            case JSONByte.n: out.append(0x0A)
            case JSONByte.r: out.append(0x0D)
            case JSONByte.t: out.append(0x09)
            case JSONByte.u:
                var cp = read4Hex(b, i)
                i += 4
                if cp >= 0xD800 && cp < 0xDC00 {
                    // high surrogate: needs a following \uDC00-\uDFFF
                    if i + 6 <= end, b[i] == JSONByte.backslash, b[i + 1] == JSONByte.u {
                        let lowCP = read4Hex(b, i + 2)
                        if lowCP >= 0xDC00 && lowCP < 0xE000 {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lowCP - 0xDC00)
                            i += 6
                        } else {
                            cp = 0xFFFD
                        }
                    } else {
                        cp = 0xFFFD
                    }
                } else if cp >= 0xDC00 && cp < 0xE000 {
                    cp = 0xFFFD
                }
                appendUTF8Scalar(cp, to: &out)
            default:
                out.append(e)  // \" \\ \/
            }
            continue
        }
        // non-ASCII: copy a run of valid sequences, U+FFFD per invalid byte
        let n = validUTF8Length(b, i, end)
        if n == 0 {
            out.append(contentsOf: [0xEF, 0xBF, 0xBD] as [UInt8])
            i += 1
        } else {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: b[i..<(i + n)]))
            i += n
        }
    }
}

@inline(__always) private func read4Hex(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt32 {
    var v: UInt32 = 0
    for k in 0..<4 { v = v << 4 | (jsonHexValue(b[i + k]) ?? 0) }
    return v
}

// MARK: - encoding

/// Appends `s` as a JSON string literal with minimal escaping (`"`, `\`,
/// control characters); everything else is copied as UTF-8.
func appendJSONQuoted(_ s: String, to out: inout [UInt8]) {
    let hex = Array("0123456789abcdef".utf8)
    out.append(JSONByte.quote)
    for c in s.utf8 {
        switch c {
        case JSONByte.quote: out.append(JSONByte.backslash); out.append(JSONByte.quote)
        case JSONByte.backslash: out.append(JSONByte.backslash); out.append(JSONByte.backslash)
        case JSONByte.lf: out.append(JSONByte.backslash); out.append(JSONByte.n)
        case JSONByte.cr: out.append(JSONByte.backslash); out.append(JSONByte.r)
        case JSONByte.tab: out.append(JSONByte.backslash); out.append(JSONByte.t)
        case 0..<0x20:
            out.append(contentsOf: [JSONByte.backslash, JSONByte.u, JSONByte.zero, JSONByte.zero, hex[Int(c >> 4)], hex[Int(c & 15)]])
        default: out.append(c)
        }
    }
    out.append(JSONByte.quote)
}

/// Appends already-decoded, valid UTF-8 text as a string literal the way Go's
/// `json.Marshal` writes it (escapeHTML on): `\"` `\\`, short `\b \f \n \r \t`,
/// other controls as `\u00xx`, `<` `>` `&` as `\u003c` `\u003e` `\u0026`,
/// U+2028/U+2029 as `\u2028`/`\u2029`; all else raw.
func appendGoQuoted(_ s: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
    let hex: StaticString = "0123456789abcdef"
    let h = hex.utf8Start
    out.append(JSONByte.quote)
    var i = 0
    let n = s.count
    while i < n {
        // Bulk-copy a run of bytes that need no escaping.
        var j = i
        while j + 8 <= n {
            let w = loadWord(s, j)
            if swarStringSpecial(w) || swarHasByte(w, UInt8(ascii: "<")) || swarHasByte(w, UInt8(ascii: ">"))
                || swarHasByte(w, UInt8(ascii: "&")) || swarHasByte(w, 0xE2) { break }
            j += 8
        }
        while j < n {
            let c = s[j]
            if c < 0x20 || c == JSONByte.quote || c == JSONByte.backslash || c == UInt8(ascii: "<") || c == UInt8(ascii: ">")
                || c == UInt8(ascii: "&") || c == 0xE2 { break }
            j += 1
        }
        if j > i {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: s[i..<j]))
            i = j
            if i >= n { break }
        }
        let c = s[i]
        if c == 0xE2 {
            if i + 2 < n, s[i + 1] == 0x80, s[i + 2] == 0xA8 || s[i + 2] == 0xA9 {
                out.append(contentsOf: [JSONByte.backslash, JSONByte.u, UInt8(ascii: "2"), JSONByte.zero, UInt8(ascii: "2")])
                out.append(s[i + 2] == 0xA8 ? UInt8(ascii: "8") : UInt8(ascii: "9"))
                i += 3
            } else {
                out.append(c)
                i += 1
            }
            continue
        }
        switch c {
        case JSONByte.quote: out.append(JSONByte.backslash); out.append(JSONByte.quote)
        case JSONByte.backslash: out.append(JSONByte.backslash); out.append(JSONByte.backslash)
        case 0x08: out.append(JSONByte.backslash); out.append(JSONByte.b)
        case 0x0C: out.append(JSONByte.backslash); out.append(JSONByte.f)
        case JSONByte.lf: out.append(JSONByte.backslash); out.append(JSONByte.n)
        case JSONByte.cr: out.append(JSONByte.backslash); out.append(JSONByte.r)
        case JSONByte.tab: out.append(JSONByte.backslash); out.append(JSONByte.t)
        default:  // other controls and < > &
            out.append(contentsOf: [JSONByte.backslash, JSONByte.u, JSONByte.zero, JSONByte.zero, h[Int(c >> 4)], h[Int(c & 15)]])
        }
        i += 1
    }
    out.append(JSONByte.quote)
}

func appendGoQuoted(_ s: [UInt8], to out: inout [UInt8]) {
    s.withUnsafeBufferPointer { appendGoQuoted($0, to: &out) }
}

/// Appends a float64 the way Go's `encoding/json` encodes it: shortest
/// round-trip digits, `%f` style unless |v| < 1e-6 or |v| ≥ 1e21, in which
/// case `%e` style with a two-digit-minimum exponent cleaned of `e-0X`.
func appendGoFloat(_ v: Double, to out: inout [UInt8]) {
    if v == 0 {
        if v.sign == .minus { out.append(JSONByte.minus) }
        out.append(JSONByte.zero)
        return
    }
    if !v.isFinite {
        // Go refuses to marshal these; never produced from valid JSON numbers
        // except on overflow. Emit `null` to stay valid JSON.
        out.append(contentsOf: Array("null".utf8))
        return
    }
    // Shortest digits from Swift's description (also shortest round-trip).
    let desc = Array(v.magnitude.description.utf8)
    var digits: [UInt8] = []
    digits.reserveCapacity(20)
    var pointPos = -1
    var exp = 0
    var i = 0
    while i < desc.count {
        let c = desc[i]
        if c == JSONByte.dot {
            pointPos = digits.count
        } else if c == JSONByte.e || c == JSONByte.E {
            var j = i + 1
            var neg = false
            if j < desc.count, desc[j] == JSONByte.minus || desc[j] == JSONByte.plus {
                neg = desc[j] == JSONByte.minus
                j += 1
            }
            var e = 0
            while j < desc.count { e = e * 10 + Int(desc[j] - JSONByte.zero); j += 1 }
            exp = neg ? -e : e
            break
        } else {
            digits.append(c)
        }
        i += 1
    }
    if pointPos < 0 { pointPos = digits.count }
    // value = 0.d1d2... × 10^(point), point = pointPos + exp
    var point = pointPos + exp
    var lead = 0
    while lead < digits.count - 1, digits[lead] == JSONByte.zero { lead += 1; point -= 1 }
    digits.removeFirst(lead)
    while digits.count > 1, digits.last == JSONByte.zero { digits.removeLast() }

    if v.sign == .minus { out.append(JSONByte.minus) }
    let abs = v.magnitude
    if abs < 1e-6 || abs >= 1e21 {
        out.append(digits[0])
        if digits.count > 1 {
            out.append(JSONByte.dot)
            out.append(contentsOf: digits[1...])
        }
        out.append(JSONByte.e)
        let e = point - 1
        out.append(e < 0 ? JSONByte.minus : JSONByte.plus)
        let ae = e < 0 ? -e : e
        if ae < 10 {
            // Go writes e+05 / e-05 then cleans "e-0X" to "e-X" only.
            if e >= 0 { out.append(JSONByte.zero) }
            out.append(JSONByte.zero + UInt8(ae))
        } else {
            out.append(contentsOf: Array(String(ae).utf8))
        }
        return
    }
    if point <= 0 {
        out.append(JSONByte.zero)
        out.append(JSONByte.dot)
        for _ in 0..<(-point) { out.append(JSONByte.zero) }
        out.append(contentsOf: digits)
    } else if point >= digits.count {
        out.append(contentsOf: digits)
        for _ in 0..<(point - digits.count) { out.append(JSONByte.zero) }
    } else {
        out.append(contentsOf: digits[0..<point])
        out.append(JSONByte.dot)
        out.append(contentsOf: digits[point...])
    }
}
