/// Protobuf wire-format reader over borrowed memory. Never copies: length-delimited
/// fields are returned as ranges of absolute offsets into `buffer`.
///
/// A reader may be restricted to a sub-range of the buffer (`init(_:range:)` or
/// `subReader(_:)`); offsets stay absolute, so ranges found by a sub-reader can be
/// used directly on the original buffer.
public struct WireReader {
    public let buffer: UnsafeRawBufferPointer
    @usableFromInline var _offset: Int
    @usableFromInline let _end: Int

    /// Protobuf wire types.
    public enum WireType {
        public static let varint = 0
        public static let fixed64 = 1
        public static let lengthDelimited = 2
        public static let startGroup = 3
        public static let endGroup = 4
        public static let fixed32 = 5
    }

    @inlinable
    public init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
        self._offset = 0
        self._end = buffer.count
    }

    /// A reader restricted to `range` (absolute offsets within `buffer`).
    @inlinable
    public init(_ buffer: UnsafeRawBufferPointer, range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.count, "range outside buffer")
        self.buffer = buffer
        self._offset = range.lowerBound
        self._end = range.upperBound
    }

    /// Current absolute read position.
    @inlinable public var offset: Int { _offset }
    /// Absolute end of the readable region.
    @inlinable public var end: Int { _end }
    @inlinable public var isAtEnd: Bool { _offset >= _end }

    /// A reader over a range previously returned by `readLengthDelimited()`.
    @inlinable
    public func subReader(_ range: Range<Int>) -> WireReader {
        WireReader(buffer, range: range)
    }

    @inlinable
    public mutating func readVarint() throws(ProtoDecodingError) -> UInt64 {
        var i = _offset
        guard i < _end else { throw ProtoDecodingError(.truncatedVarint, offset: i) }
        // Fast path: single byte.
        let first = buffer.load(fromByteOffset: i, as: UInt8.self)
        if first < 0x80 {
            _offset = i &+ 1
            return UInt64(first)
        }
        var result = UInt64(first & 0x7f)
        var shift: UInt64 = 7
        i &+= 1
        while i < _end {
            let b = buffer.load(fromByteOffset: i, as: UInt8.self)
            i &+= 1
            if shift == 63 {
                // 10th byte: only the lowest bit may be set and no continuation.
                guard b <= 1 else { throw ProtoDecodingError(.varintOverflow, offset: _offset) }
                _offset = i
                return result | (UInt64(b) << 63)
            }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 {
                _offset = i
                return result
            }
            shift &+= 7
        }
        throw ProtoDecodingError(.truncatedVarint, offset: _offset)
    }

    /// Reads the next tag; `nil` at the end of the readable region.
    @inlinable
    public mutating func readTag() throws(ProtoDecodingError) -> (field: Int, wireType: Int)? {
        guard _offset < _end else { return nil }
        let start = _offset
        let tag = try readVarint()
        let field = tag >> 3
        guard field != 0, field <= 0x1FFF_FFFF else {
            throw ProtoDecodingError(.invalidFieldNumber(field), offset: start)
        }
        return (Int(truncatingIfNeeded: field), Int(truncatingIfNeeded: tag & 7))
    }

    /// Reads a length prefix and returns the absolute range of the payload, advancing past it.
    @inlinable
    public mutating func readLengthDelimited() throws(ProtoDecodingError) -> Range<Int> {
        let start = _offset
        let length = try readVarint()
        guard length <= UInt64(_end &- _offset) else {
            throw ProtoDecodingError(.lengthOutOfBounds(length: length), offset: start)
        }
        let lower = _offset
        _offset = lower &+ Int(truncatingIfNeeded: length)
        return lower..<_offset
    }

    @inlinable
    public mutating func readFixed32() throws(ProtoDecodingError) -> UInt32 {
        guard _end &- _offset >= 4 else { throw ProtoDecodingError(.truncatedFixed(size: 4), offset: _offset) }
        let v = buffer.loadUnaligned(fromByteOffset: _offset, as: UInt32.self)
        _offset &+= 4
        return UInt32(littleEndian: v)
    }

    @inlinable
    public mutating func readFixed64() throws(ProtoDecodingError) -> UInt64 {
        guard _end &- _offset >= 8 else { throw ProtoDecodingError(.truncatedFixed(size: 8), offset: _offset) }
        let v = buffer.loadUnaligned(fromByteOffset: _offset, as: UInt64.self)
        _offset &+= 8
        return UInt64(littleEndian: v)
    }

    @inlinable
    public mutating func readDouble() throws(ProtoDecodingError) -> Double {
        Double(bitPattern: try readFixed64())
    }

    @inlinable
    public mutating func readBool() throws(ProtoDecodingError) -> Bool {
        try readVarint() != 0
    }

    /// Reads a length-delimited field as a String, repairing invalid UTF-8 (lenient).
    @inlinable
    public mutating func readString() throws(ProtoDecodingError) -> String {
        string(in: try readLengthDelimited())
    }

    /// The bytes in `range` decoded as UTF-8, invalid sequences replaced by U+FFFD.
    @inlinable
    public func string(in range: Range<Int>) -> String {
        if range.isEmpty { return "" }
        return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[range]), as: UTF8.self)
    }

    /// Skips one field value of `wireType`. Wire types 3/4 (groups) and 6/7 are errors.
    @inlinable
    public mutating func skip(wireType: Int, field: Int? = nil) throws(ProtoDecodingError) {
        switch wireType {
        case 0:
            do { _ = try readVarint() } catch { throw error.at(field: field) }
        case 1:
            guard _end &- _offset >= 8 else {
                throw ProtoDecodingError(.truncatedFixed(size: 8), offset: _offset, field: field)
            }
            _offset &+= 8
        case 2:
            do { _ = try readLengthDelimited() } catch { throw error.at(field: field) }
        case 5:
            guard _end &- _offset >= 4 else {
                throw ProtoDecodingError(.truncatedFixed(size: 4), offset: _offset, field: field)
            }
            _offset &+= 4
        default:
            throw ProtoDecodingError(.unsupportedWireType(wireType), offset: _offset, field: field)
        }
    }
}

extension ProtoDecodingError {
    @inlinable
    func at(field: Int?) -> ProtoDecodingError {
        var e = self
        if e.field == nil { e.field = field }
        return e
    }
}

/// `Array.withUnsafeBytes` is `rethrows` (untyped); this keeps the typed error.
@inlinable
func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(ProtoDecodingError) -> R) throws(ProtoDecodingError) -> R {
    let result: Result<R, ProtoDecodingError> = bytes.withUnsafeBytes { raw in
        Result { () throws(ProtoDecodingError) -> R in try body(raw) }
    }
    return try result.get()
}
