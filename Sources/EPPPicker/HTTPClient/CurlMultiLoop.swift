// libcurl's multi interface driven by one of our epoll loops: curl says which sockets to watch
// (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION); the loop answers with
// `curl_multi_socket_action` and hands every finished transfer to the owner. The one adapter behind the metrics
// scraper, the Kubernetes API client and the render client (hiredis-style: tiny core, per-loop glue).
//
// Loop-confined: create, use and close it on `loop`'s thread only.

import CCurl
import CLinux
import EPPEventLoop
import Glibc

final class CurlMultiLoop {
    /// A transfer curl has finished (the easy handle is already out of the multi handle).
    struct Finished {
        let easy: UnsafeMutableRawPointer
        let code: CURLcode
        /// HTTP status (0 when no response).
        let status: Int
        /// New TCP connections the transfer opened (0 when it reused a cached one).
        let connects: Int
        /// `CURLOPT_PRIVATE` of the easy handle.
        let privateData: UnsafeMutableRawPointer?
    }

    let loop: EventLoop
    private var multi: UnsafeMutableRawPointer?
    private var sockets: [Int32: CurlMultiSocket] = [:]
    private var timer: TimerID?
    /// Called on the loop with the transfers one `curl_multi_socket_action` finished, after curl returned (the
    /// owner settles its bookkeeping for all of them, then runs completions, which may start new transfers,
    /// remove others or close this adapter).
    private let onFinished: ([Finished]) -> Void

    /// nil when curl can't make a multi handle. `maxConnections`: idle keep-alive connections kept (nil: curl's
    /// default, 4 × the transfers added).
    init?(loop: EventLoop, maxConnections: Int?, onFinished: @escaping ([Finished]) -> Void) {
        _ = curlGlobalInit
        guard let m = curl_multi_init() else { return nil }
        self.loop = loop
        self.onFinished = onFinished
        multi = m
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = shim_curl_multi_setopt_socket_function(m) { _, fd, what, userp, _ in
            Unmanaged<CurlMultiLoop>.fromOpaque(userp!).takeUnretainedValue().curlWantsSocket(fd: fd, what: what)
            return 0
        }
        _ = shim_curl_multi_setopt_ptr(m, CURLMOPT_SOCKETDATA, me)
        _ = shim_curl_multi_setopt_timer_function(m) { _, ms, userp in
            Unmanaged<CurlMultiLoop>.fromOpaque(userp!).takeUnretainedValue().curlWantsTimer(milliseconds: ms)
            return 0
        }
        _ = shim_curl_multi_setopt_ptr(m, CURLMOPT_TIMERDATA, me)
        if let maxConnections { _ = shim_curl_multi_setopt_long(m, CURLMOPT_MAXCONNECTS, maxConnections) }
    }

    deinit { close() }

    var isOpen: Bool { multi != nil }

    /// Starts `easy` (curl asks for a 0 ms timer to kick it off). Not CURLM_OK: the transfer was not added.
    func add(_ easy: UnsafeMutableRawPointer) -> CURLMcode {
        guard let m = multi else { return CURLM_BAD_HANDLE }
        return curl_multi_add_handle(m, easy)
    }

    /// Aborts a transfer in flight (no `onFinished` for it).
    func remove(_ easy: UnsafeMutableRawPointer) {
        if let m = multi { curl_multi_remove_handle(m, easy) }
    }

    /// Frees the multi handle (closing its cached connections) and every registration. Transfers still added
    /// must have been removed first. Idempotent.
    func close() {
        guard let m = multi else { return }
        multi = nil
        curl_multi_cleanup(m)   // closes cached connections (socket callback: REMOVE)
        if let t = timer { loop.cancelTimer(t) }
        timer = nil
        for fd in sockets.keys { loop.deregister(fd: fd) }
        sockets.removeAll()
    }

    // MARK: curl callbacks (loop thread)

    private func curlWantsSocket(fd: Int32, what: Int32) {
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
            let h = CurlMultiSocket(fd: fd, events: ev, owner: self)
            sockets[fd] = h
            loop.register(fd: fd, events: ev, handler: h)
        }
    }

    private func curlWantsTimer(milliseconds: Int) {
        if let t = timer { loop.cancelTimer(t) }
        timer = nil
        guard milliseconds >= 0, multi != nil else { return }
        // Never call socket_action from inside a curl callback: even a 0 ms timer runs on the next iteration.
        timer = loop.schedule(afterNanoseconds: UInt64(milliseconds) &* 1_000_000) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.socketAction(fd: shim_curl_socket_timeout(), flags: 0)
        }
    }

    fileprivate func socketAction(fd: Int32, flags: Int32) {
        guard let m = multi else { return }
        var running: Int32 = 0
        _ = curl_multi_socket_action(m, fd, flags, &running)
        var queued: Int32 = 0
        var finished: [Finished] = []
        while let msg = curl_multi_info_read(m, &queued) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            let code = shim_curl_msg_result(msg)
            var priv: UnsafeMutableRawPointer? = nil
            _ = shim_curl_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &priv)
            var status = 0
            _ = shim_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            var connects = 0
            _ = shim_curl_easy_getinfo_long(easy, CURLINFO_NUM_CONNECTS, &connects)
            curl_multi_remove_handle(m, easy)   // `msg` is invalid from here on
            finished.append(Finished(easy: easy, code: code, status: status, connects: connects, privateData: priv))
        }
        if !finished.isEmpty { onFinished(finished) }
    }
}

/// epoll registration of one curl socket; events go straight to `curl_multi_socket_action`.
private final class CurlMultiSocket: EventHandler {
    let fd: Int32
    var events: UInt32
    unowned let owner: CurlMultiLoop

    init(fd: Int32, events: UInt32, owner: CurlMultiLoop) {
        self.fd = fd
        self.events = events
        self.owner = owner
    }

    func handleEvents(_ ev: UInt32) {
        var flags: Int32 = 0
        if ev & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
        if ev & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
        if ev & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
        owner.socketAction(fd: fd, flags: flags)
    }
}

/// `curl_global_init` once per process (Swift globals are initialised exactly once, thread-safely); owners touch
/// it early on the thread that creates them.
let curlGlobalInit: Void = {
    _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}()
