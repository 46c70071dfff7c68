import CLinux
import CNghttp2
import COpenSSL
import EPPEventLoop
import Glibc

/// Why a connection was ended by us rather than by the peer (for metrics and logs).
public enum HTTP2AbortReason: String, Sendable, CaseIterable {
    /// TLS handshake + client preface not complete within `HTTP2Settings.handshakeTimeoutNanos`.
    case handshakeTimeout = "handshake_timeout"
    /// Too many streams reset before delivering a request message (rapid reset).
    case rapidReset = "rapid_reset"
    /// The peer stopped taking our output (zero window or no reads) past `maxQueuedOutputBytes`.
    case outputStalled = "output_stalled"
    /// nghttp2 rejected the input (protocol error, PING/SETTINGS flood, CONTINUATION flood, ...).
    case protocolError = "protocol_error"
}

/// A server-side HTTP/2 connection (h2c with prior knowledge, or TLS with ALPN h2) on one event loop.
/// Reads feed `nghttp2_session_mem_recv`; output from `nghttp2_session_mem_send` is gathered into one
/// buffer and written once per loop iteration (`flush`). Owned by its loop (registered handler).
public final class HTTP2Connection: EventHandler, Flushable {
    public let fd: Int32
    public unowned let loop: EventLoop
    let service: HTTP2Service
    let settings: HTTP2Settings
    var session: OpaquePointer?
    private var ssl: OpaquePointer?
    private var handshakeDone: Bool
    private var outBuffer: [UInt8] = []
    private var outOffset = 0
    private var writeInterest = false
    public var flushScheduled = false
    public private(set) var isClosed = false
    var streams: [Int32: HTTP2Stream] = [:]
    private var onClose: ((HTTP2Connection) -> Void)?
    private var draining = false
    /// Called once when we end the connection for a reason in `HTTP2AbortReason` (set before `start`).
    public var onAbort: ((HTTP2AbortReason) -> Void)?
    private var abortReason: HTTP2AbortReason?
    /// The client preface (its first frame) arrived; until then the handshake timer runs.
    private var prefaceReceived = false
    private var handshakeTimer: TimerID?
    /// Response bytes queued on this connection's streams that nghttp2 has not taken yet.
    public private(set) var queuedOutputBytes = 0
    /// Client input buffered by the layers above for this connection's streams (`chargeBufferedInput`),
    /// bounded by `HTTP2Settings.maxBufferedInputBytes`.
    public private(set) var bufferedInputBytes = 0
    /// Rapid-reset token bucket (see `HTTP2Settings.earlyResetBudget`).
    private var earlyResetTokens: Double
    private var earlyResetRefilledAt: UInt64 = 0

    public var openStreamCount: Int { streams.count }

    public var maxBufferedInputBytes: Int { settings.maxBufferedInputBytes }

    /// Takes `bytes` of the connection's buffered-input budget; false (and nothing taken) when that would
    /// exceed `maxBufferedInputBytes`. Every charge must be returned with `releaseBufferedInput`.
    @inline(__always)
    public func chargeBufferedInput(_ bytes: Int) -> Bool {
        guard bytes <= settings.maxBufferedInputBytes - bufferedInputBytes else { return false }
        bufferedInputBytes += bytes
        return true
    }

    @inline(__always)
    public func releaseBufferedInput(_ bytes: Int) {
        bufferedInputBytes -= bytes
        assert(bufferedInputBytes >= 0, "buffered-input budget released more than charged")
    }

    public init(loop: EventLoop, fd: Int32, service: HTTP2Service, settings: HTTP2Settings,
                tls: TLSContext?, onClose: @escaping (HTTP2Connection) -> Void) {
        self.fd = fd
        self.loop = loop
        self.service = service
        self.settings = settings
        self.onClose = onClose
        self.handshakeDone = tls == nil
        self.earlyResetTokens = Double(settings.earlyResetBudget)
        if let tls {
            ssl = SSL_new(tls.ctx)
            SSL_set_fd(ssl, fd)
            SSL_set_accept_state(ssl)
            _ = shim_SSL_set_mode(ssl, shim_SSL_MODE_PARTIAL_WRITE_MOVING())
        }
        var s: OpaquePointer?
        let rc = nghttp2_session_server_new2(&s, HTTP2Callbacks.shared.callbacks,
                                             Unmanaged.passUnretained(self).toOpaque(), SessionOptions.shared.option)
        precondition(rc == 0, "nghttp2_session_server_new2 failed")
        session = s
        submitPreface()
        loop.register(fd: fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, handler: self)
        loop.scheduleFlush(self)
        if settings.handshakeTimeoutNanos > 0 {
            handshakeTimer = loop.schedule(afterNanoseconds: settings.handshakeTimeoutNanos) { [weak self] in
                guard let self else { return }
                self.handshakeTimer = nil
                if !self.prefaceReceived { self.abort(.handshakeTimeout) }
            }
        }
    }

    private func submitPreface() {
        var iv: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: settings.maxFrameSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
    }

    // MARK: events

    public func handleEvents(_ events: UInt32) {
        if isClosed { return }
        if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 {
            if !handshakeDone { driveHandshake() } else { readAvailable() }
        }
        if isClosed { return }
        if events & EPOLLOUT.rawValue != 0 && !handshakeDone { driveHandshake() }
        loop.scheduleFlush(self)
    }

    private func driveHandshake() {
        guard let ssl else { return }
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            guard shim_alpn_is_h2(ssl) == 1 else { close(); return }   // gRPC requires h2
            handshakeDone = true
            readAvailable()   // the client preface may already sit in OpenSSL's buffer
            return
        }
        let err = SSL_get_error(ssl, rc)
        if err == shim_ssl_error_want_read() { setWriteInterest(false); return }
        if err == shim_ssl_error_want_write() { setWriteInterest(true); return }
        ERR_clear_error()
        close()   // bad handshake (wrong protocol, no shared cipher, ...): drop just this connection
    }

    private func readAvailable() {
        let buf = loop.readBuffer
        // Plain sockets are level-triggered, so a bounded batch is fair to other connections; TLS must read
        // until WANT_READ because decrypted bytes buffered inside OpenSSL raise no epoll event.
        var rounds = 0
        while !isClosed {
            let n: Int
            if let ssl {
                let r = SSL_read(ssl, buf.baseAddress, Int32(buf.count))
                if r <= 0 {
                    let err = SSL_get_error(ssl, r)
                    if err == shim_ssl_error_want_read() || err == shim_ssl_error_want_write() { return }
                    ERR_clear_error()
                    close(); return
                }
                n = Int(r)
            } else {
                n = read(fd, buf.baseAddress, buf.count)
                if n < 0 {
                    let e = shim_errno()
                    if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return }
                    close(); return
                }
                if n == 0 { close(); return }   // peer closed; streams end as cancelled
            }
            let consumed = nghttp2_session_mem_recv(session, buf.baseAddress!.assumingMemoryBound(to: UInt8.self), n)
            if consumed < 0 {
                // Protocol error or flood: nghttp2 queued a GOAWAY; send it, then close.
                if abortReason == nil {
                    abortReason = .protocolError
                    onAbort?(.protocolError)
                }
                flushOutputOnly()
                close(); return
            }
            if abortReason != nil { return }   // a limit tripped inside a callback: flush() closes
            rounds += 1
            if ssl == nil && (rounds >= 16 || n < buf.count) { return }
        }
    }

    // MARK: output

    public func flush() {
        guard !isClosed else { return }
        if abortReason != nil {
            // Best effort: one attempt to hand the GOAWAY to the socket, then close whatever the peer does.
            if handshakeDone { flushOutputOnly() }
            close()
            return
        }
        guard handshakeDone else { return }
        pullFromSession()
        writeOut()
        if isClosed { return }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 && outOffset == outBuffer.count {
            close()
        }
    }

    private func flushOutputOnly() {
        pullFromSession()
        writeOut()
    }

    private func pullFromSession() {
        while outBuffer.count - outOffset < settings.maxBufferedOutput {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { close(); return }
            if n == 0 { break }
            outBuffer.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
        }
    }

    private func writeOut() {
        while outOffset < outBuffer.count && !isClosed {
            let written: Int = outBuffer.withUnsafeBytes { raw in
                let p = raw.baseAddress! + outOffset
                let len = raw.count - outOffset
                if let ssl {
                    let r = SSL_write(ssl, p, Int32(min(len, Int(Int32.max))))
                    if r > 0 { return Int(r) }
                    let err = SSL_get_error(ssl, r)
                    if err == shim_ssl_error_want_write() || err == shim_ssl_error_want_read() { return 0 }
                    ERR_clear_error()
                    return -1
                }
                let r = Glibc.write(fd, p, len)
                if r >= 0 { return r }
                let e = shim_errno()
                return (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) ? 0 : -1
            }
            if written < 0 { close(); return }
            if written == 0 { setWriteInterest(true); return }
            outOffset += written
        }
        outBuffer.removeAll(keepingCapacity: outBuffer.capacity <= (1 << 20))
        outOffset = 0
        setWriteInterest(false)
        // More frames may be waiting in nghttp2 if we hit the buffering cap.
        if nghttp2_session_want_write(session) != 0 { loop.scheduleFlush(self) }
    }

    private func setWriteInterest(_ on: Bool) {
        guard on != writeInterest, !isClosed else { return }
        writeInterest = on
        loop.modify(fd: fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (on ? EPOLLOUT.rawValue : 0))
    }

    // MARK: stream operations (called by HTTP2Stream)

    func submitResponse(_ stream: HTTP2Stream, headers: HeaderSource, withBody: Bool) {
        if withBody {
            var provider = nghttp2_data_provider(
                source: nghttp2_data_source(ptr: Unmanaged.passUnretained(stream).toOpaque()),
                read_callback: HTTP2Callbacks.readCallback)
            submit(headers) { nva, n in _ = nghttp2_submit_response(session, stream.id, nva, n, &provider) }
        } else {
            submit(headers) { nva, n in _ = nghttp2_submit_response(session, stream.id, nva, n, nil) }
        }
        loop.scheduleFlush(self)
    }

    func submitTrailers(_ stream: HTTP2Stream, _ trailers: HeaderSource) {
        submit(trailers) { nva, n in _ = nghttp2_submit_trailer(session, stream.id, nva, n) }
    }

    private func submit(_ headers: HeaderSource, _ body: (UnsafePointer<nghttp2_nv>, Int) -> Void) {
        switch headers {
        case .staticBlock(let b): body(b.nva, b.count)
        case .dynamic(let pairs): withHeaderBlock(pairs, body)
        }
    }

    func resume(_ stream: HTTP2Stream) {
        if stream.responseStarted { _ = nghttp2_session_resume_data(session, stream.id) }
        loop.scheduleFlush(self)
    }

    /// A stream's unsent output grew (positive) or was taken by nghttp2 / dropped (negative).
    func queuedOutputChanged(by delta: Int) {
        queuedOutputBytes += delta
        if delta > 0 && queuedOutputBytes > settings.maxQueuedOutputBytes { abort(.outputStalled) }
    }

    /// Ends the connection because of `reason`: GOAWAY with an error code now, the socket closed at the
    /// end of this loop iteration (never inside an nghttp2 callback). Safe to call from callbacks.
    func abort(_ reason: HTTP2AbortReason) {
        guard !isClosed, abortReason == nil else { return }
        abortReason = reason
        if handshakeDone, let session {
            let code = reason == .rapidReset || reason == .outputStalled ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_NO_ERROR
            _ = nghttp2_session_terminate_session(session, code.rawValue)
        }
        onAbort?(reason)
        loop.scheduleFlush(self)
    }

    func resetStream(_ stream: HTTP2Stream, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, errorCode)
        loop.scheduleFlush(self)
    }

    // MARK: lifecycle

    /// Graceful shutdown: GOAWAY(2^31-1) now, the final GOAWAY(last stream) after `graceNanoseconds`; the
    /// connection closes by itself once in-flight streams are done.
    public func startDrain(graceNanoseconds: UInt64 = 200_000_000) {
        guard !isClosed, !draining else { return }
        draining = true
        _ = nghttp2_submit_shutdown_notice(session)
        loop.scheduleFlush(self)
        loop.schedule(afterNanoseconds: graceNanoseconds) { [weak self] in
            guard let self, !self.isClosed else { return }
            _ = nghttp2_submit_goaway(self.session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                      nghttp2_session_get_last_proc_stream_id(self.session), NGHTTP2_NO_ERROR.rawValue, nil, 0)
            self.loop.scheduleFlush(self)
        }
    }

    /// Closes the socket now; every open stream is reported closed (CANCEL) to its handler.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        if let t = handshakeTimer { loop.cancelTimer(t); handshakeTimer = nil }
        loop.deregister(fd: fd)
        let open = streams
        streams.removeAll()
        queuedOutputBytes = 0
        loop.openStreams -= open.count
        for (_, s) in open { s.isClosed = true; s.handler?.streamClosed(s, errorCode: NGHTTP2_CANCEL.rawValue); s.handler = nil; s.context = nil }
        nghttp2_session_del(session)
        session = nil
        if let ssl { SSL_free(ssl) }
        ssl = nil
        Glibc.close(fd)
        onClose?(self)
        onClose = nil
    }

    // MARK: nghttp2 callback targets

    func beginStream(_ id: Int32) {
        let s = HTTP2Stream(id: id, connection: self)
        if streams.updateValue(s, forKey: id) == nil { loop.openStreams += 1 }
        _ = nghttp2_session_set_stream_user_data(session, id, Unmanaged.passUnretained(s).toOpaque())
    }

    @inline(__always)
    func stream(_ id: Int32) -> HTTP2Stream? {
        guard let p = nghttp2_session_get_stream_user_data(session, id) else { return nil }
        return Unmanaged<HTTP2Stream>.fromOpaque(p).takeUnretainedValue()
    }

    /// Any frame from the client: the preface is complete (its first frame must be SETTINGS).
    func frameReceived() {
        guard !prefaceReceived else { return }
        prefaceReceived = true
        if let t = handshakeTimer { loop.cancelTimer(t); handshakeTimer = nil }
    }

    /// One request header field (RFC 9113 §6.5.2 size); false once the stream is over the header limits.
    func countHeader(_ s: HTTP2Stream, nameLength: Int, valueLength: Int) -> Bool {
        guard s.headerLimitExceeded == nil else { return false }
        s.headerCount += 1
        s.headerListBytes += nameLength + valueLength + 32
        if s.headerCount > settings.maxHeaderCount {
            s.headerLimitExceeded = "request has more than \(settings.maxHeaderCount) header fields"
        } else if s.headerListBytes > Int(settings.maxHeaderListSize) {
            s.headerLimitExceeded = "request header list is larger than \(settings.maxHeaderListSize) bytes"
        }
        return s.headerLimitExceeded == nil
    }

    /// A GOAWAY went out. With an error code and no abort of ours behind it, nghttp2 itself ended the session
    /// (a connection error it detected while parsing, e.g. more streams than SETTINGS_MAX_CONCURRENT_STREAMS).
    func goawaySent(errorCode: UInt32) {
        guard errorCode != NGHTTP2_NO_ERROR.rawValue, abortReason == nil else { return }
        abortReason = .protocolError
        onAbort?(.protocolError)
        loop.scheduleFlush(self)
    }

    /// RST_STREAM from the client. Streams reset before delivering a request message cost a token.
    func peerResetStream(_ id: Int32) {
        guard settings.earlyResetBudget > 0, let s = stream(id), !s.deliveredRequestMessage else { return }
        let now = EventLoop.now()
        let budget = Double(settings.earlyResetBudget)
        if earlyResetRefilledAt != 0 {
            earlyResetTokens = min(budget, earlyResetTokens + Double(now &- earlyResetRefilledAt) * budget / 10e9)
        }
        earlyResetRefilledAt = now
        earlyResetTokens -= 1
        if earlyResetTokens < 0 { abort(.rapidReset) }
    }

    func headersComplete(_ s: HTTP2Stream) {
        let h = service.handler(for: s)
        s.handler = h
        h.streamHeadersComplete(s)
    }

    func streamClosed(_ id: Int32, errorCode: UInt32) {
        guard let s = streams.removeValue(forKey: id) else { return }
        queuedOutputBytes -= s.queuedBytes
        loop.openStreams -= 1
        s.isClosed = true
        s.handler?.streamClosed(s, errorCode: errorCode)
        s.handler = nil
        s.context = nil
    }
}
