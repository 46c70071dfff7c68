/// A protobuf decoding failure. Cheap to create (no strings are built until
/// `description` is asked for). Any decoding error should be reported to the
/// peer as gRPC INTERNAL (13).
public struct ProtoDecodingError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The input ended inside a varint.
        case truncatedVarint
        /// A varint longer than 10 bytes or with bits beyond 64.
        case varintOverflow
        /// A fixed32/fixed64 value runs past the end of the input.
        case truncatedFixed(size: Int)
        /// A length prefix points past the end of the enclosing message.
        case lengthOutOfBounds(length: UInt64)
        /// Field number 0 or above 2^29-1.
        case invalidFieldNumber(UInt64)
        /// Wire types 3/4 (groups) or 6/7 (undefined).
        case unsupportedWireType(Int)
        /// Struct/Value/ListValue nesting deeper than the cap.
        case nestingTooDeep(limit: Int)
    }

    public var kind: Kind
    /// Byte offset in the input buffer where the problem was detected.
    public var offset: Int
    /// Field number being processed, if known.
    public var field: Int?

    @inlinable
    public init(_ kind: Kind, offset: Int, field: Int? = nil) {
        self.kind = kind
        self.offset = offset
        self.field = field
    }

    public var description: String {
        let fieldSuffix = field.map { " at field \($0)" } ?? ""
        switch kind {
        case .truncatedVarint:
            return "truncated varint at offset \(offset)\(fieldSuffix)"
        case .varintOverflow:
            return "varint overflow (more than 10 bytes / 64 bits) at offset \(offset)\(fieldSuffix)"
        case .truncatedFixed(let size):
            return "truncated fixed\(size * 8) value at offset \(offset)\(fieldSuffix)"
        case .lengthOutOfBounds(let length):
            return "length \(length) exceeds the remaining input at offset \(offset)\(fieldSuffix)"
        case .invalidFieldNumber(let n):
            return "invalid field number \(n) at offset \(offset)"
        case .unsupportedWireType(let wt):
            let what = (wt == 3 || wt == 4) ? "wire type \(wt) (groups) not supported" : "invalid wire type \(wt)"
            return "\(what)\(fieldSuffix) (offset \(offset))"
        case .nestingTooDeep(let limit):
            return "nesting too deep (limit \(limit)) at offset \(offset)\(fieldSuffix)"
        }
    }
}
