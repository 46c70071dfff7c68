// HTTP GETs against the API server with libcurl's multi interface, driven by the discovery loop's epoll
// (`CurlMultiLoop`).
// Bodies are delivered as they arrive, so one request serves both a list (buffered by the caller) and a
// long-lived chunked watch stream (split into lines by the caller).
//
// Loop-confined: every method and callback runs on `loop`'s thread.

import CCurl
import CLinux
import EPPEventLoop
import Foundation
import Logging

/// How a transfer ended.
struct KubernetesTransferResult {
    /// CURLE_OK when the response was read to its end.
    var code: CURLcode
    /// HTTP status (0 if none was received).
    var status: Int
    /// curl's error text when `code != CURLE_OK`.
    var error: String?
    /// The data handler asked to stop (returned false).
    var abortedByHandler: Bool
}

/// One in-flight GET. Owned by the client until it finishes or is cancelled.
final class KubernetesRequest {
    fileprivate let easy: UnsafeMutableRawPointer
    fileprivate var headers: UnsafeMutablePointer<curl_slist>?
    /// Gets each piece of the body with the HTTP status; returns false to abort the transfer.
    fileprivate let onData: (UnsafeRawBufferPointer, Int) -> Bool
    fileprivate let onDone: (KubernetesTransferResult) -> Void
    fileprivate var aborted = false
    fileprivate var finished = false
    let url: String

    fileprivate init(easy: UnsafeMutableRawPointer, url: String, onData: @escaping (UnsafeRawBufferPointer, Int) -> Bool,
                     onDone: @escaping (KubernetesTransferResult) -> Void) {
        self.easy = easy
        self.url = url
        self.onData = onData
        self.onDone = onDone
    }

    fileprivate func write(_ data: UnsafeMutablePointer<CChar>?, _ n: Int) -> Int {
        guard n > 0, let data, !aborted else { return 0 }
        var status = 0
        _ = shim_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        if onData(UnsafeRawBufferPointer(start: data, count: n), status) { return n }
        aborted = true
        return 0   // curl ends the transfer with CURLE_WRITE_ERROR
    }
}

final class KubernetesHTTPClient {
    let loop: EventLoop
    let config: KubernetesClientConfig
    private let logger: Logger
    private var curl: CurlMultiLoop?
    private var requests: [ObjectIdentifier: KubernetesRequest] = [:]

    /// Call on `loop`'s thread.
    init(loop: EventLoop, config: KubernetesClientConfig, logger: Logger) {
        self.loop = loop
        self.config = config
        self.logger = logger
        curl = CurlMultiLoop(loop: loop, maxConnections: nil) { [unowned self] in self.finished($0) }
        if curl == nil { logger.critical("curl_multi_init failed; Kubernetes discovery cannot run") }
    }

    /// Starts `GET server+pathAndQuery`. `timeout` bounds the whole transfer (a watch gets its server-side timeout
    /// plus slack, so a silently dead connection is noticed). Returns nil if curl refused the request (then
    /// `onDone` is not called).
    func get(_ pathAndQuery: String, timeout: Duration, onData: @escaping (UnsafeRawBufferPointer, Int) -> Bool,
             onDone: @escaping (KubernetesTransferResult) -> Void) -> KubernetesRequest? {
        guard let curl, curl.isOpen, let easy = curl_easy_init() else { return nil }
        let url = config.server + pathAndQuery
        let r = KubernetesRequest(easy: easy, url: url, onData: onData, onDone: onDone)
        let rp = Unmanaged.passUnretained(r).toOpaque()
        _ = url.withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_URL, $0) }
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_PRIVATE, rp)
        _ = shim_curl_easy_setopt_write_function(easy) { data, size, count, userdata in
            Unmanaged<KubernetesRequest>.fromOpaque(userdata!).takeUnretainedValue().write(data, size &* count)
        }
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, rp)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, 10_000)
        let (s, atto) = timeout.components
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(1, Int(s) * 1000 + Int(atto / 1_000_000_000_000_000)))
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        _ = "http,https".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_PROTOCOLS_STR, $0) }
        _ = "epp-kubernetes-discovery".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_USERAGENT, $0) }
        _ = "*".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_NOPROXY, $0) }   // in-cluster traffic never goes via a proxy
        _ = shim_curl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        applyTLS(easy)
        var h = curl_slist_append(nil, "Accept: application/json")
        if let t = config.currentToken() { h = curl_slist_append(h, "Authorization: Bearer \(t)") }
        r.headers = h
        _ = shim_curl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeRawPointer(h))
        guard curl.add(easy) == CURLM_OK else {
            release(r)
            return nil
        }
        requests[ObjectIdentifier(r)] = r
        return r
    }

    /// Aborts `r` without calling its `onDone`. Must not be called from inside a curl callback (`onData`).
    func cancel(_ r: KubernetesRequest) {
        guard requests.removeValue(forKey: ObjectIdentifier(r)) != nil else { return }
        curl?.remove(r.easy)
        release(r)
    }

    /// Aborts everything and frees curl. The client is unusable afterwards.
    func shutdown() {
        for r in Array(requests.values) { cancel(r) }
        curl?.close()
        curl = nil
    }

    private func release(_ r: KubernetesRequest) {
        r.finished = true
        curl_easy_cleanup(r.easy)
        if let h = r.headers { curl_slist_free_all(h) }
        r.headers = nil
    }

    private func applyTLS(_ easy: UnsafeMutableRawPointer) {
        if let f = config.caFile { _ = f.withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_CAINFO, $0) } }
        if let d = config.caData { setBlob(easy, CURLOPT_CAINFO_BLOB, d) }
        if let f = config.clientCertFile { _ = f.withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_SSLCERT, $0) } }
        if let d = config.clientCertData { setBlob(easy, CURLOPT_SSLCERT_BLOB, d) }
        if let f = config.clientKeyFile { _ = f.withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_SSLKEY, $0) } }
        if let d = config.clientKeyData { setBlob(easy, CURLOPT_SSLKEY_BLOB, d) }
        if config.clientCertFile != nil || config.clientCertData != nil {
            _ = "PEM".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_SSLCERTTYPE, $0) }
            _ = "PEM".withCString { shim_curl_easy_setopt_ptr(easy, CURLOPT_SSLKEYTYPE, $0) }
        }
        if config.insecureSkipTLSVerify {
            _ = shim_curl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0)
            _ = shim_curl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0)
        }
    }

    private func setBlob(_ easy: UnsafeMutableRawPointer, _ opt: CURLoption, _ bytes: [UInt8]) {
        var copy = bytes
        copy.withUnsafeMutableBytes { buf in
            var blob = curl_blob(data: buf.baseAddress, len: buf.count, flags: UInt32(CURL_BLOB_COPY))   // curl copies
            _ = withUnsafePointer(to: &blob) { shim_curl_easy_setopt_ptr(easy, opt, UnsafeRawPointer($0)) }
        }
    }

    // MARK: finished transfers

    private func finished(_ transfers: [CurlMultiLoop.Finished]) {
        var done: [(KubernetesRequest, KubernetesTransferResult)] = []
        for f in transfers {
            guard let priv = f.privateData else { continue }
            let r = Unmanaged<KubernetesRequest>.fromOpaque(priv).takeUnretainedValue()
            guard requests.removeValue(forKey: ObjectIdentifier(r)) != nil else { continue }
            let err = f.code == CURLE_OK ? nil : String(cString: curl_easy_strerror(f.code))
            done.append((r, KubernetesTransferResult(code: f.code, status: f.status, error: err, abortedByHandler: r.aborted)))
            release(r)
        }
        // Completion handlers may start or cancel requests: run them after curl returned.
        for (r, result) in done { r.onDone(result) }
    }
}
