/// Builds RESP2 commands (`*N\r\n` then `$len\r\n<bytes>\r\n` per argument) into a reusable byte buffer.
/// Binary-safe; no variadic C calls, no per-argument allocation once the buffer has grown.
public struct RESPEncoder: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Empties the buffer, keeping its capacity.
    public mutating func reset() { bytes.removeAll(keepingCapacity: true) }

    /// `*count\r\n` — must be followed by exactly `count` `append(argument:)` calls.
    public mutating func beginCommand(argumentCount: Int) {
        bytes.append(UInt8(ascii: "*"))
        appendDecimal(Int64(argumentCount))
        bytes.append(13); bytes.append(10)
    }

    public mutating func append(argument: UnsafeRawBufferPointer) {
        bytes.append(UInt8(ascii: "$"))
        appendDecimal(Int64(argument.count))
        bytes.append(13); bytes.append(10)
        bytes.append(contentsOf: argument)
        bytes.append(13); bytes.append(10)
    }

    public mutating func append(argument: [UInt8]) {
        argument.withUnsafeBytes { append(argument: $0) }
    }

    public mutating func append(argument: String) {
        var s = argument
        s.withUTF8 { append(argument: UnsafeRawBufferPointer($0)) }
    }

    /// The decimal text of `argument` (what Redis expects for counts, scores, TTLs).
    public mutating func append(argument: Int64) {
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)    // 24 bytes of stack scratch, enough for Int64.min
        let n = withUnsafeMutableBytes(of: &tmp) { buf -> Int in
            let len = RESPEncoder.formatDecimal(argument, into: buf)
            bytes.append(UInt8(ascii: "$"))
            appendDecimal(Int64(len))
            bytes.append(13); bytes.append(10)
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[0..<len]))
            return len
        }
        _ = n
        bytes.append(13); bytes.append(10)
    }

    public mutating func append(argument: Int) { append(argument: Int64(argument)) }

    /// The arguments `other` holds (built with `append(argument:)` only, no `*N` header), e.g. a batch of
    /// arguments collected before their count was known; they count towards this command's `*N`.
    public mutating func append(argumentsOf other: RESPEncoder) { bytes.append(contentsOf: other.bytes) }

    /// A whole command: `*N` + each argument.
    public mutating func encode(command arguments: [[UInt8]]) {
        beginCommand(argumentCount: arguments.count)
        for a in arguments { append(argument: a) }
    }

    public mutating func encode(command arguments: [String]) {
        beginCommand(argumentCount: arguments.count)
        for a in arguments { append(argument: a) }
    }

    /// One command as a fresh byte array.
    public static func command(_ arguments: [[UInt8]]) -> [UInt8] {
        var e = RESPEncoder(capacity: arguments.reduce(16) { $0 + $1.count + 16 })
        e.encode(command: arguments)
        return e.bytes
    }

    public static func command(_ arguments: [String]) -> [UInt8] {
        var e = RESPEncoder(capacity: arguments.reduce(16) { $0 + $1.utf8.count + 16 })
        e.encode(command: arguments)
        return e.bytes
    }

    private mutating func appendDecimal(_ v: Int64) {
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &tmp) { buf in
            let len = RESPEncoder.formatDecimal(v, into: buf)
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[0..<len]))
        }
    }

    /// Writes the decimal digits of `v` at the start of `buf` (≥ 20 bytes); returns the length.
    static func formatDecimal(_ v: Int64, into buf: UnsafeMutableRawBufferPointer) -> Int {
        var mag = v.magnitude
        var i = buf.count
        repeat {
            i -= 1
            buf[i] = UInt8(ascii: "0") + UInt8(mag % 10)
            mag /= 10
        } while mag != 0
        if v < 0 { i -= 1; buf[i] = UInt8(ascii: "-") }
        let len = buf.count - i
        if i > 0 { buf.baseAddress!.copyMemory(from: buf.baseAddress! + i, byteCount: len) }
        return len
    }
}
