/// `envoy.config.core.v3.HeaderValueOption`. Encoded with `header.key` (1) and
/// `header.raw_value` (3) only — never `value` (2), which Envoy 1.40 would forward as
/// an empty header. `append` maps to the deprecated BoolValue field 2, the only
/// append knob ext_proc honours: `nil` = omitted (overwrite), `true` = `12 02 08 01`,
/// `false` = explicit `BoolValue{}` (`12 00`).
public struct HeaderValueOption: Sendable, Equatable {
    public var key: String
    public var rawValue: String
    public var append: Bool?

    public init(key: String, rawValue: String, append: Bool? = nil) {
        self.key = key
        self.rawValue = rawValue
        self.append = append
    }

    /// Writes the HeaderValueOption message body (without an outer tag).
    public func encode(into w: inout WireWriter) {
        w.writeMessage(field: 1) { hv in
            hv.writeString(field: 1, key)
            hv.writeString(field: 3, rawValue)
        }
        if let append {
            w.writeMessage(field: 2) { $0.writeBool(field: 1, append) }
        }
    }
}

/// `envoy.service.ext_proc.v3.HeaderMutation`.
public struct HeaderMutation: Sendable, Equatable {
    public var setHeaders: [HeaderValueOption]
    public var removeHeaders: [String]

    public init(setHeaders: [HeaderValueOption] = [], removeHeaders: [String] = []) {
        self.setHeaders = setHeaders
        self.removeHeaders = removeHeaders
    }

    public var isEmpty: Bool { setHeaders.isEmpty && removeHeaders.isEmpty }

    public func encode(into w: inout WireWriter) {
        for option in setHeaders {
            w.writeMessage(field: 1) { option.encode(into: &$0) }
        }
        for name in removeHeaders {
            w.writeString(field: 2, name, emitDefault: true)
        }
    }
}

/// `envoy.service.ext_proc.v3.CommonResponse` for headers responses
/// (body mutations are produced by `ProcessingResponse.encodeStreamedBody`).
public struct CommonResponse: Sendable, Equatable {
    /// `ResponseStatus.CONTINUE`
    public static let statusContinue = 0
    /// `ResponseStatus.CONTINUE_AND_REPLACE`
    public static let statusContinueAndReplace = 1

    /// 0 = CONTINUE, 1 = CONTINUE_AND_REPLACE.
    public var status: Int
    /// `nil` = field omitted; an empty mutation is emitted as `12 00`.
    public var headerMutation: HeaderMutation?
    /// Honoured by Envoy only together with a header mutation on the request path.
    public var clearRouteCache: Bool

    public init(status: Int = 0, headerMutation: HeaderMutation? = nil, clearRouteCache: Bool = false) {
        self.status = status
        self.headerMutation = headerMutation
        self.clearRouteCache = clearRouteCache
    }

    public func encode(into w: inout WireWriter) {
        w.writeInt64(field: 1, Int64(status))
        if let headerMutation {
            w.writeMessage(field: 2) { headerMutation.encode(into: &$0) }
        }
        w.writeBool(field: 5, clearRouteCache)
    }
}

/// `StreamedBodyResponse` payload of a FULL_DUPLEX_STREAMED body answer.
public struct StreamedBodyResponse: Sendable, Equatable {
    public var body: [UInt8]
    public var endOfStream: Bool

    public init(body: [UInt8] = [], endOfStream: Bool = false) {
        self.body = body
        self.endOfStream = endOfStream
    }
}

/// `envoy.service.ext_proc.v3.ImmediateResponse` (local reply).
public struct ImmediateResponse: Sendable, Equatable {
    /// HTTP status code (`type.v3.HttpStatus.code`); the status message is always emitted.
    public var status: Int
    public var headers: HeaderMutation?
    /// Sent as the local reply body (bytes field 3).
    public var body: String
    /// `GrpcStatus.status` for gRPC downstreams; `nil` = omitted.
    public var grpcStatus: UInt32?
    /// Becomes `%RESPONSE_CODE_DETAILS%`.
    public var details: String

    public init(status: Int, headers: HeaderMutation? = nil, body: String = "", grpcStatus: UInt32? = nil, details: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
        self.grpcStatus = grpcStatus
        self.details = details
    }

    public func encode(into w: inout WireWriter) {
        w.writeMessage(field: 1) { $0.writeInt64(field: 1, Int64(status)) }
        if let headers {
            w.writeMessage(field: 2) { headers.encode(into: &$0) }
        }
        w.writeString(field: 3, body)
        if let grpcStatus {
            w.writeMessage(field: 4) { $0.writeVarintField(field: 1, UInt64(grpcStatus)) }
        }
        w.writeString(field: 5, details)
    }
}

/// `envoy.service.ext_proc.v3.ProcessingResponse` (us -> Envoy).
public struct ProcessingResponse: Sendable, Equatable {
    public enum Direction: Sendable, Equatable {
        /// request path: body answer in field 3 (`request_body`)
        case request
        /// response path: body answer in field 4 (`response_body`)
        case response
    }

    /// The `response` oneof. Headers/trailers payloads may be `nil`, which still
    /// emits the (empty) oneof member, e.g. `response_headers{}` = `12 00`.
    public enum Kind: Sendable, Equatable {
        case requestHeaders(CommonResponse?)
        case responseHeaders(CommonResponse?)
        /// `BodyResponse{response{body_mutation{streamed_response{…}}}}`; `nil` = `BodyResponse{}`.
        case requestBody(StreamedBodyResponse?)
        case responseBody(StreamedBodyResponse?)
        case requestTrailers(HeaderMutation?)
        case responseTrailers(HeaderMutation?)
        case immediate(ImmediateResponse)
    }

    /// `nil` only for a pure timer extension (`override_message_timeout` alone);
    /// otherwise Envoy treats the message as spurious.
    public var kind: Kind?
    /// Top-level keys are namespaces (`envoy.lb`), each value a `.structValue`.
    public var dynamicMetadata: ProtoStruct?
    /// `override_message_timeout` (Duration) seconds; `nil` = omitted.
    public var overrideMessageTimeoutSeconds: Int64?
    /// Duration nanos, used only when `overrideMessageTimeoutSeconds` is set.
    public var overrideMessageTimeoutNanos: Int32

    public init(_ kind: Kind?, dynamicMetadata: ProtoStruct? = nil,
                overrideMessageTimeoutSeconds: Int64? = nil, overrideMessageTimeoutNanos: Int32 = 0) {
        self.kind = kind
        self.dynamicMetadata = dynamicMetadata
        self.overrideMessageTimeoutSeconds = overrideMessageTimeoutSeconds
        self.overrideMessageTimeoutNanos = overrideMessageTimeoutNanos
    }

    /// Writes the message (no gRPC prefix), fields in ascending order.
    public func encode(into w: inout WireWriter) {
        switch kind {
        case nil:
            break
        case .requestHeaders(let c)?:
            Self.writeHeadersResponse(field: 1, c, into: &w)
        case .responseHeaders(let c)?:
            Self.writeHeadersResponse(field: 2, c, into: &w)
        case .requestBody(let s)?:
            Self.writeBodyResponse(direction: .request, s, into: &w)
        case .responseBody(let s)?:
            Self.writeBodyResponse(direction: .response, s, into: &w)
        case .requestTrailers(let m)?:
            Self.writeTrailersResponse(field: 5, m, into: &w)
        case .responseTrailers(let m)?:
            Self.writeTrailersResponse(field: 6, m, into: &w)
        case .immediate(let i)?:
            w.writeMessage(field: 7) { i.encode(into: &$0) }
        }
        if let dynamicMetadata {
            w.writeStruct(field: 8, dynamicMetadata)
        }
        if let seconds = overrideMessageTimeoutSeconds {
            let nanos = overrideMessageTimeoutNanos
            w.writeMessage(field: 10) { d in
                d.writeInt64(field: 1, seconds)
                d.writeInt64(field: 2, Int64(nanos))
            }
        }
    }

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        encode(into: &w)
        return w.bytes
    }

    /// Appends this message as one gRPC Length-Prefixed-Message to `out`.
    public func appendGRPCFrame(to out: inout [UInt8]) {
        WireWriter.appendGRPCFrame(to: &out) { encode(into: &$0) }
    }

    /// See `WireWriter.appendGRPCFrame(to:_:)`.
    @inlinable
    public static func appendGRPCFrame(to out: inout [UInt8], _ body: (inout WireWriter) -> Void) {
        WireWriter.appendGRPCFrame(to: &out, body)
    }

    static func writeHeadersResponse(field: Int, _ common: CommonResponse?, into w: inout WireWriter) {
        w.writeMessage(field: field) { hr in
            if let common {
                hr.writeMessage(field: 1) { common.encode(into: &$0) }
            }
        }
    }

    static func writeTrailersResponse(field: Int, _ mutation: HeaderMutation?, into w: inout WireWriter) {
        w.writeMessage(field: field) { tr in
            if let mutation {
                tr.writeMessage(field: 1) { mutation.encode(into: &$0) }
            }
        }
    }

    static func writeBodyResponse(direction: Direction, _ streamed: StreamedBodyResponse?, into w: inout WireWriter) {
        guard let streamed else {
            w.writeMessage(field: direction == .request ? 3 : 4) { _ in }
            return
        }
        streamed.body.withUnsafeBytes {
            writeStreamedBodyField(direction: direction, body: $0, endOfStream: streamed.endOfStream, into: &w)
        }
    }
}
