/// A header (or trailer) as received from Envoy. Names arrive lower-cased,
/// pseudo-headers included.
public struct HeaderField: Sendable, Equatable {
    public var name: String
    public var value: String

    @inlinable
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// `envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode`.
public enum BodySendMode: Int, Sendable, CaseIterable {
    case none = 0
    case streamed = 1
    case buffered = 2
    case bufferedPartial = 3
    case fullDuplexStreamed = 4
    case grpc = 5
}

/// `envoy.service.ext_proc.v3.ProtocolConfiguration` (first message of a stream).
/// Modes are kept as raw enum numbers so unknown values survive.
public struct ProtocolConfiguration: Sendable, Equatable {
    public var requestBodyMode: Int
    public var responseBodyMode: Int
    public var sendBodyWithoutWaitingForHeaderResponse: Bool

    public init(requestBodyMode: Int = 0, responseBodyMode: Int = 0, sendBodyWithoutWaitingForHeaderResponse: Bool = false) {
        self.requestBodyMode = requestBodyMode
        self.responseBodyMode = responseBodyMode
        self.sendBodyWithoutWaitingForHeaderResponse = sendBodyWithoutWaitingForHeaderResponse
    }

    /// `nil` for a value this build does not know.
    public var requestBodySendMode: BodySendMode? { BodySendMode(rawValue: requestBodyMode) }
    public var responseBodySendMode: BodySendMode? { BodySendMode(rawValue: responseBodyMode) }
}

/// `envoy.service.ext_proc.v3.ProcessingRequest` (Envoy -> us), decoded without
/// copying the body: `body` is a range of the input buffer.
public struct ProcessingRequest: Sendable {
    /// Which member of the `request` oneof was set.
    public enum Phase: Sendable, Equatable {
        case none
        case requestHeaders
        case responseHeaders
        case requestBody
        case responseBody
        case requestTrailers
        case responseTrailers

        /// Oneof field number in ProcessingRequest (0 for `.none`).
        public var fieldNumber: Int {
            switch self {
            case .none: 0
            case .requestHeaders: 2
            case .responseHeaders: 3
            case .requestBody: 4
            case .responseBody: 5
            case .requestTrailers: 6
            case .responseTrailers: 7
            }
        }
    }

    public var phase: Phase = .none
    /// Headers (headers phases) or trailers (trailers phases).
    public var headers: [HeaderField] = []
    /// HttpHeaders.end_of_stream or HttpBody.end_of_stream.
    public var endOfStream: Bool = false
    /// Byte range of HttpBody.body inside the decoded buffer (`0..<0` when absent).
    public var body: Range<Int> = 0..<0
    /// metadata_context.filter_metadata (namespace -> Struct), unique keys.
    public var metadataContext: [(String, ProtoStruct)] = []
    /// attributes map (usually key "envoy.filters.http.ext_proc"), unique keys.
    public var attributes: [(String, ProtoStruct)] = []
    public var observabilityMode: Bool = false
    public var protocolConfig: ProtocolConfiguration? = nil

    public init() {}

    public init(phase: Phase, headers: [HeaderField] = [], endOfStream: Bool = false,
                metadataContext: [(String, ProtoStruct)] = [], attributes: [(String, ProtoStruct)] = [],
                observabilityMode: Bool = false, protocolConfig: ProtocolConfiguration? = nil) {
        self.phase = phase
        self.headers = headers
        self.endOfStream = endOfStream
        self.metadataContext = metadataContext
        self.attributes = attributes
        self.observabilityMode = observabilityMode
        self.protocolConfig = protocolConfig
    }

    public var isHeaders: Bool { phase == .requestHeaders || phase == .responseHeaders }
    public var isBody: Bool { phase == .requestBody || phase == .responseBody }
    public var isTrailers: Bool { phase == .requestTrailers || phase == .responseTrailers }

    public func filterMetadata(_ namespace: String) -> ProtoStruct? {
        for (ns, s) in metadataContext.reversed() where ns == namespace { return s }
        return nil
    }

    public func attribute(_ key: String) -> ProtoStruct? {
        for (k, s) in attributes.reversed() where k == key { return s }
        return nil
    }

    /// First header with `name` (exact match; Envoy sends lower-case names).
    public func header(_ name: String) -> String? {
        for h in headers where h.name == name { return h.value }
        return nil
    }
}

// MARK: - Decoding

extension ProcessingRequest {
    /// Decodes a ProcessingRequest. Unknown fields (wire types 0/1/2/5) are skipped
    /// at every level; a known field with an unexpected wire type is treated as
    /// unknown (like the reference protobuf runtimes).
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> ProcessingRequest {
        var req = ProcessingRequest()
        var r = WireReader(buffer)
        var metadataIndex = KeyIndex()
        var attributesIndex = KeyIndex()
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (2...7, 2):
                let range = try r.readLengthDelimited()
                let phase: Phase
                switch field {
                case 2: phase = .requestHeaders
                case 3: phase = .responseHeaders
                case 4: phase = .requestBody
                case 5: phase = .responseBody
                case 6: phase = .requestTrailers
                default: phase = .responseTrailers
                }
                if phase != req.phase {
                    // A different oneof member replaces the previous one.
                    req.phase = phase
                    req.headers.removeAll(keepingCapacity: true)
                    req.endOfStream = false
                    req.body = 0..<0
                }
                let sub = r.subReader(range)
                switch field {
                case 2, 3: try req.mergeHttpHeaders(sub)
                case 4, 5: try req.mergeHttpBody(sub)
                default: try req.mergeHttpTrailers(sub)
                }
            case (8, 2):
                let range = try r.readLengthDelimited()
                try mergeMetadata(r.subReader(range), into: &req.metadataContext, index: &metadataIndex)
            case (9, 2):
                let range = try r.readLengthDelimited()
                try mergeStructMapEntry(r.subReader(range), into: &req.attributes, index: &attributesIndex)
            case (10, 0):
                req.observabilityMode = try r.readBool()
            case (11, 2):
                let range = try r.readLengthDelimited()
                var config = req.protocolConfig ?? ProtocolConfiguration()
                var c = r.subReader(range)
                while let (f, wt) = try c.readTag() {
                    switch (f, wt) {
                    case (1, 0): config.requestBodyMode = Int(Int32(truncatingIfNeeded: try c.readVarint()))
                    case (2, 0): config.responseBodyMode = Int(Int32(truncatingIfNeeded: try c.readVarint()))
                    case (3, 0): config.sendBodyWithoutWaitingForHeaderResponse = try c.readBool()
                    default: try c.skip(wireType: wt, field: f)
                    }
                }
                req.protocolConfig = config
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
        return req
    }

    /// Decodes from an array; `body` is then a range of `bytes`' indices.
    public static func decode(_ bytes: [UInt8]) throws(ProtoDecodingError) -> ProcessingRequest {
        try withBytes(bytes) { (raw) throws(ProtoDecodingError) -> ProcessingRequest in try decode(raw) }
    }

    /// HttpHeaders { headers = 1 (HeaderMap), attributes = 2 (skipped), end_of_stream = 3 }
    mutating func mergeHttpHeaders(_ reader: WireReader) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 2):
                let range = try r.readLengthDelimited()
                try Self.mergeHeaderMap(r.subReader(range), into: &headers)
            case (3, 0):
                endOfStream = try r.readBool()
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
    }

    /// HttpBody { body = 1, end_of_stream = 2, 3/4/5 skipped }
    mutating func mergeHttpBody(_ reader: WireReader) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 2):
                body = try r.readLengthDelimited()
            case (2, 0):
                endOfStream = try r.readBool()
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
    }

    /// HttpTrailers { trailers = 1 (HeaderMap) }
    mutating func mergeHttpTrailers(_ reader: WireReader) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            if field == 1, wireType == 2 {
                let range = try r.readLengthDelimited()
                try Self.mergeHeaderMap(r.subReader(range), into: &headers)
            } else {
                try r.skip(wireType: wireType, field: field)
            }
        }
    }

    /// HeaderMap { repeated HeaderValue headers = 1 } — HeaderValue { key = 1, value = 2, raw_value = 3 }.
    static func mergeHeaderMap(_ reader: WireReader, into headers: inout [HeaderField]) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            guard field == 1, wireType == 2 else {
                try r.skip(wireType: wireType, field: field)
                continue
            }
            let range = try r.readLengthDelimited()
            var h = r.subReader(range)
            var key = 0..<0
            var value = 0..<0
            var rawValue = 0..<0
            while let (f, wt) = try h.readTag() {
                switch (f, wt) {
                case (1, 2): key = try h.readLengthDelimited()
                case (2, 2): value = try h.readLengthDelimited()
                case (3, 2): rawValue = try h.readLengthDelimited()
                default: try h.skip(wireType: wt, field: f)
                }
            }
            headers.append(HeaderField(name: h.string(in: key),
                                       value: h.string(in: rawValue.isEmpty ? value : rawValue)))
        }
    }

    /// Metadata { map<string, Struct> filter_metadata = 1, typed_filter_metadata = 2 (skipped) }
    static func mergeMetadata(_ reader: WireReader, into map: inout [(String, ProtoStruct)],
                              index: inout KeyIndex) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            if field == 1, wireType == 2 {
                let range = try r.readLengthDelimited()
                try mergeStructMapEntry(r.subReader(range), into: &map, index: &index)
            } else {
                try r.skip(wireType: wireType, field: field)
            }
        }
    }

    /// One map<string, Struct> entry { key = 1, value = 2 }; either may be absent.
    /// A duplicate key replaces the earlier value.
    static func mergeStructMapEntry(_ reader: WireReader, into map: inout [(String, ProtoStruct)],
                                    index: inout KeyIndex) throws(ProtoDecodingError) {
        var r = reader
        var key = 0..<0
        var value = ProtoStruct()
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 2):
                key = try r.readLengthDelimited()
            case (2, 2):
                let range = try r.readLengthDelimited()
                try value.merge(from: r.subReader(range), depth: 1)
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
        index.upsert(&map, key: r.string(in: key), value: value)
    }
}

// MARK: - Encoding (Envoy's side; for tests, simulators and load tools)

extension ProcessingRequest {
    /// Encodes this request the way Envoy does (fields ascending, header values in
    /// `raw_value`). `self.body` is ignored; the body bytes are passed separately.
    /// `emitEmptyMetadataContext` mimics Envoy, which always sends `metadata_context`.
    public func encode(body bodyBytes: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                       emitEmptyMetadataContext: Bool = true, into w: inout WireWriter) {
        let field = phase.fieldNumber
        switch phase {
        case .none:
            break
        case .requestHeaders, .responseHeaders:
            w.writeMessage(field: field) { hh in
                hh.writeMessage(field: 1) { Self.encodeHeaderMap(headers, into: &$0) }
                hh.writeBool(field: 3, endOfStream)
            }
        case .requestBody, .responseBody:
            w.writeMessage(field: field) { b in
                b.writeBytes(field: 1, bodyBytes)
                b.writeBool(field: 2, endOfStream)
            }
        case .requestTrailers, .responseTrailers:
            w.writeMessage(field: field) { t in
                t.writeMessage(field: 1) { Self.encodeHeaderMap(headers, into: &$0) }
            }
        }
        if emitEmptyMetadataContext || !metadataContext.isEmpty {
            w.writeMessage(field: 8) { m in
                for (ns, s) in metadataContext {
                    m.writeMessage(field: 1) { e in
                        e.writeString(field: 1, ns, emitDefault: true)
                        e.writeStruct(field: 2, s)
                    }
                }
            }
        }
        for (key, s) in attributes {
            w.writeMessage(field: 9) { e in
                e.writeString(field: 1, key, emitDefault: true)
                e.writeStruct(field: 2, s)
            }
        }
        w.writeBool(field: 10, observabilityMode)
        if let config = protocolConfig {
            w.writeMessage(field: 11) { c in
                c.writeInt64(field: 1, Int64(config.requestBodyMode))
                c.writeInt64(field: 2, Int64(config.responseBodyMode))
                c.writeBool(field: 3, config.sendBodyWithoutWaitingForHeaderResponse)
            }
        }
    }

    public func encoded(body: [UInt8] = [], emitEmptyMetadataContext: Bool = true) -> [UInt8] {
        var w = WireWriter(reservingCapacity: body.count + 64)
        body.withUnsafeBytes { encode(body: $0, emitEmptyMetadataContext: emitEmptyMetadataContext, into: &w) }
        return w.bytes
    }

    static func encodeHeaderMap(_ headers: [HeaderField], into w: inout WireWriter) {
        for h in headers {
            w.writeMessage(field: 1) { hv in
                hv.writeString(field: 1, h.name)
                hv.writeString(field: 3, h.value)
            }
        }
    }
}
