// Shared helpers for the fuzz targets.
#if canImport(Glibc)
import Glibc
#endif
import CFuzzer

/// Runs libFuzzer with the process arguments and `testOneInput` (the
/// target's LLVMFuzzerTestOneInput). Called from each target's @main because
/// SwiftPM links executables with `main` renamed to `<module>_main`.
public func runLibFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}

/// Invariant check: on failure print why and abort, so libFuzzer saves the
/// input as a crash artifact (a thrown error would just be "no crash").
public func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if condition { return }
    let text = "FUZZ INVARIANT FAILED at \(file):\(line): \(message())\n"
    // write(2) on fd 2: unbuffered, so the message is out before abort().
    _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress!, $0.count - 1) }
    abort()
}

/// Copies libFuzzer's input into an array (the APIs under test take arrays or
/// raw buffers; a copy keeps ASan's bounds tight around exactly `size` bytes).
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Reads structured choices (split points, flags) off the front of the input
/// so one fuzz input can drive both the payload and how it is delivered.
public struct FuzzReader {
    public private(set) var bytes: [UInt8]
    public private(set) var index = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { index >= bytes.count }
    public var remaining: Int { bytes.count - index }

    /// Next byte, or 0 once exhausted (keeps short inputs meaningful).
    public mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// Little-endian UInt16 from the next two bytes.
    public mutating func uint16() -> Int { Int(byte()) | Int(byte()) << 8 }

    /// Up to `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, remaining))
        defer { index += n }
        return Array(bytes[index..<(index + n)])
    }

    /// All remaining bytes.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Splits `bytes` into consecutive chunks whose sizes come from `choices`
/// (each choice byte is a chunk length 1...256); the last chunk takes the rest.
/// The concatenation of the chunks is always `bytes`.
public func fuzzSplit(_ bytes: [UInt8], choices: [UInt8]) -> [[UInt8]] {
    var chunks: [[UInt8]] = []
    var i = 0
    for c in choices where i < bytes.count {
        let n = min(Int(c) + 1, bytes.count - i)
        chunks.append(Array(bytes[i..<(i + n)]))
        i += n
    }
    if i < bytes.count { chunks.append(Array(bytes[i...])) }
    return chunks
}
