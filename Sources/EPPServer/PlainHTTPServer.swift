import CLinux
import EPPEventLoop
import Glibc

/// A small HTTP/1.1 server for probes and Prometheus scrapes (`/metrics`, `/healthz`, `/readyz`) on one
/// event loop. GET/HEAD only, keep-alive, bounded request size; never on the ext_proc request path.
public final class PlainHTTPServer {
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: String
        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    public typealias Handler = (_ method: String, _ path: String) -> Response

    private let loop: EventLoop
    private var listener: TCPListener?
    private let handler: Handler
    private var connections: [Int32: PlainHTTPConnection] = [:]
    public let port: Int

    public init(loop: EventLoop, host: String, port: Int, onDescriptorsExhausted: ((Int, Int32) -> Void)? = nil,
                handler: @escaping Handler) throws {
        self.loop = loop
        self.handler = handler
        let fd = try Socket.listen(host: host, port: port, reusePort: false)
        self.port = Socket.localPort(fd)
        listener = TCPListener(loop: loop, fd: fd) { [unowned self] cfd in
            let c = PlainHTTPConnection(fd: cfd, loop: self.loop, handler: self.handler) { [unowned self] c in
                self.connections[c.fd] = nil
            }
            self.connections[cfd] = c
        }
        let boundPort = self.port
        if let onDescriptorsExhausted { listener?.onDescriptorsExhausted = { onDescriptorsExhausted(boundPort, $0) } }
    }

    /// Stops listening and closes idle connections (loop thread).
    public func close() {
        listener?.close()
        listener = nil
        for c in connections.values { c.close() }
        connections.removeAll()
    }
}

final class PlainHTTPConnection: EventHandler {
    let fd: Int32
    private unowned let loop: EventLoop
    private let handler: PlainHTTPServer.Handler
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var onClose: ((PlainHTTPConnection) -> Void)?
    private var closeAfterWrite = false
    private var closed = false
    private static let maxRequestBytes = 16 * 1024

    init(fd: Int32, loop: EventLoop, handler: @escaping PlainHTTPServer.Handler, onClose: @escaping (PlainHTTPConnection) -> Void) {
        self.fd = fd
        self.loop = loop
        self.handler = handler
        self.onClose = onClose
        loop.register(fd: fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, handler: self)
    }

    func handleEvents(_ events: UInt32) {
        if events & EPOLLOUT.rawValue != 0 { writeOut() }
        guard !closed, events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 else { return }
        let buf = loop.readBuffer
        let n = read(fd, buf.baseAddress, buf.count)
        if n == 0 { return close() }
        if n < 0 {
            let e = shim_errno()
            if e == EAGAIN || e == EINTR { return }
            return close()
        }
        input.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        processRequests()
    }

    private func processRequests() {
        while let end = headerEnd() {
            let head = String(decoding: input[0..<end], as: UTF8.self)
            input.removeFirst(end + 4)
            let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
            let parts = lines.first?.split(separator: " ") ?? []
            guard parts.count == 3 else { respond(400, "bad request line\n", head: false, keepAlive: false); return }
            let method = String(parts[0]), target = String(parts[1]), version = String(parts[2])
            var keepAlive = version == "HTTP/1.1"
            var contentLength = 0
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters()
                if name == "connection" { keepAlive = value.lowercased() != "close" && (keepAlive || value.lowercased() == "keep-alive") }
                if name == "content-length" { contentLength = Int(value) ?? 0 }
            }
            if contentLength > 0 {   // probes send no body; drop one if present (bounded)
                guard contentLength <= PlainHTTPConnection.maxRequestBytes else { respond(413, "body too large\n", head: false, keepAlive: false); return }
                if input.count < contentLength { input.insert(contentsOf: Array(head.utf8) + [13, 10, 13, 10], at: 0); return }
                input.removeFirst(contentLength)
            }
            guard method == "GET" || method == "HEAD" else { respond(405, "method not allowed\n", head: false, keepAlive: keepAlive); continue }
            let path = String(target.split(separator: "?", maxSplits: 1).first ?? "")
            let r = handler(method, path)
            respond(r.status, r.body, contentType: r.contentType, head: method == "HEAD", keepAlive: keepAlive)
            if closed || closeAfterWrite { return }
        }
        if input.count > PlainHTTPConnection.maxRequestBytes { respond(431, "request header too large\n", head: false, keepAlive: false) }
    }

    private func headerEnd() -> Int? {
        guard input.count >= 4 else { return nil }
        for i in 0...(input.count - 4) where input[i] == 13 && input[i + 1] == 10 && input[i + 2] == 13 && input[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func respond(_ status: Int, _ body: String, contentType: String = "text/plain; charset=utf-8", head: Bool, keepAlive: Bool) {
        let reason: String
        switch status {
        case 200: reason = "OK"
        case 400: reason = "Bad Request"
        case 404: reason = "Not Found"
        case 405: reason = "Method Not Allowed"
        case 413: reason = "Payload Too Large"
        case 431: reason = "Request Header Fields Too Large"
        case 503: reason = "Service Unavailable"
        default: reason = "Status"
        }
        let bodyBytes = Array(body.utf8)
        var h = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bodyBytes.count)\r\n"
        h += keepAlive ? "\r\n" : "Connection: close\r\n\r\n"
        output.append(contentsOf: h.utf8)
        if !head { output.append(contentsOf: bodyBytes) }
        if !keepAlive { closeAfterWrite = true; input.removeAll() }
        writeOut()
    }

    private func writeOut() {
        while !output.isEmpty && !closed {
            let n = output.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = shim_errno()
                if e == EAGAIN || e == EINTR { loop.modify(fd: fd, events: EPOLLIN.rawValue | EPOLLOUT.rawValue); return }
                return close()
            }
            output.removeFirst(n)
        }
        if !closed { loop.modify(fd: fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue) }
        if closeAfterWrite { close() }
    }

    func close() {
        guard !closed else { return }
        closed = true
        loop.deregister(fd: fd)
        Glibc.close(fd)
        onClose?(self)
        onClose = nil
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
