/// Reassembles gRPC Length-Prefixed-Messages (1-byte compressed flag, 4-byte big-endian length, message)
/// from DATA chunks whose boundaries are unrelated to message boundaries. Messages that lie whole inside
/// one chunk are delivered straight from the chunk (no copy); only split messages are buffered.
public struct GRPCMessageDeframer {
    public let maxMessageSize: Int
    private var buffer: [UInt8] = []

    public init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    /// True when a partial message is buffered (for end-of-stream checks).
    public var hasPartialMessage: Bool { !buffer.isEmpty }

    /// Bytes of the partial message held (charged to the connection's buffered-input budget).
    public var bufferedByteCount: Int { buffer.count }

    /// Drops the partial message and its memory (the call ended).
    public mutating func discard() { buffer = [] }

    /// Feeds a chunk; calls `onMessage` for each complete message, in order. Returns a status when the
    /// stream must fail (compressed message, message over the limit); the remaining bytes are dropped.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer,
                              _ onMessage: (UnsafeRawBufferPointer) -> Bool) -> GRPCStatus? {
        var input = chunk
        if !buffer.isEmpty {
            // Complete the buffered message first.
            if buffer.count < 5 {
                let need = min(5 - buffer.count, input.count)
                buffer.append(contentsOf: input.prefix(need))
                input = UnsafeRawBufferPointer(rebasing: input.dropFirst(need))
                if buffer.count < 5 { return nil }
                if let err = checkHeader(flag: buffer[0], length: Self.length(buffer, 1)) { buffer.removeAll(); return err }
            }
            let total = 5 + Self.length(buffer, 1)
            let need = min(total - buffer.count, input.count)
            buffer.append(contentsOf: input.prefix(need))
            input = UnsafeRawBufferPointer(rebasing: input.dropFirst(need))
            if buffer.count < total { return nil }
            let keepGoing = buffer.withUnsafeBytes { onMessage(UnsafeRawBufferPointer(rebasing: $0.dropFirst(5))) }
            buffer.removeAll(keepingCapacity: buffer.capacity <= 256 * 1024)
            if !keepGoing { return nil }
        }
        while input.count >= 5 {
            let length = Int(input[1]) << 24 | Int(input[2]) << 16 | Int(input[3]) << 8 | Int(input[4])
            if let err = checkHeader(flag: input[0], length: length) { return err }
            guard input.count >= 5 + length else { break }
            let msg = UnsafeRawBufferPointer(rebasing: input[(input.startIndex + 5)..<(input.startIndex + 5 + length)])
            input = UnsafeRawBufferPointer(rebasing: input.dropFirst(5 + length))
            if !onMessage(msg) { return nil }
        }
        if input.count > 0 {
            if input.count >= 5 {
                let length = Int(input[1]) << 24 | Int(input[2]) << 16 | Int(input[3]) << 8 | Int(input[4])
                buffer.reserveCapacity(5 + length)
            }
            buffer.append(contentsOf: input)
        }
        return nil
    }

    private func checkHeader(flag: UInt8, length: Int) -> GRPCStatus? {
        if flag != 0 {
            return GRPCStatus(.unimplemented, "compressed messages are not supported (no grpc-encoding was negotiated)")
        }
        if length > maxMessageSize {
            return GRPCStatus(.resourceExhausted, "received message larger than max (\(length) vs. \(maxMessageSize))")
        }
        return nil
    }

    private static func length(_ b: [UInt8], _ at: Int) -> Int {
        Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
    }

    /// Appends a frame header for a message of `length` bytes.
    public static func appendHeader(length: Int, to out: inout [UInt8]) {
        out.append(0)
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
    }
}
