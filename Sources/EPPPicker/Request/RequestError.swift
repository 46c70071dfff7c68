// Errors that end a request with an ImmediateResponse (epp-protocol.md §7).

/// An error answered to the client with an ext_proc `immediate_response`.
///
/// `body` is the text/plain response body, `inference error: <Code> - <Msg>`
/// (except `evictedByFlowControl`, whose body is the raw message, as in the
/// reference). `httpStatus` follows the code mapping of §7: BadRequest 400,
/// Unauthorized 401, Forbidden 403, NotFound 404, ResourceExhausted 429,
/// Internal 500, ServiceUnavailable 503.
public struct RequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public var httpStatus: Int
    /// Error code name: `BadRequest`, `Internal`, `ServiceUnavailable`,
    /// `ResourceExhausted`, …; also used as the `error_code` metric label.
    public var code: String
    public var message: String
    /// Response body text.
    public var body: String

    public init(httpStatus: Int, code: String, message: String) {
        self.httpStatus = httpStatus
        self.code = code
        self.message = message
        self.body = "inference error: \(code) - \(message)"
    }

    /// Same as `init(httpStatus:code:message:)` but with the HTTP status taken
    /// from the code mapping of §7 (unknown codes ⇒ 500).
    public init(code: String, message: String) {
        self.init(httpStatus: RequestError.httpStatus(forCode: code), code: code, message: message)
    }

    public var description: String { body }

    // MARK: code names

    public static let codeBadRequest = "BadRequest"
    public static let codeUnauthorized = "Unauthorized"
    public static let codeForbidden = "Forbidden"
    public static let codeNotFound = "NotFound"
    public static let codeResourceExhausted = "ResourceExhausted"
    public static let codeInternal = "Internal"
    public static let codeServiceUnavailable = "ServiceUnavailable"

    public static func httpStatus(forCode code: String) -> Int {
        switch code {
        case codeBadRequest: return 400
        case codeUnauthorized: return 401
        case codeForbidden: return 403
        case codeNotFound: return 404
        case codeResourceExhausted: return 429
        case codeInternal: return 500
        case codeServiceUnavailable: return 503
        default: return 500
        }
    }

    // MARK: rows of epp-protocol.md §7

    /// 400 BadRequest with an arbitrary message (e.g. the §6.1 per-kind messages).
    public static func badRequest(_ message: String) -> RequestError {
        RequestError(httpStatus: 400, code: codeBadRequest, message: message)
    }

    /// 400 `error unmarshaling request bodyMap: <parser message>` — body is not
    /// JSON or not a JSON object.
    public static func notJSON(_ parserMessage: String) -> RequestError {
        badRequest("error unmarshaling request bodyMap: " + parserMessage)
    }

    /// 400 `model not found in request body`.
    public static var modelNotFound: RequestError { badRequest("model not found in request body") }

    /// 400 `parsing gRPC payload for Generate: not able to parse payload` (vLLM gRPC parser).
    public static func grpcPayloadParse(method: String = "Generate") -> RequestError {
        badRequest("parsing gRPC payload for \(method): not able to parse payload")
    }

    /// 400 `unsupported gRPC path: <path>`.
    public static func unsupportedGRPCPath(_ path: String) -> RequestError {
        badRequest("unsupported gRPC path: \(path)")
    }

    /// 413 `inference error: BadRequest - request body too large`.
    ///
    /// The reference has no body cap (§13.11) and §7 names no code for it; we
    /// keep the `BadRequest` code (so the body keeps the §7 format and the
    /// metric label stays within the known codes) but answer HTTP 413.
    public static var tooLarge: RequestError {
        RequestError(httpStatus: 413, code: codeBadRequest, message: "request body too large")
    }

    /// 500 Internal `no pods available in datastore` (header-only request, empty pool).
    public static var noPodsInDatastore: RequestError {
        RequestError(httpStatus: 500, code: codeInternal, message: "no pods available in datastore")
    }

    /// 503 ServiceUnavailable `failed to find endpoint candidates for serving the request`.
    public static var serviceUnavailable: RequestError {
        RequestError(
            httpStatus: 503, code: codeServiceUnavailable,
            message: "failed to find endpoint candidates for serving the request")
    }

    /// 429 ResourceExhausted `system saturated, sheddable request dropped`
    /// (legacy admission; the reference code answers 429, docs say 503 — §13.5).
    public static var shed: RequestError {
        RequestError(httpStatus: 429, code: codeResourceExhausted, message: "system saturated, sheddable request dropped")
    }

    /// 429 ResourceExhausted `failed to find target endpoint: <detail>`.
    public static func schedulerFailed(_ detail: String) -> RequestError {
        RequestError(httpStatus: 429, code: codeResourceExhausted, message: "failed to find target endpoint: \(detail)")
    }

    /// 500 Internal `request cannot be admitted` (admitter plugin denial).
    public static var admissionDenied: RequestError {
        RequestError(httpStatus: 500, code: codeInternal, message: "request cannot be admitted")
    }

    /// 429 ResourceExhausted with the flow-control error text (capacity exceeded).
    public static func flowControlCapacity(_ text: String) -> RequestError {
        RequestError(httpStatus: 429, code: codeResourceExhausted, message: text)
    }

    /// 503 ServiceUnavailable `request timed out in queue: <detail>`.
    public static func queueTimeout(_ detail: String) -> RequestError {
        RequestError(httpStatus: 503, code: codeServiceUnavailable, message: "request timed out in queue: \(detail)")
    }

    /// 503 ServiceUnavailable `client disconnected: <detail>`.
    public static func clientDisconnected(_ detail: String) -> RequestError {
        RequestError(httpStatus: 503, code: codeServiceUnavailable, message: "client disconnected: \(detail)")
    }

    /// 429 with raw body `request evicted by flow control` (no prefix, as in
    /// the reference; `code` is ResourceExhausted for metrics).
    public static var evictedByFlowControl: RequestError {
        var e = RequestError(httpStatus: 429, code: codeResourceExhausted, message: "request evicted by flow control")
        e.body = e.message
        return e
    }
}
