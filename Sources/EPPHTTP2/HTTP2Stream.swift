import CNghttp2

/// Receives the events of one HTTP/2 request stream. Called on the owning loop's thread only.
public protocol HTTP2StreamHandler: AnyObject {
    /// The request HEADERS (incl. CONTINUATION) are complete.
    func streamHeadersComplete(_ stream: HTTP2Stream)
    /// A chunk of request DATA. The bytes are valid only during the call.
    func streamData(_ stream: HTTP2Stream, _ bytes: UnsafeRawBufferPointer)
    /// The client half-closed (END_STREAM on DATA or trailers).
    func streamRemoteEnded(_ stream: HTTP2Stream)
    /// The stream is gone (normal close, RST_STREAM, or connection closed). Never touch it afterwards.
    func streamClosed(_ stream: HTTP2Stream, errorCode: UInt32)
}

/// Chooses a handler for each new request stream of a connection (a port's set of services).
public protocol HTTP2Service: AnyObject {
    func handler(for stream: HTTP2Stream) -> HTTP2StreamHandler
}

/// A header block to submit: a static NO_COPY block (hot path) or pairs copied at submit time.
public enum HeaderSource {
    case staticBlock(StaticHeaderBlock)
    case dynamic([(String, String)])
}

/// One request stream of a server connection, owned by that connection (and so by its loop).
/// Output: response headers once, then bytes queued with `write`, then trailers with `finish`.
public final class HTTP2Stream {
    public let id: Int32
    public unowned(unsafe) let connection: HTTP2Connection
    /// Request headers the upper layers read (see `HTTP2Callbacks.retainedNames`); others are not stored.
    public internal(set) var requestHeaders: [(name: String, value: String)] = []
    public var handler: HTTP2StreamHandler?
    /// Opaque per-stream slot for the layer above (e.g. the gRPC call object).
    public var context: AnyObject?

    /// Bytes queued for DATA frames; `outOffset` is how much nghttp2 has already taken.
    var outQueue: [UInt8] = []
    var outOffset = 0
    var responseStarted = false
    var pendingTrailers: HeaderSource?
    public internal(set) var remoteEnded = false
    public internal(set) var isClosed = false
    var localEnded = false
    /// Request header fields and their RFC 9113 size (name + value + 32) seen so far.
    var headerCount = 0
    var headerListBytes = 0
    /// Set when the request headers broke `HTTP2Settings.maxHeaderCount` / `maxHeaderListSize`; the layer
    /// above answers the stream with this explanation instead of serving it.
    public internal(set) var headerLimitExceeded: String?
    /// Set by the layer above once the client delivered one complete request message; a client reset
    /// before that is charged to the connection's rapid-reset budget.
    public var deliveredRequestMessage = false

    init(id: Int32, connection: HTTP2Connection) {
        self.id = id
        self.connection = connection
    }

    public func header(_ name: String) -> String? {
        for h in requestHeaders where h.name == name { return h.value }
        return nil
    }

    public var path: String { header(":path") ?? "" }

    public var responseHeadersSent: Bool { responseStarted }

    public var queuedBytes: Int { outQueue.count - outOffset }

    /// Sends the response HEADERS now (no END_STREAM); DATA follows via `write`, trailers via `finish`.
    /// The block must include `:status`.
    public func sendResponseHeaders(_ headers: HeaderSource) {
        guard !isClosed, !responseStarted else { return }
        responseStarted = true
        connection.submitResponse(self, headers: headers, withBody: true)
    }

    /// Queues bytes for the response body. `append` writes straight into the stream's queue (no copy).
    public func write(_ append: (inout [UInt8]) -> Void) {
        guard !isClosed, !localEnded else { return }
        let before = outQueue.count
        append(&outQueue)
        connection.queuedOutputChanged(by: outQueue.count - before)
        connection.resume(self)
    }

    /// Ends the response with `trailers` after the queued bytes. If no HEADERS went out yet,
    /// `trailersOnly` (which must carry `:status` and the trailer fields) is sent as a single HEADERS
    /// frame with END_STREAM (gRPC Trailers-Only).
    public func finish(trailers: HeaderSource, trailersOnly: @autoclosure () -> HeaderSource) {
        guard !isClosed, !localEnded else { return }
        localEnded = true
        if !responseStarted {
            responseStarted = true
            connection.submitResponse(self, headers: trailersOnly(), withBody: false)
        } else {
            pendingTrailers = trailers
            connection.resume(self)
        }
    }

    /// Sends a complete response without body (e.g. HTTP 415) with END_STREAM on the HEADERS.
    public func respondAndEnd(_ headers: [(String, String)]) {
        guard !isClosed, !responseStarted else { return }
        responseStarted = true
        localEnded = true
        connection.submitResponse(self, headers: .dynamic(headers), withBody: false)
    }

    public func reset(errorCode: UInt32 = NGHTTP2_INTERNAL_ERROR.rawValue) {
        guard !isClosed else { return }
        connection.resetStream(self, errorCode: errorCode)
    }

    /// Called by nghttp2 (via the data provider) to pull at most `length` bytes of DATA.
    func pull(into buf: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let available = outQueue.count - outOffset
        let n = min(available, length)
        if n > 0 {
            outQueue.withUnsafeBufferPointer { src in
                buf.update(from: src.baseAddress! + outOffset, count: n)
            }
            outOffset += n
            connection.queuedOutputChanged(by: -n)
            if outOffset == outQueue.count {
                outQueue.removeAll(keepingCapacity: outQueue.capacity <= 256 * 1024)
                outOffset = 0
            }
        }
        if outQueue.count - outOffset == 0 {
            if let trailers = pendingTrailers {
                pendingTrailers = nil
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                connection.submitTrailers(self, trailers)
                return n
            }
            if n == 0 { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        }
        return n
    }
}
