// Hot path: FULL_DUPLEX_STREAMED body answers (up to 62,000-byte chunks).

extension ProcessingResponse {
    /// Encodes
    /// `ProcessingResponse{request_body|response_body: BodyResponse{response(1): CommonResponse{
    ///   body_mutation(3): BodyMutation{streamed_response(3): StreamedBodyResponse{body(1), end_of_stream(2)}}}}
    ///   [dynamic_metadata(8)]}`.
    /// All nested lengths are computed up front, so the body bytes are copied exactly
    /// once into `writer` (no intermediate buffers, no shifting). Capacity is reserved
    /// once (geometric growth, so repeated calls on one buffer stay linear).
    public static func encodeStreamedBody(direction: Direction, body: UnsafeRawBufferPointer, endOfStream: Bool,
                                          dynamicMetadata: ProtoStruct?, into writer: inout WireWriter) {
        writeStreamedBodyField(direction: direction, body: body, endOfStream: endOfStream, into: &writer,
                               extraCapacity: dynamicMetadata == nil ? 0 : 128)
        if let dynamicMetadata {
            writer.writeStruct(field: 8, dynamicMetadata)
        }
    }

    /// Same as `encodeStreamedBody(direction:body:endOfStream:dynamicMetadata:into:)` for an array body.
    public static func encodeStreamedBody(direction: Direction, body: [UInt8], endOfStream: Bool,
                                          dynamicMetadata: ProtoStruct? = nil, into writer: inout WireWriter) {
        body.withUnsafeBytes {
            encodeStreamedBody(direction: direction, body: $0, endOfStream: endOfStream,
                               dynamicMetadata: dynamicMetadata, into: &writer)
        }
    }

    /// Encoded size of the streamed body oneof field (without dynamic metadata).
    public static func streamedBodyFieldSize(bodyCount n: Int, endOfStream: Bool) -> Int {
        let sizes = streamedBodySizes(bodyCount: n, endOfStream: endOfStream)
        return 1 + WireWriter.varintSize(UInt64(sizes.bodyResponse)) + sizes.bodyResponse
    }

    @inline(__always)
    static func streamedBodySizes(bodyCount n: Int, endOfStream: Bool)
        -> (streamed: Int, bodyMutation: Int, common: Int, bodyResponse: Int) {
        let streamed = (n > 0 ? 1 + WireWriter.varintSize(UInt64(n)) + n : 0) + (endOfStream ? 2 : 0)
        let bodyMutation = 1 + WireWriter.varintSize(UInt64(streamed)) + streamed
        let common = 1 + WireWriter.varintSize(UInt64(bodyMutation)) + bodyMutation
        let bodyResponse = 1 + WireWriter.varintSize(UInt64(common)) + common
        return (streamed, bodyMutation, common, bodyResponse)
    }

    static func writeStreamedBodyField(direction: Direction, body: UnsafeRawBufferPointer, endOfStream: Bool,
                                       into w: inout WireWriter, extraCapacity: Int = 0) {
        let n = body.count
        let s = streamedBodySizes(bodyCount: n, endOfStream: endOfStream)
        let total = 1 + WireWriter.varintSize(UInt64(s.bodyResponse)) + s.bodyResponse
        w.ensureCapacity(additional: total + extraCapacity)
        w.bytes.append(direction == .request ? 0x1a : 0x22)  // ProcessingResponse.request_body(3) / response_body(4)
        w.writeVarint(UInt64(s.bodyResponse))
        w.bytes.append(0x0a)                                  // BodyResponse.response(1)
        w.writeVarint(UInt64(s.common))
        w.bytes.append(0x1a)                                  // CommonResponse.body_mutation(3)
        w.writeVarint(UInt64(s.bodyMutation))
        w.bytes.append(0x1a)                                  // BodyMutation.streamed_response(3)
        w.writeVarint(UInt64(s.streamed))
        if n > 0 {
            w.bytes.append(0x0a)                              // StreamedBodyResponse.body(1)
            w.writeVarint(UInt64(n))
            w.bytes.append(contentsOf: body)
        }
        if endOfStream {
            w.bytes.append(0x10)                              // StreamedBodyResponse.end_of_stream(2)
            w.bytes.append(0x01)
        }
    }
}

extension WireWriter {
    /// Reserves room for `additional` more bytes, growing geometrically (a plain
    /// `reserveCapacity` per call would make repeated appends quadratic).
    @inlinable
    public mutating func ensureCapacity(additional: Int) {
        let needed = bytes.count + additional
        if needed > bytes.capacity {
            bytes.reserveCapacity(Swift.max(needed, bytes.capacity * 2))
        }
    }
}
