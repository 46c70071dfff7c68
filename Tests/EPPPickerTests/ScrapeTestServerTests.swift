// A tiny HTTP/1.1 server on 127.0.0.1 for the scraper tests: POSIX sockets, one background thread, keep-alive,
// a body that can be changed, and switches to hang (read requests, never answer), answer with a status, go
// away (close the listener and every connection: connection refused) and come back on the same port.

import Glibc
import Synchronization
import Testing

final class TestMetricsServer: @unchecked Sendable {
    enum Mode: Sendable, Equatable {
        case normal
        case hang
        case status(Int)
    }

    private struct State {
        var body: String
        var mode: Mode = .normal
        var listening = true
        var shutdown = false
        var connections = 0
        var openConnections = 0
        var requests = 0
    }

    let port: Int
    private let state: Mutex<State>
    private var listenFd: Int32 = -1
    private var conns: [Int32: [UInt8]] = [:]
    private var thread = pthread_t()

    init(body: String) throws {
        state = Mutex(State(body: body))
        let fd = try TestMetricsServer.bindListener(port: 0)
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listenFd = fd
        let arg = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let s = Unmanaged<TestMetricsServer>.fromOpaque(arg!).takeRetainedValue()
            s.run()
            return nil
        }, arg)
        precondition(rc == 0)
    }

    var body: String {
        get { state.withLock { $0.body } }
        set { state.withLock { $0.body = newValue } }
    }
    var mode: Mode {
        get { state.withLock { $0.mode } }
        set { state.withLock { $0.mode = newValue } }
    }
    /// TCP connections accepted so far.
    var connections: Int { state.withLock { $0.connections } }
    /// Connections currently open (closed by the client ⇒ no longer counted).
    var openConnections: Int { state.withLock { $0.openConnections } }
    /// Requests received so far (answered or not).
    var requests: Int { state.withLock { $0.requests } }

    /// Closes the listener and all connections (clients get "connection refused").
    func goAway() { state.withLock { $0.listening = false } }
    /// Listens again on the same port.
    func comeBack() { state.withLock { $0.listening = true } }

    func shutdown() {
        let already = state.withLock { s -> Bool in
            defer { s.shutdown = true }
            return s.shutdown
        }
        if !already { pthread_join(thread, nil) }
    }

    deinit { shutdown() }

    private static func bindListener(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestServerError.socket(errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw TestServerError.socket(e)
        }
        return fd
    }

    private func closeAll() {
        if listenFd >= 0 { close(listenFd) }
        listenFd = -1
        for fd in conns.keys { close(fd) }
        state.withLock { $0.openConnections -= conns.count }
        conns.removeAll()
    }

    private func run() {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let (shutdown, listening) = state.withLock { ($0.shutdown, $0.listening) }
            if shutdown { break }
            if !listening && listenFd >= 0 { closeAll() }
            if listening && listenFd < 0 { listenFd = (try? TestMetricsServer.bindListener(port: port)) ?? -1 }

            var fds: [pollfd] = []
            if listenFd >= 0 { fds.append(pollfd(fd: listenFd, events: Int16(POLLIN), revents: 0)) }
            for fd in conns.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            let n = poll(&fds, nfds_t(fds.count), 5)
            if n <= 0 { continue }
            for p in fds where p.revents != 0 {
                if p.fd == listenFd {
                    let c = accept(listenFd, nil, nil)
                    if c >= 0 {
                        conns[c] = []
                        state.withLock { $0.connections += 1; $0.openConnections += 1 }
                    }
                    continue
                }
                let r = buf.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if r <= 0 {
                    close(p.fd)
                    conns[p.fd] = nil
                    state.withLock { $0.openConnections -= 1 }
                    continue
                }
                conns[p.fd, default: []].append(contentsOf: buf[0..<r])
                serve(fd: p.fd)
            }
        }
        closeAll()
    }

    /// Answers every complete request (GET: no body) buffered on `fd`.
    private func serve(fd: Int32) {
        while var pending = conns[fd], let end = headerEnd(pending) {
            pending.removeFirst(end)
            conns[fd] = pending
            let (body, mode) = state.withLock { s -> (String, Mode) in
                s.requests += 1
                return (s.body, s.mode)
            }
            let response: String
            switch mode {
            case .hang:
                continue
            case .normal:
                response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
            case .status(let code):
                response = "HTTP/1.1 \(code) Oops\r\nContent-Length: 4\r\n\r\noops"
            }
            var bytes = Array(response.utf8)
            var off = 0
            while off < bytes.count {
                let w = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
                if w <= 0 { break }
                off += w
            }
        }
    }

    private func headerEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i + 4 }
        return nil
    }
}

enum TestServerError: Error { case socket(Int32) }

/// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
func eventuallyTrue(timeout: Duration = .seconds(3), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

@Suite struct ScrapeTestServerTests {
    @Test func serverAnswersAndCountsKeepAliveRequests() async throws {
        let server = try TestMetricsServer(body: "x 1\n")
        defer { server.shutdown() }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(server.port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(rc == 0)
        for _ in 0..<2 {
            let req = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            _ = req.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var got: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 1024)
            while !String(decoding: got, as: UTF8.self).hasSuffix("x 1\n") {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                got += buf[0..<n]
            }
            #expect(String(decoding: got, as: UTF8.self).hasPrefix("HTTP/1.1 200 OK"))
        }
        #expect(server.requests == 2)
        #expect(server.connections == 1)
    }
}
