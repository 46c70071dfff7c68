// A small asynchronous HTTP/1.1 client for one request event loop: libcurl's multi interface driven by that
// loop's epoll (`CurlMultiLoop`), so a call never blocks the loop. Connections stay in the multi handle's cache (keep-alive);
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
    private var curl: CurlMultiLoop?
    private var jsonHeaders: UnsafeMutablePointer<curl_slist>?
    private var inFlight: [UnsafeMutableRawPointer: LoopHTTPTransfer] = [:]
    private var idle: [UnsafeMutableRawPointer] = []
    /// TCP connections opened so far (keep-alive reuse keeps this low; tests read it).
    public private(set) var connectionsOpened = 0

    public init(loop: EventLoop, maxResponseBytes: Int = 8 << 20, maxConnections: Int = 64) {
        self.loop = loop
        self.maxResponseBytes = maxResponseBytes
        curl = CurlMultiLoop(loop: loop, maxConnections: max(4, maxConnections)) { [unowned self] in self.finished($0) }
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
        guard let curl, curl.isOpen, let easy = idle.popLast() ?? curl_easy_init() else { return false }
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
        guard curl.add(easy) == CURLM_OK else {
            recycle(easy)
            return false
        }
        inFlight[easy] = t
        return true
    }

    /// Aborts every transfer (their `done` gets `.closed`) and frees curl. Idempotent.
    public func close() {
        guard let c = curl else { return }
        curl = nil
        let transfers = inFlight
        inFlight.removeAll()
        for (easy, _) in transfers { c.remove(easy); curl_easy_cleanup(easy) }
        for easy in idle { curl_easy_cleanup(easy) }
        idle.removeAll()
        c.close()
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

    // MARK: finished transfers (loop thread)

    private func finished(_ transfers: [CurlMultiLoop.Finished]) {
        var results: [(LoopHTTPTransfer, Result<LoopHTTPResponse, LoopHTTPError>)] = []
        for f in transfers {
            connectionsOpened += f.connects
            guard let t = inFlight.removeValue(forKey: f.easy) else { continue }
            let result: Result<LoopHTTPResponse, LoopHTTPError>
            switch f.code {
            case CURLE_OK: result = .success(LoopHTTPResponse(status: f.status, body: t.body))
            case CURLE_OPERATION_TIMEDOUT: result = .failure(.timeout)
            case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST:
                result = .failure(.connect(String(cString: curl_easy_strerror(f.code))))
            case CURLE_FILESIZE_EXCEEDED: result = .failure(.tooLarge)
            case CURLE_WRITE_ERROR where t.overflow: result = .failure(.tooLarge)
            default: result = .failure(.other(String(cString: curl_easy_strerror(f.code))))
            }
            recycle(f.easy)
            results.append((t, result))
        }
        // Completions last: a `done` may start new requests on this client.
        for (t, r) in results { t.done(r) }
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
