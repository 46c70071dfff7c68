// A small asynchronous HTTP/1.1 client for one request event loop: libcurl's multi interface driven by that
// loop's epoll (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION ⇒ curl_multi_socket_action, the scheme of
// MetricsScraper), so a call never blocks the loop. Connections stay in the multi handle's cache (keep-alive);
// easy handles are pooled. Each request has curl's own total timeout; nothing else bounds it.
//
// Loop-confined: create, call and close it on `loop`'s thread only (owned by that loop's precise-prefix lane).

import CCurl
import CLinux
import EPPEventLoop
import Glibc

public struct LoopHTTPResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
}

public enum LoopHTTPError: Error, Sendable, Equatable {
    case timeout
    case connect(String)
    case tooLarge
    case closed
    case other(String)
}

public final class LoopHTTPClient: @unchecked Sendable {   // loop-confined; Sendable only to be handed to its loop
    public let loop: EventLoop
    public let maxResponseBytes: Int
    private var multi: UnsafeMutableRawPointer?
    private var jsonHeaders: UnsafeMutablePointer<curl_slist>?
    private var sockets: [Int32: LoopHTTPSocket] = [:]
    private var curlTimer: TimerID?
    private var inFlight: [UnsafeMutableRawPointer: LoopHTTPTransfer] = [:]
    private var idle: [UnsafeMutableRawPointer] = []
    /// TCP connections opened so far (keep-alive reuse keeps this low; tests read it).
    public private(set) var connectionsOpened = 0

    public init(loop: EventLoop, maxResponseBytes: Int = 8 << 20, maxConnections: Int = 64) {
        self.loop = loop
        self.maxResponseBytes = maxResponseBytes
        _ = loopHTTPCurlGlobalInit
        guard let m = curl_multi_init() else { return }
        multi = m
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = shim_curl_multi_setopt_socket_function(m) { _, fd, what, userp, _ in
            Unmanaged<LoopHTTPClient>.fromOpaque(userp!).takeUnretainedValue().curlWantsSocket(fd: fd, what: what)
            return 0
        }
        _ = shim_curl_multi_setopt_ptr(m, CURLMOPT_SOCKETDATA, me)
        _ = shim_curl_multi_setopt_timer_function(m) { _, ms, userp in
            Unmanaged<LoopHTTPClient>.fromOpaque(userp!).takeUnretainedValue().curlWantsTimer(milliseconds: ms)
            return 0
        }
        _ = shim_curl_multi_setopt_ptr(m, CURLMOPT_TIMERDATA, me)
        _ = shim_curl_multi_setopt_long(m, CURLMOPT_MAXCONNECTS, max(4, maxConnections))
        jsonHeaders = curl_slist_append(nil, "Content-Type: application/json")
        jsonHeaders = curl_slist_append(jsonHeaders, "Accept: application/json")
        jsonHeaders = curl_slist_append(jsonHeaders, "Expect:")   // no 100-continue round trip for larger bodies
    }

    deinit { close() }

    public var requestsInFlight: Int { inFlight.count }

    /// POSTs `body` as JSON. `done` runs later on the loop, exactly once (never inside this call). Returns false
    /// (and never calls `done`) when the request could not be started.
    @discardableResult
    public func post(url: String, body: [UInt8], timeoutNanos: UInt64,
                     _ done: @escaping (Result<LoopHTTPResponse, LoopHTTPError>) -> Void) -> Bool {
        guard let m = multi, let easy = idle.popLast() ?? curl_easy_init() else { return false }
        let t = LoopHTTPTransfer(easy: easy, maxBytes: maxResponseBytes, done: done)
        let tp = Unmanaged.passUnretained(t).toOpaque()
        _ = url.withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_URL, $0) }   // curl copies strings
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_PRIVATE, tp)
        _ = shim_curl_easy_setopt_write_function(easy) { data, size, count, userdata in
            Unmanaged<LoopHTTPTransfer>.fromOpaque(userdata!).takeUnretainedValue().append(data, size &* count)
        }
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, tp)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        let ms = max(1, Int((timeoutNanos + 999_999) / 1_000_000))
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, ms)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, ms)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeRawPointer(jsonHeaders))
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, body.count)
        if body.isEmpty {
            _ = "".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, $0) }
        } else {
            _ = body.withUnsafeBytes { shim_curl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, $0.baseAddress!) }   // curl copies
        }
        _ = "*".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_NOPROXY, $0) }
        _ = "http,https".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_PROTOCOLS_STR, $0) }
        _ = "epp-picker".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_USERAGENT, $0) }
        _ = shim_curl_easy_setopt_off_t(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(maxResponseBytes))
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        guard curl_multi_add_handle(m, easy) == CURLM_OK else {
            recycle(easy)
            return false
        }
        inFlight[easy] = t
        return true
    }

    /// Aborts every transfer (their `done` gets `.closed`) and frees curl. Idempotent.
    public func close() {
        guard let m = multi else { return }
        multi = nil
        let transfers = inFlight
        inFlight.removeAll()
        for (easy, _) in transfers { curl_multi_remove_handle(m, easy); curl_easy_cleanup(easy) }
        for easy in idle { curl_easy_cleanup(easy) }
        idle.removeAll()
        curl_multi_cleanup(m)   // closes cached connections (socket callback: REMOVE)
        if let id = curlTimer { loop.cancelTimer(id) }
        curlTimer = nil
        for fd in sockets.keys { loop.deregister(fd: fd) }
        sockets.removeAll()
        if let h = jsonHeaders { curl_slist_free_all(h) }
        jsonHeaders = nil
        for (_, t) in transfers { t.done(.failure(.closed)) }
    }

    private func recycle(_ easy: UnsafeMutableRawPointer) {
        if idle.count < 16 {
            curl_easy_reset(easy)
            idle.append(easy)
        } else {
            curl_easy_cleanup(easy)
        }
    }

    // MARK: curl callbacks (loop thread)

    fileprivate func curlWantsSocket(fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            if sockets.removeValue(forKey: fd) != nil { loop.deregister(fd: fd) }
            return
        }
        var ev: UInt32 = 0
        if what & CURL_POLL_IN != 0 { ev |= EPOLLIN.rawValue }
        if what & CURL_POLL_OUT != 0 { ev |= EPOLLOUT.rawValue }
        if let h = sockets[fd] {
            if h.events != ev {
                h.events = ev
                loop.modify(fd: fd, events: ev)
            }
        } else {
            let h = LoopHTTPSocket(fd: fd, events: ev, client: self)
            sockets[fd] = h
            loop.register(fd: fd, events: ev, handler: h)
        }
    }

    fileprivate func curlWantsTimer(milliseconds: Int) {
        if let id = curlTimer { loop.cancelTimer(id) }
        curlTimer = nil
        guard milliseconds >= 0, multi != nil else { return }
        // Never call socket_action from inside a curl callback: even a 0 ms timer runs on the next iteration.
        curlTimer = loop.schedule(afterNanoseconds: UInt64(milliseconds) &* 1_000_000) { [weak self] in
            guard let self else { return }
            self.curlTimer = nil
            self.socketAction(fd: shim_curl_socket_timeout(), flags: 0)
        }
    }

    fileprivate func socketAction(fd: Int32, flags: Int32) {
        guard let m = multi else { return }
        var running: Int32 = 0
        _ = curl_multi_socket_action(m, fd, flags, &running)
        collectFinished()
    }

    private func collectFinished() {
        guard let m = multi else { return }
        var queued: Int32 = 0
        var finished: [(LoopHTTPTransfer, Result<LoopHTTPResponse, LoopHTTPError>)] = []
        while let msg = curl_multi_info_read(m, &queued) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            let code = shim_curl_msg_result(msg)
            var status = 0
            _ = shim_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            var connects = 0
            _ = shim_curl_easy_getinfo_long(easy, CURLINFO_NUM_CONNECTS, &connects)
            curl_multi_remove_handle(m, easy)   // `msg` is invalid from here on
            connectionsOpened += connects
            guard let t = inFlight.removeValue(forKey: easy) else { continue }
            let result: Result<LoopHTTPResponse, LoopHTTPError>
            switch code {
            case CURLE_OK: result = .success(LoopHTTPResponse(status: status, body: t.body))
            case CURLE_OPERATION_TIMEDOUT: result = .failure(.timeout)
            case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST:
                result = .failure(.connect(String(cString: curl_easy_strerror(code))))
            case CURLE_FILESIZE_EXCEEDED: result = .failure(.tooLarge)
            case CURLE_WRITE_ERROR where t.overflow: result = .failure(.tooLarge)
            default: result = .failure(.other(String(cString: curl_easy_strerror(code))))
            }
            recycle(easy)
            finished.append((t, result))
        }
        // Completions last: a `done` may start new requests on this client.
        for (t, r) in finished { t.done(r) }
    }
}

/// One request's response buffer and completion.
final class LoopHTTPTransfer {
    let easy: UnsafeMutableRawPointer
    let maxBytes: Int
    let done: (Result<LoopHTTPResponse, LoopHTTPError>) -> Void
    var body: [UInt8] = []
    var overflow = false

    init(easy: UnsafeMutableRawPointer, maxBytes: Int, done: @escaping (Result<LoopHTTPResponse, LoopHTTPError>) -> Void) {
        self.easy = easy
        self.maxBytes = maxBytes
        self.done = done
    }

    /// Write callback: returning less than `n` aborts the transfer (CURLE_WRITE_ERROR).
    func append(_ data: UnsafeMutablePointer<CChar>?, _ n: Int) -> Int {
        guard n > 0, let data else { return 0 }
        if body.count + n > maxBytes { overflow = true; return 0 }
        body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
        return n
    }
}

/// epoll registration of one curl socket.
final class LoopHTTPSocket: EventHandler {
    let fd: Int32
    var events: UInt32
    unowned let client: LoopHTTPClient

    init(fd: Int32, events: UInt32, client: LoopHTTPClient) {
        self.fd = fd
        self.events = events
        self.client = client
    }

    func handleEvents(_ ev: UInt32) {
        var flags: Int32 = 0
        if ev & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
        if ev & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
        if ev & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
        client.socketAction(fd: fd, flags: flags)
    }
}

/// `curl_global_init` once per process (reference counted by curl, so the scraper's own call is harmless).
private let loopHTTPCurlGlobalInit: Void = {
    _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}()
