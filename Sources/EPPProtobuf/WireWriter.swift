/// Protobuf wire-format writer appending to a byte array.
///
/// Field helpers follow proto3 implicit presence: the value-taking helpers omit
/// default values (0, false, "", empty bytes) unless `emitDefault: true` is given
/// (needed for oneof members such as `Value.bool_value = false`). Messages written
/// with `writeMessage` are always emitted, even when empty (`12 00`).
public struct WireWriter {
    public var bytes: [UInt8]

    @inlinable
    public init() {
        bytes = []
    }

    @inlinable
    public init(reservingCapacity capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Continues writing after existing bytes.
    @inlinable
    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    @inlinable public var count: Int { bytes.count }

    // MARK: - Primitives

    /// Number of bytes the varint encoding of `value` takes (1...10).
    @inlinable
    public static func varintSize(_ value: UInt64) -> Int {
        // ceil(bitWidth / 7), at least 1.
        let bits = 64 &- (value | 1).leadingZeroBitCount
        return (bits &+ 6) / 7
    }

    /// Size of a length-delimited field with `tag` (field number) and payload `length`.
    @inlinable
    public static func lengthDelimitedFieldSize(field: Int, length: Int) -> Int {
        tagSize(field: field) &+ varintSize(UInt64(length)) &+ length
    }

    @inlinable
    public static func tagSize(field: Int) -> Int {
        varintSize(UInt64(field) << 3)
    }

    @inlinable
    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inlinable
    public mutating func writeTag(field: Int, wireType: Int) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType))
    }

    @inlinable
    public mutating func writeRawBytes(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
    }

    @inlinable
    public mutating func writeFixed32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    public mutating func writeFixed64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    // MARK: - Fields

    /// Varint field (uint32/uint64/enum/bool as raw varint).
    @inlinable
    public mutating func writeVarintField(field: Int, _ value: UInt64, emitDefault: Bool = false) {
        guard value != 0 || emitDefault else { return }
        writeTag(field: field, wireType: 0)
        writeVarint(value)
    }

    /// int32/int64/enum field; negative values take 10 bytes (sign-extended).
    @inlinable
    public mutating func writeInt64(field: Int, _ value: Int64, emitDefault: Bool = false) {
        writeVarintField(field: field, UInt64(bitPattern: value), emitDefault: emitDefault)
    }

    @inlinable
    public mutating func writeBool(field: Int, _ value: Bool, emitDefault: Bool = false) {
        guard value || emitDefault else { return }
        writeTag(field: field, wireType: 0)
        bytes.append(value ? 1 : 0)
    }

    /// double field (wire type 1, little-endian IEEE-754). Only +0.0 counts as default.
    @inlinable
    public mutating func writeDouble(field: Int, _ value: Double, emitDefault: Bool = false) {
        guard value.bitPattern != 0 || emitDefault else { return }
        writeTag(field: field, wireType: 1)
        writeFixed64(value.bitPattern)
    }

    @inlinable
    public mutating func writeBytes(field: Int, _ value: UnsafeRawBufferPointer, emitDefault: Bool = false) {
        guard !value.isEmpty || emitDefault else { return }
        writeTag(field: field, wireType: 2)
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    @inlinable
    public mutating func writeBytes(field: Int, _ value: [UInt8], emitDefault: Bool = false) {
        value.withUnsafeBytes { writeBytes(field: field, $0, emitDefault: emitDefault) }
    }

    @inlinable
    public mutating func writeString(field: Int, _ value: String, emitDefault: Bool = false) {
        var value = value
        value.withUTF8 { writeBytes(field: field, UnsafeRawBufferPointer($0), emitDefault: emitDefault) }
    }

    /// Writes a nested message: tag, minimal-length varint prefix, then whatever
    /// `body` appends. Always emitted (an empty message encodes as `tag 00`).
    /// One byte is reserved for the length; if the content turns out to be
    /// >= 128 bytes it is shifted once to make room for the longer prefix.
    @inlinable
    public mutating func writeMessage(field: Int, _ body: (inout WireWriter) -> Void) {
        writeTag(field: field, wireType: 2)
        let lengthPos = bytes.count
        bytes.append(0)
        body(&self)
        patchLength(at: lengthPos)
    }

    /// Like `writeMessage` but for closures that throw.
    @inlinable
    public mutating func writeMessage<E: Error>(field: Int, throwing body: (inout WireWriter) throws(E) -> Void) throws(E) {
        writeTag(field: field, wireType: 2)
        let lengthPos = bytes.count
        bytes.append(0)
        try body(&self)
        patchLength(at: lengthPos)
    }

    @inlinable
    mutating func patchLength(at lengthPos: Int) {
        let length = bytes.count &- lengthPos &- 1
        if length < 0x80 {
            bytes[lengthPos] = UInt8(truncatingIfNeeded: length)
        } else {
            shiftAndPatchLength(at: lengthPos, length: length)
        }
    }

    @usableFromInline
    mutating func shiftAndPatchLength(at lengthPos: Int, length: Int) {
        let extra = WireWriter.varintSize(UInt64(length)) &- 1
        bytes.append(contentsOf: repeatElement(0, count: extra))
        bytes.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            // Shift the content right by `extra` bytes (a single memmove).
            (base + lengthPos + 1 + extra).copyMemory(from: base + lengthPos + 1, byteCount: length)
            var v = UInt64(length)
            var p = lengthPos
            while v >= 0x80 {
                raw[p] = UInt8(truncatingIfNeeded: v) | 0x80
                v >>= 7
                p &+= 1
            }
            raw[p] = UInt8(truncatingIfNeeded: v)
        }
    }

    // MARK: - gRPC framing

    /// Appends one gRPC Length-Prefixed-Message to `out`: `00`, 4-byte big-endian
    /// length, then the message that `body` writes — directly into `out` (5 bytes are
    /// reserved and the length is patched afterwards; no intermediate copy).
    @inlinable
    public static func appendGRPCFrame(to out: inout [UInt8], _ body: (inout WireWriter) -> Void) {
        var writer = WireWriter()
        swap(&writer.bytes, &out)
        let headerPos = writer.bytes.count
        writer.bytes.append(contentsOf: [0, 0, 0, 0, 0] as [UInt8])
        body(&writer)
        let length = writer.bytes.count &- headerPos &- 5
        precondition(length <= Int(UInt32.max), "gRPC message too large")
        let l = UInt32(truncatingIfNeeded: length)
        writer.bytes[headerPos &+ 1] = UInt8(truncatingIfNeeded: l >> 24)
        writer.bytes[headerPos &+ 2] = UInt8(truncatingIfNeeded: l >> 16)
        writer.bytes[headerPos &+ 3] = UInt8(truncatingIfNeeded: l >> 8)
        writer.bytes[headerPos &+ 4] = UInt8(truncatingIfNeeded: l)
        swap(&writer.bytes, &out)
    }
}
