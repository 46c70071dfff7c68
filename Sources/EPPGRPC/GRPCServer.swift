import CNghttp2
import EPPEventLoop
import EPPHTTP2

/// One RPC method's logic for one call. Called on the call's loop only.
public protocol GRPCMethodHandler: AnyObject {
    /// A complete request message; the bytes are valid only during the call.
    func received(_ call: GRPCCall, message: UnsafeRawBufferPointer)
    /// The client half-closed its side (no more messages).
    func clientHalfClosed(_ call: GRPCCall)
    /// The call is over (finished by us, reset by the client, or the connection went away).
    func callEnded(_ call: GRPCCall, reason: GRPCCall.EndReason)
}

/// A per-call limit a client broke (label of `epp_limit_exceeded_total`).
public enum GRPCLimit: String, Sendable, CaseIterable {
    case messageSize = "grpc_message_size"
    case messagesPerStream = "messages_per_stream"
    case headerList = "header_list"
    case connectionBufferedBytes = "connection_buffered_bytes"
}

/// Routes request streams by `:path` to method handlers; one instance per listening port (immutable).
public final class GRPCServer: HTTP2Service {
    public typealias Factory = (GRPCCall) -> GRPCMethodHandler
    private let routes: [String: Factory]
    public let maxReceiveMessageSize: Int
    /// Request messages one call may deliver; the next one ends the call with RESOURCE_EXHAUSTED.
    public let maxMessagesPerStream: Int
    /// Told each time a call is ended for breaking a limit (metrics); called on the call's loop.
    let onLimitExceeded: (@Sendable (GRPCLimit) -> Void)?

    public init(routes: [String: Factory], maxReceiveMessageSize: Int, maxMessagesPerStream: Int = .max,
                onLimitExceeded: (@Sendable (GRPCLimit) -> Void)? = nil) {
        self.routes = routes
        self.maxReceiveMessageSize = maxReceiveMessageSize
        self.maxMessagesPerStream = maxMessagesPerStream
        self.onLimitExceeded = onLimitExceeded
    }

    public func handler(for stream: HTTP2Stream) -> HTTP2StreamHandler {
        GRPCCall(stream: stream, server: self)
    }

    func route(_ path: String) -> Factory? { routes[path] }
}

/// The server side of one gRPC call on an HTTP/2 stream: validation, deframing, lazy response headers,
/// framed output and trailers. Owned by its stream (and so by one loop).
public final class GRPCCall: HTTP2StreamHandler {
    public enum EndReason: Sendable, Equatable {
        case finished(GRPCStatusCode)
        /// RST_STREAM from the client (Envoy ext_proc ends every stream this way) or connection loss.
        case reset(errorCode: UInt32)
    }

    public let stream: HTTP2Stream
    private unowned let server: GRPCServer
    private var deframer: GRPCMessageDeframer
    private var method: GRPCMethodHandler?
    private var deadlineTimer: TimerID?
    public private(set) var isFinished = false
    private var ended = false
    /// Request messages delivered so far.
    public private(set) var messagesReceived = 0
    /// This call's share of the connection's buffered-input budget: the deframer's partial message, and
    /// what the method handler holds (`chargeBufferedInput`). All of it goes back when the call ends.
    private var deframerCharged = 0
    private var methodCharged = 0
    /// True while `deframer.feed` runs: a call finished from inside it must not touch the deframer.
    private var feeding = false

    init(stream: HTTP2Stream, server: GRPCServer) {
        self.stream = stream
        self.server = server
        deframer = GRPCMessageDeframer(maxMessageSize: server.maxReceiveMessageSize)
    }

    public var loop: EventLoop { stream.connection.loop }
    public var path: String { stream.path }
    public func metadata(_ name: String) -> String? { stream.header(name) }

    // MARK: output

    /// Appends one or more complete length-prefixed messages to the stream (response headers go out first,
    /// lazily, so an error before any message can still be Trailers-Only).
    public func send(_ appendFramed: (inout [UInt8]) -> Void) {
        guard !isFinished else { return }
        if !stream.responseHeadersSent { stream.sendResponseHeaders(.staticBlock(.grpcResponse)) }
        stream.write(appendFramed)
    }

    /// Ends the call with `status` after everything already sent.
    public func finish(_ status: GRPCStatus) {
        guard !isFinished else { return }
        isFinished = true
        cancelDeadline()
        releaseAllBufferedInput()
        if status.code == .ok && status.message.isEmpty {
            stream.finish(trailers: .staticBlock(.grpcOK),
                          trailersOnly: .dynamic([(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")]))
        } else {
            var trailers = [("grpc-status", String(status.code.rawValue))]
            if !status.message.isEmpty { trailers.append(("grpc-message", GRPCStatus.percentEncode(status.message))) }
            stream.finish(trailers: .dynamic(trailers),
                          trailersOnly: .dynamic([(":status", "200"), ("content-type", "application/grpc")] + trailers))
        }
        endOnce(.finished(status.code))
    }

    // MARK: buffered-input budget

    /// Takes `bytes` of the connection's buffered-input budget for input the method handler keeps (e.g. a
    /// request body collected before deciding). When the connection has no room left, the call ends with
    /// RESOURCE_EXHAUSTED (counted) and this returns false: the handler must drop the input and stop.
    public func chargeBufferedInput(_ bytes: Int) -> Bool {
        guard !isFinished else { return false }
        guard stream.connection.chargeBufferedInput(bytes) else {
            bufferedInputExhausted()
            return false
        }
        methodCharged += bytes
        return true
    }

    /// Returns input charged with `chargeBufferedInput` once the handler no longer holds it.
    public func releaseBufferedInput(_ bytes: Int) {
        let n = min(bytes, methodCharged)
        methodCharged -= n
        stream.connection.releaseBufferedInput(n)
    }

    private func bufferedInputExhausted() {
        server.onLimitExceeded?(.connectionBufferedBytes)
        finish(GRPCStatus(.resourceExhausted,
                          "the connection holds more than \(stream.connection.maxBufferedInputBytes) bytes of unfinished request input (--max-connection-buffered-bytes); this stream was ended"))
    }

    /// Brings the deframer's charge in line with what it holds after a `feed`.
    @inline(__always)
    private func syncDeframerCharge() {
        let held = deframer.bufferedByteCount
        if held == deframerCharged { return }
        if held < deframerCharged {
            stream.connection.releaseBufferedInput(deframerCharged - held)
            deframerCharged = held
        } else if stream.connection.chargeBufferedInput(held - deframerCharged) {
            deframerCharged = held
        } else {
            bufferedInputExhausted()   // releases everything, the partial message included
        }
    }

    private func releaseAllBufferedInput() {
        if !feeding { deframer.discard() }   // else streamData discards it once feed returns
        let total = deframerCharged + methodCharged
        deframerCharged = 0
        methodCharged = 0
        if total > 0 { stream.connection.releaseBufferedInput(total) }
    }

    // MARK: HTTP2StreamHandler

    public func streamHeadersComplete(_ stream: HTTP2Stream) {
        if let reason = stream.headerLimitExceeded {
            server.onLimitExceeded?(.headerList)
            finish(GRPCStatus(.resourceExhausted, reason))
            return
        }
        guard let contentType = stream.header("content-type"), contentType.hasPrefix("application/grpc") else {
            isFinished = true
            stream.respondAndEnd([(":status", "415"), ("content-type", "text/plain")])
            return
        }
        guard let factory = server.route(stream.path) else {
            finish(GRPCStatus(.unimplemented, "unknown method \(stream.path)"))
            return
        }
        if let timeout = stream.header("grpc-timeout") {
            guard let ns = GRPCCall.parseTimeout(timeout) else {
                finish(GRPCStatus(.invalidArgument, "malformed grpc-timeout '\(timeout)'"))
                return
            }
            deadlineTimer = loop.schedule(afterNanoseconds: ns) { [weak self] in
                guard let self else { return }
                self.deadlineTimer = nil
                self.finish(GRPCStatus(.deadlineExceeded, "deadline exceeded"))
            }
        }
        method = factory(self)
    }

    public func streamData(_ stream: HTTP2Stream, _ bytes: UnsafeRawBufferPointer) {
        guard !isFinished, let method else { return }
        let limit = server.maxMessagesPerStream
        feeding = true
        let failure = deframer.feed(bytes, { msg in
            if self.messagesReceived >= limit {
                self.server.onLimitExceeded?(.messagesPerStream)
                self.finish(GRPCStatus(.resourceExhausted, "more than \(limit) messages on one stream"))
                return false
            }
            self.messagesReceived += 1
            stream.deliveredRequestMessage = true
            method.received(self, message: msg)
            return !self.isFinished
        })
        feeding = false
        if let error = failure {
            if error.code == .resourceExhausted { server.onLimitExceeded?(.messageSize) }
            finish(error)
            return
        }
        if isFinished { deframer.discard() } else { syncDeframerCharge() }
    }

    public func streamRemoteEnded(_ stream: HTTP2Stream) {
        guard !isFinished, let method else { return }
        if deframer.hasPartialMessage {
            finish(GRPCStatus(.internal, "stream ended inside a message"))
            return
        }
        method.clientHalfClosed(self)
    }

    public func streamClosed(_ stream: HTTP2Stream, errorCode: UInt32) {
        cancelDeadline()
        releaseAllBufferedInput()
        if !isFinished { isFinished = true; endOnce(.reset(errorCode: errorCode)) }
        method = nil
    }

    private func endOnce(_ reason: EndReason) {
        guard !ended else { return }
        ended = true
        method?.callEnded(self, reason: reason)
    }

    private func cancelDeadline() {
        if let t = deadlineTimer { loop.cancelTimer(t); deadlineTimer = nil }
    }

    /// `grpc-timeout`: 1–8 digits and a unit H M S m u n.
    static func parseTimeout(_ s: String) -> UInt64? {
        let u = Array(s.utf8)
        guard u.count >= 2, u.count <= 9 else { return nil }
        var value: UInt64 = 0
        for c in u.dropLast() {
            guard c >= 48 && c <= 57 else { return nil }
            value = value * 10 + UInt64(c - 48)
        }
        let mult: UInt64
        switch u.last! {
        case UInt8(ascii: "H"): mult = 3_600_000_000_000
        case UInt8(ascii: "M"): mult = 60_000_000_000
        case UInt8(ascii: "S"): mult = 1_000_000_000
        case UInt8(ascii: "m"): mult = 1_000_000
        case UInt8(ascii: "u"): mult = 1_000
        case UInt8(ascii: "n"): mult = 1
        default: return nil
        }
        return value.multipliedReportingOverflow(by: mult).overflow ? UInt64.max / 2 : value * mult
    }
}
