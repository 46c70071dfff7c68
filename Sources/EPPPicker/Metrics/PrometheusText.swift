// Prometheus text exposition format parser (no regex, no Foundation, bounded).
//
// Line grammar handled:
//   # HELP … / # TYPE … / # anything      (skipped)
//   <blank>                                 (skipped)
//   name[{label="value",…}] value [timestamp]
// Names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names [a-zA-Z_][a-zA-Z0-9_]*; label
// values with escapes \\ \" \n (another escaped char is kept literally);
// a trailing comma inside `{}` is allowed; values: Go float syntax incl.
// NaN, +Inf, -Inf; timestamp: integer milliseconds. LF or CRLF line ends.

public struct PrometheusLabel: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

public struct PrometheusSample: Sendable {
    public var name: String
    public var labels: [PrometheusLabel]
    public var value: Double
    /// Milliseconds since the epoch, when the line has a timestamp.
    public var timestampMs: Int64?

    public init(name: String, labels: [PrometheusLabel] = [], value: Double, timestampMs: Int64? = nil) {
        self.name = name
        self.labels = labels
        self.value = value
        self.timestampMs = timestampMs
    }

    public func label(_ name: String) -> String? {
        labels.first(where: { $0.name == name })?.value
    }
}

extension PrometheusSample: Equatable {
    /// NaN values compare equal to each other (for tests).
    public static func == (a: PrometheusSample, b: PrometheusSample) -> Bool {
        a.name == b.name && a.labels == b.labels && a.timestampMs == b.timestampMs
            && (a.value == b.value || (a.value.isNaN && b.value.isNaN))
    }
}

public struct PrometheusParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line number (0 for whole-input problems).
    public var line: Int
    public var message: String
    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "line \(line): \(message)" : message }
}

public enum PrometheusText {
    public struct Limits: Sendable {
        /// Longest accepted line in bytes.
        public var maxLineLength: Int
        /// Most samples (series lines) accepted in one exposition.
        public var maxSamples: Int
        /// Most labels on one sample.
        public var maxLabels: Int
        /// Largest accepted input in bytes.
        public var maxBytes: Int

        public init(maxLineLength: Int = 64 * 1024, maxSamples: Int = 100_000, maxLabels: Int = 64,
                    maxBytes: Int = 64 * 1024 * 1024) {
            self.maxLineLength = maxLineLength
            self.maxSamples = maxSamples
            self.maxLabels = maxLabels
            self.maxBytes = maxBytes
        }
        public static let `default` = Limits()
    }

    /// Parses every sample.
    public static func parse(_ text: String, limits: Limits = .default) throws(PrometheusParseError) -> [PrometheusSample] {
        var copy = text
        let result = copy.withUTF8 { buf in
            Result { () throws(PrometheusParseError) -> [PrometheusSample] in
                try parse(bytes: UnsafeRawBufferPointer(buf), limits: limits)
            }
        }
        return try result.get()
    }

    public static func parse(bytes: UnsafeRawBufferPointer, limits: Limits = .default) throws(PrometheusParseError) -> [PrometheusSample] {
        var out: [PrometheusSample] = []
        try forEachSample(in: bytes, limits: limits, include: { _ in true }) { out.append($0) }
        return out
    }

    /// Validates every line and calls `body` for each sample whose metric name
    /// bytes satisfy `include` (checked before any String is created, so
    /// uninteresting series cost no allocation).
    public static func forEachSample(
        in bytes: UnsafeRawBufferPointer, limits: Limits = .default,
        include: (UnsafeBufferPointer<UInt8>) -> Bool,
        _ body: (PrometheusSample) -> Void
    ) throws(PrometheusParseError) {
        if bytes.count > limits.maxBytes {
            throw PrometheusParseError(line: 0, message: "exposition is \(bytes.count) bytes, more than the limit \(limits.maxBytes)")
        }
        let b = bytes.assumingMemoryBound(to: UInt8.self)
        let n = b.count
        var lineNo = 0
        var samples = 0
        var i = 0
        var labels: [PrometheusLabel] = []
        while i < n {
            lineNo += 1
            var j = i
            while j < n && b[j] != UInt8(ascii: "\n") { j += 1 }
            var e = j
            if e > i && b[e - 1] == UInt8(ascii: "\r") { e -= 1 }
            if e - i > limits.maxLineLength {
                throw PrometheusParseError(line: lineNo, message: "line longer than \(limits.maxLineLength) bytes")
            }
            var p = LineParser(b: b, pos: i, end: e, line: lineNo)
            if let nameRange = try p.start() {
                samples += 1
                if samples > limits.maxSamples {
                    throw PrometheusParseError(line: lineNo, message: "more than \(limits.maxSamples) samples")
                }
                let wanted = include(UnsafeBufferPointer(rebasing: b[nameRange]))
                labels.removeAll(keepingCapacity: true)
                try p.labels(materialize: wanted, into: &labels, maxLabels: limits.maxLabels)
                let (value, ts) = try p.valueAndTimestamp()
                if wanted {
                    body(PrometheusSample(name: String(decoding: UnsafeBufferPointer(rebasing: b[nameRange]), as: UTF8.self),
                                          labels: labels, value: value, timestampMs: ts))
                }
            }
            i = j + 1
        }
    }

    private struct LineParser {
        let b: UnsafeBufferPointer<UInt8>
        var pos: Int
        let end: Int
        let line: Int

        func fail(_ msg: String) -> PrometheusParseError {
            PrometheusParseError(line: line, message: msg)
        }

        mutating func skipBlanks() {
            while pos < end && (b[pos] == UInt8(ascii: " ") || b[pos] == UInt8(ascii: "\t")) { pos += 1 }
        }

        /// Returns the metric-name range, or nil for blank/comment lines.
        mutating func start() throws(PrometheusParseError) -> Range<Int>? {
            skipBlanks()
            if pos >= end || b[pos] == UInt8(ascii: "#") { return nil }
            let s = pos
            guard isNameStart(b[pos]) else { throw fail("invalid metric name start \(describe(b[pos]))") }
            pos += 1
            while pos < end && (isNameStart(b[pos]) || isDigitByte(b[pos])) { pos += 1 }
            return s..<pos
        }

        mutating func labels(materialize: Bool, into out: inout [PrometheusLabel], maxLabels: Int) throws(PrometheusParseError) {
            skipBlanks()
            guard pos < end, b[pos] == UInt8(ascii: "{") else { return }
            pos += 1
            var count = 0
            var valueBuf: [UInt8] = []
            while true {
                skipBlanks()
                guard pos < end else { throw fail("unterminated label set") }
                if b[pos] == UInt8(ascii: "}") {
                    pos += 1
                    return
                }
                let ns = pos
                guard isLabelStart(b[pos]) else { throw fail("invalid label name start \(describe(b[pos]))") }
                pos += 1
                while pos < end && (isLabelStart(b[pos]) || isDigitByte(b[pos])) { pos += 1 }
                let nameRange = ns..<pos
                skipBlanks()
                guard pos < end, b[pos] == UInt8(ascii: "=") else { throw fail("expected '=' after label name") }
                pos += 1
                skipBlanks()
                guard pos < end, b[pos] == UInt8(ascii: "\"") else { throw fail("expected '\"' to start label value") }
                pos += 1
                valueBuf.removeAll(keepingCapacity: true)
                var closed = false
                while pos < end {
                    let c = b[pos]
                    if c == UInt8(ascii: "\"") {
                        pos += 1
                        closed = true
                        break
                    }
                    if c == UInt8(ascii: "\\") {
                        pos += 1
                        guard pos < end else { break }
                        let e = b[pos]
                        switch e {
                        case UInt8(ascii: "n"): valueBuf.append(UInt8(ascii: "\n"))
                        case UInt8(ascii: "\\"), UInt8(ascii: "\""): valueBuf.append(e)
                        default:
                            valueBuf.append(UInt8(ascii: "\\"))
                            valueBuf.append(e)
                        }
                        pos += 1
                        continue
                    }
                    valueBuf.append(c)
                    pos += 1
                }
                guard closed else { throw fail("unterminated label value") }
                count += 1
                if count > maxLabels { throw fail("more than \(maxLabels) labels") }
                if materialize {
                    out.append(PrometheusLabel(
                        name: String(decoding: UnsafeBufferPointer(rebasing: b[nameRange]), as: UTF8.self),
                        value: String(decoding: valueBuf, as: UTF8.self)))
                }
                skipBlanks()
                guard pos < end else { throw fail("unterminated label set") }
                if b[pos] == UInt8(ascii: ",") {
                    pos += 1
                    continue
                }
                if b[pos] == UInt8(ascii: "}") {
                    pos += 1
                    return
                }
                throw fail("expected ',' or '}' after label value, found \(describe(b[pos]))")
            }
        }

        mutating func valueAndTimestamp() throws(PrometheusParseError) -> (Double, Int64?) {
            skipBlanks()
            let vs = pos
            while pos < end && b[pos] != UInt8(ascii: " ") && b[pos] != UInt8(ascii: "\t") { pos += 1 }
            guard pos > vs else { throw fail("missing sample value") }
            guard let v = parseFloat(UnsafeBufferPointer(rebasing: b[vs..<pos])) else {
                throw fail("invalid sample value \"\(String(decoding: UnsafeBufferPointer(rebasing: b[vs..<pos]), as: UTF8.self))\"")
            }
            skipBlanks()
            guard pos < end else { return (v, nil) }
            let ts = pos
            while pos < end && b[pos] != UInt8(ascii: " ") && b[pos] != UInt8(ascii: "\t") { pos += 1 }
            guard let t = parseInt64(UnsafeBufferPointer(rebasing: b[ts..<pos])) else {
                throw fail("invalid timestamp \"\(String(decoding: UnsafeBufferPointer(rebasing: b[ts..<pos]), as: UTF8.self))\"")
            }
            skipBlanks()
            guard pos >= end else { throw fail("unexpected text after timestamp") }
            return (v, t)
        }
    }

    @inline(__always) static func isNameStart(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || c == UInt8(ascii: "_") || c == UInt8(ascii: ":")
    }

    @inline(__always) static func isLabelStart(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || c == UInt8(ascii: "_")
    }

    @inline(__always) static func isDigitByte(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    static func describe(_ c: UInt8) -> String { quoteByte(c) }

    /// Go `strconv.ParseFloat` subset: decimal/exponent numbers, optional
    /// sign, `NaN`, `Inf`/`+Inf`/`-Inf`/`Infinity` (case-insensitive).
    static func parseFloat(_ s: UnsafeBufferPointer<UInt8>) -> Double? {
        guard !s.isEmpty, s.count <= 64 else { return nil }
        var lower: [UInt8] = []
        lower.reserveCapacity(s.count)
        for c in s { lower.append(c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c + 32 : c) }
        var body = lower[...]
        var sign = 1.0
        if let f = body.first, f == UInt8(ascii: "+") || f == UInt8(ascii: "-") {
            sign = f == UInt8(ascii: "-") ? -1 : 1
            body = body.dropFirst()
        }
        if body.elementsEqual("nan".utf8) { return .nan }
        if body.elementsEqual("inf".utf8) || body.elementsEqual("infinity".utf8) { return sign * .infinity }
        // digits, '.', 'e', signs, '_'? (Go allows underscores only with base prefixes; we don't)
        for c in body {
            guard isDigitByte(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "+")
                    || c == UInt8(ascii: "-") else { return nil }
        }
        guard let v = Double(String(decoding: lower, as: UTF8.self)) else { return nil }
        return v
    }

    static func parseInt64(_ s: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard !s.isEmpty, s.count <= 20 else { return nil }
        return Int64(String(decoding: s, as: UTF8.self))
    }
}
