// The CEL subset the `request-attribute-reporter` plugin evaluates over a response's `usage` object
// (epp-protocol.md §6.3, golden behaviour 13).
//
// Supported: int / double / bool / null / string literals; `usage.a.b` member paths; `has(usage.a)`;
// `+ - * / %` (int arithmetic stays int, like CEL; int / 0 is an error); comparisons `== != < <= > >=`;
// `&& || !`; `c ? a : b`; parentheses; `int(x)`, `double(x)`. A path that is absent is an evaluation error
// (CEL's "no such key"), so `has()` guards optional fields. Anything else is a parse error at config load,
// naming the column.

/// A value of the expression language.
public enum UsageValue: Equatable, Sendable {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case null
    /// An object (only tested with `has()`).
    case object
}

public struct UsageExpressionError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ d: String) { description = d }
}

/// A parsed expression; evaluate it against the raw JSON bytes of a `usage` object.
public struct UsageExpression: Sendable {
    indirect enum Node: Sendable {
        case literal(UsageValue)
        case path([String])
        case has([String])
        case unary(Character, Node)
        case binary(String, Node, Node)
        case conditional(Node, Node, Node)
        case call(String, Node)
    }

    let root: Node
    public let source: String

    /// Longest accepted source and deepest nesting: the parser, evaluator and the tree's deinit recurse,
    /// so unbounded input would overflow the stack (found by fuzzing) instead of failing the config.
    public static let maxSourceBytes = 1024
    static let maxNesting = 128

    public init(_ source: String) throws(UsageExpressionError) {
        self.source = source
        guard source.utf8.count <= Self.maxSourceBytes else {
            throw UsageExpressionError("expression is \(source.utf8.count) bytes, more than the \(Self.maxSourceBytes)-byte limit")
        }
        var p = Parser(Array(source.utf8))
        root = try p.parseExpression()
        p.skipSpaces()
        guard p.atEnd else { throw p.error("unexpected '\(p.current)'") }
    }

    /// Evaluates against `usage` (the bytes of the JSON object; empty: no usage reported).
    public func evaluate(usage: [UInt8]) throws(UsageExpressionError) -> UsageValue {
        try usage.withUnsafeBufferPointer { (b) throws(UsageExpressionError) -> UsageValue in
            try Self.eval(root, b)
        }
    }

    // MARK: evaluation

    private static func eval(_ n: Node, _ usage: UnsafeBufferPointer<UInt8>) throws(UsageExpressionError) -> UsageValue {
        switch n {
        case .literal(let v): return v
        case .path(let p):
            guard let v = lookup(p, usage) else { throw UsageExpressionError("no such key: \(p.joined(separator: "."))") }
            return v
        case .has(let p): return .bool(lookup(p, usage) != nil)
        case .unary(let op, let x):
            let v = try eval(x, usage)
            switch (op, v) {
            case ("!", .bool(let b)): return .bool(!b)
            case ("-", .int(let i)): return .int(0 &- i)
            case ("-", .double(let d)): return .double(-d)
            default: throw UsageExpressionError("no matching overload for '\(op)' on \(v)")
            }
        case .conditional(let c, let a, let b):
            guard case .bool(let cond) = try eval(c, usage) else { throw UsageExpressionError("condition of ?: is not a bool") }
            return try eval(cond ? a : b, usage)
        case .call(let f, let x):
            let v = try eval(x, usage)
            switch (f, v) {
            case ("int", .int): return v
            case ("int", .double(let d)):
                guard d.isFinite, d.magnitude < 9.2e18 else { throw UsageExpressionError("int() out of range") }
                return .int(Int(d))
            case ("double", .int(let i)): return .double(Double(i))
            case ("double", .double): return v
            default: throw UsageExpressionError("no matching overload for \(f)(\(v))")
            }
        case .binary(let op, let l, let r):
            if op == "&&" || op == "||" {
                guard case .bool(let a) = try eval(l, usage) else { throw UsageExpressionError("'\(op)' needs bools") }
                if op == "&&" && !a { return .bool(false) }
                if op == "||" && a { return .bool(true) }
                guard case .bool(let b) = try eval(r, usage) else { throw UsageExpressionError("'\(op)' needs bools") }
                return .bool(b)
            }
            return try binary(op, try eval(l, usage), try eval(r, usage))
        }
    }

    private static func binary(_ op: String, _ a: UsageValue, _ b: UsageValue) throws(UsageExpressionError) -> UsageValue {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            switch op {
            case "+": let (v, o) = x.addingReportingOverflow(y); if o { throw UsageExpressionError("int overflow") }; return .int(v)
            case "-": let (v, o) = x.subtractingReportingOverflow(y); if o { throw UsageExpressionError("int overflow") }; return .int(v)
            case "*": let (v, o) = x.multipliedReportingOverflow(by: y); if o { throw UsageExpressionError("int overflow") }; return .int(v)
            case "/": if y == 0 { throw UsageExpressionError("division by zero") }; return .int(x / y)
            case "%": if y == 0 { throw UsageExpressionError("modulus by zero") }; return .int(x % y)
            default: return try compare(op, Double(x), Double(y), a, b)
            }
        case (.double, .double), (.int, .double), (.double, .int):
            // CEL has no implicit int↔double conversion for arithmetic; comparisons across them are allowed.
            let x = number(a)!, y = number(b)!
            if case .int = a, "+-*/%".contains(op) { throw UsageExpressionError("no matching overload for int \(op) double") }
            if case .int = b, "+-*/%".contains(op) { throw UsageExpressionError("no matching overload for double \(op) int") }
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/": return .double(x / y)
            case "%": throw UsageExpressionError("no matching overload for double % double")
            default: return try compare(op, x, y, a, b)
            }
        default:
            switch op {
            case "==": return .bool(a == b)
            case "!=": return .bool(a != b)
            default: throw UsageExpressionError("no matching overload for \(a) \(op) \(b)")
            }
        }
    }

    private static func number(_ v: UsageValue) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    private static func compare(_ op: String, _ x: Double, _ y: Double, _ a: UsageValue, _ b: UsageValue) throws(UsageExpressionError) -> UsageValue {
        switch op {
        case "==": return .bool(x == y)
        case "!=": return .bool(x != y)
        case "<": return .bool(x < y)
        case "<=": return .bool(x <= y)
        case ">": return .bool(x > y)
        case ">=": return .bool(x >= y)
        default: throw UsageExpressionError("no matching overload for \(a) \(op) \(b)")
        }
    }

    /// The value at `path` (first element `usage`) in the usage object, nil when absent.
    private static func lookup(_ path: [String], _ usage: UnsafeBufferPointer<UInt8>) -> UsageValue? {
        guard path.first == "usage", usage.count > 0 else { return nil }
        var c = JSONCursor(UnsafeRawBufferPointer(usage), maxDepth: 64)
        if path.count == 1 { return .object }
        do throws(JSONScanError) {
            var depth = 1
            while true {
                c.skipWhitespace()
                guard c.peek() == JSONByte.lbrace else { return nil }
                let want = path[depth]
                var found: Range<Int>? = nil
                try c.forEachMember(level: depth) { (key, c) throws(JSONScanError) in
                    let start = c.pos
                    try c.skipValue(level: depth)
                    if found == nil, c.string(key) == want { found = start..<c.pos }
                }
                guard let r = found else { return nil }
                c = c.sub(r)
                depth += 1
                if depth == path.count { return try scalar(&c) }
            }
        } catch {
            return nil
        }
    }

    private static func scalar(_ c: inout JSONCursor) throws(JSONScanError) -> UsageValue {
        c.skipWhitespace()
        switch c.peek() {
        case JSONByte.quote:
            let tok = try c.scanString()
            return .string(c.string(tok))
        case JSONByte.lbrace, UInt8(ascii: "["):
            return .object
        case UInt8(ascii: "t"): return .bool(true)
        case UInt8(ascii: "f"): return .bool(false)
        case UInt8(ascii: "n"): return .null
        default:
            let tok = try c.scanNumber()
            if let i = c.intValue(tok) { return .int(i) }
            return .double(c.doubleValue(tok) ?? 0)
        }
    }

    // MARK: parsing (recursive descent; precedence as in CEL)

    struct Parser {
        let s: [UInt8]
        var i = 0
        var depth = 0
        init(_ s: [UInt8]) { self.s = s }

        /// Counts one level of recursion (parentheses, `?:`, calls, unary operators).
        mutating func enter() throws(UsageExpressionError) {
            depth += 1
            if depth > UsageExpression.maxNesting { throw error("nested deeper than \(UsageExpression.maxNesting) levels") }
        }

        var atEnd: Bool { i >= s.count }
        var current: String { atEnd ? "end" : String(decoding: [s[i]], as: UTF8.self) }

        func error(_ what: String) -> UsageExpressionError { UsageExpressionError("column \(i + 1): \(what)") }

        mutating func skipSpaces() {
            while i < s.count, s[i] == 0x20 || s[i] == 0x0A || s[i] == 0x09 || s[i] == 0x0D { i += 1 }
        }

        mutating func eat(_ tok: String) -> Bool {
            skipSpaces()
            let t = Array(tok.utf8)
            guard i + t.count <= s.count, Array(s[i..<i + t.count]) == t else { return false }
            // `<` must not eat the first half of `<=`, `!` not of `!=`, `=`-pairs are whole tokens already.
            if t.count == 1, i + 1 < s.count, s[i + 1] == UInt8(ascii: "="), "<>!".utf8.contains(t[0]) { return false }
            i += t.count
            return true
        }

        mutating func parseExpression() throws(UsageExpressionError) -> Node {
            try enter()
            defer { depth -= 1 }
            let c = try parseOr()
            if eat("?") {
                let a = try parseExpression()
                guard eat(":") else { throw error("expected ':'") }
                let b = try parseExpression()
                return .conditional(c, a, b)
            }
            return c
        }

        mutating func parseOr() throws(UsageExpressionError) -> Node {
            var l = try parseAnd()
            while eat("||") { l = .binary("||", l, try parseAnd()) }
            return l
        }

        mutating func parseAnd() throws(UsageExpressionError) -> Node {
            var l = try parseRelation()
            while eat("&&") { l = .binary("&&", l, try parseRelation()) }
            return l
        }

        mutating func parseRelation() throws(UsageExpressionError) -> Node {
            let l = try parseAdditive()
            for op in ["==", "!=", "<=", ">=", "<", ">"] where eat(op) {
                return .binary(op, l, try parseAdditive())
            }
            return l
        }

        mutating func parseAdditive() throws(UsageExpressionError) -> Node {
            var l = try parseMultiplicative()
            while true {
                if eat("+") { l = .binary("+", l, try parseMultiplicative()) } else if eat("-") {
                    l = .binary("-", l, try parseMultiplicative())
                } else { return l }
            }
        }

        mutating func parseMultiplicative() throws(UsageExpressionError) -> Node {
            var l = try parseUnary()
            while true {
                if eat("*") { l = .binary("*", l, try parseUnary()) } else if eat("/") {
                    l = .binary("/", l, try parseUnary())
                } else if eat("%") { l = .binary("%", l, try parseUnary()) } else { return l }
            }
        }

        mutating func parseUnary() throws(UsageExpressionError) -> Node {
            try enter()
            defer { depth -= 1 }
            if eat("!") { return .unary("!", try parseUnary()) }
            if eat("-") { return .unary("-", try parseUnary()) }
            return try parsePrimary()
        }

        mutating func parsePrimary() throws(UsageExpressionError) -> Node {
            skipSpaces()
            guard !atEnd else { throw error("unexpected end of expression") }
            let ch = s[i]
            if ch == UInt8(ascii: "(") {
                i += 1
                let e = try parseExpression()
                guard eat(")") else { throw error("expected ')'") }
                return e
            }
            if ch == UInt8(ascii: "\"") || ch == UInt8(ascii: "'") {
                let q = ch
                i += 1
                let start = i
                while i < s.count, s[i] != q { i += 1 }
                guard i < s.count else { throw error("unterminated string") }
                let v = String(decoding: s[start..<i], as: UTF8.self)
                i += 1
                return .literal(.string(v))
            }
            if isDigit(ch) {
                let start = i
                while i < s.count, isDigit(s[i]) || s[i] == UInt8(ascii: ".") || s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") { i += 1 }
                let text = String(decoding: s[start..<i], as: UTF8.self)
                if let v = Int(text) { return .literal(.int(v)) }
                if let d = Double(text) { return .literal(.double(d)) }
                throw error("bad number '\(text)'")
            }
            guard isIdentStart(ch) else { throw error("unexpected '\(current)'") }
            let name = identifier()
            switch name {
            case "true": return .literal(.bool(true))
            case "false": return .literal(.bool(false))
            case "null": return .literal(.null)
            case "has", "int", "double":
                guard eat("(") else { throw error("expected '(' after \(name)") }
                let node: Node
                if name == "has" {
                    skipSpaces()
                    guard i < s.count, isIdentStart(s[i]) else { throw error("has() needs a field path") }
                    let p = try path(first: identifier())
                    guard p.count >= 2 else { throw error("has() needs a field selection like usage.prompt_tokens") }
                    node = .has(p)
                } else {
                    node = .call(name, try parseExpression())
                }
                guard eat(")") else { throw error("expected ')'") }
                return node
            default:
                guard name == "usage" else { throw error("unknown identifier '\(name)' (only 'usage' is defined)") }
                return .path(try path(first: name))
            }
        }

        mutating func path(first: String) throws(UsageExpressionError) -> [String] {
            var p = [first]
            while true {
                let save = i
                skipSpaces()
                guard i < s.count, s[i] == UInt8(ascii: ".") else { i = save; return p }
                i += 1
                skipSpaces()
                guard i < s.count, isIdentStart(s[i]) else { throw error("expected a field name after '.'") }
                p.append(identifier())
            }
        }

        mutating func identifier() -> String {
            let start = i
            while i < s.count, isIdentStart(s[i]) || isDigit(s[i]) { i += 1 }
            return String(decoding: s[start..<i], as: UTF8.self)
        }

        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        func isIdentStart(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F }
    }
}
