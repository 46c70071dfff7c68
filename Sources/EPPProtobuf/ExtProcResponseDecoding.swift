// Decoding of ProcessingResponse (us -> Envoy direction). Not used on the server's
// hot path; provided for tests, simulators and tools that play Envoy's role.
// Only the modelled subset is exposed; everything else is skipped.

extension ProcessingResponse {
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> ProcessingResponse {
        var resp = ProcessingResponse(nil)
        var r = WireReader(buffer)
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1...2, 2):
                let sub = r.subReader(try r.readLengthDelimited())
                var common: CommonResponse? = nil
                switch resp.kind {
                case .requestHeaders(let c)? where field == 1: common = c
                case .responseHeaders(let c)? where field == 2: common = c
                default: break
                }
                try mergeSingleMessage(sub, field: 1, into: &common, empty: CommonResponse()) { (r, c) throws(ProtoDecodingError) in
                    try c.merge(from: r)
                }
                resp.kind = field == 1 ? .requestHeaders(common) : .responseHeaders(common)
            case (3...4, 2):
                let sub = r.subReader(try r.readLengthDelimited())
                var streamed: StreamedBodyResponse? = nil
                switch resp.kind {
                case .requestBody(let s)? where field == 3: streamed = s
                case .responseBody(let s)? where field == 4: streamed = s
                default: break
                }
                try mergeBodyResponse(sub, into: &streamed)
                resp.kind = field == 3 ? .requestBody(streamed) : .responseBody(streamed)
            case (5...6, 2):
                let sub = r.subReader(try r.readLengthDelimited())
                var mutation: HeaderMutation? = nil
                switch resp.kind {
                case .requestTrailers(let m)? where field == 5: mutation = m
                case .responseTrailers(let m)? where field == 6: mutation = m
                default: break
                }
                try mergeSingleMessage(sub, field: 1, into: &mutation, empty: HeaderMutation()) { (r, m) throws(ProtoDecodingError) in
                    try m.merge(from: r)
                }
                resp.kind = field == 5 ? .requestTrailers(mutation) : .responseTrailers(mutation)
            case (7, 2):
                let sub = r.subReader(try r.readLengthDelimited())
                var imm: ImmediateResponse
                if case .immediate(let existing)? = resp.kind { imm = existing } else { imm = ImmediateResponse(status: 0) }
                try imm.merge(from: sub)
                resp.kind = .immediate(imm)
            case (8, 2):
                let sub = r.subReader(try r.readLengthDelimited())
                var s = resp.dynamicMetadata ?? ProtoStruct()
                try s.merge(from: sub, depth: 1)
                resp.dynamicMetadata = s
            case (10, 2):
                var d = r.subReader(try r.readLengthDelimited())
                var seconds = resp.overrideMessageTimeoutSeconds ?? 0
                while let (f, wt) = try d.readTag() {
                    switch (f, wt) {
                    case (1, 0): seconds = Int64(bitPattern: try d.readVarint())
                    case (2, 0): resp.overrideMessageTimeoutNanos = Int32(truncatingIfNeeded: try d.readVarint())
                    default: try d.skip(wireType: wt, field: f)
                    }
                }
                resp.overrideMessageTimeoutSeconds = seconds
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
        return resp
    }

    public static func decode(_ bytes: [UInt8]) throws(ProtoDecodingError) -> ProcessingResponse {
        try withBytes(bytes) { (raw) throws(ProtoDecodingError) -> ProcessingResponse in try decode(raw) }
    }

    /// Reads a message that contains one singular sub-message at `field` (e.g.
    /// HeadersResponse.response) and merges that into `value`.
    static func mergeSingleMessage<T>(
        _ reader: WireReader, field wanted: Int, into value: inout T?, empty: T,
        _ merge: (WireReader, inout T) throws(ProtoDecodingError) -> Void
    ) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            if field == wanted, wireType == 2 {
                let sub = r.subReader(try r.readLengthDelimited())
                var v = value ?? empty
                try merge(sub, &v)
                value = v
            } else {
                try r.skip(wireType: wireType, field: field)
            }
        }
    }

    /// BodyResponse{response{body_mutation{streamed_response{body, end_of_stream}}}}
    static func mergeBodyResponse(_ reader: WireReader, into streamed: inout StreamedBodyResponse?) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            guard field == 1, wireType == 2 else { try r.skip(wireType: wireType, field: field); continue }
            var common = r.subReader(try r.readLengthDelimited())
            while let (f, wt) = try common.readTag() {
                guard f == 3, wt == 2 else { try common.skip(wireType: wt, field: f); continue }
                var mutation = common.subReader(try common.readLengthDelimited())
                while let (mf, mwt) = try mutation.readTag() {
                    switch (mf, mwt) {
                    case (3, 2):
                        var s = mutation.subReader(try mutation.readLengthDelimited())
                        var value = streamed ?? StreamedBodyResponse()
                        while let (sf, swt) = try s.readTag() {
                            switch (sf, swt) {
                            case (1, 2):
                                value.body = Array(UnsafeRawBufferPointer(rebasing: s.buffer[try s.readLengthDelimited()]))
                            case (2, 0):
                                value.endOfStream = try s.readBool()
                            default:
                                try s.skip(wireType: swt, field: sf)
                            }
                        }
                        streamed = value
                    case (1, 2), (2, 0):
                        // body / clear_body replace the oneof: not representable here.
                        try mutation.skip(wireType: mwt, field: mf)
                        streamed = nil
                    default:
                        try mutation.skip(wireType: mwt, field: mf)
                    }
                }
            }
        }
    }
}


extension CommonResponse {
    mutating func merge(from reader: WireReader) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 0):
                status = Int(Int32(truncatingIfNeeded: try r.readVarint()))
            case (2, 2):
                var m = headerMutation ?? HeaderMutation()
                try m.merge(from: r.subReader(try r.readLengthDelimited()))
                headerMutation = m
            case (5, 0):
                clearRouteCache = try r.readBool()
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
    }
}

extension HeaderMutation {
    mutating func merge(from reader: WireReader) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 2):
                setHeaders.append(try HeaderValueOption.decode(r.subReader(try r.readLengthDelimited())))
            case (2, 2):
                removeHeaders.append(try r.readString())
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
    }
}

extension HeaderValueOption {
    /// Decodes a HeaderValueOption; the value is `raw_value` if non-empty, else `value`.
    static func decode(_ reader: WireReader) throws(ProtoDecodingError) -> HeaderValueOption {
        var r = reader
        var key = ""
        var value = ""
        var rawValue = ""
        var append: Bool? = nil
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 2):
                var h = r.subReader(try r.readLengthDelimited())
                while let (f, wt) = try h.readTag() {
                    switch (f, wt) {
                    case (1, 2): key = try h.readString()
                    case (2, 2): value = try h.readString()
                    case (3, 2): rawValue = try h.readString()
                    default: try h.skip(wireType: wt, field: f)
                    }
                }
            case (2, 2):
                var b = r.subReader(try r.readLengthDelimited())
                var v = append ?? false
                while let (f, wt) = try b.readTag() {
                    if f == 1, wt == 0 { v = try b.readBool() } else { try b.skip(wireType: wt, field: f) }
                }
                append = v
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
        return HeaderValueOption(key: key, rawValue: rawValue.isEmpty ? value : rawValue, append: append)
    }

    /// Decodes a standalone HeaderValueOption message.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> HeaderValueOption {
        try decode(WireReader(buffer))
    }
}

extension ImmediateResponse {
    mutating func merge(from reader: WireReader) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 2):
                var s = r.subReader(try r.readLengthDelimited())
                while let (f, wt) = try s.readTag() {
                    if f == 1, wt == 0 { status = Int(Int32(truncatingIfNeeded: try s.readVarint())) } else { try s.skip(wireType: wt, field: f) }
                }
            case (2, 2):
                var m = headers ?? HeaderMutation()
                try m.merge(from: r.subReader(try r.readLengthDelimited()))
                headers = m
            case (3, 2):
                body = try r.readString()
            case (4, 2):
                var g = r.subReader(try r.readLengthDelimited())
                var code = grpcStatus ?? 0
                while let (f, wt) = try g.readTag() {
                    if f == 1, wt == 0 { code = UInt32(truncatingIfNeeded: try g.readVarint()) } else { try g.skip(wireType: wt, field: f) }
                }
                grpcStatus = code
            case (5, 2):
                details = try r.readString()
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
    }
}
